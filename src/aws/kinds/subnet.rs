//! Subnets: one public and one private per zone. Public ones map public IPs on launch.

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, ResourceType};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{
    env_filter, filter, gone_ok, id_tag, retry_while, str_attr, sync_tags, tag_spec, tags_json,
};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Subnet;

async fn read(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<LiveResource>, AwsError> {
    let subnets = aws
        .ec2
        .describe_subnets()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("ec2", "DescribeSubnets"))?;
    Ok(subnets
        .into_iter()
        .filter_map(|s| {
            Some(LiveResource {
                kind: Kind::Subnet,
                physical_id: s.subnet_id()?.to_string(),
                id: id_tag(s.tags()),
                attrs: json!({
                    "vpc_id": s.vpc_id(),
                    "cidr_block": s.cidr_block(),
                    "availability_zone": s.availability_zone(),
                    "map_public_ip_on_launch": s.map_public_ip_on_launch().unwrap_or(false),
                    "tags": tags_json(s.tags()),
                }),
            })
        })
        .collect())
}

async fn set_public_ip(aws: &Aws, subnet: &str, value: bool) -> Result<(), AwsError> {
    aws.ec2
        .modify_subnet_attribute()
        .subnet_id(subnet)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(value).build())
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("ec2", "ModifySubnetAttribute"))
}

#[async_trait::async_trait]
impl Adapter for Subnet {
    fn kind(&self) -> Kind {
        Kind::Subnet
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![env_filter(&aws.environment)]).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![filter("subnet-id", ids)]).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .create_subnet()
            .vpc_id(str_attr(attrs, "vpc_id"))
            .cidr_block(str_attr(attrs, "cidr_block"))
            .availability_zone(str_attr(attrs, "availability_zone"))
            .tag_specifications(tag_spec(ResourceType::Subnet, attrs))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateSubnet"))?;
        let subnet = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .unwrap_or_default()
            .to_string();
        if attrs["map_public_ip_on_launch"].as_bool() == Some(true) {
            set_public_ip(aws, &subnet, true).await?;
        }
        read_one(self, aws, &subnet).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        let want = attrs["map_public_ip_on_launch"].as_bool().unwrap_or(false);
        if have.attrs["map_public_ip_on_launch"].as_bool() != Some(want) {
            set_public_ip(aws, physical, want).await?;
        }
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // A deleted NAT gateway's network interface lingers for a while: wait it out.
        gone_ok(
            retry_while(&["DependencyViolation"], || async {
                aws.ec2
                    .delete_subnet()
                    .subnet_id(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DeleteSubnet"))
            })
            .await,
        )
    }
}
