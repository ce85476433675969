//! `infra state list|show|unlock|recover`.

use anyhow::Result;

use crate::cli::StateCommand;
use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::render;
use crate::state::StateDoc;

pub async fn run(globals: &Globals, cmd: StateCommand) -> Result<ExitStatus> {
    let name = match &cmd {
        StateCommand::List { env, .. }
        | StateCommand::Show { env, .. }
        | StateCommand::Unlock { env, .. }
        | StateCommand::Recover { env, .. }
        | StateCommand::Versions { env, .. }
        | StateCommand::Restore { env, .. }
        | StateCommand::Pull { env }
        | StateCommand::Forget { env, .. }
        | StateCommand::Push { env, .. } => env,
    };
    let env = ops::load_env(globals, name)?;
    let session = ops::open_env(globals, &env).await;
    match cmd {
        StateCommand::List { json, .. } => {
            let doc = ops::read_state(&session, &env.name).await?.map(|(d, _)| d);
            render::print(&if json {
                render::state_list_json(doc.as_ref())
            } else {
                render::state_list(doc.as_ref())
            });
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
        StateCommand::Versions { json, .. } => {
            let rows: Vec<ops::VersionRow> = ops::state_versions(&session)
                .await?
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            render::print(&if json {
                render::state_versions_json(&rows)
            } else {
                render::state_versions(&rows)
            });
        }
        StateCommand::Restore {
            version_id,
            force,
            auto_approve,
            ..
        } => {
            ops::require_approval_possible(auto_approve, "state restore")?;
            let r = ops::prepare_restore(&session, &env.name, &version_id, force).await?;
            render::print(&render::restore_text(&r));
            if !auto_approve && !ops::confirm(&render::restore_question(&env.name))? {
                render::eprint(&render::cancelled("state restore"));
                return Ok(ExitStatus::Failure);
            }
            ops::restore(&session, &env.name, &r).await?;
            render::print(&render::restored(&r.source, r.chosen.serial));
        }
        StateCommand::Forget {
            id, auto_approve, ..
        } => {
            ops::require_approval_possible(auto_approve, "state forget")?;
            if !auto_approve && !ops::confirm(&render::forget_question(&id, &env.name))? {
                render::eprint(&render::cancelled("state forget"));
                return Ok(ExitStatus::Failure);
            }
            let r = ops::forget(&session, &env.name, &id).await?;
            render::print(&render::forgotten(&id, &r.physical_id));
        }
        StateCommand::Pull { .. } => {
            let Some((bytes, _)) = session.backend.read_raw().await? else {
                return Err(ops::hinted(
                    format!("{} holds no state", session.backend.describe()),
                    format!("`infra apply {}` creates it", env.name),
                ));
            };
            render::print(&String::from_utf8_lossy(&bytes));
        }
        StateCommand::Push {
            file,
            force,
            auto_approve,
            ..
        } => {
            ops::require_approval_possible(auto_approve, "state push")?;
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let doc = StateDoc::decode(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a state document: {e}", file.display()))?;
            let source = format!("file {}", file.display());
            let r = ops::prepare_push(&session, &env.name, doc, source, force).await?;
            render::print(&render::restore_text(&r));
            if !auto_approve && !ops::confirm(&render::restore_question(&env.name))? {
                render::eprint(&render::cancelled("state push"));
                return Ok(ExitStatus::Failure);
            }
            session
                .backend
                .ensure()
                .await
                .map_err(|e| anyhow::anyhow!("creating state storage: {e}"))?;
            ops::restore(&session, &env.name, &r).await?;
            render::print(&render::restored(&r.source, r.chosen.serial));
        }
        StateCommand::Recover { force, .. } => {
            if force && ops::reset_broken_state(&session, &env.name).await? {
                render::print(render::BROKEN_STATE_RESET);
            }
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
