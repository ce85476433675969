//! The vocabulary shared by every stage: resource kinds and their diff rules, logical ids, desired
//! resources, references between them, and the tags that make a resource findable.
//!
//! Each kind's attributes are a typed struct (see `aws::kinds`); in plans and state they travel as
//! the JSON objects those structs serialise to, so the diff works on any kind alike. A reference
//! to another resource (`Ref`) is the object `{"ref": "<logical id>"}`; it becomes that resource's
//! physical id when the value is resolved. Pure: no I/O, no AWS types.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Tag keys that give a resource its identity. A resource is ours when it carries all of them.
pub const TAG_ENVIRONMENT: &str = "infra:environment";
pub const TAG_ID: &str = "infra:id";
pub const TAG_MANAGED_BY: &str = "managed-by";
pub const MANAGED_BY: &str = "infra";

/// What a value shows when it depends on a resource that does not exist yet.
pub const UNKNOWN: &str = "(known after apply)";

pub use crate::aws::kinds::Kind;

/// How the diff treats a kind's attributes. Each kind declares its own next to its adapter.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Attributes that cannot change in place: a difference means replace.
    pub replace_on: &'static [&'static str],
    /// List attributes whose order carries no meaning: compared as sorted sets.
    pub set_fields: &'static [&'static str],
    /// A replacement is created before the old one is deleted (task definition revisions);
    /// otherwise the old one goes first (names and CIDR blocks must be free again).
    pub create_before_destroy: bool,
    /// Large structured attributes whose differences are shown where they are
    /// (`widgets[3].lines[1].label`), not as the whole value twice.
    pub deep_fields: &'static [&'static str],
}

impl Schema {
    /// Replace on these fields; no sets; delete before create.
    pub const fn replace_on(fields: &'static [&'static str]) -> Schema {
        Schema {
            replace_on: fields,
            set_fields: &[],
            create_before_destroy: false,
            deep_fields: &[],
        }
    }

    pub const fn deep(self, fields: &'static [&'static str]) -> Schema {
        Schema {
            deep_fields: fields,
            ..self
        }
    }

    pub const fn sets(self, fields: &'static [&'static str]) -> Schema {
        Schema {
            set_fields: fields,
            ..self
        }
    }
}

/// A reference to another resource: by logical id (`To`), a dependency edge and the physical id
/// of that resource once apply knows it, serialised as `{"ref": "<logical id>"}`; to a value
/// AWS computed for it (`Output`: the load balancer's DNS name, a certificate's validation
/// record), serialised as `{"ref": "<logical id>", "output": "<JSON pointer>"}`, also an edge;
/// or to a resource infra does not manage (`Existing`, a network someone else owns), whose
/// physical id the file gives, serialised as that id: no edge, nothing to resolve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ref {
    To(String),
    Output(String, String),
    Existing(String),
}

impl Ref {
    pub fn to(id: impl Into<String>) -> Ref {
        Ref::To(id.into())
    }

    /// The value at `pointer` (`/dns_name`) among what AWS computed for `id`.
    pub fn output(id: impl Into<String>, pointer: impl Into<String>) -> Ref {
        Ref::Output(id.into(), pointer.into())
    }

    pub fn existing(physical_id: impl Into<String>) -> Ref {
        Ref::Existing(physical_id.into())
    }
}

impl Serialize for Ref {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Ref::To(id) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("ref", id)?;
                m.end()
            }
            Ref::Output(id, pointer) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("ref", id)?;
                m.serialize_entry("output", pointer)?;
                m.end()
            }
            Ref::Existing(physical) => s.serialize_str(physical),
        }
    }
}

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            r#ref: String,
            #[serde(default)]
            output: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            To(Wire),
            Existing(String),
        }
        Ok(match Either::deserialize(d)? {
            Either::To(Wire {
                r#ref,
                output: Some(p),
            }) => Ref::Output(r#ref, p),
            Either::To(w) => Ref::To(w.r#ref),
            Either::Existing(p) => Ref::Existing(p),
        })
    }
}

