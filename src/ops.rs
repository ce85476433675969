//! The workflows behind the commands: open a session (config, AWS clients, state backend), make a
//! plan, and carry one out under the state lock. Commands stay thin: they parse flags, call these,
//! print, and pick an exit status.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::aws::{self, Aws, s3_backend::S3Backend};
use crate::config::{self, Environment, StateConfig};
use crate::desired::{self, Desired};
use crate::exec::{self, Report, StateWriter};
use crate::model::Kind;
use crate::plan::{self, Base, Operation, PLAN_FORMAT, Plan};
use crate::render;
use crate::state::lock::LockGuard;
use crate::state::{Backend, LocalBackend, StateDoc, StateError, Version};

/// An error with a hint the user can act on; printed as `error:` then `hint:`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted {
        message: message.into(),
        hint: hint.into(),
    }
    .into()
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub dir: PathBuf,
    pub parallelism: usize,
    /// Cap on AWS requests per second, retries included.
    pub max_rps: Option<NonZeroU32>,
}

/// What a command works on: the clients of the environment's region and its state backend.
pub struct Session {
    pub aws: Aws,
    pub backend: Arc<dyn Backend>,
}

pub fn load_env(globals: &Globals, name: &str) -> Result<Environment> {
    Ok(config::load(&globals.dir, name)?)
}

/// The ECS names of an environment, which ECS reads need.
pub fn names(env: &Environment) -> aws::Names {
    aws::Names {
        cluster: env.cluster_name().map(str::to_string),
        services: env.services.keys().cloned().collect(),
        autoscaled: env
            .services
            .iter()
            .filter(|(_, s)| s.autoscaling.is_some())
            .map(|(n, _)| n.clone())
            .collect(),
    }
}

/// `open` for an environment read from its file.
pub async fn open_env(globals: &Globals, env: &Environment) -> Session {
    open(globals, &env.region, &env.name, &env.state, names(env)).await
}

pub async fn open(
    globals: &Globals,
    region: &str,
    environment: &str,
    state: &StateConfig,
    names: aws::Names,
) -> Session {
    let mut aws = aws::connect(region, environment, globals.max_rps).await;
    aws.names = names;
    let backend: Arc<dyn Backend> = match state {
        StateConfig::S3 { bucket, key } => Arc::new(S3Backend::new(&aws, bucket, key)),
        StateConfig::Local { path } => Arc::new(LocalBackend::new(path.clone())),
    };
    Session { aws, backend }
}

/// The stored state, if any, checked to belong to this environment.
pub async fn read_state(
    session: &Session,
    environment: &str,
) -> Result<Option<(StateDoc, Version)>> {
    let where_ = session.backend.describe();
    let stored = session
        .backend
        .read()
        .await
        .with_context(|| format!("reading state {where_}"))?;
    if let Some((doc, _)) = &stored
        && doc.environment != environment
    {
        bail!(
            "state {where_} belongs to environment `{}`, not `{environment}`",
            doc.environment
        );
    }
    Ok(stored)
}

