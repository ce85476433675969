//! Runs a plan: walks its step graph with bounded concurrency, resolves references from the state
//! as it grows, and writes the state as steps complete (compare-and-swap). Writes are coalesced:
//! one write is in flight at a time, and the completions that arrive meanwhile go into the next,
//! so a run makes about as many writes as it has waves of completions, and no step ever waits for
//! a state write to start. A crash loses at most the completions not yet written — and those
//! resources carry their tags for the next refresh to find and adopt.
//!
//! A failed step fails only what depends on it; independent branches finish. An interrupt
//! (Ctrl-C) stops starting new steps and lets running ones finish and be recorded.
//!
//! The adapters come in as a value (`Adapters`): the registry in production, in-memory fakes
//! with scripted failures in this module's tests.

pub mod queue;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::aws::Aws;
use crate::aws::kinds::Adapter;
use crate::error::AwsError;
use crate::model::LiveResource;
use crate::model::{Kind, has_unknown};
use crate::plan::graph::{Op, steps};
use crate::plan::{Action, Change, Plan};
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
    /// A running step waits on AWS (`what`), `elapsed` into the wait; said after every poll.
    fn waiting(&self, _change: &Change, _op: Op, _what: &str, _elapsed: Duration) {}
}

/// Which adapter runs each kind's steps: `aws::kinds::adapter` in production.
pub type Adapters = Arc<dyn Fn(Kind) -> AdapterRef + Send + Sync>;

/// An adapter of the registry (or a test's fake).
pub type AdapterRef = &'static dyn Adapter;

/// The registry's adapters.
pub fn registry() -> Adapters {
    Arc::new(crate::aws::kinds::adapter)
}

/// How a plan is run.
pub struct Options {
    pub parallelism: usize,
    pub progress: Arc<dyn Progress>,
    pub adapters: Adapters,
}

/// What happened to every step.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<(String, Op)>,
    /// Of the deletes done, those that retired a replaced resource its kind keeps (the previous
    /// task definition revision, for rollback).
    pub kept: Vec<String>,
    pub failed: Vec<(String, Op, AwsError)>,
    pub skipped: Vec<(String, Op)>,
    /// Writing state failed: the run stopped there.
    pub state_error: Option<StateError>,
    pub interrupted: bool,
    /// How many times the state was written.
    pub state_writes: usize,
    /// How long the steps took, and the rollouts followed after them.
    pub steps_elapsed: Duration,
    pub rollouts_elapsed: Option<Duration>,
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

type Write<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Version, StateError>> + Send + 'a>>;

impl<'a> StateWriter<'a> {
    /// Writes the document as it stands now (the next serial), compare-and-swap on the version
    /// the last write left, and only while the lock is still ours.
    pub async fn save(&mut self) -> Result<(), StateError> {
        let v = self.begin_write().await?;
        self.version = Some(v);
        Ok(())
    }

