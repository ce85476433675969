//! The three-way diff: what the file wants (desired), what infra last wrote (recorded state) and
//! what AWS has now (live), turned into a `Plan` — a serialisable list of changes with the drift
//! that explains them. Pure: the same three inputs always give the same plan.
//!
//! Identity: a recorded resource is matched to live by its physical id; a resource missing from
//! state is matched by its `infra:id` tag (a crash between "created" and "state written") and
//! adopted. Two live resources claiming one id are a conflict that stops the plan: nothing is
//! deleted on a guess.

pub mod graph;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::StateConfig;
use crate::desired::Desired;
pub use crate::model::LiveResource;
use crate::model::{Kind, Names, has_unknown, normalize};
use crate::state::StateDoc;

/// The saved-plan file format this build writes and accepts (2: typed warnings and the names
/// lookups need). Separate from the documented `plan --json` output (`render::PlanJson`).
pub const PLAN_FORMAT: u32 = 2;

/// Something the plan wants the reader to know that is not a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "warning")]
pub enum Warning {
    /// Live resources other than the recorded one carry this id; they are left alone.
    Twins {
        id: String,
        recorded: String,
        others: Vec<String>,
    },
    /// Something about a network someone else owns that would keep the environment from working.
    Network { message: String },
    /// Where a resource stands that the plan does not change: the certificate's status and
    /// expiry, a newer image out for the bastion.
    Status { message: String },
    /// An image the plan pins that its scan could not judge (not scanned, still scanning), or
    /// that the gate let through (`--allow-vulnerable`).
    Image { message: String },
    /// A service whose image the pipeline owns (`image: KEY`, no `--image`): the plan keeps the
    /// digest it runs. `tag` is the tag it was deployed with; `untagged` when no tag of the
    /// repository points at that digest any more.
    ImageKept {
        service: String,
        key: String,
        digest: String,
        tag: Option<String>,
        untagged: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Apply,
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    /// Found by tag, matches the file: only recorded in state.
    Adopt,
    /// Recorded but gone from AWS and from the file: only removed from state.
    Forget,
}

/// Why a change is there, beyond "the file says so".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "note")]
pub enum Note {
    DeletedOutside,
    ChangedOutside {
        fields: Vec<String>,
    },
    FoundByTag,
    RemovedFromFile,
    /// Carries this environment's tags but is neither in the file nor in state.
    UntrackedByTag,
    /// `infra rollback` moved the service to an earlier revision (`to`) at `at`.
    RolledBack {
        to: String,
        at: String,
    },
    /// A database deleted or replaced: its data goes with it.
    DataLoss,
    /// `--replace` asked for it.
    ReplaceAsked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub kind: Kind,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// The existing resource, for everything but a create.
    pub physical_id: Option<String>,
    /// Desired attributes, references unresolved (they are resolved when the step runs).
    pub after: Option<Value>,
    /// Live attributes at plan time.
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<FieldDiff>,
    /// What the desired resource needs first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// What the recorded resource depended on (orders deletes).
    #[serde(default)]
    pub recorded_deps: Vec<String>,
    /// Protected by the file or by state: deleting it needs `--allow-destroy-protected`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// The state a plan was made against; a saved plan is refused if it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub lineage: String,
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub environment: String,
    pub region: String,
    pub state: StateConfig,
    pub operation: Operation,
    pub base: Option<Base>,
    /// The state storage (S3 bucket) does not exist yet and apply will create it.
    pub create_backend: bool,
    pub changes: Vec<Change>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// What refresh and lookups by tag need to find this environment's resources.
    #[serde(default)]
    pub names: Names,
    /// The file's lint findings: shown with the plan, never a reason to fail it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lint: Vec<crate::lint::Finding>,
    /// The monthly estimate before → after (when the region is in the price table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::Delta>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub adopt: usize,
    pub forget: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
                Action::Adopt => s.adopt += 1,
                Action::Forget => s.forget += 1,
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("{count} live {kind} resources claim the id `{id}` ({}); infra will not guess which is real", physical.join(", "))]
    Conflict {
        id: String,
        kind: Kind,
        count: usize,
        physical: Vec<String>,
    },
    #[error("`{id}` is a {recorded} in state but a {desired} in the file")]
    KindChanged {
        id: String,
        recorded: Kind,
        desired: Kind,
    },
    #[error("no resource matches --target `{0}`")]
    UnknownTarget(String),
    #[error("--replace `{0}`: the file has no such resource, or it does not exist yet")]
    UnknownReplace(String),
    #[error("refusing to delete protected resources: {}; pass --allow-destroy-protected to delete them", .0.join(", "))]
    Protected(Vec<String>),
}