/// Refreshes live state and diffs it against the file (or against nothing, for destroy).
pub async fn make_plan(
    session: &Session,
    env: &Environment,
    operation: Operation,
    targets: &[String],
    allow_destroy_protected: bool,
) -> Result<(Plan, StateDoc)> {
    // Stored state proves the storage exists; only without it is there more to ask.
    let stored = read_state(session, &env.name).await?;
    let backend_exists =
        stored.is_some()
            || session.backend.exists().await.with_context(|| {
                format!("checking state storage {}", session.backend.describe())
            })?;
    let base = stored.as_ref().map(|(d, _)| Base {
        lineage: d.lineage.clone(),
        serial: d.serial,
    });
    let state = stored
        .map(|(d, _)| d)
        .unwrap_or_else(|| StateDoc::new(&env.name));
    if operation == Operation::Apply {
        for (name, s) in &env.services {
            if s.deployment.strategy != crate::config::Strategy::Rolling {
                bail!(
                    "service `{name}`: deployment strategy `{}` is not provisioned by this version of infra yet (rolling only)",
                    serde_json::to_value(s.deployment.strategy)?
                        .as_str()
                        .unwrap_or_default()
                );
            }
        }
    }
    let (live, images) = futures::try_join!(
        async {
            // Kinds neither the file nor the state has cost no read at all.
            let kinds: BTreeSet<Kind> = match operation {
                Operation::Apply => desired::expand(env)
                    .resources
                    .values()
                    .map(|r| r.kind)
                    .collect(),
                Operation::Destroy => BTreeSet::new(),
            };
            let kinds = kinds
                .into_iter()
                .chain(state.resources.values().map(|r| r.kind))
                .collect();
            aws::refresh(&session.aws, &state, &kinds)
                .await
                .context("reading live resources from AWS")
        },
        async {
            match operation {
                Operation::Apply => aws::images::resolve(&session.aws, env)
                    .await
                    .context("resolving image tags in ECR"),
                Operation::Destroy => Ok(Default::default()),
            }
        }
    )?;
    let desired = match operation {
        Operation::Apply => {
            let pinned = images
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_ref().ok()?.clone())))
                .collect();
            desired::expand_with(env, &pinned)
        }
        Operation::Destroy => Desired::default(),
    };
    let options = plan::Options {
        targets: targets.to_vec(),
        allow_destroy_protected,
    };
    let (changes, warnings) = plan::diff(&desired, &state, &live, &options)?;
    // An unresolved image only matters if its task definition is part of this plan.
    for (service, result) in &images {
        if let Err(why) = result {
            let id = crate::naming::id::task_definition(service);
            if changes.iter().any(|c| c.id == id && c.after.is_some()) {
                bail!("{why}");
            }
        }
    }
    Ok((
        Plan {
            format: PLAN_FORMAT,
            environment: env.name.clone(),
            region: env.region.clone(),
            state: env.state.clone(),
            operation,
            base,
            create_backend: !backend_exists,
            changes,
            warnings,
            names: names(env),
        },
        state,
    ))
}

/// A plan that only records in state what AWS holds under this environment's tags and the state
/// does not: every change found by tag becomes an adoption of the resource as it is.
pub async fn recovery_plan(session: &Session, env: &Environment) -> Result<Plan> {
    let (mut plan, _) = make_plan(session, env, Operation::Apply, &[], false).await?;
    plan.changes
        .retain(|c| c.notes.contains(&plan::Note::FoundByTag));
    for c in &mut plan.changes {
        c.action = plan::Action::Adopt;
        c.diffs.clear();
    }
    plan.warnings.clear();
    Ok(plan)
}

/// Asks "yes" on the terminal.
pub fn confirm(question: &str) -> Result<bool> {
    render::print(&render::confirm_prompt(question));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    Ok(answer.trim() == "yes")
}

/// Refuses to go on without a terminal to confirm on, unless approval was given up front.
pub fn require_approval_possible(auto_approve: bool, verb: &str) -> Result<()> {
    if !auto_approve && !std::io::stdin().is_terminal() {
        return Err(hinted(
            format!("`infra {verb}` needs confirmation, and there is no terminal to ask on"),
            format!(
                "review with `infra plan`, then run `infra {verb} --auto-approve`, or save a plan with `--out FILE` and run `infra apply --plan FILE`"
            ),
        ));
    }
    Ok(())
}

pub fn save_plan(plan: &Plan, path: &Path) -> Result<()> {
    let text = serde_json::to_vec_pretty(plan).expect("plan serialises");
    std::fs::write(path, text).with_context(|| format!("writing plan {}", path.display()))
}

pub fn load_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read(path).with_context(|| format!("reading plan {}", path.display()))?;
    let plan: Plan = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an infra plan file", path.display()))?;
    if plan.format != PLAN_FORMAT {
        bail!(
            "{} is plan format {}, this infra reads format {PLAN_FORMAT}",
            path.display(),
            plan.format
        );
    }
    Ok(plan)
}

fn lock_error(e: StateError, backend: &dyn Backend, env: &str) -> anyhow::Error {
    match e {
        StateError::Locked(info) => hinted(
            format!(
                "state {} is locked: {}",
                backend.describe(),
                info.describe()
            ),
            format!(
                "wait for it to finish; if that process is gone, run `infra state unlock {env} {}`",
                info.id
            ),
        ),
        other => anyhow::Error::new(other).context(format!("locking state {}", backend.describe())),
    }
}

