//! Target-tracking scaling policies of an autoscaled service: keep average CPU, average memory, or
//! requests per target (through the load balancer) at a value. One per metric the file sets.
//! Policies cannot be tagged: each is identified by its name, `infra-<env>-<service>-<metric>`
//! (its identity tags are derived from it), and read by those names, fifty per call.

use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalingPolicy as Aas,
    ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{
    Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Want, gone_ok, identity_tags,
};
use crate::aws::tags::TagApi;
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    /// `service/<cluster>/<service>`.
    pub resource_id: String,
    /// `ECSServiceAverageCPUUtilization`, `ECSServiceAverageMemoryUtilization` or
    /// `ALBRequestCountPerTarget`.
    pub metric: String,
    pub target_value: f64,
    /// For requests per target: the load balancer and the service's target group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_group: Option<R>,
}

pub struct ScalingPolicy;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = ScalingPolicy;
}

/// The metrics a file can set, by the short name ids and policy names use.
pub const METRICS: &[(&str, &str)] = &[
    ("cpu", "ECSServiceAverageCPUUtilization"),
    ("memory", "ECSServiceAverageMemoryUtilization"),
    ("requests", "ALBRequestCountPerTarget"),
];

/// `app/<lb>/<id>/targetgroup/<tg>/<id>`: what AWS calls the resource label of a target group
/// behind a load balancer, from their ARNs.
fn resource_label(lb_arn: &str, tg_arn: &str) -> Option<String> {
    let lb = lb_arn.split_once(":loadbalancer/")?.1;
    let tg = tg_arn.split_once(":targetgroup/")?.1;
    Some(format!("{lb}/targetgroup/{tg}"))
}

