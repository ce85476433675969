//! The VPC: CIDR block and DNS settings. DescribeVpcs does not return the DNS attributes, so they
//! cost one DescribeVpcAttribute each per VPC — an environment has one VPC, so the count stays
//! constant.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{
    env_filter, filter, gone_ok, id_tag, not_idempotent, retry_while, str_attr, sync_tags,
    tag_spec, tags_json,
};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Vpc;

async fn dns(aws: &Aws, vpc: &str, name: VpcAttributeName) -> Result<bool, AwsError> {
    let out = aws
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(name.clone())
        .send()
        .await
        .map_err(sdk_error("ec2", "DescribeVpcAttribute"))?;
    let v = match name {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(v.and_then(|a| a.value()).unwrap_or(false))
}

async fn read(
    aws: &Aws,
    filters: Vec<aws_sdk_ec2::types::Filter>,
) -> Result<Vec<LiveResource>, AwsError> {
    let vpcs = aws
        .ec2
        .describe_vpcs()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("ec2", "DescribeVpcs"))?;
    let mut out = Vec::with_capacity(vpcs.len());
    for v in vpcs {
        let Some(vpc_id) = v.vpc_id() else { continue };
        let support = dns(aws, vpc_id, VpcAttributeName::EnableDnsSupport).await?;
        let hostnames = dns(aws, vpc_id, VpcAttributeName::EnableDnsHostnames).await?;
        out.push(LiveResource {
            kind: Kind::Vpc,
            physical_id: vpc_id.to_string(),
            id: id_tag(v.tags()),
            attrs: json!({
                "cidr_block": v.cidr_block(),
                "enable_dns_support": support,
                "enable_dns_hostnames": hostnames,
                "tags": tags_json(v.tags()),
            }),
        });
    }
    Ok(out)
}

async fn set_dns(
    aws: &Aws,
    vpc: &str,
    attrs: &Value,
    have: Option<&Value>,
) -> Result<(), AwsError> {
    // One attribute per call: the API refuses both at once.
    for key in ["enable_dns_support", "enable_dns_hostnames"] {
        let want = attrs[key].as_bool().unwrap_or(true);
        if have.is_some_and(|h| h[key].as_bool() == Some(want)) {
            continue;
        }
        let value = AttributeBooleanValue::builder().value(want).build();
        let call = aws.ec2.modify_vpc_attribute().vpc_id(vpc);
        let call = if key == "enable_dns_support" {
            call.enable_dns_support(value)
        } else {
            call.enable_dns_hostnames(value)
        };
        call.send()
            .await
            .map_err(sdk_error("ec2", "ModifyVpcAttribute"))?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Adapter for Vpc {
    fn kind(&self) -> Kind {
        Kind::Vpc
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![env_filter(&aws.environment)]).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![filter("vpc-id", ids)]).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .create_vpc()
            .cidr_block(str_attr(attrs, "cidr_block"))
            .tag_specifications(tag_spec(ResourceType::Vpc, attrs))
            .customize()
            .config_override(not_idempotent())
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateVpc"))?;
        let vpc_id = out
            .vpc()
            .and_then(|v| v.vpc_id())
            .unwrap_or_default()
            .to_string();
        set_dns(aws, &vpc_id, attrs, None).await?;
        read_one(self, aws, &vpc_id).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        set_dns(aws, physical, attrs, Some(&have.attrs)).await?;
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            retry_while(&["DependencyViolation"], || async {
                aws.ec2
                    .delete_vpc()
                    .vpc_id(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DeleteVpc"))
            })
            .await,
        )
    }
}
