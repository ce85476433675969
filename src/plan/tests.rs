//! Table tests of the three-way diff and snapshots of the plan text users read.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::config;
use crate::desired::expand;
use crate::model::{TAG_ID, reference};
use crate::state::StateResource;

fn env(nat: &str) -> crate::config::Environment {
    let text = format!(
        "environment: stage\nregion: us-east-1\ntags: {{team: platform}}\nstate: {{s3: {{bucket: acme-infra-state}}}}\nnetwork:\n  cidr: 10.0.0.0/16\n  availability_zones: [us-east-1a, us-east-1b]\n  public_subnets: [10.0.0.0/24, 10.0.1.0/24]\n  private_subnets: [10.0.10.0/24, 10.0.11.0/24]\n  nat: {nat}\n"
    );
    config::parse(Path::new("stage.yaml"), &text, &|_| None).unwrap()
}

/// A world where every desired resource exists exactly as wanted: state and live agree.
fn converged(d: &Desired) -> (StateDoc, Vec<LiveResource>) {
    let mut state = StateDoc::new("stage");
    state.serial = 7;
    let phys = |id: &str| format!("phys-{}", id.replace('.', "-"));
    let lookup = |id: &str| Some(phys(id));
    let mut live = Vec::new();
    for (id, r) in &d.resources {
        let attrs = crate::model::resolve(&r.attrs, &lookup);
        state.resources.insert(
            id.clone(),
            StateResource {
                kind: r.kind,
                physical_id: phys(id),
                attributes: attrs.clone(),
                depends_on: r.deps().into_iter().collect(),
                protected: false,
            },
        );
        live.push(LiveResource {
            kind: r.kind,
            physical_id: phys(id),
            id: Some(id.clone()),
            attrs,
        });
    }
    (state, live)
}

fn plan_of(changes: Vec<Change>, warnings: Vec<Warning>) -> Plan {
    Plan {
        format: PLAN_FORMAT,
        environment: "stage".into(),
        region: "us-east-1".into(),
        state: StateConfig::S3 {
            bucket: "acme-infra-state".into(),
            key: "stage.json".into(),
            kms_key_id: None,
        },
        operation: Operation::Apply,
        base: Some(Base {
            lineage: "l".into(),
            serial: 7,
        }),
        create_backend: false,
        changes,
        warnings,
        names: Default::default(),
        lint: Vec::new(),
        cost: None,
    }
}

fn actions(changes: &[Change]) -> BTreeMap<&str, Action> {
    changes.iter().map(|c| (c.id.as_str(), c.action)).collect()
}

fn strip(text: String) -> String {
    anstream::adapter::strip_str(&text).to_string()
}

#[test]
fn converged_environment_plans_nothing() {
    let d = expand(&env("single"));
    let (state, live) = converged(&d);
    let (changes, warnings) = diff(&d, &state, &live, &Options::default()).unwrap();
    assert!(changes.is_empty(), "{changes:#?}");
    assert!(warnings.is_empty());
}

#[test]
fn first_plan_creates_everything() {
    let d = expand(&env("single"));
    let (changes, _) = diff(&d, &StateDoc::new("stage"), &[], &Options::default()).unwrap();
    assert_eq!(changes.len(), d.resources.len());
    assert!(changes.iter().all(|c| c.action == Action::Create));
    let text = strip(crate::render::plan_text(
        &plan_of(changes, vec![]),
        "s3://acme-infra-state/stage.json",
    ));
    insta::assert_snapshot!(text);
}

#[test]
fn drift_is_named_and_repaired() {
    let d = expand(&env("single"));
    let (state, mut live) = converged(&d);
    // Out of band: a subnet deleted, a route deleted, a tag changed.
    live.retain(|l| l.id.as_deref() != Some("subnet.private.us-east-1b"));
    for l in &mut live {
        match l.id.as_deref() {
            Some("route-table.private.us-east-1a") => l.attrs["routes"] = json!([]),
            Some("vpc") => l.attrs["tags"]["team"] = json!("someone-else"),
            _ => {}
        }
    }
    let (changes, _) = diff(&d, &state, &live, &Options::default()).unwrap();
    let got = actions(&changes);
    assert_eq!(
        got,
        BTreeMap::from([
            ("route-table.private.us-east-1a", Action::Update),
            ("route-table.private.us-east-1b", Action::Update),
            ("subnet.private.us-east-1b", Action::Create),
            ("vpc", Action::Update),
        ])
    );
    let text = strip(crate::render::plan_text(
        &plan_of(changes, vec![]),
        "s3://acme-infra-state/stage.json",
    ));
    insta::assert_snapshot!(text);
}