/// Options that shape a plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these logical ids (or every id under a prefix), plus what they depend on.
    pub targets: Vec<String>,
    /// Protected resources may be deleted (or replaced).
    pub allow_destroy_protected: bool,
    /// `--replace`: these logical ids are replaced although nothing about them differs.
    pub replace: Vec<String>,
}

/// Computes the changes that take live AWS to the desired graph: match, then what the file
/// wants, then what it no longer wants, then `--target` and protection.
pub fn diff(
    desired: &Desired,
    state: &StateDoc,
    live: &[LiveResource],
    options: &Options,
) -> Result<(Vec<Change>, Vec<Warning>), PlanError> {
    let mut warnings = Vec::new();
    // What `state forget` let go of is not infra's any more, whatever its tags say.
    let live: Vec<LiveResource> = live
        .iter()
        .filter(|l| !state.forgotten.contains_key(&l.physical_id))
        .cloned()
        .collect();
    let live = live.as_slice();
    let (ids, matched) = match_live(desired, state, live, &mut warnings)?;
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    for id in &options.replace {
        if !desired.resources.contains_key(id) || !matched.contains_key(id.as_str()) {
            return Err(PlanError::UnknownReplace(id.clone()));
        }
    }
    desired_changes(desired, state, &matched, &options.replace, &mut changes);
    removals(desired, state, &ids, &matched, &mut changes);
    let mut changes: Vec<Change> = changes.into_values().collect();
    for c in &mut changes {
        if c.kind == Kind::Database && matches!(c.action, Action::Delete | Action::Replace) {
            c.notes.push(Note::DataLoss);
        }
    }
    if !options.targets.is_empty() {
        changes = select_targets(desired, state, changes, &options.targets)?;
    }
    if !options.allow_destroy_protected {
        let doomed: Vec<String> = changes
            .iter()
            .filter(|c| c.protected && matches!(c.action, Action::Delete | Action::Replace))
            .map(|c| c.id.clone())
            .collect();
        if !doomed.is_empty() {
            return Err(PlanError::Protected(doomed));
        }
    }
    Ok((changes, warnings))
}

/// A recorded or tagged id's live resource, and whether it was found by its tag alone.
type Matched<'l> = HashMap<&'l str, (&'l LiveResource, bool)>;

/// Step 1: matches every id that any side knows to its live resource — by the recorded physical
/// id, else by the `infra:id` tag. Two live resources claiming one id is a conflict.
fn match_live<'a>(
    desired: &'a Desired,
    state: &'a StateDoc,
    live: &'a [LiveResource],
    warnings: &mut Vec<Warning>,
) -> Result<(BTreeSet<&'a str>, Matched<'a>), PlanError> {
    let by_physical: HashMap<(Kind, &str), &LiveResource> = live
        .iter()
        .map(|l| ((l.kind, l.physical_id.as_str()), l))
        .collect();
    let mut by_tag: BTreeMap<&str, Vec<&LiveResource>> = BTreeMap::new();
    for l in live {
        if let Some(id) = &l.id {
            by_tag.entry(id.as_str()).or_default().push(l);
        }
    }
    let mut matched: Matched = HashMap::new();
    let ids: BTreeSet<&str> = desired
        .resources
        .keys()
        .map(String::as_str)
        .chain(state.resources.keys().map(String::as_str))
        .chain(by_tag.keys().copied())
        .collect();
    for &id in &ids {
        let recorded = state.resources.get(id);
        let kind = desired
            .resources
            .get(id)
            .map(|r| r.kind)
            .or(recorded.map(|r| r.kind));
        if let (Some(d), Some(r)) = (desired.resources.get(id), recorded)
            && d.kind != r.kind
        {
            return Err(PlanError::KindChanged {
                id: id.to_string(),
                recorded: r.kind,
                desired: d.kind,
            });
        }
        let tagged: Vec<&LiveResource> = by_tag
            .get(id)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|l| Some(l.kind) == kind || kind.is_none())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(r) = recorded
            && let Some(l) = by_physical.get(&(r.kind, r.physical_id.as_str()))
        {
            matched.insert(id, (l, false));
            let twins: Vec<String> = tagged
                .iter()
                .filter(|t| t.physical_id != r.physical_id)
                .map(|t| t.physical_id.clone())
                .collect();
            if !twins.is_empty() {
                warnings.push(Warning::Twins {
                    id: id.to_string(),
                    recorded: r.physical_id.clone(),
                    others: twins,
                });
            }
            continue;
        }
        match tagged.as_slice() {
            [] => {}
            [one] => {
                matched.insert(id, (one, true));
            }
            many => {
                return Err(PlanError::Conflict {
                    id: id.to_string(),
                    kind: many[0].kind,
                    count: many.len(),
                    physical: many.iter().map(|l| l.physical_id.clone()).collect(),
                });
            }
        }
    }

    Ok((ids, matched))
}

