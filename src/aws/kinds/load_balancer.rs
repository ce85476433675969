//! The environment's Application Load Balancer: internet-facing, in the public subnets, behind
//! the load balancer security group, with its idle timeout and deletion protection. Found by its
//! name (the environment's), so one DescribeLoadBalancers, one DescribeTags and one
//! DescribeLoadBalancerAttributes read it.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::client::Waiters;
use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancer as Alb, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum,
};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::str_attr;
use crate::aws::elbv2::{sync_tags, tag_list, tags};
use crate::aws::{Aws, sdk_error, tag_pairs};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct LoadBalancer;

const WAIT: Duration = Duration::from_secs(15 * 60);

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

async fn describe(aws: &Aws, lbs: &[Alb]) -> Result<Vec<LiveResource>, AwsError> {
    let arns: Vec<String> = lbs
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .collect();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let all_tags = tags(aws, &arns).await?;
    let mut out = Vec::new();
    for lb in lbs {
        let Some(arn) = lb.load_balancer_arn() else {
            continue;
        };
        let attrs = aws
            .elbv2
            .describe_load_balancer_attributes()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(sdk_error("elbv2", "DescribeLoadBalancerAttributes"))?;
        let attr = |k: &str| {
            attrs
                .attributes()
                .iter()
                .find(|a| a.key() == Some(k))
                .and_then(|a| a.value())
                .map(str::to_string)
        };
        let tags = all_tags
            .iter()
            .find(|(a, _)| a == arn)
            .map(|(_, t)| t.clone())
            .unwrap_or(json!({}));
        out.push(LiveResource {
            kind: Kind::LoadBalancer,
            physical_id: arn.to_string(),
            id: tags["infra:id"].as_str().map(str::to_string),
            attrs: json!({
                "name": lb.load_balancer_name(),
                "scheme": lb.scheme().map(|s| s.as_str()),
                "type": lb.r#type().map(|t| t.as_str()),
                "subnets": lb.availability_zones().iter().filter_map(|z| z.subnet_id()).collect::<Vec<_>>(),
                "security_groups": lb.security_groups(),
                "idle_timeout_seconds": attr("idle_timeout.timeout_seconds").and_then(|v| v.parse::<u64>().ok()),
                "deletion_protection": attr("deletion_protection.enabled").as_deref() == Some("true"),
                "dns_name": lb.dns_name(),
                "tags": tags,
            }),
        });
    }
    Ok(out)
}

async fn set_attributes(aws: &Aws, arn: &str, attrs: &Value) -> Result<(), AwsError> {
    let idle = attrs["idle_timeout_seconds"]
        .as_u64()
        .unwrap_or(60)
        .to_string();
    let protect = attrs["deletion_protection"]
        .as_bool()
        .unwrap_or(false)
        .to_string();
    aws.elbv2
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .attributes(
            LoadBalancerAttribute::builder()
                .key("idle_timeout.timeout_seconds")
                .value(idle)
                .build(),
        )
        .attributes(
            LoadBalancerAttribute::builder()
                .key("deletion_protection.enabled")
                .value(protect)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("elbv2", "ModifyLoadBalancerAttributes"))
}

#[async_trait::async_trait]
impl Adapter for LoadBalancer {
    fn kind(&self) -> Kind {
        Kind::LoadBalancer
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        match aws
            .elbv2
            .describe_load_balancers()
            .names(&aws.environment)
            .send()
            .await
        {
            Ok(out) => describe(aws, out.load_balancers()).await,
            Err(e) => {
                let e = sdk_error("elbv2", "DescribeLoadBalancers")(e);
                if e.code_is("LoadBalancerNotFound") {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            match aws
                .elbv2
                .describe_load_balancers()
                .load_balancer_arns(id)
                .send()
                .await
            {
                Ok(found) => out.extend(describe(aws, found.load_balancers()).await?),
                Err(e) => {
                    let e = sdk_error("elbv2", "DescribeLoadBalancers")(e);
                    if !e.code_is("LoadBalancerNotFound") {
                        return Err(e);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .elbv2
            .create_load_balancer()
            .name(str_attr(attrs, "name"))
            .scheme(LoadBalancerSchemeEnum::from(str_attr(attrs, "scheme")))
            .r#type(LoadBalancerTypeEnum::from(str_attr(attrs, "type")))
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(strings(&attrs["subnets"])))
            .set_security_groups(Some(strings(&attrs["security_groups"])))
            .set_tags(Some(tag_list(tag_pairs(attrs))))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateLoadBalancer"))?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .unwrap_or_default()
            .to_string();
        aws.elbv2
            .wait_until_load_balancer_available()
            .load_balancer_arns(&arn)
            .wait(WAIT)
            .await
            .map_err(|e| {
                AwsError::local(
                    "elbv2",
                    "DescribeLoadBalancers",
                    format!("load balancer did not become active: {e}"),
                )
            })?;
        set_attributes(aws, &arn, attrs).await?;
        read_one(self, aws, &arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        let sorted = |v: &Value| {
            let mut s = strings(v);
            s.sort();
            s
        };
        if sorted(&have.attrs["subnets"]) != sorted(&attrs["subnets"]) {
            aws.elbv2
                .set_subnets()
                .load_balancer_arn(physical)
                .set_subnets(Some(strings(&attrs["subnets"])))
                .send()
                .await
                .map_err(sdk_error("elbv2", "SetSubnets"))?;
        }
        if sorted(&have.attrs["security_groups"]) != sorted(&attrs["security_groups"]) {
            aws.elbv2
                .set_security_groups()
                .load_balancer_arn(physical)
                .set_security_groups(Some(strings(&attrs["security_groups"])))
                .send()
                .await
                .map_err(sdk_error("elbv2", "SetSecurityGroups"))?;
        }
        if have.attrs["idle_timeout_seconds"] != attrs["idle_timeout_seconds"]
            || have.attrs["deletion_protection"] != attrs["deletion_protection"]
        {
            set_attributes(aws, physical, attrs).await?;
        }
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws
            .elbv2
            .delete_load_balancer()
            .load_balancer_arn(physical)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = sdk_error("elbv2", "DeleteLoadBalancer")(e);
                return if e.code_is("LoadBalancerNotFound") {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        }
        aws.elbv2
            .wait_until_load_balancers_deleted()
            .load_balancer_arns(physical)
            .wait(WAIT)
            .await
            .map(|_| ())
            .map_err(|e| {
                AwsError::local(
                    "elbv2",
                    "DescribeLoadBalancers",
                    format!("load balancer was not deleted in time: {e}"),
                )
            })
    }
}