#[test]
fn nat_single_to_per_az() {
    let (state, live) = converged(&expand(&env("single")));
    let d = expand(&env("per_az"));
    let (changes, _) = diff(&d, &state, &live, &Options::default()).unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([
            ("elastic-ip.us-east-1b", Action::Create),
            ("nat.us-east-1b", Action::Create),
            ("route-table.private.us-east-1b", Action::Update),
        ])
    );
    // The route table waits for the new NAT gateway.
    let (steps, deps) = graph::steps(&changes);
    let rt = steps
        .iter()
        .position(|s| changes[s.change].id == "route-table.private.us-east-1b")
        .unwrap();
    let waits: Vec<&str> = deps[rt]
        .iter()
        .map(|&i| changes[steps[i].change].id.as_str())
        .collect();
    assert_eq!(waits, ["nat.us-east-1b"]);
}

#[test]
fn per_az_to_single_deletes_after_routes_move() {
    let (state, live) = converged(&expand(&env("per_az")));
    let d = expand(&env("single"));
    let (changes, _) = diff(&d, &state, &live, &Options::default()).unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([
            ("elastic-ip.us-east-1b", Action::Delete),
            ("nat.us-east-1b", Action::Delete),
            ("route-table.private.us-east-1b", Action::Update),
        ])
    );
    let (steps, deps) = graph::steps(&changes);
    let id = |i: usize| changes[steps[i].change].id.as_str();
    let nat = (0..steps.len())
        .find(|&i| id(i) == "nat.us-east-1b")
        .unwrap();
    let eip = (0..steps.len())
        .find(|&i| id(i) == "elastic-ip.us-east-1b")
        .unwrap();
    assert_eq!(
        deps[nat].iter().map(|&i| id(i)).collect::<Vec<_>>(),
        ["route-table.private.us-east-1b"]
    );
    assert_eq!(
        deps[eip].iter().map(|&i| id(i)).collect::<Vec<_>>(),
        ["nat.us-east-1b"]
    );
}

#[test]
fn cidr_change_replaces_the_subnet_and_what_lives_in_it() {
    let (state, live) = converged(&expand(&env("single")));
    let mut e = env("single");
    let crate::config::Network::Managed(net) = &mut e.network else {
        unreachable!("the fixture builds its network")
    };
    net.public_subnets[0] = "10.0.2.0/24".parse().unwrap();
    let d = expand(&e);
    let (changes, _) = diff(&d, &state, &live, &Options::default()).unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([
            ("nat.us-east-1a", Action::Replace),
            ("route-table.private.us-east-1a", Action::Update),
            ("route-table.private.us-east-1b", Action::Update),
            ("route-table.public", Action::Update),
            ("subnet.public.us-east-1a", Action::Replace),
        ])
    );
    let subnet = changes
        .iter()
        .find(|c| c.id == "subnet.public.us-east-1a")
        .unwrap();
    assert!(
        subnet
            .diffs
            .iter()
            .any(|d| d.field == "cidr_block" && d.forces_replacement)
    );
    // Steps: NAT deleted before its subnet, subnet re-created before the new NAT.
    let (steps, deps) = graph::steps(&changes);
    let find = |id: &str, op: graph::Op| {
        (0..steps.len())
            .find(|&i| changes[steps[i].change].id == id && steps[i].op == op)
            .unwrap()
    };
    use graph::Op::*;
    assert!(
        deps[find("subnet.public.us-east-1a", Delete)].contains(&find("nat.us-east-1a", Delete))
    );
    assert!(
        deps[find("subnet.public.us-east-1a", Create)]
            .contains(&find("subnet.public.us-east-1a", Delete))
    );
    assert!(
        deps[find("nat.us-east-1a", Create)].contains(&find("subnet.public.us-east-1a", Create))
    );
    crate::exec::queue::Queue::new(deps).expect("no cycle");
    let text = strip(crate::render::plan_text(
        &plan_of(changes, vec![]),
        "s3://acme-infra-state/stage.json",
    ));
    insta::assert_snapshot!(text);
}

