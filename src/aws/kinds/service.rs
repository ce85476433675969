//! ECS Fargate services: desired count, private subnets without public IPs, the service's
//! security group, and the deployment: rolling (min/max percent, the circuit breaker), or
//! ECS-native blue/green, canary or linear (strategy, bake times, traffic percentages, and the
//! load balancer's advanced configuration: the second target group, the production and test
//! listener rules, and the role ECS shifts traffic with). Read with DescribeServices (ten at a
//! time) by the names the file and state give, beside one ListServices of the cluster.
//!
//! Some emulators leave `deploymentConfiguration` out of DescribeServices (AWS always returns
//! it); then the attribute is left out of the live state, and the plan compares the file with the
//! last applied value instead of inventing a difference.

use std::time::Duration;

use aws_sdk_ecs::types::{
    AdvancedConfiguration, AssignPublicIp, AwsVpcConfiguration, CanaryConfiguration,
    DeploymentAlarms, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentController,
    DeploymentControllerType, DeploymentStrategy, LaunchType, LinearConfiguration,
    NetworkConfiguration, Service as EcsService, ServiceField,
};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Taken, Want, absent_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::config::{CircuitBreaker, Strategy};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    pub cluster: R,
    pub task_definition: R,
    /// Kept at this count; `None` when Application Auto Scaling owns the count (then AWS's
    /// value is never compared nor sent after creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    /// The count a service owned by autoscaling starts with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_count: Option<u32>,
    pub launch_type: String,
    pub subnets: Vec<R>,
    pub security_groups: Vec<R>,
    pub assign_public_ip: bool,
    pub load_balancers: Vec<LoadBalancerLink<R>>,
    /// Always sent; `None` only when read from an emulator that does not return it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// Blue/green, canary, linear: what ECS shifts traffic with (on the service's one load
    /// balancer link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<Advanced<R>>,
}

/// `loadBalancers[].advancedConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advanced<R = Id> {
    /// The second ("green") target group.
    pub alternate_target_group_arn: R,
    pub production_listener_rule: R,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_rule: Option<R>,
    pub role_arn: R,
}

/// The target group a service registers its tasks in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerLink<R = Id> {
    pub target_group_arn: R,
    pub container_name: String,
    pub container_port: u16,
}

/// How ECS deploys a new revision. Rolling (the default, left out of the JSON so that
/// recorded rolling services read the same) uses the percents and the circuit breaker; the
/// others the bake times and traffic percentages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    pub circuit_breaker: CircuitBreaker,
    #[serde(default, skip_serializing_if = "Strategy::is_rolling")]
    pub strategy: Strategy,
    /// Minutes both revisions run after production traffic moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_percent: Option<f64>,
    /// Minutes between traffic shifts (canary, linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_bake_minutes: Option<u32>,
    /// CloudWatch alarms (by name) that roll a deployment back when they fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback_alarms: Vec<String>,
}

pub struct Service;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Service;
}

/// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME` → CLUSTER.
fn cluster_of(arn: &str) -> Option<&str> {
    let path = arn.split(':').nth(5)?;
    let mut parts = path.split('/');
    (parts.next()? == "service").then_some(())?;
    let cluster = parts.next()?;
    parts.next().map(|_| cluster)
}

