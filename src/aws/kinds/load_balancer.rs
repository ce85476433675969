//! The environment's Application Load Balancer: internet-facing, in the public subnets, behind
//! the load balancer security group, with its idle timeout and deletion protection. Found by its
//! name (the environment's), so one DescribeLoadBalancers, one DescribeTags (shared with its
//! listeners) and one DescribeLoadBalancerAttributes read it.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancer as Alb, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum,
};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, ResourceKind, Scope, Tags, Taken, Want, absent_ok};
use crate::aws::elbv2::{attributes_of, tags_of};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error, wait};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    pub scheme: String,
    #[serde(rename = "type")]
    pub lb_type: String,
    pub subnets: Vec<R>,
    pub security_groups: Vec<R>,
    pub idle_timeout_seconds: u32,
    pub deletion_protection: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub dns_name: Option<String>,
    /// The Route 53 zone of its DNS name, for alias records that point at it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_hosted_zone_id: Option<String>,
}

pub struct LoadBalancer;

/// The load balancer with this ARN, or none once it is gone.
async fn by_arn(aws: &Aws, arn: &str) -> Result<Vec<Alb>, AwsError> {
    absent_ok(
        aws.elbv2
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .map(|out| out.load_balancers().to_vec())
            .map_err(sdk_error("elbv2", "DescribeLoadBalancers")),
    )
}

/// A load balancer's state, `None` once it is gone.
async fn state(aws: &Aws, arn: &str) -> Result<Option<LoadBalancerStateEnum>, AwsError> {
    let found = by_arn(aws, arn).await?;
    Ok(found.first().map(|lb| {
        lb.state()
            .and_then(|s| s.code())
            .cloned()
            .unwrap_or(LoadBalancerStateEnum::Provisioning)
    }))
}

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = LoadBalancer;
}

const WAIT: Duration = Duration::from_secs(15 * 60);

/// The load balancers of `lbs` as read, with their tags and attributes fetched here.
async fn describe(aws: &Aws, lbs: &[Alb]) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
    let arns: Vec<String> = lbs
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .collect();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let mut all_tags = tags_of(aws, &arns).await?;
    let mut out = Vec::new();
    for lb in lbs {
        let Some(arn) = lb.load_balancer_arn() else {
            continue;
        };
        let attributes = attributes_of(aws, arn).await?;
        out.push(live(
            lb,
            &attributes,
            all_tags.remove(arn).unwrap_or_default(),
        ));
    }
    Ok(out)
}

fn live(lb: &Alb, attributes: &[LoadBalancerAttribute], tags: Tags) -> Live<Attrs, Outputs> {
    let attr = |k: &str| {
        attributes
            .iter()
            .find(|a| a.key() == Some(k))
            .and_then(|a| a.value())
            .map(str::to_string)
    };
    Live {
        physical_id: lb.load_balancer_arn().unwrap_or_default().to_string(),
        attrs: Attrs {
            name: lb.load_balancer_name().unwrap_or_default().to_string(),
            scheme: lb
                .scheme()
                .map(|s| s.as_str())
                .unwrap_or_default()
                .to_string(),
            lb_type: lb
                .r#type()
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            subnets: lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id().map(str::to_string))
                .collect(),
            security_groups: lb.security_groups().to_vec(),
            idle_timeout_seconds: attr("idle_timeout.timeout_seconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            deletion_protection: attr("deletion_protection.enabled").as_deref() == Some("true"),
        },
        outputs: Outputs {
            dns_name: lb.dns_name().map(str::to_string),
            canonical_hosted_zone_id: lb.canonical_hosted_zone_id().map(str::to_string),
        },
        tags,
    }
}

async fn set_attributes(aws: &Aws, arn: &str, want: &Attrs) -> Result<(), AwsError> {
    aws.elbv2
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .attributes(
            LoadBalancerAttribute::builder()
                .key("idle_timeout.timeout_seconds")
                .value(want.idle_timeout_seconds.to_string())
                .build(),
        )
        .attributes(
            LoadBalancerAttribute::builder()
                .key("deletion_protection.enabled")
                .value(want.deletion_protection.to_string())
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("elbv2", "ModifyLoadBalancerAttributes"))
}

fn sorted(v: &[String]) -> Vec<&String> {
    let mut s: Vec<&String> = v.iter().collect();
    s.sort();
    s
}

