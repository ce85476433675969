//! The order a plan runs in: each change becomes one or two steps (a replace is a delete then a
//! create), and each step lists the steps it must wait for. Creates and updates follow references;
//! deletes run in reverse, after whatever depended on the deleted resource is gone. Pure.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Action, Change};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
    Adopt,
    Forget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Index into `Plan::changes`.
    pub change: usize,
    pub op: Op,
}

/// The steps of a plan and, for each, the indices of the steps it waits for.
pub fn steps(changes: &[Change]) -> (Vec<Step>, Vec<Vec<usize>>) {
    let mut steps = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let ops: &[Op] = match c.action {
            Action::Create => &[Op::Create],
            Action::Update => &[Op::Update],
            Action::Replace if c.kind.schema().create_before_destroy => &[Op::Create, Op::Delete],
            Action::Replace => &[Op::Delete, Op::Create],
            Action::Delete => &[Op::Delete],
            Action::Adopt => &[Op::Adopt],
            Action::Forget => &[Op::Forget],
        };
        steps.extend(ops.iter().map(|&op| Step { change: i, op }));
    }
    let index: HashMap<(&str, Op), usize> = steps
        .iter()
        .enumerate()
        .map(|(n, s)| ((changes[s.change].id.as_str(), s.op), n))
        .collect();
    let forward = |id: &str| -> Vec<usize> {
        [Op::Create, Op::Update, Op::Adopt]
            .iter()
            .filter_map(|op| index.get(&(id, *op)).copied())
            .collect()
    };

    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (n, s) in steps.iter().enumerate() {
        let c = &changes[s.change];
        match s.op {
            Op::Create | Op::Update | Op::Adopt => {
                for d in &c.depends_on {
                    deps[n].extend(forward(d));
                }
                let cbd = c.kind.schema().create_before_destroy;
                if let (Op::Create, Some(&del), false) =
                    (s.op, index.get(&(c.id.as_str(), Op::Delete)), cbd)
                {
                    deps[n].push(del);
                }
            }
            Op::Delete => {
                let replaced = c.action == Action::Replace;
                // Create before destroy: the old one goes once its successor exists and everything
                // that used it has moved over.
                let cbd = replaced && c.kind.schema().create_before_destroy;
                if let (true, Some(&create)) = (cbd, index.get(&(c.id.as_str(), Op::Create))) {
                    deps[n].push(create);
                }
                // Whatever depended on this resource lets go of it first: deleted, or (when this
                // resource is gone for good) updated to point elsewhere.
                for (m, other) in steps.iter().enumerate() {
                    let oc = &changes[other.change];
                    if oc.id == c.id || !oc.recorded_deps.contains(&c.id) {
                        continue;
                    }
                    let waits = match other.op {
                        Op::Delete => true,
                        Op::Update => !replaced || cbd,
                        _ => false,
                    };
                    if waits {
                        deps[n].push(m);
                    }
                }
            }
            Op::Forget => {}
        }
        deps[n].sort_unstable();
        deps[n].dedup();
    }
    (steps, deps)
}

/// The number of steps on the longest dependency chain: the least number of sequential steps any
/// schedule needs, however parallel.
pub fn critical_path(deps: &[Vec<usize>]) -> usize {
    let mut depth: Vec<Option<usize>> = vec![None; deps.len()];
    fn visit(i: usize, deps: &[Vec<usize>], depth: &mut Vec<Option<usize>>) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        // Mark first: a cycle (refused by the queue anyway) cannot recurse forever.
        depth[i] = Some(1);
        let d = 1 + deps[i]
            .iter()
            .map(|&j| visit(j, deps, depth))
            .max()
            .unwrap_or(0);
        depth[i] = Some(d);
        d
    }
    (0..deps.len())
        .map(|i| visit(i, deps, &mut depth))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn critical_path_is_the_longest_chain() {
        // 0 <- 1 <- 3, 0 <- 2, 4 alone.
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        assert_eq!(super::critical_path(&deps), 3);
        assert_eq!(super::critical_path(&[]), 0);
    }
}
