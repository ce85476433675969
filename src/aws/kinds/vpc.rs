//! The VPC: CIDR block and DNS settings. DescribeVpcs does not return the DNS attributes, so they
//! cost one DescribeVpcAttribute each per VPC — an environment has one VPC, so the count stays
//! constant.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Live, NoOutputs, ResourceKind, Scope, Want, gone_ok};
use crate::aws::ec2::{not_idempotent, retry_while, scope_filters};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub cidr_block: String,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
}

pub struct Vpc;

impl super::Desire for Attrs {
    type Kind = Vpc;
}

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

/// One attribute per call: the API refuses both at once.
async fn set_dns(aws: &Aws, vpc: &str, want: &Attrs, have: Option<&Attrs>) -> Result<(), AwsError> {
    for (support, value, had) in [
        (
            true,
            want.enable_dns_support,
            have.map(|h| h.enable_dns_support),
        ),
        (
            false,
            want.enable_dns_hostnames,
            have.map(|h| h.enable_dns_hostnames),
        ),
    ] {
        if had == Some(value) {
            continue;
        }
        let value = AttributeBooleanValue::builder().value(value).build();
        let call = aws.ec2.modify_vpc_attribute().vpc_id(vpc);
        let call = if support {
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
impl ResourceKind for Vpc {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["cidr_block"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"],
        create: &["ec2:CreateVpc", "ec2:ModifyVpcAttribute"],
        change: &["ec2:ModifyVpcAttribute"],
        delete: &["ec2:DeleteVpc"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let vpcs = aws
            .ec2
            .describe_vpcs()
            .set_filters(Some(scope_filters(aws, scope, "vpc-id")))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ec2", "DescribeVpcs"))?;
        // The two DNS attributes of each VPC, all read at once.
        let reads = vpcs.iter().filter_map(|v| {
            let vpc_id = v.vpc_id()?;
            Some(async move {
                let (support, hostnames) = futures::try_join!(
                    dns(aws, vpc_id, VpcAttributeName::EnableDnsSupport),
                    dns(aws, vpc_id, VpcAttributeName::EnableDnsHostnames),
                )?;
                Ok::<_, AwsError>(Live {
                    physical_id: vpc_id.to_string(),
                    attrs: Attrs {
                        cidr_block: v.cidr_block().unwrap_or_default().to_string(),
                        enable_dns_support: support,
                        enable_dns_hostnames: hostnames,
                    },
                    outputs: NoOutputs {},
                    tags: tags::from_ec2(v.tags()),
                })
            })
        });
        futures::future::try_join_all(reads).await
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .create_vpc()
            .cidr_block(&want.attrs.cidr_block)
            .tag_specifications(tags::ec2_spec(ResourceType::Vpc, &want.tags))
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
        set_dns(aws, &vpc_id, &want.attrs, None).await?;
        Ok(vpc_id)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        set_dns(aws, &have.physical_id, &want.attrs, Some(&have.attrs)).await
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