/// Step 2: what each desired resource needs — created, updated, replaced or adopted — with the
/// drift that explains it. Walks in dependency order, so a reference knows whether its target is
/// being (re)created and its physical id is therefore not known yet.
fn desired_changes(
    desired: &Desired,
    state: &StateDoc,
    matched: &Matched<'_>,
    replace: &[String],
    changes: &mut BTreeMap<String, Change>,
) {
    for id in topo_order(desired) {
        let want = &desired.resources[id];
        let recorded = state.resources.get(id);
        let found = matched.get(id).copied();
        let lookup = |dep: &str| -> Option<String> {
            match changes.get(dep).map(|c| c.action) {
                Some(Action::Create | Action::Replace) => None,
                _ => matched.get(dep).map(|(l, _)| l.physical_id.clone()),
            }
        };
        let output = |dep: &str, pointer: &str| -> Option<serde_json::Value> {
            match changes.get(dep).map(|c| c.action) {
                Some(Action::Create | Action::Replace) => None,
                _ => matched
                    .get(dep)
                    .and_then(|(l, _)| crate::model::output_of(&l.attrs, pointer)),
            }
        };
        let after = normalize(
            want.kind,
            &crate::model::resolve_with(&want.attrs, &lookup, &output),
        );
        let stored = crate::model::fill_outputs(&want.attrs, &output);
        let mut notes = Vec::new();
        let change = match found {
            None => {
                if recorded.is_some() {
                    notes.push(Note::DeletedOutside);
                }
                Some((Action::Create, None, None, Vec::new()))
            }
            Some((l, by_tag)) => {
                if by_tag {
                    notes.push(Note::FoundByTag);
                }
                let mut before = normalize(want.kind, &l.attrs);
                // An attribute AWS did not return cannot be compared live: the last applied
                // value stands in for it (never a made-up difference).
                if let (Some(r), Value::Object(b), false) = (recorded, &mut before, by_tag) {
                    for key in want.attrs.as_object().into_iter().flat_map(|m| m.keys()) {
                        if !b.contains_key(key)
                            && let Some(v) = r.attributes.get(key)
                        {
                            b.insert(key.clone(), v.clone());
                        }
                    }
                }
                if let Some(rb) = state.rolled_back.get(id)
                    && l.attrs["task_definition"].as_str() == Some(rb.to.as_str())
                {
                    notes.push(Note::RolledBack {
                        to: rb.to.clone(),
                        at: rb.at.clone(),
                    });
                }
                if let Some(r) = recorded.filter(|_| !by_tag) {
                    let recorded_attrs = normalize(want.kind, &r.attributes);
                    let drifted: Vec<String> = field_diffs(want.kind, &recorded_attrs, &before)
                        .into_iter()
                        .map(|d| d.field)
                        .collect();
                    if !drifted.is_empty() {
                        notes.push(Note::ChangedOutside { fields: drifted });
                    }
                }
                let diffs = field_diffs(want.kind, &before, &after);
                let asked = replace.iter().any(|r| r == id);
                if asked {
                    notes.push(Note::ReplaceAsked);
                }
                let action = if diffs.iter().any(|d| d.forces_replacement) || asked {
                    Some(Action::Replace)
                } else if !diffs.is_empty() {
                    Some(Action::Update)
                } else if by_tag {
                    Some(Action::Adopt)
                } else {
                    None
                };
                action.map(|a| (a, Some(l.physical_id.clone()), Some(before), diffs))
            }
        };
        if let Some((action, physical_id, before, diffs)) = change {
            changes.insert(
                id.to_string(),
                Change {
                    id: id.to_string(),
                    kind: want.kind,
                    action,
                    notes,
                    physical_id,
                    after: Some(stored),
                    before,
                    diffs,
                    depends_on: want.deps().into_iter().collect(),
                    recorded_deps: recorded.map(|r| r.depends_on.clone()).unwrap_or_default(),
                    protected: want.protected || recorded.is_some_and(|r| r.protected),
                },
            );
        }
    }
}

/// Step 3: everything recorded or tagged that the file no longer wants: deleted, or forgotten
/// when AWS no longer has it either.
fn removals(
    desired: &Desired,
    state: &StateDoc,
    ids: &BTreeSet<&str>,
    matched: &Matched<'_>,
    changes: &mut BTreeMap<String, Change>,
) {
    for &id in ids {
        if desired.resources.contains_key(id) {
            continue;
        }
        let recorded = state.resources.get(id);
        let found = matched.get(id).copied();
        let (action, notes, physical, kind, before) = match (recorded, found) {
            (Some(r), Some((l, _))) => (
                Action::Delete,
                vec![Note::RemovedFromFile],
                l.physical_id.clone(),
                r.kind,
                Some(l.attrs.clone()),
            ),
            (Some(r), None) => (
                Action::Forget,
                vec![Note::DeletedOutside],
                r.physical_id.clone(),
                r.kind,
                None,
            ),
            (None, Some((l, _))) => (
                Action::Delete,
                vec![Note::UntrackedByTag],
                l.physical_id.clone(),
                l.kind,
                Some(l.attrs.clone()),
            ),
            (None, None) => continue,
        };
        changes.insert(
            id.to_string(),
            Change {
                id: id.to_string(),
                kind,
                action,
                notes,
                physical_id: Some(physical),
                after: None,
                before,
                diffs: Vec::new(),
                depends_on: Vec::new(),
                recorded_deps: recorded.map(|r| r.depends_on.clone()).unwrap_or_default(),
                protected: recorded.is_some_and(|r| r.protected),
            },
        );
    }
}

