//! ECS Fargate services: desired count, private subnets without public IPs, the service's
//! security group, and a rolling deployment with min/max percent and the circuit breaker. Read
//! with one ListServices and DescribeServices (ten at a time) in the environment's cluster.
//!
//! Some emulators leave `deploymentConfiguration` out of DescribeServices (AWS always returns
//! it); then the attribute is left out of the live state, and the plan compares the file with the
//! last applied value instead of inventing a difference.

use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    LaunchType, NetworkConfiguration, Service as EcsService, ServiceField,
};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::str_attr;
use crate::aws::{Aws, ecs, sdk_error, tag_pairs, tags_value};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Service;

/// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME` → CLUSTER.
fn cluster_of(arn: &str) -> Option<&str> {
    let path = arn.split(':').nth(5)?;
    let mut parts = path.split('/');
    (parts.next()? == "service").then_some(())?;
    let cluster = parts.next()?;
    parts.next().map(|_| cluster)
}

fn live(s: &EcsService) -> Option<LiveResource> {
    if s.status() != Some("ACTIVE") {
        return None;
    }
    let tags = tags_value(s.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))));
    let vpc = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let mut attrs = json!({
        "name": s.service_name(),
        "cluster": s.cluster_arn(),
        "task_definition": s.task_definition(),
        "desired_count": s.desired_count(),
        "launch_type": s.launch_type().map(|l| l.as_str()),
        "subnets": vpc.map(|v| v.subnets().to_vec()).unwrap_or_default(),
        "security_groups": vpc.map(|v| v.security_groups().to_vec()).unwrap_or_default(),
        "assign_public_ip": vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Enabled),
        "load_balancers": s.load_balancers().iter().map(|l| json!({
            "target_group_arn": l.target_group_arn(),
            "container_name": l.container_name(),
            "container_port": l.container_port(),
        })).collect::<Vec<_>>(),
        "tags": tags,
    });
    if let Some(d) = s.deployment_configuration() {
        let cb = d.deployment_circuit_breaker();
        let breaker = match cb.map(|c| (c.enable(), c.rollback())) {
            Some((true, true)) => "rollback",
            Some((true, false)) => "on",
            _ => "off",
        };
        attrs["deployment"] = json!({
            "min_healthy_percent": d.minimum_healthy_percent(),
            "max_percent": d.maximum_percent(),
            "circuit_breaker": breaker,
        });
    }
    Some(LiveResource {
        kind: Kind::Service,
        physical_id: s.service_arn()?.to_string(),
        id: attrs["tags"]["infra:id"].as_str().map(str::to_string),
        attrs,
    })
}

async fn describe(
    aws: &Aws,
    cluster: &str,
    services: &[String],
) -> Result<Vec<LiveResource>, AwsError> {
    let mut out = Vec::new();
    for chunk in services.chunks(10) {
        let described = aws
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .map_err(sdk_error("ecs", "DescribeServices"))?;
        out.extend(described.services().iter().filter_map(live));
    }
    Ok(out)
}

fn network(attrs: &Value) -> Result<NetworkConfiguration, AwsError> {
    let strings = |k: &str| -> Vec<String> {
        attrs[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let public = if attrs["assign_public_ip"].as_bool() == Some(true) {
        AssignPublicIp::Enabled
    } else {
        AssignPublicIp::Disabled
    };
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(strings("subnets")))
        .set_security_groups(Some(strings("security_groups")))
        .assign_public_ip(public)
        .build()
        .map_err(|e| AwsError::local("ecs", "CreateService", e.to_string()))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn deployment(attrs: &Value) -> DeploymentConfiguration {
    let d = &attrs["deployment"];
    let breaker = str_attr(d, "circuit_breaker");
    DeploymentConfiguration::builder()
        .minimum_healthy_percent(d["min_healthy_percent"].as_i64().unwrap_or(100) as i32)
        .maximum_percent(d["max_percent"].as_i64().unwrap_or(200) as i32)
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(breaker != "off")
                .rollback(breaker == "rollback")
                .build(),
        )
        .build()
}

fn load_balancers(attrs: &Value) -> Vec<aws_sdk_ecs::types::LoadBalancer> {
    attrs["load_balancers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            aws_sdk_ecs::types::LoadBalancer::builder()
                .target_group_arn(str_attr(l, "target_group_arn"))
                .container_name(str_attr(l, "container_name"))
                .container_port(l["container_port"].as_i64().unwrap_or(0) as i32)
                .build()
        })
        .collect()
}