/// Takes the state lock, saying so when an expired one is taken over.
pub async fn lock(session: &Session, env: &str, operation: &str) -> Result<LockGuard> {
    let guard = LockGuard::acquire(
        session.backend.clone(),
        operation,
        session.aws.fence.clone(),
    )
    .await
    .map_err(|e| lock_error(e, session.backend.as_ref(), env))?;
    if let Some(dead) = &guard.took_over {
        render::eprint(&render::took_over_lock(&dead.describe()));
    }
    Ok(guard)
}

/// Runs a plan that the user has approved. Creates the state storage if the plan says so, takes
/// the lock unless `held` already holds it, refuses if the state moved since the plan, and
/// releases the lock at the end.
pub async fn run_plan(
    session: &Session,
    plan: &Plan,
    held: Option<LockGuard>,
    globals: &Globals,
    verb: &str,
    wait: bool,
) -> Result<Report> {
    let guard = match held {
        Some(g) => g,
        None => {
            if plan.create_backend {
                render::print(&render::creating_backend(&session.backend.describe()));
            }
            session.backend.ensure().await.with_context(|| {
                format!("creating state storage {}", session.backend.describe())
            })?;
            lock(session, &plan.environment, verb).await?
        }
    };
    let result = run_locked(session, plan, &guard, globals, wait).await;
    let released = guard.release().await;
    let report = result?;
    released.with_context(|| format!("releasing the lock on {}", session.backend.describe()))?;
    Ok(report)
}

async fn run_locked(
    session: &Session,
    plan: &Plan,
    guard: &LockGuard,
    globals: &Globals,
    wait: bool,
) -> Result<Report> {
    let stored = read_state(session, &plan.environment).await?;
    let base = stored.as_ref().map(|(d, _)| Base {
        lineage: d.lineage.clone(),
        serial: d.serial,
    });
    if base != plan.base {
        let show = |b: &Option<Base>| match b {
            Some(b) => format!("serial {} of lineage {}", b.serial, b.lineage),
            None => "no state".to_string(),
        };
        return Err(hinted(
            format!(
                "the state moved since this plan was made (plan: {}; now: {})",
                show(&plan.base),
                show(&base)
            ),
            "make a new plan and review it",
        ));
    }
    let (doc, version) = match stored {
        Some((d, v)) => (d, Some(v)),
        None => (StateDoc::new(&plan.environment), None),
    };
    let mut writer = StateWriter {
        backend: session.backend.as_ref(),
        doc,
        version,
        lock: Some(guard),
    };
    let progress = Arc::new(render::Reporter::new(std::io::stderr().is_terminal()));
    let options = exec::Options {
        parallelism: globals.parallelism,
        progress: progress.clone(),
        adapters: exec::registry(),
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut report = exec::execute(plan, &session.aws, &mut writer, &options, interrupt).await;
    if wait && report.state_error.is_none() {
        follow_rollouts(session, plan, &writer.doc, &mut report, progress.as_ref()).await;
    }
    Ok(report)
}

/// Follows the ECS deployment of every service this run created or changed; a failed one is a
/// failed step of the run.
async fn follow_rollouts(
    session: &Session,
    plan: &Plan,
    state: &StateDoc,
    report: &mut Report,
    progress: &render::Reporter,
) {
    use crate::exec::Progress;
    use crate::plan::graph::Op;
    let timeout = std::env::var("INFRA_ROLLOUT_TIMEOUT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(30 * 60));
    let services: Vec<(String, String)> = plan
        .changes
        .iter()
        .filter(|c| c.kind == crate::model::Kind::Service)
        .filter(|c| {
            report
                .done
                .iter()
                .any(|(id, op)| id == &c.id && matches!(op, Op::Create | Op::Update))
        })
        .filter_map(|c| {
            Some((
                c.id.clone(),
                state.resources.get(&c.id)?.physical_id.clone(),
            ))
        })
        .collect();
    if services.is_empty() {
        return;
    }
    progress.note(&format!(
        "following {} ECS rollout(s); `--no-wait` skips this",
        services.len()
    ));
    let say = |line: String| progress.note(&line);
    let results = futures::future::join_all(services.iter().map(|(_, arn)| {
        aws::rollout::follow(
            &session.aws.ecs,
            arn,
            timeout,
            std::time::Duration::from_secs(5),
            &say,
        )
    }))
    .await;
    for ((id, _), result) in services.into_iter().zip(results) {
        match result {
            Ok(()) => progress.note(&format!("{id}: rollout complete")),
            Err(e) => report.failed.push((id, Op::Update, e)),
        }
    }
}
