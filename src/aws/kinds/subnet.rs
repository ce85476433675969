//! Subnets: one public and one private per zone. Public ones map public IPs on launch.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Want, gone_ok};
use crate::aws::ec2::{retry_while, scope_filters};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub vpc_id: R,
    pub cidr_block: String,
    pub availability_zone: String,
    pub map_public_ip_on_launch: bool,
}

pub struct Subnet;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Subnet;
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
impl ResourceKind for Subnet {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["vpc_id", "cidr_block", "availability_zone"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeSubnets"],
        create: &["ec2:CreateSubnet", "ec2:ModifySubnetAttribute"],
        change: &["ec2:ModifySubnetAttribute"],
        delete: &["ec2:DeleteSubnet"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let subnets = aws
            .ec2
            .describe_subnets()
            .set_filters(Some(scope_filters(aws, scope, "subnet-id")))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ec2", "DescribeSubnets"))?;
        Ok(subnets
            .into_iter()
            .filter_map(|s| {
                Some(Live {
                    physical_id: s.subnet_id()?.to_string(),
                    attrs: Attrs {
                        vpc_id: s.vpc_id()?.to_string(),
                        cidr_block: s.cidr_block()?.to_string(),
                        availability_zone: s.availability_zone()?.to_string(),
                        map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
                    },
                    outputs: NoOutputs {},
                    tags: tags::from_ec2(s.tags()),
                })
            })
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .create_subnet()
            .vpc_id(&want.attrs.vpc_id)
            .cidr_block(&want.attrs.cidr_block)
            .availability_zone(&want.attrs.availability_zone)
            .tag_specifications(tags::ec2_spec(ResourceType::Subnet, &want.tags))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateSubnet"))?;
        let subnet = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .unwrap_or_default()
            .to_string();
        if want.attrs.map_public_ip_on_launch {
            set_public_ip(aws, &subnet, true).await?;
        }
        Ok(subnet)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        if have.attrs.map_public_ip_on_launch != want.attrs.map_public_ip_on_launch {
            set_public_ip(aws, &have.physical_id, want.attrs.map_public_ip_on_launch).await?;
        }
        Ok(())
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
