//! The executor against an in-memory cloud with a scripted failure schedule (in the style of
//! mountpoint-s3's failure-injecting client): lost answers, refused calls, interrupts and
//! ordering, in milliseconds and without the emulator.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::*;
use crate::model::{Kind, reference, tags_for};
use crate::plan::{Base, Operation, PLAN_FORMAT};
use crate::state::LocalBackend;

const ENV: &str = "stage";

/// What the fake does to one call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Carried out, and the answer never arrives.
    LoseAnswer,
    /// Refused: nothing happened.
    Refuse,
}

/// The fake cloud every fake adapter shares: resources, a log of calls, and the script.
#[derive(Default)]
struct Cloud {
    resources: Mutex<BTreeMap<String, LiveResource>>,
    calls: Mutex<Vec<String>>,
    /// `"create a"` → the fault its next such call meets.
    script: Mutex<BTreeMap<String, Fault>>,
    /// Fired by the first call that names it.
    interrupt_on: Mutex<Option<(String, tokio::sync::oneshot::Sender<()>)>>,
}

impl Cloud {
    /// Logs a call and returns the fault it meets; a call that fires the interrupt takes a
    /// moment longer, as a real one would, so the interrupt is seen while it runs.
    async fn call(&self, what: String) -> Option<Fault> {
        self.calls.lock().unwrap().push(what.clone());
        let fired = {
            let mut interrupt = self.interrupt_on.lock().unwrap();
            match interrupt.take() {
                Some((on, tx)) if on == what => tx.send(()).is_ok(),
                other => {
                    *interrupt = other;
                    false
                }
            }
        };
        if fired {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.script.lock().unwrap().remove(&what)
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn tagged(&self, id: &str) -> Vec<String> {
        let resources = self.resources.lock().unwrap();
        resources
            .values()
            .filter(|l| l.id.as_deref() == Some(id))
            .map(|l| l.physical_id.clone())
            .collect()
    }
}

fn lost(op: &'static str) -> AwsError {
    AwsError {
        outcome_unknown: true,
        status: Some(500),
        ..AwsError::local("fake", op, "the answer was lost")
    }
}

fn refused(op: &'static str) -> AwsError {
    AwsError {
        status: Some(400),
        code: Some("InvalidParameter".into()),
        ..AwsError::local("fake", op, "refused")
    }
}

struct Fake {
    kind: Kind,
    cloud: Arc<Cloud>,
}

fn id_of(attrs: &Value) -> String {
    attrs["tags"]["infra:id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[async_trait::async_trait]
impl Adapter for Fake {
    fn kind(&self) -> Kind {
        self.kind
    }

    async fn read_all(
        &self,
        _aws: &Aws,
        _env: crate::aws::kinds::Env<'_>,
    ) -> Result<Vec<LiveResource>, AwsError> {
        let resources = self.cloud.resources.lock().unwrap();
        Ok(resources
            .values()
            .filter(|l| l.kind == self.kind)
            .cloned()
            .collect())
    }

    async fn read_ids(&self, _aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let resources = self.cloud.resources.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|i| resources.get(i).cloned())
            .collect())
    }

    async fn create(&self, _aws: &Aws, id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        // A resource AWS takes a moment to finish: two polls find it not ready yet.
        if id.starts_with("slow") {
            let polls = std::sync::atomic::AtomicUsize::new(0);
            crate::aws::wait::until(
                "fake",
                "Describe",
                "the slow thing to be ready",
                Duration::from_secs(30),
                || {
                    let n = polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move { Ok((n >= 2).then_some(())) }
                },
            )
            .await?;
        }
        let fault = self.cloud.call(format!("create {id}")).await;
        if fault == Some(Fault::Refuse) {
            return Err(refused("Create"));
        }
        let mut resources = self.cloud.resources.lock().unwrap();
        let physical = format!("{}-{}", self.kind, resources.len() + 1);
        let live = LiveResource {
            kind: self.kind,
            physical_id: physical.clone(),
            id: Some(id_of(attrs)),
            attrs: attrs.clone(),
        };
        resources.insert(physical, live.clone());
        match fault {
            Some(Fault::LoseAnswer) => Err(lost("Create")),
            _ => Ok(live),
        }
    }

    async fn update(
        &self,
        _aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let fault = self.cloud.call(format!("update {}", id_of(attrs))).await;
        if fault == Some(Fault::Refuse) {
            return Err(refused("Update"));
        }
        let mut resources = self.cloud.resources.lock().unwrap();
        let live = resources
            .get_mut(physical)
            .ok_or_else(|| refused("Update"))?;
        live.attrs = attrs.clone();
        match fault {
            Some(Fault::LoseAnswer) => Err(lost("Update")),
            _ => Ok(live.clone()),
        }
    }

    async fn adopt(
        &self,
        _aws: &Aws,
        physical: &str,
        _tags: &crate::aws::kinds::Tags,
    ) -> Result<LiveResource, AwsError> {
        let resources = self.cloud.resources.lock().unwrap();
        resources
            .get(physical)
            .cloned()
            .ok_or_else(|| refused("Adopt"))
    }

    async fn delete(&self, _aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let fault = self.cloud.call(format!("delete {physical}")).await;
        if fault == Some(Fault::Refuse) {
            return Err(refused("Delete"));
        }
        self.cloud.resources.lock().unwrap().remove(physical);
        match fault {
            Some(Fault::LoseAnswer) => Err(lost("Delete")),
            _ => Ok(()),
        }
    }
}

/// Progress that records nothing.
struct Quiet;

impl Progress for Quiet {
    fn started(&self, _: &Change, _: Op) {}
    fn finished(&self, _: &Change, _: Op, _: Option<&str>, _: Duration) {}
    fn failed(&self, _: &Change, _: Op, _: &AwsError) {}
    fn skipped(&self, _: &Change, _: Op, _: &str) {}
    fn note(&self, _: &str) {}
}

fn adapters(cloud: &Arc<Cloud>) -> Adapters {
    let fakes: BTreeMap<Kind, &'static dyn Adapter> = Kind::ALL
        .iter()
        .map(|&kind| {
            let fake: &'static Fake = Box::leak(Box::new(Fake {
                kind,
                cloud: cloud.clone(),
            }));
            (kind, fake as &'static dyn Adapter)
        })
        .collect();
    Arc::new(move |kind| fakes[&kind])
}

