//! `infra plan ENV`: refresh, diff, show; optionally save the plan or report changes in the exit
//! code.

use anyhow::Result;

use crate::cli::PlanArgs;
use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::plan::Operation;
use crate::render;

pub async fn run(globals: &Globals, args: PlanArgs) -> Result<ExitStatus> {
    let env = ops::load_env(globals, &args.env)?;
    let session = ops::open_env(globals, &env).await;
    let (plan, _) = ops::make_plan(
        &session,
        &env,
        Operation::Apply,
        &args.targets,
        &ops::Allow {
            destroy_protected: args.allow_destroy_protected,
            vulnerable: args.allow_vulnerable,
            block_severity: args.block_severity.ecr().to_string(),
            images: ops::image_tags(&args.images)?,
            replace: args.replace.clone(),
        },
    )
    .await?;
    if args.json {
        render::print(&render::plan_json(&plan));
    } else {
        render::print(&render::plan_text(&plan, &session.backend.describe()));
    }
    if let Some(out) = &args.out {
        ops::save_plan(&plan, out)?;
        if !args.json {
            render::print(&render::saved_plan(out));
        }
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}
