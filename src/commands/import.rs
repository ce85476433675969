//! `infra import`: adopt an existing resource under a logical id of the file. `infra rollback`:
//! return a service to what it ran before.

use anyhow::Result;

use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::render;

pub async fn run(
    globals: &Globals,
    env: &str,
    id: &str,
    physical: &str,
    auto_approve: bool,
) -> Result<ExitStatus> {
    let env = ops::load_env(globals, env)?;
    ops::require_approval_possible(auto_approve, "import")?;
    let session = ops::open_env(globals, &env).await;
    let i = ops::prepare_import(&session, &env, id, physical).await?;
    render::print(&render::import_text(&i));
    if !auto_approve && !ops::confirm(&render::import_question(&env.name))? {
        render::eprint(&render::cancelled("import"));
        return Ok(ExitStatus::Failure);
    }
    ops::import(&session, &env, &i).await?;
    render::print(&render::imported(id));
    Ok(ExitStatus::Success)
}

pub async fn rollback(
    globals: &Globals,
    env: &str,
    service: &str,
    auto_approve: bool,
    wait: bool,
) -> Result<ExitStatus> {
    let env = ops::load_env(globals, env)?;
    let session = ops::open_env(globals, &env).await;
    if !ops::rollback(&session, &env, service, auto_approve, wait).await? {
        return Ok(ExitStatus::Failure);
    }
    render::print(&render::rolled_back(service, &env.name));
    Ok(ExitStatus::Success)
}
