//! `infra apply` and `infra destroy`: plan (or load a saved plan), confirm, run under the lock.

use anyhow::Result;

use crate::cli::{ApplyArgs, DestroyArgs};
use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::plan::{Operation, Plan};
use crate::render;

pub async fn apply(globals: &Globals, args: ApplyArgs) -> Result<ExitStatus> {
    if let Some(path) = &args.plan {
        let plan = ops::load_plan(path)?;
        let session = ops::open(
            globals,
            &plan.region,
            &plan.environment,
            &plan.state,
            plan.names.clone(),
        )
        .await;
        render::print(&render::plan_text(&plan, &session.backend.describe()));
        if plan.is_empty() {
            return Ok(ExitStatus::Success);
        }
        return finish(&session, &plan, None, globals, "apply", !args.no_wait, None).await;
    }
    let name = args
        .env
        .as_deref()
        .expect("clap requires ENV without --plan");
    let env = ops::load_env(globals, name)?;
    ops::require_approval_possible(args.auto_approve, "apply")?;
    let run = Run {
        operation: Operation::Apply,
        targets: &args.targets,
        auto_approve: args.auto_approve,
        wait: !args.no_wait,
        allow: ops::Allow {
            destroy_protected: args.allow_destroy_protected,
            vulnerable: args.allow_vulnerable,
            block_severity: args.block_severity.ecr().to_string(),
            images: ops::image_tags(&args.images)?,
            replace: args.replace.clone(),
        },
    };
    interactive_run(globals, &env, run).await
}

pub async fn destroy(globals: &Globals, args: DestroyArgs) -> Result<ExitStatus> {
    let env = ops::load_env(globals, &args.env)?;
    ops::require_approval_possible(args.auto_approve, "destroy")?;
    let run = Run {
        operation: Operation::Destroy,
        targets: &[],
        auto_approve: args.auto_approve,
        wait: false,
        allow: ops::Allow {
            destroy_protected: args.allow_destroy_protected,
            ..ops::Allow::default()
        },
    };
    interactive_run(globals, &env, run).await
}

/// `infra deploy`: under the lock, plan only the deployed services (see `ops::plan_deploy`) and
/// run that plan exactly as apply runs one, rollouts followed.
pub async fn deploy(globals: &Globals, args: crate::cli::DeployArgs) -> Result<ExitStatus> {
    let env = ops::load_env(globals, &args.env)?;
    let images = ops::image_tags(&args.images)?;
    // Offline first: a key no service uses is refused before any AWS call.
    ops::check_image_keys(&env, &images)?;
    let session = ops::open_env(globals, &env).await;
    let guard = ops::lock(&session, &env.name, "deploy").await?;
    let planning = std::time::Instant::now();
    let deploy = match ops::plan_deploy(&session, &env, &images, &args.services).await {
        Ok(d) => d,
        Err(e) => {
            let _ = guard.release().await;
            return Err(e);
        }
    };
    let plan_elapsed = planning.elapsed();
    render::print(&render::deploy_text(&deploy, &images));
    if deploy.plan.is_empty() {
        guard.release().await?;
        return Ok(ExitStatus::Success);
    }
    finish(
        &session,
        &deploy.plan,
        Some(guard),
        globals,
        "deploy",
        !args.no_wait,
        Some(plan_elapsed),
    )
    .await
}

/// How an apply or destroy was asked for.
struct Run<'a> {
    operation: Operation,
    targets: &'a [String],
    auto_approve: bool,
    wait: bool,
    allow: ops::Allow,
}

async fn interactive_run(
    globals: &Globals,
    env: &crate::config::Environment,
    run: Run<'_>,
) -> Result<ExitStatus> {
    let Run {
        operation,
        targets,
        auto_approve,
        wait,
        allow,
    } = run;
    let verb = match operation {
        Operation::Apply => "apply",
        Operation::Destroy => "destroy",
    };
    let session = ops::open_env(globals, env).await;
    // Plan under the lock when there is somewhere to hold it, so the plan cannot go stale
    // between review and run.
    let guard = if session.backend.exists().await? {
        Some(ops::lock(&session, &env.name, verb).await?)
    } else {
        None
    };
    let planning = std::time::Instant::now();
    let planned = ops::make_plan(&session, env, operation, targets, &allow).await;
    let plan_elapsed = planning.elapsed();
    let (plan, _) = match planned {
        Ok(p) => p,
        Err(e) => {
            if let Some(g) = guard {
                let _ = g.release().await;
            }
            return Err(e);
        }
    };
    render::print(&render::plan_text(&plan, &session.backend.describe()));
    if plan.is_empty() {
        if let Some(g) = guard {
            g.release().await?;
        }
        return Ok(ExitStatus::Success);
    }
    if !auto_approve && !ops::confirm(&render::confirm_question(operation, &env.name))? {
        if let Some(g) = guard {
            g.release().await?;
        }
        render::eprint(&render::cancelled(verb));
        return Ok(ExitStatus::Failure);
    }
    finish(
        &session,
        &plan,
        guard,
        globals,
        verb,
        wait,
        Some(plan_elapsed),
    )
    .await
}

async fn finish(
    session: &ops::Session,
    plan: &Plan,
    guard: Option<crate::state::lock::LockGuard>,
    globals: &Globals,
    verb: &str,
    wait: bool,
    plan_elapsed: Option<std::time::Duration>,
) -> Result<ExitStatus> {
    render::print("\n");
    let running = std::time::Instant::now();
    let report = ops::run_plan(session, plan, guard, globals, verb, wait).await?;
    let total = running.elapsed() + plan_elapsed.unwrap_or_default();
    let title = if verb == "destroy" {
        "Destroy"
    } else {
        "Apply"
    };
    render::print(&render::report_text(&report, title));
    render::print(&render::timings(plan_elapsed, &report, total));
    if let Some(e) = report.state_error {
        return Err(
            anyhow::Error::new(e).context(format!("writing state {}", session.backend.describe()))
        );
    }
    Ok(if report.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