/// The names by which refresh finds what AWS cannot filter by tag (ECS has no tag filters): the
/// cluster and the services. Known from the file, and carried in a saved plan so that applying it
/// sees the live world exactly as the plan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub cluster: Option<String>,
    pub services: Vec<String>,
    /// The services the file autoscales (Application Auto Scaling has no tags to find them by).
    #[serde(default)]
    pub autoscaled: Vec<String>,
    /// Whether the file needs the ECS infrastructure role (a blue/green, canary or linear
    /// service): only then is that role looked up by name.
    #[serde(default)]
    pub infrastructure_role: bool,
    /// Whether the file has a bastion: only then are its role and instance profile looked up.
    #[serde(default)]
    pub bastion: bool,
}

/// A resource as read from AWS, its attributes in the shape the desired side writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveResource {
    pub kind: Kind,
    pub physical_id: String,
    /// The `infra:id` tag, when present.
    pub id: Option<String>,
    pub attrs: Value,
}

/// One resource the environment file asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    pub kind: Kind,
    /// Attributes, possibly holding references (`{"ref": id}`).
    pub attrs: Value,
    /// Ordering-only dependencies that no attribute expresses (a NAT gateway needs the internet
    /// gateway attached first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Deleting it needs `--allow-destroy-protected`.
    #[serde(default)]
    pub protected: bool,
}

impl Resource {
    /// Every logical id this resource needs to exist first: references plus `depends_on`.
    pub fn deps(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.depends_on.iter().cloned().collect();
        collect_refs(&self.attrs, &mut out);
        out
    }
}

/// A reference to another resource's physical id.
pub fn reference(id: &str) -> Value {
    let mut m = Map::new();
    m.insert("ref".into(), Value::String(id.into()));
    Value::Object(m)
}

/// The logical id a value refers to (for its physical id or one of its outputs), if it is a
/// reference.
pub fn as_ref(v: &Value) -> Option<&str> {
    as_reference(v).map(|(id, _)| id)
}

/// A reference as (logical id, output pointer when it names an output).
pub fn as_reference(v: &Value) -> Option<(&str, Option<&str>)> {
    match v {
        Value::Object(m) if m.len() == 1 => Some((m.get("ref")?.as_str()?, None)),
        Value::Object(m) if m.len() == 2 => {
            Some((m.get("ref")?.as_str()?, Some(m.get("output")?.as_str()?)))
        }
        _ => None,
    }
}

/// Every logical id a value refers to.
pub fn refs(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_refs(v, &mut out);
    out
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    if let Some(id) = as_ref(v) {
        out.insert(id.to_string());
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// Replaces every reference by the physical id `lookup` gives, or by `UNKNOWN`; a reference to
/// an output is `UNKNOWN` (see `resolve_with`).
pub fn resolve(v: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> Value {
    resolve_with(v, lookup, &|_, _| None)
}

/// Replaces every reference by the physical id `lookup` gives and every reference to an output
/// by the value `output` gives (logical id, JSON pointer), each `UNKNOWN` when not known.
pub fn resolve_with(
    v: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    output: &dyn Fn(&str, &str) -> Option<Value>,
) -> Value {
    match as_reference(v) {
        Some((id, None)) => {
            return Value::String(lookup(id).unwrap_or_else(|| UNKNOWN.to_string()));
        }
        Some((id, Some(pointer))) => {
            return output(id, pointer).unwrap_or_else(|| Value::String(UNKNOWN.to_string()));
        }
        None => {}
    }
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve_with(i, lookup, output))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), resolve_with(v, lookup, output)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Replaces the references to outputs that `output` knows by their values, leaving every other
/// reference as it is: a plan carries the outputs it read of resources it does not change, and
/// apply resolves the rest as their resources come to be.
pub fn fill_outputs(v: &Value, output: &dyn Fn(&str, &str) -> Option<Value>) -> Value {
    if let Some((id, Some(pointer))) = as_reference(v)
        && let Some(known) = output(id, pointer)
    {
        return known;
    }
    match v {
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| fill_outputs(i, output)).collect())
        }
        Value::Object(m) if as_reference(v).is_none() => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill_outputs(v, output)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The output at `pointer` of a resource's recorded or live attributes (outputs are kept among
/// them), when it is there and not null.
pub fn output_of(attrs: &Value, pointer: &str) -> Option<Value> {
    attrs.pointer(pointer).filter(|v| !v.is_null()).cloned()
}

/// Whether a resolved value still holds an unknown.
pub fn has_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s == UNKNOWN,
        Value::Array(items) => items.iter().any(has_unknown),
        Value::Object(m) => m.values().any(has_unknown),
        _ => false,
    }
}

