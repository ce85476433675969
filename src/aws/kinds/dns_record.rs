//! Route 53 records in the domain's hosted zone: the CNAMEs that validate the certificate and
//! the alias records that point each name at the load balancer.
//!
//! Records carry no tags, so what is ours is what state recorded (physical id
//! `ZONE/NAME/TYPE`), read back one lookup each. A record infra would write that already holds
//! exactly that value is taken over, not written again; one of the same name and type (or a
//! CNAME at the name) holding anything else belongs to someone else: the plan refuses it
//! (`taken`) and create refuses it again at the moment of writing, so it is never overwritten.

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Taken, Want, identity_tags};
use crate::aws::tags::TagApi;
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::{Schema, TAG_ID, UNKNOWN};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub zone_id: String,
    /// Fully qualified, lower case, with the trailing dot.
    pub name: R,
    #[serde(rename = "type")]
    pub record_type: String,
    /// Plain records: the time to live and the values (a set). Always written, null or empty
    /// included, so that a plain record where an alias should be is a difference.
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub values: Vec<R>,
    /// Alias records: what they point at.
    #[serde(default)]
    pub alias: Option<Alias<R>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias<R = Id> {
    /// Lower case, without the trailing dot.
    pub dns_name: R,
    pub hosted_zone_id: R,
    pub evaluate_target_health: bool,
}

pub struct DnsRecord;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = DnsRecord;
}

/// `ZONE/NAME/TYPE`.
pub fn physical_id(zone_id: &str, name: &str, record_type: &str) -> String {
    format!("{zone_id}/{name}/{record_type}")
}

fn parse(physical: &str) -> Option<(&str, &str, &str)> {
    let (zone, rest) = physical.split_once('/')?;
    let (name, record_type) = rest.rsplit_once('/')?;
    Some((zone, name, record_type))
}

/// The logical id of the record `physical`, from its name: ACM names the record that proves
/// `x` (and `*.x`) `_<token>.x.`; any other is the alias record of its name.
fn id_of(physical: &str) -> Option<String> {
    let (_, name, record_type) = parse(physical)?;
    let name = name.trim_end_matches('.');
    Some(match (record_type, name.split_once('.')) {
        ("CNAME", Some((token, domain))) if token.starts_with('_') => {
            crate::naming::id::validation_record(domain)
        }
        _ => crate::naming::id::dns_record(name),
    })
}

