//! Fargate task definitions, one family per service. Revisions are immutable: a change registers
//! a new revision (created before the old one is deregistered, so the service always has one to
//! run). ECS cannot filter task definitions by tag: each service's family is listed (one call)
//! and its active revision described.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    PortMapping, Secret, TaskDefinitionField, TaskDefinitionStatus, TransportProtocol,
};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::str_attr;
use crate::aws::{Aws, ecs, sdk_error, tag_pairs, tags_value};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct TaskDefinition;

fn invalid(e: impl std::fmt::Display) -> AwsError {
    AwsError::local("ecs", "RegisterTaskDefinition", e.to_string())
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<LiveResource>, AwsError> {
    let out = match aws
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let e = sdk_error("ecs", "DescribeTaskDefinition")(e);
            return if e.code_is("ClientException") {
                Ok(None)
            } else {
                Err(e)
            };
        }
    };
    let Some(td) = out.task_definition() else {
        return Ok(None);
    };
    if td.status() != Some(&TaskDefinitionStatus::Active) {
        return Ok(None);
    }
    let tags = tags_value(
        out.tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?))),
    );
    let container = td.container_definitions().first().map(|c| {
        let options = c.log_configuration().and_then(|l| l.options());
        let option = |k: &str| options.and_then(|o| o.get(k)).cloned();
        let mut environment: Vec<Value> = c
            .environment()
            .iter()
            .map(|kv| json!({ "name": kv.name(), "value": kv.value() }))
            .collect();
        environment.sort_by_key(|v| v["name"].to_string());
        let mut secrets: Vec<Value> = c
            .secrets()
            .iter()
            .map(|s| json!({ "name": s.name(), "value_from": s.value_from() }))
            .collect();
        secrets.sort_by_key(|v| v["name"].to_string());
        json!({
            "name": c.name(),
            "image": c.image(),
            "essential": c.essential().unwrap_or(true),
            "port_mappings": c.port_mappings().iter().map(|p| json!({
                "container_port": p.container_port(),
                "protocol": p.protocol().map(|x| x.as_str()).unwrap_or("tcp"),
            })).collect::<Vec<_>>(),
            "environment": environment,
            "secrets": secrets,
            "log_group": option("awslogs-group"),
            "log_region": option("awslogs-region"),
            "log_stream_prefix": option("awslogs-stream-prefix"),
        })
    });
    Ok(Some(LiveResource {
        kind: Kind::TaskDefinition,
        physical_id: td.task_definition_arn().unwrap_or(arn).to_string(),
        id: tags["infra:id"].as_str().map(str::to_string),
        attrs: json!({
            "family": td.family(),
            "cpu": td.cpu(),
            "memory": td.memory(),
            "network_mode": td.network_mode().map(|m| m.as_str()),
            "requires_compatibilities": td.requires_compatibilities().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "execution_role_arn": td.execution_role_arn(),
            "container": container,
            "tags": tags,
        }),
    }))
}

fn container(c: &Value) -> Result<ContainerDefinition, AwsError> {
    let mut b = ContainerDefinition::builder()
        .name(str_attr(c, "name"))
        .image(str_attr(c, "image"))
        .essential(c["essential"].as_bool().unwrap_or(true));
    for p in c["port_mappings"].as_array().into_iter().flatten() {
        b = b.port_mappings(
            PortMapping::builder()
                .container_port(p["container_port"].as_i64().unwrap_or(0) as i32)
                .protocol(TransportProtocol::from(str_attr(p, "protocol")))
                .build(),
        );
    }
    for e in c["environment"].as_array().into_iter().flatten() {
        b = b.environment(
            KeyValuePair::builder()
                .name(str_attr(e, "name"))
                .value(str_attr(e, "value"))
                .build(),
        );
    }
    for s in c["secrets"].as_array().into_iter().flatten() {
        b = b.secrets(
            Secret::builder()
                .name(str_attr(s, "name"))
                .value_from(str_attr(s, "value_from"))
                .build()
                .map_err(invalid)?,
        );
    }
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", str_attr(c, "log_group"))
        .options("awslogs-region", str_attr(c, "log_region"))
        .options("awslogs-stream-prefix", str_attr(c, "log_stream_prefix"))
        .build()
        .map_err(invalid)?;
    Ok(b.log_configuration(log).build())
}

#[async_trait::async_trait]
impl Adapter for TaskDefinition {
    fn kind(&self) -> Kind {
        Kind::TaskDefinition
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for service in &aws.names.services {
            let family = format!("{}-{service}", aws.environment);
            let arns = aws
                .ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(TaskDefinitionStatus::Active)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(sdk_error("ecs", "ListTaskDefinitions"))?;
            // The prefix also matches longer family names: keep this family's revisions only.
            for arn in arns.iter().filter(|a| a.contains(&format!("/{family}:"))) {
                out.extend(describe(aws, arn).await?);
            }
        }
        Ok(out)
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(describe(aws, id).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let mut req = aws
            .ecs
            .register_task_definition()
            .family(str_attr(attrs, "family"))
            .cpu(str_attr(attrs, "cpu"))
            .memory(str_attr(attrs, "memory"))
            .network_mode(NetworkMode::from(str_attr(attrs, "network_mode")))
            .execution_role_arn(str_attr(attrs, "execution_role_arn"))
            .container_definitions(container(&attrs["container"])?)
            .set_tags(Some(ecs::tags(tag_pairs(attrs))));
        for c in attrs["requires_compatibilities"]
            .as_array()
            .into_iter()
            .flatten()
        {
            req =
                req.requires_compatibilities(Compatibility::from(c.as_str().unwrap_or("FARGATE")));
        }
        let out = req
            .customize()
            .config_override(ecs::not_idempotent())
            .send()
            .await
            .map_err(sdk_error("ecs", "RegisterTaskDefinition"))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .unwrap_or_default();
        read_one(self, aws, arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        // Only tags change in place; everything else is a new revision.
        let have = read_one(self, aws, physical).await?;
        ecs::sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws
            .ecs
            .deregister_task_definition()
            .task_definition(physical)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("ecs", "DeregisterTaskDefinition")(e);
                if e.code_is("ClientException") || e.is_not_found() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