    /// Starts writing a snapshot of the document; the caller records the version it returns.
    fn begin_write(&mut self) -> Write<'a> {
        self.doc.serial += 1;
        self.doc.written_by = Some(crate::state::writer());
        let snapshot = self.doc.clone();
        let (backend, lock, prev) = (self.backend, self.lock, self.version.clone());
        Box::pin(async move {
            if let Some(lock) = lock {
                lock.check().await?;
            }
            backend.write(&snapshot, prev.as_ref()).await
        })
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
    a: &'static dyn Adapter,
    change: Change,
    op: Op,
    lookup: Vec<(String, String, serde_json::Value)>,
) -> Result<Effect, AwsError> {
    let resolved = || {
        let attrs = change
            .after
            .as_ref()
            .expect("create/update carries attributes");
        let find = |id: &str| lookup.iter().find(|(k, _, _)| k == id);
        let value = crate::model::resolve_with(
            attrs,
            &|id| find(id).map(|(_, p, _)| p.clone()),
            &|id, pointer| find(id).and_then(|(_, _, a)| crate::model::output_of(a, pointer)),
        );
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
            Ok(applied(create(a, &aws, &change, &want).await?, &want))
        }
        Op::Update => {
            let want = resolved()?;
            let p = physical();
            let live = again_once(|| a.update(&aws, &p, &want)).await?;
            Ok(applied(live, &want))
        }
        Op::Delete => {
            let p = physical();
            if change.action == Action::Replace && change.kind.schema().create_before_destroy {
                again_once(|| a.retire(&aws, &p)).await?;
                Ok(Effect::Nothing)
            } else {
                again_once(|| a.delete(&aws, &p)).await?;
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

/// Whether this step ends a replaced resource that its kind keeps instead of deleting.
pub fn retires_kept(change: &Change, op: Op) -> bool {
    op == Op::Delete
        && change.action == Action::Replace
        && change.kind.schema().create_before_destroy
        && change.kind.keeps_retired()
}

/// While steps run, the state is written at most once per this interval (the first completion
/// and the last are written at once): a run makes about as many writes as it has waves of
/// completions, not one per step. What a crash loses in between is found by tag and adopted.
const WRITE_INTERVAL: Duration = Duration::from_millis(1000);

/// How many times a create whose outcome is unknown is tried.
const CREATE_ATTEMPTS: u32 = 3;

/// Creates a resource without ever making a twin. A failed create may still have been carried
/// out: its answer lost to a timeout or a 5xx, or an SDK retry of a call that was answered
/// "already exists" by the first attempt's own resource. So before reporting a failure or trying
/// again, look for the resource by its `infra:id` tag (every create tags in the call itself); one
/// found is taken and brought to the wanted attributes by the adapter's update, which reads it and
/// changes only what differs. Only a failure whose outcome is unknown is tried again.
async fn create(
    a: &dyn Adapter,
    aws: &Aws,
    change: &Change,
    want: &serde_json::Value,
) -> Result<LiveResource, AwsError> {
    let mut attempt = 1;
    loop {
        let failed = match a.create(aws, &change.id, want).await {
            Ok(live) => return Ok(live),
            Err(e) => e,
        };
        // Describes are eventually consistent: give what the call made a moment to show.
        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
        if let Some(physical) = find_by_tag(a, aws, change).await? {
            tracing::info!(
                "{} {}: {failed}; found {physical} by its tag and took it",
                change.kind,
                change.id
            );
            return a.update(aws, &physical, want).await;
        }
        if !failed.outcome_unknown || attempt >= CREATE_ATTEMPTS {
            return Err(failed);
        }
        attempt += 1;
    }
}

/// The one live resource of this environment tagged with the change's id, other than the one it
/// replaces. Two are a conflict: infra does not guess.
async fn find_by_tag(
    a: &dyn Adapter,
    aws: &Aws,
    change: &Change,
) -> Result<Option<String>, AwsError> {
    let found: Vec<String> = a
        .read_all(
            aws,
            crate::aws::kinds::Env {
                recorded: &Default::default(),
                shared: &crate::aws::kinds::Shared::new(aws, None, Vec::new()),
            },
        )
        .await?
        .into_iter()
        .filter(|l| {
            aws.owns(l)
                && l.id.as_deref() == Some(change.id.as_str())
                && change.physical_id.as_deref() != Some(l.physical_id.as_str())
        })
        .map(|l| l.physical_id)
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(AwsError::local(
            "infra",
            "find by tag",
            format!(
                "{} live {} resources carry the id `{}` ({}); infra will not guess which is real",
                many.len(),
                change.kind,
                change.id,
                many.join(", ")
            ),
        )),
    }
}

/// Updates and deletes read what is live and change only what differs, so trying once more from
/// a fresh read is safe. It absorbs an answer lost after the change was made, whose SDK retry
/// then failed with "already done" (a duplicate rule, a detached gateway).
async fn again_once<T, F, Fut>(mut step: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    match step().await {
        Ok(v) => Ok(v),
        Err(e) => {
            tracing::info!("{e}; trying once more from a fresh read");
            tokio::time::sleep(Duration::from_millis(500)).await;
            step().await
        }
    }
}

type StepResult = (usize, Duration, Result<Effect, AwsError>);

/// The driver's bookkeeping for one run: the queue, what runs, what is written.
struct Run<'p> {
    plan: &'p Plan,
    steps: Vec<crate::plan::graph::Step>,
    queue: Queue,
    ready: VecDeque<usize>,
    running: JoinSet<StepResult>,
    report: Report,
    stopping: bool,
    /// Completions recorded in the state document and not yet in a write.
    unwritten: bool,
    last_write: Option<tokio::time::Instant>,
}

impl<'p> Run<'p> {
    fn label(&self, i: usize) -> (&'p Change, Op) {
        (&self.plan.changes[self.steps[i].change], self.steps[i].op)
    }

    /// Starts ready steps up to the parallelism, each with the physical ids known so far.
    fn start_ready(&mut self, aws: &Aws, doc: &StateDoc, options: &Options) {
        if self.stopping {
            return;
        }
        self.ready.extend(self.queue.take_ready());
        while self.running.len() < options.parallelism.max(1) {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            let (change, op) = self.label(i);
            options.progress.started(change, op);
            // What the step's references resolve to: the physical ids and recorded attributes
            // (outputs among them) of the resources it refers to.
            let lookup: Vec<(String, String, serde_json::Value)> = change
                .after
                .as_ref()
                .map(crate::model::refs)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|id| {
                    let r = doc.resources.get(&id)?;
                    Some((id, r.physical_id.clone(), r.attributes.clone()))
                })
                .collect();
            let (aws, adapter) = (aws.clone(), (options.adapters)(change.kind));
            let change = change.clone();
            let watcher: crate::aws::wait::Watcher = {
                let (progress, change) = (options.progress.clone(), change.clone());
                Arc::new(move |what: &str, elapsed| progress.waiting(&change, op, what, elapsed))
            };
            self.running
                .spawn(crate::aws::wait::WATCHER.scope(watcher, async move {
                    let t = Instant::now();
                    let r = run_step(aws, adapter, change, op, lookup).await;
                    (i, t.elapsed(), r)
                }));
        }
    }

    /// When the next write may start: at once for the first and the last, else one
    /// `WRITE_INTERVAL` after the previous one started.
    fn next_write(&self) -> Option<tokio::time::Instant> {
        self.last_write.map(|t| t + WRITE_INTERVAL)
    }

    fn write_due(&self) -> bool {
        self.running.is_empty()
            || self
                .next_write()
                .is_none_or(|t| t <= tokio::time::Instant::now())
    }

    /// A finished step: recorded in the document (and marked for the next write), or failed
    /// with its dependents skipped.
    fn finished(&mut self, doc: &mut StateDoc, progress: &dyn Progress, step: StepResult) {
        let (i, elapsed, result) = step;
        let (change, op) = self.label(i);
        match result {
            Ok(effect) => {
                let physical = record(doc, change, effect);
                self.unwritten = true;
                progress.finished(change, op, physical.as_deref(), elapsed);
                self.report.done.push((change.id.clone(), op));
                if retires_kept(change, op) {
                    self.report.kept.push(change.id.clone());
                }
                self.queue.finish(i);
            }
            Err(e) => {
                progress.failed(change, op, &e);
                self.report.failed.push((change.id.clone(), op, e));
                for s in self.queue.fail(i) {
                    let (c, o) = self.label(s);
                    progress.skipped(c, o, &change.id);
                    self.report.skipped.push((c.id.clone(), o));
                }
            }
        }
    }

    /// Stopping: nothing more starts; what has not started is reported skipped.
    fn skip_the_rest(&mut self) {
        let rest: Vec<usize> = self
            .queue
            .cancel()
            .into_iter()
            .chain(self.ready.drain(..))
            .collect();
        for s in rest {
            let (c, o) = self.label(s);
            self.report.skipped.push((c.id.clone(), o));
        }
    }
}

