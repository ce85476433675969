//! The internet gateway and its attachment to the VPC (one resource: `vpc_id` is the attachment).

use aws_sdk_ec2::types::{Filter, ResourceType};
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

pub struct InternetGateway;

async fn read(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<LiveResource>, AwsError> {
    let igws = aws
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("ec2", "DescribeInternetGateways"))?;
    Ok(igws
        .into_iter()
        .filter_map(|g| {
            let vpc = g
                .attachments()
                .iter()
                .find_map(|a| a.vpc_id())
                .map(str::to_string);
            Some(LiveResource {
                kind: Kind::InternetGateway,
                physical_id: g.internet_gateway_id()?.to_string(),
                id: id_tag(g.tags()),
                attrs: json!({ "vpc_id": vpc, "tags": tags_json(g.tags()) }),
            })
        })
        .collect())
}

async fn detach(aws: &Aws, igw: &str, vpc: &str) -> Result<(), AwsError> {
    gone_ok(
        retry_while(&["DependencyViolation"], || async {
            aws.ec2
                .detach_internet_gateway()
                .internet_gateway_id(igw)
                .vpc_id(vpc)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("ec2", "DetachInternetGateway"))
        })
        .await,
    )
}

async fn attach(aws: &Aws, igw: &str, vpc: &str) -> Result<(), AwsError> {
    aws.ec2
        .attach_internet_gateway()
        .internet_gateway_id(igw)
        .vpc_id(vpc)
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("ec2", "AttachInternetGateway"))
}

#[async_trait::async_trait]
impl Adapter for InternetGateway {
    fn kind(&self) -> Kind {
        Kind::InternetGateway
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![env_filter(&aws.environment)]).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![filter("internet-gateway-id", ids)]).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, attrs))
            .customize()
            .config_override(not_idempotent())
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateInternetGateway"))?;
        let igw = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .unwrap_or_default()
            .to_string();
        attach(aws, &igw, str_attr(attrs, "vpc_id")).await?;
        read_one(self, aws, &igw).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        let want_vpc = str_attr(attrs, "vpc_id");
        let have_vpc = have.attrs["vpc_id"].as_str();
        if have_vpc != Some(want_vpc) {
            if let Some(old) = have_vpc {
                detach(aws, physical, old).await?;
            }
            attach(aws, physical, want_vpc).await?;
        }
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let found = self.read_ids(aws, &[physical.to_string()]).await?;
        let Some(have) = found.first() else {
            return Ok(());
        };
        if let Some(vpc) = have.attrs["vpc_id"].as_str() {
            detach(aws, physical, vpc).await?;
        }
        gone_ok(
            aws.ec2
                .delete_internet_gateway()
                .internet_gateway_id(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("ec2", "DeleteInternetGateway")),
        )
    }
}
