//! Runs a plan: walks its step graph with bounded concurrency, resolves references from the state
//! as it grows, and writes the state after every completed step (compare-and-swap), so a crash
//! loses at most the steps that were in flight — and those left resources tagged for the next
//! refresh to find.
//!
//! A failed step fails only what depends on it; independent branches finish. Ctrl-C stops
//! starting new steps and lets running ones finish and be recorded.

pub mod queue;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::aws::Aws;
use crate::aws::kinds::adapter;
use crate::error::AwsError;
use crate::model::{has_unknown, resolve};
use crate::plan::graph::{Op, steps};
use crate::plan::{Action, Change, LiveResource, Plan};
use crate::state::lock::LockGuard;
use crate::state::{Backend, StateDoc, StateError, StateResource, Version};
use queue::Queue;

/// What the executor tells the user about, as it happens. Implemented by `render`.
pub trait Progress: Send + Sync {
    fn started(&self, change: &Change, op: Op);
    fn finished(&self, change: &Change, op: Op, physical: Option<&str>, elapsed: Duration);
    fn failed(&self, change: &Change, op: Op, error: &AwsError);
    fn skipped(&self, change: &Change, op: Op, because: &str);
    fn note(&self, message: &str);
}

/// What happened to every step.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<(String, Op)>,
    pub failed: Vec<(String, Op, AwsError)>,
    pub skipped: Vec<(String, Op)>,
    /// Writing state failed: the run stopped there.
    pub state_error: Option<StateError>,
    pub interrupted: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
            && self.skipped.is_empty()
            && self.state_error.is_none()
            && !self.interrupted
    }
}

/// The state being written as the run goes, with the version its next write must find.
pub struct StateWriter<'a> {
    pub backend: &'a dyn Backend,
    pub doc: StateDoc,
    pub version: Option<Version>,
    pub lock: Option<&'a LockGuard>,
}

impl StateWriter<'_> {
    pub async fn save(&mut self) -> Result<(), StateError> {
        if let Some(lock) = self.lock {
            lock.check()?;
        }
        self.doc.serial += 1;
        let v = self.backend.write(&self.doc, self.version.as_ref()).await?;
        self.version = Some(v);
        Ok(())
    }
}

enum Effect {
    Record(LiveResource),
    Remove,
    /// The old half of a create-before-destroy replacement: state already names its successor.
    Nothing,
}

async fn run_step(
    aws: Aws,
    change: Change,
    op: Op,
    lookup: Vec<(String, String)>,
) -> Result<Effect, AwsError> {
    let a = adapter(change.kind);
    let resolved = || {
        let attrs = change
            .after
            .as_ref()
            .expect("create/update carries attributes");
        let lookup = |id: &str| lookup.iter().find(|(k, _)| k == id).map(|(_, v)| v.clone());
        let value = resolve(attrs, &lookup);
        if has_unknown(&value) {
            return Err(AwsError::local(
                "infra",
                "resolve",
                format!("`{}` refers to a resource that does not exist", change.id),
            ));
        }
        Ok(value)
    };
    let physical = || change.physical_id.clone().unwrap_or_default();
    // State keeps what was applied: where AWS does not return an attribute, the applied value.
    let applied = |mut live: LiveResource, wanted: &serde_json::Value| {
        if let (serde_json::Value::Object(have), serde_json::Value::Object(want)) =
            (&mut live.attrs, wanted)
        {
            for (k, v) in want {
                have.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Effect::Record(live)
    };
    match op {
        Op::Create => {
            let want = resolved()?;
            Ok(applied(a.create(&aws, &change.id, &want).await?, &want))
        }
        Op::Update => {
            let want = resolved()?;
            Ok(applied(a.update(&aws, &physical(), &want).await?, &want))
        }
        Op::Delete => {
            a.delete(&aws, &physical()).await?;
            if change.action == Action::Replace && change.kind.schema().create_before_destroy {
                Ok(Effect::Nothing)
            } else {
                Ok(Effect::Remove)
            }
        }
        Op::Adopt => Ok(Effect::Record(LiveResource {
            kind: change.kind,
            physical_id: physical(),
            id: Some(change.id.clone()),
            attrs: change.before.clone().unwrap_or_default(),
        })),
        Op::Forget => Ok(Effect::Remove),
    }
}

/// Executes `plan` against AWS, recording every step in `state`.
pub async fn execute(
    plan: &Plan,
    aws: &Aws,
    state: &mut StateWriter<'_>,
    parallelism: usize,
    progress: Arc<dyn Progress>,
) -> Report {
    let (steps, deps) = steps(&plan.changes);
    let mut queue = match Queue::new(deps) {
        Ok(q) => q,
        Err(cycle) => {
            return Report {
                state_error: Some(StateError::Io(format!("internal error: {cycle}"))),
                ..Report::default()
            };
        }
    };
    let mut report = Report::default();
    let mut ready: VecDeque<usize> = VecDeque::new();
    let mut running: JoinSet<(usize, Duration, Result<Effect, AwsError>)> = JoinSet::new();
    let mut stopping = false;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let label = |i: usize| (&plan.changes[steps[i].change], steps[i].op);

    loop {
        if !stopping {
            ready.extend(queue.take_ready());
            while running.len() < parallelism.max(1) {
                let Some(i) = ready.pop_front() else { break };
                let (change, op) = label(i);
                progress.started(change, op);
                let lookup: Vec<(String, String)> = state
                    .doc
                    .resources
                    .iter()
                    .map(|(k, r)| (k.clone(), r.physical_id.clone()))
                    .collect();
                let aws = aws.clone();
                let change = change.clone();
                running.spawn(async move {
                    let t = Instant::now();
                    let r = run_step(aws, change, op, lookup).await;
                    (i, t.elapsed(), r)
                });
            }
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            _ = &mut interrupt, if !stopping => {
                stopping = true;
                report.interrupted = true;
                progress.note(&format!(
                    "interrupted: waiting for {} running step(s) to finish and be recorded",
                    running.len()
                ));
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (i, elapsed, result) = match joined {
            Ok(x) => x,
            Err(e) => {
                report.state_error = Some(StateError::Io(format!("a step panicked: {e}")));
                stopping = true;
                continue;
            }
        };
        let (change, op) = label(i);
        match result {
            Ok(effect) => {
                let physical = match effect {
                    Effect::Record(live) => {
                        let p = live.physical_id.clone();
                        state.doc.resources.insert(
                            change.id.clone(),
                            StateResource {
                                kind: change.kind,
                                physical_id: live.physical_id,
                                attributes: live.attrs,
                                depends_on: change.depends_on.clone(),
                                protected: change.protected,
                            },
                        );
                        Some(p)
                    }
                    Effect::Remove => {
                        state.doc.resources.remove(&change.id);
                        None
                    }
                    Effect::Nothing => None,
                };
                if let Err(e) = state.save().await {
                    report.state_error = Some(e);
                    stopping = true;
                }
                progress.finished(change, op, physical.as_deref(), elapsed);
                report.done.push((change.id.clone(), op));
                queue.finish(i);
            }
            Err(e) => {
                progress.failed(change, op, &e);
                report.failed.push((change.id.clone(), op, e));
                for s in queue.fail(i) {
                    let (c, o) = label(s);
                    progress.skipped(c, o, &change.id);
                    report.skipped.push((c.id.clone(), o));
                }
            }
        }
        if stopping {
            for s in queue.cancel() {
                let (c, o) = label(s);
                report.skipped.push((c.id.clone(), o));
            }
            for s in ready.drain(..) {
                let (c, o) = label(s);
                report.skipped.push((c.id.clone(), o));
            }
        }
    }
    report
}
