//! Fargate task definitions, one family per service. Revisions are immutable: a change registers
//! a new revision (created before the old one is retired, so the service always has one to run).
//! The revision a change replaces stays ACTIVE, tagged `infra:previous`, so that `infra
//! rollback` can return to it; the one it kept before is deregistered then, and destroy
//! deregisters both. A kept revision is not part of the environment's graph: reads pass over it.
//! Read without a describe per revision: see `read`.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    PortMapping as EcsPortMapping, Secret, Tag, TaskDefinitionField, TaskDefinitionStatus,
    TransportProtocol,
};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Want};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, ecs, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

/// The tag of the revision a change replaced, kept ACTIVE for `infra rollback`.
pub const TAG_PREVIOUS: &str = "infra:previous";

/// `arn:…:task-definition/FAMILY:REVISION` → (FAMILY, REVISION).
pub fn family_of(arn: &str) -> Option<(&str, u32)> {
    let (family, revision) = arn.rsplit_once("task-definition/")?.1.rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

/// This environment's revisions of one family, by status.
struct Family {
    /// ACTIVE and tagged `infra:previous`, oldest first.
    kept: Vec<String>,
    /// Deregistered earlier and still listed (INACTIVE).
    inactive: Vec<String>,
}

/// This environment's revisions of `family` (ARN → tags, every status still listed): one tag
/// lookup narrowed to the family's logical id, so its size does not grow with the environment.
async fn revisions_of(
    aws: &Aws,
    family: &str,
) -> Result<std::collections::HashMap<String, super::Tags>, AwsError> {
    let id = family
        .strip_prefix(&format!("{}-", aws.environment))
        .map(crate::naming::id::task_definition);
    let found = tags::tagged_with(aws, &["ecs:task-definition"], id.as_deref()).await?;
    Ok(found
        .into_iter()
        .filter(|(arn, _)| family_of(arn).is_some_and(|(f, _)| f == family))
        .collect())
}

async fn family(aws: &Aws, family: &str) -> Result<Family, AwsError> {
    let (tagged, active) = futures::try_join!(revisions_of(aws, family), async {
        aws.ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(TaskDefinitionStatus::Active)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<String>, _>>()
            .await
            .map_err(sdk_error("ecs", "ListTaskDefinitions"))
    })?;
    let revision = |arn: &String| family_of(arn).map(|(_, r)| r);
    let mut kept: Vec<String> = active
        .iter()
        .filter(|arn| family_of(arn).is_some_and(|(f, _)| f == family))
        .filter(|arn| {
            tagged
                .get(*arn)
                .is_some_and(|t| t.contains_key(TAG_PREVIOUS))
        })
        .cloned()
        .collect();
    kept.sort_by_key(revision);
    let mut inactive: Vec<String> = tagged
        .into_keys()
        .filter(|arn| family_of(arn).is_some_and(|(f, _)| f == family))
        .filter(|arn| !active.contains(arn))
        .collect();
    inactive.sort_by_key(revision);
    Ok(Family { kept, inactive })
}

/// The ACTIVE revisions of `family` this environment keeps for rollback (tagged
/// `infra:previous`), oldest first.
pub async fn kept(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    Ok(family(aws, name).await?.kept)
}

/// Deletes deregistered revisions (ten per call), so that the environment's tag lookups list
/// only revisions that can still run: a plan's cost does not grow with the history of deploys.
async fn delete_inactive(aws: &Aws, arns: &[String]) -> Result<(), AwsError> {
    for chunk in arns.chunks(10) {
        aws.ecs
            .delete_task_definitions()
            .set_task_definitions(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(sdk_error("ecs", "DeleteTaskDefinitions"))?;
    }
    Ok(())
}

async fn deregister(aws: &Aws, physical: &str) -> Result<(), AwsError> {
    match aws
        .ecs
        .deregister_task_definition()
        .task_definition(physical)
        .send()
        .await
        .map_err(sdk_error("ecs", "DeregisterTaskDefinition"))
    {
        Err(e) if e.code_is("ClientException") || e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub family: String,
    /// CPU units as ECS writes them ("256").
    pub cpu: String,
    /// MiB as ECS writes them ("512").
    pub memory: String,
    pub network_mode: String,
    pub requires_compatibilities: Vec<String>,
    pub execution_role_arn: R,
    pub container: Container<R>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container<R = Id> {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub port_mappings: Vec<PortMapping>,
    /// Sorted by name.
    pub environment: Vec<NameValue<R>>,
    /// Sorted by name; values are references (ARNs), never resolved secrets.
    pub secrets: Vec<SecretRef<R>>,
    pub log_group: R,
    pub log_region: String,
    pub log_stream_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameValue<R = Id> {
    pub name: String,
    pub value: R,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef<R = Id> {
    pub name: String,
    /// The secret's (or parameter's) ARN.
    pub value_from: R,
    /// One key of a JSON secret (`ARN:KEY::` on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_key: Option<String>,
}

/// A secret reference as ECS takes it (`ARN` or `ARN:KEY::`) split into the secret's ARN and
/// the key of its JSON it names, if it names one (and nothing else: no version).
pub fn split_secret(value_from: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = value_from.split(':').collect();
    match parts.as_slice() {
        [base @ .., key, "", ""]
            if base.len() == 7 && base[2] == "secretsmanager" && !key.is_empty() =>
        {
            (base.join(":"), Some(key.to_string()))
        }
        _ => (value_from.to_string(), None),
    }
}

pub struct TaskDefinition;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = TaskDefinition;
}

fn invalid(e: impl std::fmt::Display) -> AwsError {
    AwsError::local("ecs", "RegisterTaskDefinition", e.to_string())
}

fn container_of(c: &ContainerDefinition) -> Container {
    let options = c.log_configuration().and_then(|l| l.options());
    let option = |k: &str| options.and_then(|o| o.get(k)).cloned().unwrap_or_default();
    let mut environment: Vec<NameValue> = c
        .environment()
        .iter()
        .map(|kv| NameValue {
            name: kv.name().unwrap_or_default().to_string(),
            value: kv.value().unwrap_or_default().to_string(),
        })
        .collect();
    environment.sort_by(|a, b| a.name.cmp(&b.name));
    let mut secrets: Vec<SecretRef> = c
        .secrets()
        .iter()
        .map(|s| {
            let (value_from, json_key) = split_secret(s.value_from());
            SecretRef {
                name: s.name().to_string(),
                value_from,
                json_key,
            }
        })
        .collect();
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    Container {
        name: c.name().unwrap_or_default().to_string(),
        image: c.image().unwrap_or_default().to_string(),
        essential: c.essential().unwrap_or(true),
        port_mappings: c
            .port_mappings()
            .iter()
            .map(|p| PortMapping {
                container_port: p
                    .container_port()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or_default(),
                protocol: p
                    .protocol()
                    .map(|x| x.as_str())
                    .unwrap_or("tcp")
                    .to_string(),
            })
            .collect(),
        environment,
        secrets,
        log_group: option("awslogs-group"),
        log_region: option("awslogs-region"),
        log_stream_prefix: option("awslogs-stream-prefix"),
    }
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<Live<Attrs>>, AwsError> {
    let out = match aws
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(sdk_error("ecs", "DescribeTaskDefinition"))
    {
        Ok(out) => out,
        // ECS answers an unknown revision with a ClientException.
        Err(e) if e.code_is("ClientException") => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(td) = out.task_definition() else {
        return Ok(None);
    };
    if td.status() != Some(&TaskDefinitionStatus::Active) {
        return Ok(None);
    }
    let Some(container) = td.container_definitions().first() else {
        return Ok(None);
    };
    Ok(Some(Live {
        physical_id: td.task_definition_arn().unwrap_or(arn).to_string(),
        attrs: Attrs {
            family: td.family().unwrap_or_default().to_string(),
            cpu: td.cpu().unwrap_or_default().to_string(),
            memory: td.memory().unwrap_or_default().to_string(),
            network_mode: td
                .network_mode()
                .map(|m| m.as_str())
                .unwrap_or_default()
                .to_string(),
            requires_compatibilities: td
                .requires_compatibilities()
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            execution_role_arn: td.execution_role_arn().unwrap_or_default().to_string(),
            container: container_of(container),
        },
        outputs: NoOutputs {},
        tags: tags::from_ecs(out.tags()),
    }))
}

fn container(c: &Container) -> Result<ContainerDefinition, AwsError> {
    let mut b = ContainerDefinition::builder()
        .name(&c.name)
        .image(&c.image)
        .essential(c.essential);
    for p in &c.port_mappings {
        b = b.port_mappings(
            EcsPortMapping::builder()
                .container_port(i32::from(p.container_port))
                .protocol(TransportProtocol::from(p.protocol.as_str()))
                .build(),
        );
    }
    for e in &c.environment {
        b = b.environment(
            KeyValuePair::builder()
                .name(&e.name)
                .value(&e.value)
                .build(),
        );
    }
    for s in &c.secrets {
        b = b.secrets(
            Secret::builder()
                .name(&s.name)
                .value_from(match &s.json_key {
                    Some(key) => format!("{}:{key}::", s.value_from),
                    None => s.value_from.clone(),
                })
                .build()
                .map_err(invalid)?,
        );
    }
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &c.log_group)
        .options("awslogs-region", &c.log_region)
        .options("awslogs-stream-prefix", &c.log_stream_prefix)
        .build()
        .map_err(invalid)?;
    Ok(b.log_configuration(log).build())
}

#[async_trait::async_trait]
impl ResourceKind for TaskDefinition {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    // Task definitions are immutable: any change registers a new revision, before the old one
    // is deregistered.
    const SCHEMA: Schema = Schema {
        replace_on: &[
            "family",
            "cpu",
            "memory",
            "network_mode",
            "requires_compatibilities",
            "execution_role_arn",
            "container",
        ],
        set_fields: &[],
        create_before_destroy: true,
        deep_fields: &[],
    };
    const TAGS: TagApi = TagApi::Ecs;
    const KEEPS_RETIRED: bool = true;
    const IAM: Iam = Iam {
        read: &["ecs:ListTaskDefinitions", "ecs:DescribeTaskDefinition"],
        create: &["ecs:RegisterTaskDefinition"],
        change: &[],
        delete: &["ecs:DeregisterTaskDefinition", "ecs:DeleteTaskDefinitions"],
        scope: IamScope::TagsExcept(
            &["ecs:DeregisterTaskDefinition", "ecs:DeleteTaskDefinitions"],
            "ECS deregisters and deletes task definition revisions without resource-level permissions or tags",
        ),
    };

    /// A revision never changes after it is registered, so the environment's revisions cost no
    /// describe at all when state recorded them: their ARNs and tags come from one tag lookup,
    /// and one listing of active revisions tells which still exist (a deregistered one is gone).
    /// Only revisions found by tag and unknown to state are described.
    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let env = match scope {
            Scope::Environment(env) => env,
            Scope::Ids(ids) => {
                let found = try_join_all(ids.iter().map(|arn| describe(aws, arn))).await?;
                return Ok(found.into_iter().flatten().collect());
            }
        };
        let (tagged, active) =
            futures::try_join!(tags::tagged(aws, &["ecs:task-definition"]), async {
                aws.ecs
                    .list_task_definitions()
                    .status(TaskDefinitionStatus::Active)
                    .max_results(100)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<String>, _>>()
                    .await
                    .map(|arns| arns.into_iter().collect::<std::collections::HashSet<_>>())
                    .map_err(sdk_error("ecs", "ListTaskDefinitions"))
            })?;
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        for (arn, tags) in tagged {
            if !active.contains(&arn) || tags.contains_key(TAG_PREVIOUS) {
                continue;
            }
            let known = env
                .recorded
                .get(&arn)
                .and_then(|v| super::decode::<Attrs>(<Self as super::HasKind>::KIND, &arn, v).ok());
            match known {
                Some(want) => out.push(Live {
                    physical_id: arn,
                    attrs: want.attrs,
                    outputs: NoOutputs {},
                    tags,
                }),
                None => unknown.push(arn),
            }
        }
        let described = try_join_all(unknown.iter().map(|arn| describe(aws, arn))).await?;
        out.extend(described.into_iter().flatten());
        Ok(out)
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let mut req = aws
            .ecs
            .register_task_definition()
            .family(&a.family)
            .cpu(&a.cpu)
            .memory(&a.memory)
            .network_mode(NetworkMode::from(a.network_mode.as_str()))
            .execution_role_arn(&a.execution_role_arn)
            .container_definitions(container(&a.container)?)
            .set_tags(Some(tags::ecs(&want.tags)));
        for c in &a.requires_compatibilities {
            req = req.requires_compatibilities(Compatibility::from(c.as_str()));
        }
        let out = req
            .customize()
            .config_override(ecs::not_idempotent())
            .send()
            .await
            .map_err(sdk_error("ecs", "RegisterTaskDefinition"))?;
        Ok(out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .unwrap_or_default()
            .to_string())
    }

    // Only tags change in place (the shared update shape syncs them); everything else is a new
    // revision.

    /// Deregisters the revision and the one kept for rollback with it, then deletes every
    /// revision of the family this environment made: nothing of it is left. One tag lookup of
    /// the family, whatever its statuses (deregistering twice is harmless).
    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        deregister(aws, physical).await?;
        let Some((name, _)) = family_of(physical) else {
            return Ok(());
        };
        let found = revisions_of(aws, name).await?;
        for (arn, tags) in &found {
            if tags.contains_key(TAG_PREVIOUS) && arn != physical {
                deregister(aws, arn).await?;
            }
        }
        let mut gone: Vec<String> = found.into_keys().collect();
        if !gone.iter().any(|a| a == physical) {
            gone.push(physical.to_string());
        }
        gone.sort();
        delete_inactive(aws, &gone).await
    }

    /// A replaced revision stays ACTIVE for `infra rollback`, tagged `infra:previous`; the
    /// revision kept before it is deregistered.
    async fn retire(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let Some((family, _)) = family_of(physical) else {
            return deregister(aws, physical).await;
        };
        match aws
            .ecs
            .tag_resource()
            .resource_arn(physical)
            .tags(Tag::builder().key(TAG_PREVIOUS).value("true").build())
            .send()
            .await
            .map_err(sdk_error("ecs", "TagResource"))
        {
            // Gone already: nothing to keep.
            Err(e) if e.code_is("ClientException") || e.is_not_found() => return Ok(()),
            other => other?,
        };
        // Revisions deregistered by an earlier change go now: no deployment can roll back to
        // them any more (ECS rolls back to the revision just replaced, which stays ACTIVE).
        let found = self::family(aws, family).await?;
        delete_inactive(aws, &found.inactive).await?;
        for arn in found.kept.iter().filter(|arn| *arn != physical) {
            deregister(aws, arn).await?;
        }
        Ok(())
    }
}