#[async_trait::async_trait]
impl Adapter for Service {
    fn kind(&self) -> Kind {
        Kind::Service
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        let Some(cluster) = &aws.names.cluster else {
            return Ok(Vec::new());
        };
        let arns = match aws
            .ecs
            .list_services()
            .cluster(cluster)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
        {
            Ok(arns) => arns,
            Err(e) => {
                let e = sdk_error("ecs", "ListServices")(e);
                return if e.code_is("ClusterNotFoundException") {
                    Ok(Vec::new())
                } else {
                    Err(e)
                };
            }
        };
        describe(aws, cluster, &arns).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            let Some(cluster) = cluster_of(id) else {
                continue;
            };
            match describe(aws, cluster, std::slice::from_ref(id)).await {
                Ok(found) => out.extend(found),
                Err(e) if e.code_is("ClusterNotFoundException") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ecs
            .create_service()
            .cluster(str_attr(attrs, "cluster"))
            .service_name(str_attr(attrs, "name"))
            .task_definition(str_attr(attrs, "task_definition"))
            .desired_count(attrs["desired_count"].as_i64().unwrap_or(1) as i32)
            .launch_type(LaunchType::from(str_attr(attrs, "launch_type")))
            .network_configuration(network(attrs)?)
            .deployment_configuration(deployment(attrs))
            .set_load_balancers(Some(load_balancers(attrs)))
            .set_tags(Some(ecs::tags(tag_pairs(attrs))))
            .propagate_tags(aws_sdk_ecs::types::PropagateTags::Service)
            .enable_ecs_managed_tags(true)
            .send()
            .await
            .map_err(sdk_error("ecs", "CreateService"))?;
        let arn = out
            .service()
            .and_then(|s| s.service_arn())
            .unwrap_or_default();
        read_one(self, aws, arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        let cluster = cluster_of(physical).unwrap_or_default();
        let moved = have.attrs["load_balancers"] != attrs["load_balancers"];
        aws.ecs
            .update_service()
            .set_load_balancers(moved.then(|| load_balancers(attrs)))
            .cluster(cluster)
            .service(physical)
            .task_definition(str_attr(attrs, "task_definition"))
            .desired_count(attrs["desired_count"].as_i64().unwrap_or(1) as i32)
            .network_configuration(network(attrs)?)
            .deployment_configuration(deployment(attrs))
            .send()
            .await
            .map_err(sdk_error("ecs", "UpdateService"))?;
        ecs::sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let Some(cluster) = cluster_of(physical) else {
            return Ok(());
        };
        match aws
            .ecs
            .delete_service()
            .cluster(cluster)
            .service(physical)
            .force(true)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = sdk_error("ecs", "DeleteService")(e);
                if e.code_is("ServiceNotFoundException") || e.code_is("ClusterNotFoundException") {
                    return Ok(());
                }
                return Err(e);
            }
        }
        // Draining ends when the service is INACTIVE; the cluster cannot go before that.
        let mut delay = Duration::from_millis(500);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15 * 60);
        loop {
            let found = describe(aws, cluster, &[physical.to_string()]).await;
            match found {
                Ok(v) if v.is_empty() => return Ok(()),
                Err(e) if e.code_is("ClusterNotFoundException") => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) if tokio::time::Instant::now() > deadline => {
                    return Err(AwsError::local(
                        "ecs",
                        "DescribeServices",
                        format!("service {physical} is still draining after 15 minutes"),
                    ));
                }
                Ok(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_from_service_arn() {
        assert_eq!(
            super::cluster_of("arn:aws:ecs:us-east-1:123456789012:service/stage/web"),
            Some("stage")
        );
        assert_eq!(
            super::cluster_of("arn:aws:ecs:us-east-1:123456789012:service/web"),
            None
        );
    }
}
