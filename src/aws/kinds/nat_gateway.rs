//! NAT gateways. Created with a client token (a retried request never makes a twin), then waited
//! on until available; deleting waits until AWS reports them deleted, so the Elastic IP and
//! subnet behind them can go next.

use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{ConnectivityType, Filter, NatGatewayState, ResourceType};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{env_filter, filter, id_tag, str_attr, sync_tags, tag_spec, tags_json};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct NatGateway;

const WAIT: Duration = Duration::from_secs(15 * 60);

async fn read(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<LiveResource>, AwsError> {
    let nats = aws
        .ec2
        .describe_nat_gateways()
        .set_filter(Some(filters))
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
                Some(NatGatewayState::Deleted | NatGatewayState::Deleting | NatGatewayState::Failed)
            )
        })
        .filter_map(|n| {
            let address = n.nat_gateway_addresses().first();
            Some(LiveResource {
                kind: Kind::NatGateway,
                physical_id: n.nat_gateway_id()?.to_string(),
                id: id_tag(n.tags()),
                attrs: json!({
                    "subnet_id": n.subnet_id(),
                    "allocation_id": address.and_then(|a| a.allocation_id()),
                    "connectivity_type": n.connectivity_type().map(|c| c.as_str()).unwrap_or("public"),
                    "public_ip": address.and_then(|a| a.public_ip()),
                    "tags": tags_json(n.tags()),
                }),
            })
        })
        .collect())
}

#[async_trait::async_trait]
impl Adapter for NatGateway {
    fn kind(&self) -> Kind {
        Kind::NatGateway
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![env_filter(&aws.environment)]).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![filter("nat-gateway-id", ids)]).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .create_nat_gateway()
            .subnet_id(str_attr(attrs, "subnet_id"))
            .allocation_id(str_attr(attrs, "allocation_id"))
            .connectivity_type(ConnectivityType::from(str_attr(attrs, "connectivity_type")))
            .client_token(uuid::Uuid::new_v4().to_string())
            .tag_specifications(tag_spec(ResourceType::Natgateway, attrs))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateNatGateway"))?;
        let nat = out
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .unwrap_or_default()
            .to_string();
        aws.ec2
            .wait_until_nat_gateway_available()
            .nat_gateway_ids(&nat)
            .wait(WAIT)
            .await
            .map_err(|e| {
                AwsError::local(
                    "ec2",
                    "DescribeNatGateways",
                    format!("NAT gateway {nat} did not become available: {e}"),
                )
            })?;
        read_one(self, aws, &nat).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
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
        aws.ec2
            .wait_until_nat_gateway_deleted()
            .nat_gateway_ids(physical)
            .wait(WAIT)
            .await
            .map_err(|e| {
                AwsError::local(
                    "ec2",
                    "DescribeNatGateways",
                    format!("NAT gateway {physical} was not deleted in time: {e}"),
                )
            })?;
        Ok(())
    }
}
