//! NAT gateways. Created with a client token (a retried request never makes a twin), then waited
//! on until available; deleting waits until AWS reports them deleted, so the Elastic IP and
//! subnet behind them can go next.

use std::time::Duration;

use aws_sdk_ec2::types::{ConnectivityType, NatGatewayState, ResourceType};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, ResourceKind, Scope, Want, absent_ok};
use crate::aws::ec2::scope_filters;
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error, wait};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub subnet_id: R,
    pub allocation_id: R,
    /// Always `public`.
    pub connectivity_type: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub public_ip: Option<String>,
}

pub struct NatGateway;

/// A gateway's state, `None` once AWS no longer knows it.
async fn state(aws: &Aws, nat: &str) -> Result<Option<NatGatewayState>, AwsError> {
    let out = absent_ok(
        aws.ec2
            .describe_nat_gateways()
            .nat_gateway_ids(nat)
            .send()
            .await
            .map(Some)
            .map_err(sdk_error("ec2", "DescribeNatGateways")),
    )?;
    Ok(out.and_then(|o| o.nat_gateways().first().and_then(|n| n.state().cloned())))
}

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = NatGateway;
}

const WAIT: Duration = Duration::from_secs(15 * 60);

#[async_trait::async_trait]
impl ResourceKind for NatGateway {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["subnet_id", "allocation_id", "connectivity_type"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeNatGateways"],
        create: &["ec2:CreateNatGateway"],
        change: &[],
        delete: &["ec2:DeleteNatGateway"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let nats = aws
            .ec2
            .describe_nat_gateways()
            .set_filter(Some(scope_filters(aws, scope, "nat-gateway-id")))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ec2", "DescribeNatGateways"))?;
        Ok(nats
            .into_iter()
            // Deleted gateways stay visible for an hour; they are gone for every purpose here.
            .filter(|n| {
                !matches!(
                    n.state(),
                    Some(
                        NatGatewayState::Deleted
                            | NatGatewayState::Deleting
                            | NatGatewayState::Failed
                    )
                )
            })
            .filter_map(|n| {
                let address = n.nat_gateway_addresses().first();
                Some(Live {
                    physical_id: n.nat_gateway_id()?.to_string(),
                    attrs: Attrs {
                        subnet_id: n.subnet_id().unwrap_or_default().to_string(),
                        allocation_id: address
                            .and_then(|a| a.allocation_id())
                            .unwrap_or_default()
                            .to_string(),
                        connectivity_type: n
                            .connectivity_type()
                            .map(|c| c.as_str())
                            .unwrap_or("public")
                            .to_string(),
                    },
                    outputs: Outputs {
                        public_ip: address.and_then(|a| a.public_ip()).map(str::to_string),
                    },
                    tags: tags::from_ec2(n.tags()),
                })
            })
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .create_nat_gateway()
            .subnet_id(&want.attrs.subnet_id)
            .allocation_id(&want.attrs.allocation_id)
            .connectivity_type(ConnectivityType::from(
                want.attrs.connectivity_type.as_str(),
            ))
            .client_token(uuid::Uuid::new_v4().to_string())
            .tag_specifications(tags::ec2_spec(ResourceType::Natgateway, &want.tags))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateNatGateway"))?;
        let nat = out
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .unwrap_or_default()
            .to_string();
        wait::until(
            "ec2",
            "DescribeNatGateways",
            &format!("the NAT gateway {nat} to become available"),
            WAIT,
            || async {
                match state(aws, &nat).await? {
                    Some(NatGatewayState::Available) => Ok(Some(())),
                    Some(NatGatewayState::Failed) => Err(AwsError::local(
                        "ec2",
                        "CreateNatGateway",
                        format!("NAT gateway {nat} failed to start"),
                    )),
                    _ => Ok(None),
                }
            },
        )
        .await?;
        Ok(nat)
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(physical)
            .send()
            .await
            .map_err(sdk_error("ec2", "DeleteNatGateway"))
        {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        wait::until(
            "ec2",
            "DescribeNatGateways",
            &format!("the NAT gateway {physical} to be deleted"),
            WAIT,
            || async {
                Ok(match state(aws, physical).await? {
                    None | Some(NatGatewayState::Deleted) => Some(()),
                    _ => None,
                })
            },
        )
        .await?;
        Ok(())
    }
}
