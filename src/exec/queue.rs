//! A dependency queue: which steps may start now, and what a finished or failed step releases.
//! Pure bookkeeping, no async: the driver in `exec` runs it.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Ready,
    Running,
    Done,
    Failed,
    Skipped,
}

#[derive(Debug)]
pub struct Queue {
    dependents: Vec<Vec<usize>>,
    pending: Vec<usize>,
    state: Vec<State>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the steps form a cycle through step {0}")]
pub struct Cycle(pub usize);

impl Queue {
    /// `deps[i]` lists the steps that step `i` waits for.
    pub fn new(deps: Vec<Vec<usize>>) -> Result<Self, Cycle> {
        let n = deps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let pending: Vec<usize> = deps.iter().map(Vec::len).collect();
        let state = pending
            .iter()
            .map(|&p| if p == 0 { State::Ready } else { State::Waiting })
            .collect();
        let q = Queue {
            dependents,
            pending,
            state,
        };
        q.check_acyclic()?;
        Ok(q)
    }

    fn check_acyclic(&self) -> Result<(), Cycle> {
        let mut pending = self.pending.clone();
        let mut ready: Vec<usize> = (0..pending.len()).filter(|&i| pending[i] == 0).collect();
        let mut seen = 0;
        while let Some(i) = ready.pop() {
            seen += 1;
            for &d in &self.dependents[i] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.push(d);
                }
            }
        }
        match (0..pending.len()).find(|&i| pending[i] > 0) {
            Some(i) if seen < pending.len() => Err(Cycle(i)),
            _ => Ok(()),
        }
    }

    /// Steps that can start now; they are marked running.
    pub fn take_ready(&mut self) -> Vec<usize> {
        let ready: Vec<usize> = (0..self.state.len())
            .filter(|&i| self.state[i] == State::Ready)
            .collect();
        for &i in &ready {
            self.state[i] = State::Running;
        }
        ready
    }

    pub fn finish(&mut self, i: usize) {
        self.state[i] = State::Done;
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            self.pending[d] -= 1;
            if self.pending[d] == 0 && self.state[d] == State::Waiting {
                self.state[d] = State::Ready;
            }
        }
    }

    /// Marks a step failed and skips everything that (transitively) waits for it. Returns the
    /// skipped steps.
    pub fn fail(&mut self, i: usize) -> BTreeSet<usize> {
        self.state[i] = State::Failed;
        let mut skipped = BTreeSet::new();
        let mut stack = self.dependents[i].clone();
        while let Some(d) = stack.pop() {
            if matches!(self.state[d], State::Waiting | State::Ready) && skipped.insert(d) {
                self.state[d] = State::Skipped;
                stack.extend(self.dependents[d].iter().copied());
            }
        }
        skipped
    }

    /// Skips every step not started yet (after an interrupt).
    pub fn cancel(&mut self) -> BTreeSet<usize> {
        let mut skipped = BTreeSet::new();
        for (i, s) in self.state.iter_mut().enumerate() {
            if matches!(s, State::Waiting | State::Ready) {
                *s = State::Skipped;
                skipped.insert(i);
            }
        }
        skipped
    }

    pub fn state(&self, i: usize) -> State {
        self.state[i]
    }

    /// True when nothing is running and nothing more can start.
    pub fn is_settled(&self) -> bool {
        !self
            .state
            .iter()
            .any(|s| matches!(s, State::Ready | State::Running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_dependency_order() {
        // 0 ← 1 ← 3, 0 ← 2 ← 3
        let mut q = Queue::new(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(q.take_ready(), [0]);
        assert_eq!(q.take_ready(), Vec::<usize>::new());
        q.finish(0);
        assert_eq!(q.take_ready(), [1, 2]);
        q.finish(1);
        assert_eq!(q.take_ready(), Vec::<usize>::new());
        q.finish(2);
        assert_eq!(q.take_ready(), [3]);
        q.finish(3);
        assert!(q.is_settled());
    }

    #[test]
    fn failure_skips_dependents_only() {
        // 0 ← 1 ← 2 ; 3 independent
        let mut q = Queue::new(vec![vec![], vec![0], vec![1], vec![]]).unwrap();
        assert_eq!(q.take_ready(), [0, 3]);
        let skipped = q.fail(0);
        assert_eq!(skipped.into_iter().collect::<Vec<_>>(), [1, 2]);
        assert!(!q.is_settled());
        q.finish(3);
        assert!(q.is_settled());
        assert_eq!(q.state(2), State::Skipped);
        assert_eq!(q.state(3), State::Done);
    }

    #[test]
    fn cycles_are_rejected() {
        assert_eq!(Queue::new(vec![vec![1], vec![0]]).unwrap_err(), Cycle(0));
        assert!(Queue::new(vec![vec![], vec![0], vec![1]]).is_ok());
    }

    #[test]
    fn cancel_skips_what_has_not_started() {
        let mut q = Queue::new(vec![vec![], vec![0], vec![]]).unwrap();
        assert_eq!(q.take_ready(), [0, 2]);
        let skipped = q.cancel();
        assert_eq!(skipped.into_iter().collect::<Vec<_>>(), [1]);
        q.finish(0);
        q.finish(2);
        assert!(q.is_settled());
    }
}