#[test]
fn untracked_resource_is_adopted_not_duplicated() {
    let d = expand(&env("none"));
    let (mut state, live) = converged(&d);
    state.resources.remove("subnet.public.us-east-1a");
    let (changes, _) = diff(&d, &state, &live, &Options::default()).unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([("subnet.public.us-east-1a", Action::Adopt)])
    );
    assert_eq!(changes[0].notes, [Note::FoundByTag]);
}

#[test]
fn two_resources_claiming_one_id_is_a_conflict() {
    let d = expand(&env("none"));
    let (mut state, mut live) = converged(&d);
    state.resources.remove("vpc");
    let mut twin = live
        .iter()
        .find(|l| l.id.as_deref() == Some("vpc"))
        .unwrap()
        .clone();
    twin.physical_id = "vpc-twin".into();
    live.push(twin);
    let err = diff(&d, &state, &live, &Options::default()).unwrap_err();
    assert!(
        matches!(err, PlanError::Conflict { ref id, count: 2, .. } if id == "vpc"),
        "{err}"
    );
}

#[test]
fn removed_from_file_and_deleted_outside() {
    let d = expand(&env("single"));
    let (mut state, mut live) = converged(&d);
    // A resource that is only in state and live (no longer in the file) ...
    let extra = StateResource {
        kind: Kind::Subnet,
        physical_id: "subnet-old".into(),
        attributes: json!({"cidr_block": "10.0.50.0/24", "tags": {TAG_ID: "subnet.public.us-east-1z"}}),
        depends_on: vec!["vpc".into()],
        protected: false,
    };
    state
        .resources
        .insert("subnet.public.us-east-1z".into(), extra.clone());
    live.push(LiveResource {
        kind: Kind::Subnet,
        physical_id: "subnet-old".into(),
        id: Some("subnet.public.us-east-1z".into()),
        attrs: extra.attributes.clone(),
    });
    // ... and one only in state (deleted outside, no longer in the file).
    let mut gone = extra;
    gone.physical_id = "subnet-gone".into();
    state
        .resources
        .insert("subnet.public.us-east-1y".into(), gone);
    let (changes, _) = diff(&d, &state, &live, &Options::default()).unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([
            ("subnet.public.us-east-1y", Action::Forget),
            ("subnet.public.us-east-1z", Action::Delete),
        ])
    );
}

#[test]
fn targets_take_their_dependencies() {
    let d = expand(&env("single"));
    let options = Options {
        targets: vec!["nat".into()],
        ..Options::default()
    };
    let (changes, _) = diff(&d, &StateDoc::new("stage"), &[], &options).unwrap();
    let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "elastic-ip.us-east-1a",
            "internet-gateway",
            "nat.us-east-1a",
            "subnet.public.us-east-1a",
            "vpc"
        ]
    );
    let bad = Options {
        targets: vec!["natt".into()],
        ..Options::default()
    };
    assert_eq!(
        diff(&d, &StateDoc::new("stage"), &[], &bad).unwrap_err(),
        PlanError::UnknownTarget("natt".into())
    );
}