/// A name as Route 53 answers it (`\052` for `*`, trailing dot) in the form infra keeps.
fn name_of(set: &ResourceRecordSet) -> String {
    let n = set.name().replace("\\052", "*").to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

fn attrs_of(zone_id: &str, set: &ResourceRecordSet) -> Attrs {
    let mut values: Vec<String> = set
        .resource_records()
        .iter()
        .map(|r| r.value().to_string())
        .collect();
    values.sort();
    Attrs {
        zone_id: zone_id.to_string(),
        name: name_of(set),
        record_type: set.r#type().as_str().to_string(),
        ttl: set.alias_target().is_none().then(|| set.ttl()).flatten(),
        values,
        alias: set.alias_target().map(|a| Alias {
            dns_name: a.dns_name().trim_end_matches('.').to_ascii_lowercase(),
            hosted_zone_id: a.hosted_zone_id().to_string(),
            evaluate_target_health: a.evaluate_target_health(),
        }),
    }
}

/// The record of `name` and `record_type` in the zone, if there is one.
async fn lookup(
    aws: &Aws,
    zone_id: &str,
    name: &str,
    record_type: &str,
) -> Result<Option<ResourceRecordSet>, AwsError> {
    let out = aws
        .route53()
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(name)
        .start_record_type(RrType::from(record_type))
        .max_items(1)
        .send()
        .await
        .map_err(sdk_error("route53", "ListResourceRecordSets"))?;
    Ok(out
        .resource_record_sets
        .into_iter()
        .find(|s| name_of(s) == name && s.r#type().as_str() == record_type))
}

/// The record state recorded as `physical`, as it is now.
async fn read_one(aws: &Aws, physical: &str, id: &str) -> Result<Option<Live<Attrs>>, AwsError> {
    let Some((zone, name, record_type)) = parse(physical) else {
        return Ok(None);
    };
    Ok(lookup(aws, zone, name, record_type).await?.map(|set| Live {
        physical_id: physical.to_string(),
        attrs: attrs_of(zone, &set),
        outputs: NoOutputs {},
        tags: identity_tags(aws, id),
    }))
}

/// Whether a live record holds exactly what `want` writes (alias names compared as DNS does,
/// without regard to case).
fn same(have: &Attrs, want: &Attrs) -> bool {
    let mut values = want.values.clone();
    values.sort();
    let alias = match (&have.alias, &want.alias) {
        (None, None) => true,
        (Some(h), Some(w)) => {
            h.dns_name.eq_ignore_ascii_case(&w.dns_name)
                && h.hosted_zone_id == w.hosted_zone_id
                && h.evaluate_target_health == w.evaluate_target_health
        }
        _ => false,
    };
    alias && have.values == values && (want.alias.is_some() || have.ttl == want.ttl)
}

/// What a write of `want` would find at its name.
enum Found {
    Nothing,
    /// A record that holds exactly what `want` writes.
    Same,
    /// A record of its name and type holding something else, or a CNAME at its name (a name
    /// with a CNAME can have no other record): someone else's.
    Foreign(Attrs),
}

async fn found(aws: &Aws, want: &Attrs) -> Result<Found, AwsError> {
    let (same_type, cname) = futures::try_join!(
        lookup(aws, &want.zone_id, &want.name, &want.record_type),
        async {
            if want.record_type == "CNAME" {
                Ok(None)
            } else {
                lookup(aws, &want.zone_id, &want.name, "CNAME").await
            }
        }
    )?;
    if let Some(c) = cname {
        return Ok(Found::Foreign(attrs_of(&want.zone_id, &c)));
    }
    Ok(match same_type.map(|s| attrs_of(&want.zone_id, &s)) {
        None => Found::Nothing,
        Some(have) if same(&have, want) => Found::Same,
        Some(have) => Found::Foreign(have),
    })
}

fn record_set(a: &Attrs) -> Result<ResourceRecordSet, AwsError> {
    let bad = |e: aws_smithy_types::error::operation::BuildError| {
        AwsError::local("route53", "ChangeResourceRecordSets", e.to_string())
    };
    let mut set = ResourceRecordSet::builder()
        .name(&a.name)
        .r#type(RrType::from(a.record_type.as_str()));
    match &a.alias {
        Some(alias) => {
            set = set.alias_target(
                AliasTarget::builder()
                    .dns_name(&alias.dns_name)
                    .hosted_zone_id(&alias.hosted_zone_id)
                    .evaluate_target_health(alias.evaluate_target_health)
                    .build()
                    .map_err(bad)?,
            );
        }
        None => {
            set = set.set_ttl(a.ttl);
            for v in &a.values {
                set =
                    set.resource_records(ResourceRecord::builder().value(v).build().map_err(bad)?);
            }
        }
    }
    set.build().map_err(bad)
}

async fn write(
    aws: &Aws,
    zone_id: &str,
    action: ChangeAction,
    set: ResourceRecordSet,
) -> Result<(), AwsError> {
    let bad = |e: aws_smithy_types::error::operation::BuildError| {
        AwsError::local("route53", "ChangeResourceRecordSets", e.to_string())
    };
    let change = Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(bad)?;
    aws.route53()
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(change)
                .build()
                .map_err(bad)?,
        )
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("route53", "ChangeResourceRecordSets"))
}

fn foreign_error(want: &Attrs, have: &Attrs) -> AwsError {
    let value = match &have.alias {
        Some(a) => format!("an alias to {}", a.dns_name),
        None => have.values.join(", "),
    };
    AwsError::local(
        "route53",
        "ChangeResourceRecordSets",
        format!(
            "zone {} already has a {} record {} ({value}) that infra did not write: it is left alone; remove it, or choose another name in the file",
            want.zone_id, have.record_type, want.name
        ),
    )
}

#[async_trait::async_trait]
impl ResourceKind for DnsRecord {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema {
        replace_on: &["zone_id", "name", "type"],
        set_fields: &["values"],
        create_before_destroy: false,
        deep_fields: &[],
    };
    const TAGS: TagApi = TagApi::None;
    const IAM: Iam = Iam {
        read: &[
            "route53:ListResourceRecordSets",
            "route53:ListHostedZonesByName",
        ],
        create: &["route53:ChangeResourceRecordSets"],
        change: &["route53:ChangeResourceRecordSets"],
        delete: &["route53:ChangeResourceRecordSets"],
        scope: IamScope::Arns(&["arn:{partition}:route53:::hostedzone/*"]),
    };

    /// Records carry no tags: those state recorded are looked up, one call each, all at once.
    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let known: Vec<(String, String)> = match scope {
            Scope::Environment(env) => env
                .recorded
                .iter()
                .map(|(p, a)| {
                    let id = a["tags"][TAG_ID].as_str().unwrap_or(p).to_string();
                    (p.clone(), id)
                })
                .collect(),
            Scope::Ids(ids) => ids
                .iter()
                .map(|p| (p.clone(), id_of(p).unwrap_or_default()))
                .collect(),
        };
        let mut out: Vec<Live<Attrs>> = try_join_all(
            known
                .iter()
                .map(|(p, id)| async move { read_one(aws, p, id).await }),
        )
        .await?
        .into_iter()
        .flatten()
        .collect();
        // DNS names know no case: keep the one state recorded when only case differs.
        if let Scope::Environment(env) = scope {
            for l in &mut out {
                let recorded = env.recorded.get(&l.physical_id);
                if let (Some(a), Some(r)) = (
                    l.attrs.alias.as_mut(),
                    recorded.and_then(|r| r["alias"]["dns_name"].as_str()),
                ) && a.dns_name.eq_ignore_ascii_case(r)
                {
                    a.dns_name = r.to_string();
                }
            }
        }
        Ok(out)
    }

    /// Writes the record, unless it already holds exactly this (then it is taken over as it
    /// is); a record of someone else's in the way is an error, never overwritten.
    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        match found(aws, a).await? {
            Found::Foreign(have) => return Err(foreign_error(a, &have)),
            Found::Same => {}
            Found::Nothing => {
                let written = write(aws, &a.zone_id, ChangeAction::Create, record_set(a)?).await;
                // A retried CREATE whose first answer was lost finds its own record there.
                if let Err(e) = written
                    && !matches!(found(aws, a).await?, Found::Same)
                {
                    return Err(e);
                }
            }
        }
        Ok(physical_id(&a.zone_id, &a.name, &a.record_type))
    }

    /// A record of ours changed outside infra is brought back.
    async fn change(
        &self,
        aws: &Aws,
        _have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        write(
            aws,
            &want.attrs.zone_id,
            ChangeAction::Upsert,
            record_set(&want.attrs)?,
        )
        .await
    }

    /// Deletes the record as it is now (Route 53 deletes only an exact match, so a record
    /// changed in between is refused rather than lost); gone already is success.
    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let Some((zone, name, record_type)) = parse(physical) else {
            return Ok(());
        };
        let Some(set) = lookup(aws, zone, name, record_type).await? else {
            return Ok(());
        };
        write(aws, zone, ChangeAction::Delete, set).await
    }

    /// A record the plan would write where another one already stands.
    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let known = wants
            .iter()
            .filter(|w| !w.attrs.name.contains(UNKNOWN) && !w.attrs.zone_id.contains(UNKNOWN));
        let found = try_join_all(known.map(|w| async move {
            Ok::<_, AwsError>(match found(aws, &w.attrs).await? {
                Found::Foreign(have) => Some(Taken::new(
                    &w.id,
                    &format!("{} record {}", have.record_type, w.attrs.name),
                    &physical_id(&w.attrs.zone_id, &w.attrs.name, &have.record_type),
                )),
                Found::Nothing | Found::Same => None,
            })
        }))
        .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