fn attrs(id: &str, extra: Value) -> Value {
    let mut v = extra;
    v["tags"] = json!(tags_for(ENV, &BTreeMap::new(), id));
    v
}

fn create(id: &str, kind: Kind, deps: &[&str]) -> Change {
    let mut extra = json!({});
    for d in deps {
        extra[format!("needs_{d}")] = reference(d);
    }
    Change {
        id: id.into(),
        kind,
        action: Action::Create,
        notes: Vec::new(),
        physical_id: None,
        after: Some(attrs(id, extra)),
        before: None,
        diffs: Vec::new(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        recorded_deps: Vec::new(),
        protected: false,
    }
}

fn plan(changes: Vec<Change>) -> Plan {
    Plan {
        format: PLAN_FORMAT,
        environment: ENV.into(),
        region: "us-east-1".into(),
        state: crate::config::StateConfig::Local {
            path: "s.json".into(),
        },
        operation: Operation::Apply,
        base: None::<Base>,
        create_backend: false,
        changes,
        warnings: Vec::new(),
        names: Default::default(),
        lint: Vec::new(),
        cost: None,
    }
}

struct Run {
    report: Report,
    doc: StateDoc,
}

async fn run_with(
    cloud: &Arc<Cloud>,
    plan: &Plan,
    doc: StateDoc,
    parallelism: usize,
    interrupt: impl Future<Output = ()>,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::new(dir.path().join("state.json"));
    let aws = crate::aws::connect_emulator("us-east-1", ENV, "http://127.0.0.1:9").await;
    let mut writer = StateWriter {
        backend: &backend,
        doc,
        version: None,
        lock: None,
    };
    let options = Options {
        parallelism,
        progress: Arc::new(Quiet),
        adapters: adapters(cloud),
    };
    let report = execute(plan, &aws, &mut writer, &options, interrupt).await;
    // What a crash right now would leave: the stored document, not the one in memory.
    let (stored, _) = backend.read().await.unwrap().expect("state was written");
    assert_eq!(
        stored, writer.doc,
        "every completion reached the stored state"
    );
    Run {
        report,
        doc: stored,
    }
}

async fn run(cloud: &Arc<Cloud>, plan: &Plan, parallelism: usize) -> Run {
    run_with(
        cloud,
        plan,
        StateDoc::new(ENV),
        parallelism,
        std::future::pending(),
    )
    .await
}

fn ids(list: &[(String, Op)]) -> Vec<&str> {
    let mut v: Vec<&str> = list.iter().map(|(id, _)| id.as_str()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_tag_not_made_twice() {
    let cloud = Arc::new(Cloud::default());
    cloud
        .script
        .lock()
        .unwrap()
        .insert("create vpc".into(), Fault::LoseAnswer);
    let p = plan(vec![
        create("vpc", Kind::Vpc, &[]),
        create("subnet", Kind::Subnet, &["vpc"]),
    ]);
    let r = run(&cloud, &p, 4).await;
    assert!(r.report.ok(), "{:?}", r.report);
    assert_eq!(cloud.tagged("vpc").len(), 1, "one VPC, not two");
    // Created once; the lost answer was followed by a look by tag and an update of what it found.
    assert_eq!(
        cloud.calls(),
        ["create vpc", "update vpc", "create subnet"],
        "look by tag, take it, then go on"
    );
    assert_eq!(r.doc.physical_id("vpc").unwrap(), cloud.tagged("vpc")[0]);
}

#[tokio::test]
async fn a_refused_create_is_not_retried_and_skips_only_its_dependents() {
    let cloud = Arc::new(Cloud::default());
    cloud
        .script
        .lock()
        .unwrap()
        .insert("create vpc".into(), Fault::Refuse);
    let p = plan(vec![
        create("vpc", Kind::Vpc, &[]),
        create("subnet", Kind::Subnet, &["vpc"]),
        create("route", Kind::RouteTable, &["subnet"]),
        create("repository", Kind::Repository, &[]),
    ]);
    let r = run(&cloud, &p, 4).await;
    assert!(!r.report.ok());
    assert_eq!(r.report.failed.len(), 1);
    assert_eq!(r.report.failed[0].0, "vpc");
    assert_eq!(ids(&r.report.skipped), ["route", "subnet"]);
    assert_eq!(ids(&r.report.done), ["repository"]);
    assert_eq!(
        cloud.calls().iter().filter(|c| *c == "create vpc").count(),
        1,
        "a refusal proves nothing happened: no second try"
    );
    assert!(r.doc.resources.contains_key("repository"));
    assert!(!r.doc.resources.contains_key("vpc"));
}

#[tokio::test]
async fn an_update_is_tried_once_more_from_a_fresh_read() {
    let cloud = Arc::new(Cloud::default());
    let first = plan(vec![create("cluster", Kind::Cluster, &[])]);
    let done = run(&cloud, &first, 4).await;
    let physical = done.doc.physical_id("cluster").unwrap().to_string();
    cloud
        .script
        .lock()
        .unwrap()
        .insert("update cluster".into(), Fault::LoseAnswer);
    let mut change = create("cluster", Kind::Cluster, &[]);
    change.action = Action::Update;
    change.physical_id = Some(physical.clone());
    change.after = Some(attrs("cluster", json!({ "insights": true })));
    let r = run_with(
        &cloud,
        &plan(vec![change]),
        done.doc,
        4,
        std::future::pending(),
    )
    .await;
    assert!(r.report.ok(), "{:?}", r.report);
    let updates = cloud
        .calls()
        .iter()
        .filter(|c| *c == "update cluster")
        .count();
    assert_eq!(updates, 2, "the lost answer was followed by one more try");
    assert_eq!(
        r.doc.resources["cluster"].attributes["insights"],
        json!(true)
    );
}

#[tokio::test]
async fn create_before_destroy_moves_users_over_before_the_old_one_goes() {
    let cloud = Arc::new(Cloud::default());
    let first = plan(vec![
        create("task", Kind::TaskDefinition, &[]),
        create("service", Kind::Service, &["task"]),
    ]);
    let done = run(&cloud, &first, 4).await;
    let old = done.doc.physical_id("task").unwrap().to_string();
    let service = done.doc.physical_id("service").unwrap().to_string();
    let mut replace = create("task", Kind::TaskDefinition, &[]);
    replace.action = Action::Replace;
    replace.physical_id = Some(old.clone());
    replace.after = Some(attrs("task", json!({ "image": "v2" })));
    let mut update = create("service", Kind::Service, &["task"]);
    update.action = Action::Update;
    update.physical_id = Some(service);
    update.recorded_deps = vec!["task".into()];
    let before = cloud.calls().len();
    let r = run_with(
        &cloud,
        &plan(vec![replace, update]),
        done.doc,
        4,
        std::future::pending(),
    )
    .await;
    assert!(r.report.ok(), "{:?}", r.report);
    assert_eq!(
        cloud.calls()[before..],
        [
            "create task".to_string(),
            "update service".into(),
            format!("delete {old}"),
        ]
    );
    let new = r.doc.physical_id("task").unwrap();
    assert_ne!(new, old);
    assert_eq!(
        r.doc.resources["service"].attributes["needs_task"],
        json!(new),
        "the service was moved to the new revision"
    );
}

#[tokio::test]
async fn an_interrupt_lets_running_steps_finish_and_be_recorded_and_starts_nothing_new() {
    let cloud = Arc::new(Cloud::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    *cloud.interrupt_on.lock().unwrap() = Some(("create vpc".into(), tx));
    let p = plan(vec![
        create("vpc", Kind::Vpc, &[]),
        create("subnet", Kind::Subnet, &["vpc"]),
        create("route", Kind::RouteTable, &["subnet"]),
    ]);
    let interrupt = async {
        let _ = rx.await;
    };
    let r = run_with(&cloud, &p, StateDoc::new(ENV), 1, interrupt).await;
    assert!(r.report.interrupted);
    assert_eq!(ids(&r.report.done), ["vpc"], "the running step finished");
    assert_eq!(ids(&r.report.skipped), ["route", "subnet"]);
    assert_eq!(cloud.calls(), ["create vpc"], "nothing new started");
    assert!(r.doc.resources.contains_key("vpc"), "and it was recorded");
}

#[tokio::test]
async fn state_writes_are_coalesced_into_waves_of_completions() {
    let cloud = Arc::new(Cloud::default());
    // Forty independent resources, then one that needs them all.
    let mut changes: Vec<Change> = (0..40)
        .map(|i| create(&format!("log-group.{i}"), Kind::LogGroup, &[]))
        .collect();
    let all: Vec<String> = (0..40).map(|i| format!("log-group.{i}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    changes.push(create("role", Kind::Role, &all));
    let r = run(&cloud, &plan(changes), 64).await;
    assert!(r.report.ok(), "{:?}", r.report);
    assert_eq!(r.doc.resources.len(), 41);
    assert!(
        r.report.state_writes < 41 && r.report.state_writes >= 2,
        "{} writes for 41 completions in two waves",
        r.report.state_writes
    );
}

/// Progress that records what steps said they waited for.
#[derive(Default)]
struct Waits(Mutex<Vec<(String, String)>>);

impl Progress for Waits {
    fn started(&self, _: &Change, _: Op) {}
    fn finished(&self, _: &Change, _: Op, _: Option<&str>, _: Duration) {}
    fn failed(&self, _: &Change, _: Op, _: &AwsError) {}
    fn skipped(&self, _: &Change, _: Op, _: &str) {}
    fn note(&self, _: &str) {}
    fn waiting(&self, change: &Change, _: Op, what: &str, _: Duration) {
        self.0
            .lock()
            .unwrap()
            .push((change.id.clone(), what.to_string()));
    }
}

/// A step that waits on AWS says so, as its own step, after each poll that found it not done;
/// other steps say nothing.
#[tokio::test]
async fn a_waiting_step_says_what_it_waits_for() {
    let cloud = Arc::new(Cloud::default());
    let p = plan(vec![
        create("slow-nat", Kind::NatGateway, &[]),
        create("vpc", Kind::Vpc, &[]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::new(dir.path().join("state.json"));
    let aws = crate::aws::connect_emulator("us-east-1", ENV, "http://127.0.0.1:9").await;
    let mut writer = StateWriter {
        backend: &backend,
        doc: StateDoc::new(ENV),
        version: None,
        lock: None,
    };
    let waits = Arc::new(Waits::default());
    let options = Options {
        parallelism: 4,
        progress: waits.clone(),
        adapters: adapters(&cloud),
    };
    let report = execute(&p, &aws, &mut writer, &options, std::future::pending()).await;
    assert!(report.ok(), "{report:?}");
    let said = waits.0.lock().unwrap().clone();
    let expected = (
        "slow-nat".to_string(),
        "the slow thing to be ready".to_string(),
    );
    assert_eq!(said, vec![expected.clone(), expected]);
}