fn live(s: &EcsService) -> Option<Live<Attrs>> {
    if s.status() != Some("ACTIVE") {
        return None;
    }
    let vpc = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let deployment = s.deployment_configuration().map(|d| {
        let cb = d.deployment_circuit_breaker();
        let strategy = match d.strategy() {
            Some(DeploymentStrategy::BlueGreen) => Strategy::BlueGreen,
            Some(DeploymentStrategy::Canary) => Strategy::Canary,
            Some(DeploymentStrategy::Linear) => Strategy::Linear,
            _ => Strategy::Rolling,
        };
        let canary = d.canary_configuration();
        let linear = d.linear_configuration();
        let minutes = |m: Option<i32>| m.and_then(|m| u32::try_from(m).ok());
        Deployment {
            strategy,
            bake_minutes: minutes(d.bake_time_in_minutes()).filter(|_| !strategy.is_rolling()),
            canary_percent: canary.and_then(|c| c.canary_percent()),
            step_percent: linear.and_then(|l| l.step_percent()),
            step_bake_minutes: minutes(
                canary
                    .and_then(|c| c.canary_bake_time_in_minutes())
                    .or_else(|| linear.and_then(|l| l.step_bake_time_in_minutes())),
            ),
            min_healthy_percent: d
                .minimum_healthy_percent()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_default(),
            max_percent: d
                .maximum_percent()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_default(),
            circuit_breaker: match cb.map(|c| (c.enable(), c.rollback())) {
                Some((true, true)) => CircuitBreaker::Rollback,
                Some((true, false)) => CircuitBreaker::On,
                _ => CircuitBreaker::Off,
            },
            rollback_alarms: d
                .alarms()
                .filter(|a| a.enable() && a.rollback())
                .map(|a| {
                    let mut names = a.alarm_names().to_vec();
                    names.sort();
                    names
                })
                .unwrap_or_default(),
        }
    });
    let advanced = s
        .load_balancers()
        .first()
        .and_then(|l| l.advanced_configuration())
        .map(|a| Advanced {
            alternate_target_group_arn: a
                .alternate_target_group_arn()
                .unwrap_or_default()
                .to_string(),
            production_listener_rule: a.production_listener_rule().unwrap_or_default().to_string(),
            test_listener_rule: a.test_listener_rule().map(str::to_string),
            role_arn: a.role_arn().unwrap_or_default().to_string(),
        });
    Some(Live {
        physical_id: s.service_arn()?.to_string(),
        attrs: Attrs {
            name: s.service_name().unwrap_or_default().to_string(),
            cluster: s.cluster_arn().unwrap_or_default().to_string(),
            task_definition: s.task_definition().unwrap_or_default().to_string(),
            desired_count: u32::try_from(s.desired_count()).ok(),
            initial_count: None,
            launch_type: s
                .launch_type()
                .map(|l| l.as_str())
                .unwrap_or_default()
                .to_string(),
            subnets: vpc.map(|v| v.subnets().to_vec()).unwrap_or_default(),
            security_groups: vpc
                .map(|v| v.security_groups().to_vec())
                .unwrap_or_default(),
            assign_public_ip: vpc.and_then(|v| v.assign_public_ip())
                == Some(&AssignPublicIp::Enabled),
            load_balancers: s
                .load_balancers()
                .iter()
                .map(|l| LoadBalancerLink {
                    target_group_arn: l.target_group_arn().unwrap_or_default().to_string(),
                    container_name: l.container_name().unwrap_or_default().to_string(),
                    container_port: l
                        .container_port()
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or_default(),
                })
                .collect(),
            deployment,
            advanced,
        },
        outputs: NoOutputs {},
        tags: tags::from_ecs(s.tags()),
    })
}

/// Services by name or ARN: DescribeServices takes ten at a time; the calls run in parallel.
async fn describe(
    aws: &Aws,
    cluster: &str,
    services: &[String],
) -> Result<Vec<Live<Attrs>>, AwsError> {
    Ok(described(aws, cluster, services)
        .await?
        .iter()
        .filter_map(live)
        .collect())
}

