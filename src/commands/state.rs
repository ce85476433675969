//! `infra state list|show|unlock|recover`.

use anyhow::Result;

use crate::cli::StateCommand;
use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::render;

pub async fn run(globals: &Globals, cmd: StateCommand) -> Result<ExitStatus> {
    let name = match &cmd {
        StateCommand::List { env }
        | StateCommand::Show { env, .. }
        | StateCommand::Unlock { env, .. }
        | StateCommand::Recover { env } => env,
    };
    let env = ops::load_env(globals, name)?;
    let session = ops::open_env(globals, &env).await;
    match cmd {
        StateCommand::List { .. } => {
            let doc = ops::read_state(&session, &env.name).await?.map(|(d, _)| d);
            render::print(&render::state_list(doc.as_ref()));
        }
        StateCommand::Show { id, .. } => {
            let doc = ops::read_state(&session, &env.name).await?.map(|(d, _)| d);
            let Some(r) = doc.as_ref().and_then(|d| d.resources.get(&id)) else {
                return Err(ops::hinted(
                    format!("`{id}` is not in the state of {}", env.name),
                    format!("`infra state list {}` lists what is", env.name),
                ));
            };
            render::print(&(serde_json::to_string_pretty(r)? + "\n"));
        }
        StateCommand::Recover { .. } => {
            let plan = ops::recovery_plan(&session, &env).await?;
            if plan.changes.is_empty() {
                render::print(render::NOTHING_TO_RECOVER);
                return Ok(ExitStatus::Success);
            }
            render::print(&render::plan_text(&plan, &session.backend.describe()));
            let report =
                ops::run_plan(&session, &plan, None, globals, "state recover", false).await?;
            render::print(&render::report_text(&report, "Recovery"));
            if !report.ok() {
                return Ok(ExitStatus::Failure);
            }
        }
        StateCommand::Unlock { lock_id, .. } => {
            let info = session.backend.force_unlock(&lock_id).await?;
            render::print(&render::lock_removed(&lock_id, &info.describe()));
        }
    }
    Ok(ExitStatus::Success)
}