#[test]
fn destroy_deletes_in_reverse_dependency_order() {
    let d = expand(&env("single"));
    let (state, live) = converged(&d);
    let (changes, _) = diff(&Desired::default(), &state, &live, &Options::default()).unwrap();
    assert!(changes.iter().all(|c| c.action == Action::Delete));
    let (steps, deps) = graph::steps(&changes);
    let id = |i: usize| changes[steps[i].change].id.as_str();
    let vpc = (0..steps.len()).find(|&i| id(i) == "vpc").unwrap();
    let mut waits: Vec<&str> = deps[vpc].iter().map(|&i| id(i)).collect();
    waits.sort();
    assert_eq!(
        waits,
        [
            "internet-gateway",
            "route-table.private.us-east-1a",
            "route-table.private.us-east-1b",
            "route-table.public",
            "subnet.private.us-east-1a",
            "subnet.private.us-east-1b",
            "subnet.public.us-east-1a",
            "subnet.public.us-east-1b",
        ]
    );
    let _ = reference("vpc");
}

#[test]
fn protection_recorded_in_state_survives_the_file() {
    let mut e = env("none");
    e.protect = true;
    let d = expand(&e);
    assert!(d.resources.values().all(|r| r.protected));
    let (mut state, live) = converged(&d);
    for r in state.resources.values_mut() {
        r.protected = true;
    }
    // The file no longer protects anything and no longer wants the network at all.
    let err = diff(&Desired::default(), &state, &live, &Options::default()).unwrap_err();
    let PlanError::Protected(ids) = err else {
        panic!("{err}")
    };
    assert_eq!(ids.len(), d.resources.len());
    let allowed = Options {
        allow_destroy_protected: true,
        ..Options::default()
    };
    let (changes, _) = diff(&Desired::default(), &state, &live, &allowed).unwrap();
    assert!(
        changes
            .iter()
            .all(|c| c.action == Action::Delete && c.protected)
    );
}

/// An environment with a domain, a database a service uses, and a bastion.
fn platform(database: &str) -> crate::config::Environment {
    let text = format!(
        "environment: stage
region: us-east-1
state: {{s3: {{bucket: acme-infra-state}}}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24]
  database_subnets: [10.0.20.0/24, 10.0.21.0/24]
  nat: single
load_balancer:
  domain: {{name: app.example.com, zone: example.com, aliases: [www.example.com]}}
cluster: {{}}
databases:
  {database}: {{}}
bastion: {{}}
services:
  web:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8080
    uses: [{database}]
"
    );
    config::parse(Path::new("stage.yaml"), &text, &|_| None).unwrap()
}

/// What users read when a domain, a database and a bastion are first created: the values only
/// AWS will know (the certificate's records, the database's address and secret, the zone and
/// image looked up at plan time) are said to be so.
#[test]
fn a_domain_a_database_and_a_bastion_are_planned_with_what_is_known_after_apply() {
    let d = expand(&platform("main"));
    let (changes, _) = diff(&d, &StateDoc::new("stage"), &[], &Options::default()).unwrap();
    assert!(changes.iter().all(|c| c.action == Action::Create));
    let text = strip(crate::render::plan_text(
        &plan_of(changes, vec![]),
        "s3://acme-infra-state/stage.json",
    ));
    for expected in [
        "+ certificate",
        "+ dns-record.validation.app.example.com",
        "+ dns-record.www.example.com",
        "+ database.main",
        "+ bastion",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    assert!(!text.to_ascii_lowercase().contains("password\":"), "{text}");
    insta::assert_snapshot!(text);
}

/// A database the file no longer has is deleted, and the plan says its data goes with it.
#[test]
fn a_database_going_away_is_marked_as_losing_its_data() {
    let (state, live) = converged(&expand(&platform("main")));
    let (changes, _) = diff(
        &expand(&platform("primary")),
        &state,
        &live,
        &Options::default(),
    )
    .unwrap();
    let gone = changes.iter().find(|c| c.id == "database.main").unwrap();
    assert_eq!(gone.action, Action::Delete);
    assert!(gone.notes.contains(&Note::DataLoss), "{:?}", gone.notes);
    let new = changes.iter().find(|c| c.id == "database.primary").unwrap();
    assert_eq!(new.action, Action::Create);
    assert!(!new.notes.contains(&Note::DataLoss));
    let text = strip(crate::render::plan_text(
        &plan_of(changes, vec![]),
        "s3://acme-infra-state/stage.json",
    ));
    assert!(
        text.contains("- database.main") && text.contains("ITS DATA IS LOST"),
        "{text}"
    );
}