/// Services by name or ARN, whatever their status: ten per DescribeServices, all in parallel.
async fn described(
    aws: &Aws,
    cluster: &str,
    services: &[String],
) -> Result<Vec<EcsService>, AwsError> {
    let chunks = services.chunks(10).map(|chunk| async move {
        aws.ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .map(|out| out.services().to_vec())
            .map_err(sdk_error("ecs", "DescribeServices"))
    });
    Ok(futures::future::try_join_all(chunks)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// The environment's services: those the file or state names are described at once, beside
/// the listing of the cluster's services; a listed one neither names (left by an interrupted
/// apply, or not ours) is described after it. Ownership is decided by tags either way.
async fn read_environment(
    aws: &Aws,
    cluster: &str,
    recorded: &super::Recorded,
) -> Result<Vec<Live<Attrs>>, AwsError> {
    let mut known: Vec<String> = aws.names.services.clone();
    known.extend(
        recorded
            .keys()
            .filter(|arn| cluster_of(arn) == Some(cluster))
            .filter_map(|arn| arn.rsplit('/').next().map(str::to_string)),
    );
    known.sort();
    known.dedup();
    let (listed, mut found) = futures::try_join!(
        async {
            absent_ok(
                aws.ecs
                    .list_services()
                    .cluster(cluster)
                    .max_results(100)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(sdk_error("ecs", "ListServices")),
            )
        },
        async { absent_ok(described(aws, cluster, &known).await) },
    )?;
    let rest: Vec<String> = listed
        .into_iter()
        .filter(|arn| !found.iter().any(|s| s.service_arn() == Some(arn.as_str())))
        .collect();
    found.extend(described(aws, cluster, &rest).await?);
    Ok(found
        .iter()
        .filter_map(live)
        .map(|l| oriented(l, recorded))
        .collect())
}

/// Runs a CreateService/UpdateService call; while IAM has not yet propagated a role created
/// moments before (the infrastructure role ECS shifts traffic with), ECS refuses it as an
/// invalid parameter, and nothing was changed: the call is tried again for up to a minute.
async fn while_role_propagates<T, F, Fut>(a: &Attrs, call: F) -> Result<T, AwsError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let mut delay = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(e)
                if a.advanced.is_some()
                    && e.code_is("InvalidParameterException")
                    && e.message.to_ascii_lowercase().contains("role")
                    && tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::info!("{e}: waiting {delay:?} for IAM to propagate the role");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(15));
            }
            other => return other,
        }
    }
}

fn network(a: &Attrs) -> Result<NetworkConfiguration, AwsError> {
    let public = if a.assign_public_ip {
        AssignPublicIp::Enabled
    } else {
        AssignPublicIp::Disabled
    };
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(a.subnets.clone()))
        .set_security_groups(Some(a.security_groups.clone()))
        .assign_public_ip(public)
        .build()
        .map_err(|e| AwsError::local("ecs", "CreateService", e.to_string()))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn deployment(a: &Attrs, id: &str) -> Result<DeploymentConfiguration, AwsError> {
    let d = a.deployment.as_ref().ok_or_else(|| {
        AwsError::local(
            "infra",
            "decode attributes",
            format!("service `{id}`: missing field `deployment`"),
        )
    })?;
    let b = DeploymentConfiguration::builder()
        .minimum_healthy_percent(d.min_healthy_percent as i32)
        .maximum_percent(d.max_percent as i32)
        .strategy(DeploymentStrategy::from(d.strategy.ecs_name()));
    let minutes = |m: Option<u32>| m.map(|m| m as i32);
    // Sent always, so that removing the alarms turns them off.
    let b = b.alarms(
        DeploymentAlarms::builder()
            .set_alarm_names(Some(d.rollback_alarms.clone()))
            .enable(!d.rollback_alarms.is_empty())
            .rollback(!d.rollback_alarms.is_empty())
            .build()
            .map_err(|e| AwsError::local("ecs", "CreateService", e.to_string()))?,
    );
    Ok(match d.strategy {
        // The circuit breaker is a rolling deployment's; the others roll back on their own.
        Strategy::Rolling => b.deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(d.circuit_breaker != CircuitBreaker::Off)
                .rollback(d.circuit_breaker == CircuitBreaker::Rollback)
                .build(),
        ),
        Strategy::BlueGreen => b.set_bake_time_in_minutes(minutes(d.bake_minutes)),
        Strategy::Canary => b
            .set_bake_time_in_minutes(minutes(d.bake_minutes))
            .canary_configuration(
                CanaryConfiguration::builder()
                    .set_canary_percent(d.canary_percent)
                    .set_canary_bake_time_in_minutes(minutes(d.step_bake_minutes))
                    .build(),
            ),
        Strategy::Linear => b
            .set_bake_time_in_minutes(minutes(d.bake_minutes))
            .linear_configuration(
                LinearConfiguration::builder()
                    .set_step_percent(d.step_percent)
                    .set_step_bake_time_in_minutes(minutes(d.step_bake_minutes))
                    .build(),
            ),
    }
    .build())
}