/// The ARNs behind a resource label, in the partition, region and account of `policy_arn`.
fn arns_of_label(policy_arn: &str, label: &str) -> Option<(String, String)> {
    let mut parts = policy_arn.splitn(6, ':');
    let (_, partition, _, region, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let (lb, tg) = label.split_once("/targetgroup/")?;
    let prefix = format!("arn:{partition}:elasticloadbalancing:{region}:{account}");
    Some((
        format!("{prefix}:loadbalancer/{lb}"),
        format!("{prefix}:targetgroup/{tg}"),
    ))
}

/// `…:resource/ecs/<resource id>:policyName/<name>` → (resource id, name).
fn parse_arn(arn: &str) -> Option<(&str, &str)> {
    let (head, name) = arn.split_once(":policyName/")?;
    let rid = head.split_once(":resource/ecs/")?.1;
    Some((rid, name))
}

fn live(aws: &Aws, p: &Aas) -> Option<Live<Attrs>> {
    let arn = p.policy_arn();
    let name = p.policy_name();
    let (service, metric) = name
        .strip_prefix(&naming::scaling_policy(&aws.environment, "", ""))?
        .rsplit_once('-')?;
    let config = p.target_tracking_scaling_policy_configuration()?;
    let spec = config.predefined_metric_specification()?;
    let (load_balancer, target_group) = match spec.resource_label() {
        Some(label) => {
            let (lb, tg) = arns_of_label(arn, label)?;
            (Some(lb), Some(tg))
        }
        None => (None, None),
    };
    Some(Live {
        physical_id: arn.to_string(),
        attrs: Attrs {
            name: name.to_string(),
            resource_id: p.resource_id().to_string(),
            metric: spec.predefined_metric_type().as_str().to_string(),
            target_value: config.target_value(),
            load_balancer,
            target_group,
        },
        outputs: NoOutputs {},
        tags: identity_tags(aws, &naming::id::scaling_policy(service, metric)),
    })
}

async fn describe(aws: &Aws, names: &[String]) -> Result<Vec<Live<Attrs>>, AwsError> {
    let chunks = names.chunks(50).map(|chunk| async move {
        aws.autoscaling()
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .set_policy_names(Some(chunk.to_vec()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error(
                "application-autoscaling",
                "DescribeScalingPolicies",
            ))
    });
    let found = try_join_all(chunks).await?;
    Ok(found
        .iter()
        .flatten()
        .filter_map(|p| live(aws, p))
        .collect())
}

async fn put(aws: &Aws, a: &Attrs) -> Result<String, AwsError> {
    let label = match (&a.load_balancer, &a.target_group) {
        (Some(lb), Some(tg)) => Some(resource_label(lb, tg).ok_or_else(|| {
            AwsError::local(
                "infra",
                "PutScalingPolicy",
                format!("`{lb}` and `{tg}` are not a load balancer and target group ARN"),
            )
        })?),
        _ => None,
    };
    let spec = PredefinedMetricSpecification::builder()
        .predefined_metric_type(MetricType::from(a.metric.as_str()))
        .set_resource_label(label)
        .build()
        .map_err(|e| AwsError::local("infra", "PutScalingPolicy", e.to_string()))?;
    let config = TargetTrackingScalingPolicyConfiguration::builder()
        .target_value(a.target_value)
        .predefined_metric_specification(spec)
        .build()
        .map_err(|e| AwsError::local("infra", "PutScalingPolicy", e.to_string()))?;
    let out = aws
        .autoscaling()
        .put_scaling_policy()
        .policy_name(&a.name)
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .resource_id(&a.resource_id)
        .policy_type(PolicyType::TargetTrackingScaling)
        .target_tracking_scaling_policy_configuration(config)
        .send()
        .await
        .map_err(sdk_error("application-autoscaling", "PutScalingPolicy"))?;
    Ok(out.policy_arn().to_string())
}

#[async_trait::async_trait]
impl ResourceKind for ScalingPolicy {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["name", "resource_id"]);
    const TAGS: TagApi = TagApi::None;
    const IAM: Iam = Iam {
        read: &["application-autoscaling:DescribeScalingPolicies"],
        create: &["application-autoscaling:PutScalingPolicy"],
        change: &["application-autoscaling:PutScalingPolicy"],
        delete: &["application-autoscaling:DeleteScalingPolicy"],
        scope: IamScope::Unscoped(
            "Application Auto Scaling takes no resource-level permissions or tags for scaling policies",
        ),
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let names: Vec<String> = match scope {
            Scope::Environment(_) => aws
                .names
                .autoscaled
                .iter()
                .flat_map(|s| {
                    METRICS
                        .iter()
                        .map(|(m, _)| naming::scaling_policy(&aws.environment, s, m))
                })
                .collect(),
            Scope::Ids(arns) => arns
                .iter()
                .filter_map(|a| parse_arn(a).map(|(_, name)| name.to_string()))
                .collect(),
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        describe(aws, &names).await
    }

    /// Putting a policy is an upsert keyed by its name: safe to repeat.
    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        put(aws, &want.attrs).await
    }

    async fn change(
        &self,
        aws: &Aws,
        _have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        put(aws, &want.attrs).await.map(|_| ())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let Some((rid, name)) = parse_arn(physical) else {
            return Ok(());
        };
        gone_ok(
            aws.autoscaling()
                .delete_scaling_policy()
                .policy_name(name)
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(rid)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("application-autoscaling", "DeleteScalingPolicy")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_labels_and_arns_round_trip() {
        let lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/stage/50dc6c495c0c9188";
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stage-web/943f017f100becff";
        let label = resource_label(lb, tg).unwrap();
        assert_eq!(
            label,
            "app/stage/50dc6c495c0c9188/targetgroup/stage-web/943f017f100becff"
        );
        let policy = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:6d8972f3:resource/ecs/service/stage/web:policyName/infra-stage-web-requests";
        assert_eq!(
            arns_of_label(policy, &label),
            Some((lb.to_string(), tg.to_string()))
        );
        assert_eq!(
            parse_arn(policy),
            Some(("service/stage/web", "infra-stage-web-requests"))
        );
    }
}