#[async_trait::async_trait]
impl ResourceKind for LoadBalancer {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema =
        Schema::replace_on(&["name", "scheme", "type"]).sets(&["subnets", "security_groups"]);
    const TAGS: TagApi = TagApi::Elbv2;
    const IAM: Iam = Iam {
        read: &[
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeTags",
        ],
        create: &[
            "elasticloadbalancing:CreateLoadBalancer",
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
        ],
        change: &[
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:SetSubnets",
        ],
        delete: &[
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:DeleteLoadBalancer",
        ],
        scope: IamScope::Tags,
    };

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let found: Vec<Alb> = match scope {
            // Found by its name, with its tags and attributes, once for the kinds that need it
            // (see `Shared`).
            Scope::Environment(env) => {
                let view = env.shared.elb().await?;
                return Ok(view
                    .load_balancer
                    .iter()
                    .map(|lb| {
                        let arn = lb.load_balancer_arn().unwrap_or_default();
                        let tags = view.tags.get(arn).cloned().unwrap_or_default();
                        live(lb, &view.attributes, tags)
                    })
                    .collect());
            }
            Scope::Ids(ids) => {
                let reads = ids.iter().map(|arn| by_arn(aws, arn));
                futures::future::try_join_all(reads)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        describe(aws, &found).await
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = aws
            .elbv2
            .create_load_balancer()
            .name(&a.name)
            .scheme(LoadBalancerSchemeEnum::from(a.scheme.as_str()))
            .r#type(LoadBalancerTypeEnum::from(a.lb_type.as_str()))
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(a.subnets.clone()))
            .set_security_groups(Some(a.security_groups.clone()))
            .set_tags(Some(tags::elbv2(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateLoadBalancer"))?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .unwrap_or_default()
            .to_string();
        wait::until(
            "elbv2",
            "DescribeLoadBalancers",
            "the load balancer to become active",
            WAIT,
            || async {
                match state(aws, &arn).await? {
                    Some(LoadBalancerStateEnum::Active) => Ok(Some(())),
                    Some(LoadBalancerStateEnum::Failed) => Err(AwsError::local(
                        "elbv2",
                        "CreateLoadBalancer",
                        format!("load balancer {arn} failed to provision"),
                    )),
                    _ => Ok(None),
                }
            },
        )
        .await?;
        set_attributes(aws, &arn, a).await?;
        Ok(arn)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let (h, w) = (&have.attrs, &want.attrs);
        let arn = have.physical_id.as_str();
        if sorted(&h.subnets) != sorted(&w.subnets) {
            aws.elbv2
                .set_subnets()
                .load_balancer_arn(arn)
                .set_subnets(Some(w.subnets.clone()))
                .send()
                .await
                .map_err(sdk_error("elbv2", "SetSubnets"))?;
        }
        if sorted(&h.security_groups) != sorted(&w.security_groups) {
            aws.elbv2
                .set_security_groups()
                .load_balancer_arn(arn)
                .set_security_groups(Some(w.security_groups.clone()))
                .send()
                .await
                .map_err(sdk_error("elbv2", "SetSecurityGroups"))?;
        }
        if h.idle_timeout_seconds != w.idle_timeout_seconds
            || h.deletion_protection != w.deletion_protection
        {
            set_attributes(aws, arn, w).await?;
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws
            .elbv2
            .delete_load_balancer()
            .load_balancer_arn(physical)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("elbv2", "DeleteLoadBalancer"))
        {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        }
        wait::until(
            "elbv2",
            "DescribeLoadBalancers",
            "the load balancer to be deleted",
            WAIT,
            || async { Ok(state(aws, physical).await?.is_none().then_some(())) },
        )
        .await
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let asks = wants.iter().map(|w| async move {
            let found = absent_ok(
                aws.elbv2
                    .describe_load_balancers()
                    .names(&w.attrs.name)
                    .send()
                    .await
                    .map(|out| out.load_balancers().to_vec())
                    .map_err(sdk_error("elbv2", "DescribeLoadBalancers")),
            )?;
            Ok::<_, AwsError>(
                found
                    .first()
                    .and_then(|lb| Some(Taken::new(&w.id, &w.attrs.name, lb.load_balancer_arn()?))),
            )
        });
        Ok(futures::future::try_join_all(asks)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}
