//! The internet gateway and its attachment to the VPC (one resource: `vpc_id` is the attachment).

use aws_sdk_ec2::types::ResourceType;
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Want, gone_ok};
use crate::aws::ec2::{not_idempotent, retry_while, scope_filters};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    /// The VPC it is attached to; a detached gateway reads as `None`.
    pub vpc_id: Option<R>,
}

pub struct InternetGateway;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = InternetGateway;
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
impl ResourceKind for InternetGateway {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&[]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeInternetGateways"],
        create: &["ec2:CreateInternetGateway", "ec2:AttachInternetGateway"],
        change: &["ec2:AttachInternetGateway", "ec2:DetachInternetGateway"],
        delete: &["ec2:DetachInternetGateway", "ec2:DeleteInternetGateway"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let igws = aws
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(scope_filters(aws, scope, "internet-gateway-id")))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ec2", "DescribeInternetGateways"))?;
        Ok(igws
            .into_iter()
            .filter_map(|g| {
                Some(Live {
                    physical_id: g.internet_gateway_id()?.to_string(),
                    attrs: Attrs {
                        vpc_id: g
                            .attachments()
                            .iter()
                            .find_map(|a| a.vpc_id())
                            .map(str::to_string),
                    },
                    outputs: NoOutputs {},
                    tags: tags::from_ec2(g.tags()),
                })
            })
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .create_internet_gateway()
            .tag_specifications(tags::ec2_spec(ResourceType::InternetGateway, &want.tags))
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
        if let Some(vpc) = &want.attrs.vpc_id {
            attach(aws, &igw, vpc).await?;
        }
        Ok(igw)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        if have.attrs.vpc_id != want.attrs.vpc_id {
            if let Some(old) = &have.attrs.vpc_id {
                detach(aws, &have.physical_id, old).await?;
            }
            if let Some(new) = &want.attrs.vpc_id {
                attach(aws, &have.physical_id, new).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let found = self.read(aws, Scope::Ids(&[physical.to_string()])).await?;
        let Some(have) = found.first() else {
            return Ok(());
        };
        if let Some(vpc) = &have.attrs.vpc_id {
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