fn load_balancers(a: &Attrs) -> Vec<aws_sdk_ecs::types::LoadBalancer> {
    a.load_balancers
        .iter()
        .map(|l| {
            aws_sdk_ecs::types::LoadBalancer::builder()
                .target_group_arn(&l.target_group_arn)
                .container_name(&l.container_name)
                .container_port(i32::from(l.container_port))
                .set_advanced_configuration(a.advanced.as_ref().map(|adv| {
                    AdvancedConfiguration::builder()
                        .alternate_target_group_arn(&adv.alternate_target_group_arn)
                        .production_listener_rule(&adv.production_listener_rule)
                        .set_test_listener_rule(adv.test_listener_rule.clone())
                        .role_arn(&adv.role_arn)
                        .build()
                }))
                .build()
        })
        .collect()
}

/// What ECS owns of a service infra configured, read as state recorded it, so that it is never
/// a difference: after a blue/green, canary or linear deployment ECS may serve from the other
/// target group of the pair (read in the orientation state recorded), and a step bake time the
/// file leaves to AWS is whatever AWS chose.
fn oriented(mut live: Live<Attrs>, recorded: &super::Recorded) -> Live<Attrs> {
    let Some(was) = recorded
        .get(&live.physical_id)
        .and_then(|v| serde_json::from_value::<Attrs>(v.clone()).ok())
    else {
        return live;
    };
    if let (Some(d), Some(w)) = (live.attrs.deployment.as_mut(), was.deployment.as_ref())
        && w.step_bake_minutes.is_none()
    {
        d.step_bake_minutes = None;
    }
    let (Some(adv), Some(link)) = (
        live.attrs.advanced.as_mut(),
        live.attrs.load_balancers.first_mut(),
    ) else {
        return live;
    };
    let (Some(was_adv), Some(was_link)) = (was.advanced.as_ref(), was.load_balancers.first())
    else {
        return live;
    };
    if link.target_group_arn == was_adv.alternate_target_group_arn
        && adv.alternate_target_group_arn == was_link.target_group_arn
    {
        std::mem::swap(
            &mut link.target_group_arn,
            &mut adv.alternate_target_group_arn,
        );
    }
    live
}