/// Keeps the changes of the targeted ids (an exact id, or a prefix ending at a `.`) and of what
/// they depend on.
fn select_targets(
    desired: &Desired,
    state: &StateDoc,
    changes: Vec<Change>,
    targets: &[String],
) -> Result<Vec<Change>, PlanError> {
    let known: BTreeSet<&str> = desired
        .resources
        .keys()
        .chain(state.resources.keys())
        .map(String::as_str)
        .collect();
    let matches =
        |t: &str, id: &str| id == t || id.strip_prefix(t).is_some_and(|r| r.starts_with('.'));
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for t in targets {
        let hits: Vec<&str> = known.iter().copied().filter(|id| matches(t, id)).collect();
        if hits.is_empty() {
            return Err(PlanError::UnknownTarget(t.clone()));
        }
        wanted.extend(hits.into_iter().map(str::to_string));
    }
    let mut stack: Vec<String> = wanted.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        if let Some(r) = desired.resources.get(&id) {
            for dep in r.deps() {
                if wanted.insert(dep.clone()) {
                    stack.push(dep);
                }
            }
        }
    }
    Ok(changes
        .into_iter()
        .filter(|c| wanted.contains(&c.id))
        .collect())
}

/// Desired ids, dependencies first (ties broken by id, so the order is stable).
pub fn topo_order(desired: &Desired) -> Vec<&str> {
    let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, r) in &desired.resources {
        let deps: Vec<String> = r
            .deps()
            .into_iter()
            .filter(|d| desired.resources.contains_key(d))
            .collect();
        indegree.insert(id, deps.len());
        for d in deps {
            let (key, _) = desired.resources.get_key_value(&d).expect("checked");
            dependents.entry(key.as_str()).or_default().push(id);
        }
    }
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut out = Vec::with_capacity(indegree.len());
    while let Some(id) = ready.pop_first() {
        out.push(id);
        for &next in dependents.get(id).into_iter().flatten() {
            let n = indegree.get_mut(next).expect("known");
            *n -= 1;
            if *n == 0 {
                ready.insert(next);
            }
        }
    }
    assert_eq!(
        out.len(),
        desired.resources.len(),
        "desired graph has a cycle"
    );
    out
}

/// Top-level attributes that differ between `before` and `after` (only those `after` sets).
pub fn field_diffs(kind: Kind, before: &Value, after: &Value) -> Vec<FieldDiff> {
    let schema = kind.schema();
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    let mut fields: Vec<(&String, &Value)> = a.iter().collect();
    fields.sort_by_key(|(k, _)| *k);
    for (field, want) in fields {
        let have = b.get(field);
        let same = have == Some(want) && !has_unknown(want);
        if !same && schema.deep_fields.contains(&field.as_str()) {
            deep_diffs(field.clone(), have, Some(want), &mut out);
        } else if !same {
            out.push(FieldDiff {
                field: field.clone(),
                before: have.cloned(),
                after: Some(want.clone()),
                forces_replacement: schema.replace_on.contains(&field.as_str()),
            });
        }
    }
    out
}

/// The differences inside a structured value, each at its path (`widgets[3].lines[1].label`);
/// an element only one side has is one difference.
fn deep_diffs(path: String, have: Option<&Value>, want: Option<&Value>, out: &mut Vec<FieldDiff>) {
    match (have, want) {
        (Some(Value::Object(h)), Some(Value::Object(w))) => {
            let keys: std::collections::BTreeSet<&String> = h.keys().chain(w.keys()).collect();
            for k in keys {
                deep_diffs(format!("{path}.{k}"), h.get(k), w.get(k), out);
            }
        }
        (Some(Value::Array(h)), Some(Value::Array(w))) => {
            for i in 0..h.len().max(w.len()) {
                deep_diffs(format!("{path}[{i}]"), h.get(i), w.get(i), out);
            }
        }
        (h, w) if h != w || w.is_some_and(has_unknown) => out.push(FieldDiff {
            field: path,
            before: h.cloned(),
            after: w.cloned(),
            forces_replacement: false,
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
