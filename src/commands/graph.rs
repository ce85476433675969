//! `infra graph`: the environment's resource graph, offline; with `--plan FILE`, each resource
//! coloured by what that saved plan does to it (and what it deletes shown too).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::cli::GraphArgs;
use crate::desired;
use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::render::{self, GraphNode};

pub fn run(globals: &Globals, args: GraphArgs) -> Result<ExitStatus> {
    let env = ops::load_env(globals, &args.env)?;
    let d = desired::expand(&env);
    let mut nodes: BTreeMap<String, GraphNode> = d
        .resources
        .values()
        .map(|r| {
            let node = GraphNode {
                kind: r.kind,
                deps: r.deps().into_iter().collect(),
                action: None,
            };
            (r.id.clone(), node)
        })
        .collect();
    if let Some(path) = &args.plan {
        let plan = ops::load_plan(path)?;
        for c in &plan.changes {
            let node = nodes.entry(c.id.clone()).or_insert_with(|| GraphNode {
                kind: c.kind,
                deps: c.recorded_deps.clone(),
                action: None,
            });
            node.action = Some(c.action);
        }
    }
    render::print(&render::graph(&nodes, args.format));
    Ok(ExitStatus::Success)
}