/// Executes `plan` against AWS, recording every step in `state`. `interrupt` resolving stops the
/// run from starting new steps (Ctrl-C in production).
pub async fn execute(
    plan: &Plan,
    aws: &Aws,
    state: &mut StateWriter<'_>,
    options: &Options,
    interrupt: impl Future<Output = ()>,
) -> Report {
    let began = Instant::now();
    let (steps, deps) = steps(&plan.changes);
    let queue = match Queue::new(deps) {
        Ok(q) => q,
        Err(cycle) => {
            return Report {
                state_error: Some(StateError::Io(format!("internal error: {cycle}"))),
                ..Report::default()
            };
        }
    };
    let mut run = Run {
        plan,
        steps,
        queue,
        ready: VecDeque::new(),
        running: JoinSet::new(),
        report: Report::default(),
        stopping: false,
        unwritten: false,
        last_write: None,
    };
    let progress = options.progress.as_ref();
    let mut writing: Option<Write<'_>> = None;
    tokio::pin!(interrupt);
    loop {
        run.start_ready(aws, &state.doc, options);
        // One write at a time, and while steps run at most one per `WRITE_INTERVAL`; what
        // completes meanwhile goes into the next.
        let can_write = run.unwritten && writing.is_none() && run.report.state_error.is_none();
        if can_write && run.write_due() {
            writing = Some(state.begin_write());
            run.report.state_writes += 1;
            run.unwritten = false;
            run.last_write = Some(tokio::time::Instant::now());
        }
        let wait_to_write = run.unwritten && writing.is_none() && run.report.state_error.is_none();
        if run.running.is_empty() && writing.is_none() {
            break;
        }
        let next_write = run.next_write().unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            written = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                writing = None;
                match written {
                    Ok(v) => state.version = Some(v),
                    Err(e) => {
                        run.report.state_error = Some(e);
                        run.stopping = true;
                    }
                }
            }
            _ = tokio::time::sleep_until(next_write), if wait_to_write => {}
            _ = &mut interrupt, if !run.stopping => {
                run.stopping = true;
                run.report.interrupted = true;
                progress.note(&format!(
                    "interrupted: waiting for {} running step(s) to finish and be recorded",
                    run.running.len()
                ));
            }
            Some(joined) = run.running.join_next(), if !run.running.is_empty() => match joined {
                Ok(step) => run.finished(&mut state.doc, progress, step),
                Err(e) => {
                    run.report.state_error = Some(StateError::Io(format!("a step panicked: {e}")));
                    run.stopping = true;
                }
            },
        }
        if run.stopping {
            run.skip_the_rest();
        }
    }
    let mut report = run.report;
    report.steps_elapsed = began.elapsed();
    // Steps refused by the fence failed as AWS errors; the reason is the lock.
    if report.state_error.is_none() && state.lock.is_some_and(LockGuard::is_lost) {
        report.state_error = Some(StateError::LockLost);
    }
    report
}

/// Applies a finished step to the state document; returns the physical id it recorded.
fn record(doc: &mut StateDoc, change: &Change, effect: Effect) -> Option<String> {
    match effect {
        Effect::Record(live) => {
            let p = live.physical_id.clone();
            // An apply that changed a rolled-back service has made it the file's again.
            doc.rolled_back.remove(&change.id);
            doc.resources.insert(
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
            doc.resources.remove(&change.id);
            doc.rolled_back.remove(&change.id);
            None
        }
        Effect::Nothing => None,
    }
}

#[cfg(test)]
mod tests;