/// A value's text with object keys sorted, whatever order the map keeps: a stable sort key.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Puts attributes in the canonical form the diff compares: set-like lists sorted.
pub fn normalize(kind: Kind, attrs: &Value) -> Value {
    let mut out = attrs.clone();
    if let Value::Object(m) = &mut out {
        for field in kind.schema().set_fields {
            if let Some(Value::Array(items)) = m.get_mut(*field) {
                items.sort_by_key(canonical);
                items.dedup();
            }
        }
    }
    out
}

/// The tags every resource of `env` carries: the user's, then the identity tags.
pub fn tags_for(env: &str, user: &BTreeMap<String, String>, id: &str) -> BTreeMap<String, String> {
    let mut tags = user.clone();
    tags.insert(TAG_ENVIRONMENT.into(), env.into());
    tags.insert(TAG_ID.into(), id.into());
    tags.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refs_are_collected_and_resolved() {
        let r = Resource {
            id: "route-table.public".into(),
            kind: Kind::RouteTable,
            attrs: json!({
                "vpc_id": reference("vpc"),
                "routes": [{"destination": "0.0.0.0/0", "gateway_id": reference("internet-gateway")}],
                "subnet_ids": [reference("subnet.public.a"), reference("subnet.public.b")],
            }),
            depends_on: vec!["extra".into()],
            protected: false,
        };
        let deps: Vec<String> = r.deps().into_iter().collect();
        assert_eq!(
            deps,
            [
                "extra",
                "internet-gateway",
                "subnet.public.a",
                "subnet.public.b",
                "vpc"
            ]
        );
        let lookup = |id: &str| (id != "subnet.public.b").then(|| format!("phys-{id}"));
        let resolved = resolve(&r.attrs, &lookup);
        assert_eq!(resolved["vpc_id"], "phys-vpc");
        assert_eq!(resolved["routes"][0]["gateway_id"], "phys-internet-gateway");
        assert_eq!(resolved["subnet_ids"][1], UNKNOWN);
        assert!(has_unknown(&resolved));
    }

    #[test]
    fn set_fields_compare_in_any_order() {
        let a = json!({"subnet_ids": ["b", "a"], "vpc_id": "v"});
        let b = json!({"subnet_ids": ["a", "b"], "vpc_id": "v"});
        assert_eq!(
            normalize(Kind::RouteTable, &a),
            normalize(Kind::RouteTable, &b)
        );
        // Not a set field on subnets: order is kept.
        assert_ne!(normalize(Kind::Subnet, &a), normalize(Kind::Subnet, &b));
    }

    #[test]
    fn a_typed_reference_is_the_ref_object() {
        let r = Ref::to("vpc");
        assert_eq!(serde_json::to_value(&r).unwrap(), reference("vpc"));
        assert_eq!(serde_json::from_value::<Ref>(reference("vpc")).unwrap(), r);
        let o = Ref::output("load-balancer", "/dns_name");
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v, json!({"ref": "load-balancer", "output": "/dns_name"}));
        assert_eq!(serde_json::from_value::<Ref>(v).unwrap(), o);
    }

    #[test]
    fn an_output_reference_is_an_edge_and_resolves_to_the_output() {
        let attrs = json!({
            "zone_id": "Z1",
            "alias": {"dns_name": {"ref": "load-balancer", "output": "/dns_name"}},
        });
        let r = Resource {
            id: "dns-record.app.example.com".into(),
            kind: Kind::DnsRecord,
            attrs: attrs.clone(),
            depends_on: vec![],
            protected: false,
        };
        assert_eq!(r.deps().into_iter().collect::<Vec<_>>(), ["load-balancer"]);
        let lb = json!({"dns_name": "lb-1.elb.amazonaws.com", "tags": {}});
        let resolved = resolve_with(&attrs, &|_| None, &|id, p| {
            (id == "load-balancer").then(|| output_of(&lb, p)).flatten()
        });
        assert_eq!(resolved["alias"]["dns_name"], "lb-1.elb.amazonaws.com");
        // Not known yet (the load balancer is still to be created): unknown, as a reference is.
        assert_eq!(resolve(&attrs, &|_| None)["alias"]["dns_name"], UNKNOWN);
    }
}