#[async_trait::async_trait]
impl ResourceKind for Service {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["name", "cluster", "launch_type"]).sets(&[
        "subnets",
        "security_groups",
        "load_balancers",
    ]);
    const TAGS: TagApi = TagApi::Ecs;
    const IAM: Iam = Iam {
        read: &["ecs:ListServices", "ecs:DescribeServices"],
        create: &["ecs:CreateService"],
        change: &["ecs:UpdateService"],
        delete: &["ecs:UpdateService", "ecs:DeleteService"],
        scope: IamScope::Arns(&["arn:{partition}:ecs:{region}:*:service/{cluster}/*"]),
    };

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        match scope {
            Scope::Environment(env) => match &aws.names.cluster {
                Some(cluster) => read_environment(aws, cluster, env.recorded).await,
                None => Ok(Vec::new()),
            },
            Scope::Ids(ids) => {
                let mut out = Vec::new();
                for id in ids {
                    let Some(cluster) = cluster_of(id) else {
                        continue;
                    };
                    out.extend(absent_ok(
                        describe(aws, cluster, std::slice::from_ref(id)).await,
                    )?);
                }
                Ok(out)
            }
        }
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = while_role_propagates(a, || async {
            aws.ecs
                .create_service()
                .cluster(&a.cluster)
                .service_name(&a.name)
                .task_definition(&a.task_definition)
                .desired_count(a.desired_count.or(a.initial_count).unwrap_or_default() as i32)
                .launch_type(LaunchType::from(a.launch_type.as_str()))
                .network_configuration(network(a)?)
                .deployment_configuration(deployment(a, &want.id)?)
                .deployment_controller(
                    DeploymentController::builder()
                        .r#type(DeploymentControllerType::Ecs)
                        .build()
                        .map_err(|e| AwsError::local("ecs", "CreateService", e.to_string()))?,
                )
                .set_load_balancers(Some(load_balancers(a)))
                .set_tags(Some(tags::ecs(&want.tags)))
                .propagate_tags(aws_sdk_ecs::types::PropagateTags::Service)
                .enable_ecs_managed_tags(true)
                .send()
                .await
                .map_err(sdk_error("ecs", "CreateService"))
        })
        .await?;
        Ok(out
            .service()
            .and_then(|s| s.service_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let a = &want.attrs;
        let physical = have.physical_id.as_str();
        // Switching between rolling and the strategies that shift traffic changes the advanced
        // configuration, which travels with the load balancer link.
        let moved =
            have.attrs.load_balancers != a.load_balancers || have.attrs.advanced != a.advanced;
        while_role_propagates(a, || async {
            aws.ecs
                .update_service()
                .set_load_balancers(moved.then(|| load_balancers(a)))
                .cluster(cluster_of(physical).unwrap_or_default())
                .service(physical)
                .task_definition(&a.task_definition)
                .set_desired_count(a.desired_count.map(|c| c as i32))
                .network_configuration(network(a)?)
                .deployment_configuration(deployment(a, &want.id)?)
                .send()
                .await
                .map_err(sdk_error("ecs", "UpdateService"))
        })
        .await?;
        Ok(())
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
            .map(|_| ())
            .map_err(sdk_error("ecs", "DeleteService"))
        {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        }
        // Draining ends when the service is INACTIVE; the cluster cannot go before that.
        let mut delay = Duration::from_millis(500);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15 * 60);
        loop {
            let found = describe(aws, cluster, &[physical.to_string()]).await;
            match found {
                Ok(v) if v.is_empty() => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
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

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let Some(cluster) = &aws.names.cluster else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = wants.iter().map(|w| w.attrs.name.clone()).collect();
        let found = absent_ok(described(aws, cluster, &names).await)?;
        Ok(wants
            .iter()
            .filter_map(|w| {
                let s = found.iter().find(|s| {
                    s.service_name() == Some(w.attrs.name.as_str()) && s.status() == Some("ACTIVE")
                })?;
                Some(Taken::new(&w.id, &w.attrs.name, s.service_arn()?))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(primary: &str, alternate: &str, step_bake: Option<u32>) -> Live<Attrs> {
        Live {
            physical_id: "svc-1".into(),
            attrs: Attrs {
                name: "web".into(),
                cluster: "c".into(),
                task_definition: "td:1".into(),
                desired_count: Some(2),
                initial_count: None,
                launch_type: "FARGATE".into(),
                subnets: vec![],
                security_groups: vec![],
                assign_public_ip: false,
                load_balancers: vec![LoadBalancerLink {
                    target_group_arn: primary.into(),
                    container_name: "web".into(),
                    container_port: 3000,
                }],
                deployment: Some(Deployment {
                    min_healthy_percent: 100,
                    max_percent: 200,
                    circuit_breaker: CircuitBreaker::Off,
                    strategy: Strategy::Canary,
                    bake_minutes: Some(5),
                    canary_percent: Some(10.0),
                    step_percent: None,
                    step_bake_minutes: step_bake,
                    rollback_alarms: Vec::new(),
                }),
                advanced: Some(Advanced {
                    alternate_target_group_arn: alternate.into(),
                    production_listener_rule: "rule-1".into(),
                    test_listener_rule: None,
                    role_arn: "role".into(),
                }),
            },
            outputs: NoOutputs {},
            tags: Default::default(),
        }
    }

    /// What ECS owns reads as state recorded it: the pair's orientation after a deployment, and
    /// a step bake time the file left to AWS.
    #[test]
    fn what_ecs_owns_reads_as_recorded() {
        let recorded: super::super::Recorded = [(
            "svc-1".to_string(),
            serde_json::to_value(service("blue", "green", None).attrs).unwrap(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            oriented(service("green", "blue", Some(6)), &recorded).attrs,
            service("blue", "green", None).attrs
        );
        // A pair that really changed stays as read, and so a difference.
        assert_eq!(
            oriented(service("green", "other", None), &recorded).attrs,
            service("green", "other", None).attrs
        );
    }

    #[test]
    fn cluster_from_service_arn() {
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:123456789012:service/stage/web"),
            Some("stage")
        );
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:123456789012:service/web"),
            None
        );
    }
}