/// The id of the public hosted zone named `zone`; `Err(message)` when there is none (or only
/// a private one), saying how to get one.
pub async fn hosted_zone(aws: &Aws, zone: &str) -> Result<Result<String, String>, AwsError> {
    let fqdn = format!("{zone}.");
    let out = aws
        .route53()
        .list_hosted_zones_by_name()
        .dns_name(&fqdn)
        .max_items(100)
        .send()
        .await
        .map_err(sdk_error("route53", "ListHostedZonesByName"))?;
    let named: Vec<_> = out
        .hosted_zones()
        .iter()
        .filter(|z| z.name().eq_ignore_ascii_case(&fqdn))
        .collect();
    let public = named
        .iter()
        .find(|z| !z.config().is_some_and(|c| c.private_zone()));
    Ok(match (public, named.is_empty()) {
        (Some(z), _) => Ok(z.id().trim_start_matches("/hostedzone/").to_string()),
        (None, false) => Err(format!(
            "the hosted zone {zone} in Route 53 is private: the certificate's validation records and the names must be public; create a public hosted zone {zone} (`aws route53 create-hosted-zone --name {zone} --caller-reference $(date +%s)`) and delegate the domain to its name servers"
        )),
        (None, true) => Err(format!(
            "there is no hosted zone {zone} in Route 53: create it (`aws route53 create-hosted-zone --name {zone} --caller-reference $(date +%s)`) and delegate the domain to its name servers at the registrar or in the parent zone, or correct `load_balancer.domain.zone`"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_known_by_its_name() {
        assert_eq!(
            id_of("Z1/_3f2a.app.example.com./CNAME").as_deref(),
            Some("dns-record.validation.app.example.com")
        );
        assert_eq!(
            id_of("Z1/app.example.com./A").as_deref(),
            Some("dns-record.app.example.com")
        );
        assert_eq!(
            id_of("Z1/*.example.com./A").as_deref(),
            Some("dns-record.*.example.com")
        );
        assert_eq!(id_of("nonsense"), None);
        assert_eq!(
            physical_id("Z1", "app.example.com.", "A"),
            "Z1/app.example.com./A"
        );
    }
}
