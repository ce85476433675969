//! Elastic IPs for NAT gateways. The public address is read back for `infra output`.

use aws_sdk_ec2::types::{DomainType, Filter, ResourceType};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{
    env_filter, filter, gone_ok, id_tag, not_idempotent, retry_while, sync_tags, tag_spec,
    tags_json,
};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct ElasticIp;

async fn read(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<LiveResource>, AwsError> {
    // DescribeAddresses is not paginated: it returns every match at once.
    let out = aws
        .ec2
        .describe_addresses()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(sdk_error("ec2", "DescribeAddresses"))?;
    Ok(out
        .addresses()
        .iter()
        .filter_map(|a| {
            Some(LiveResource {
                kind: Kind::ElasticIp,
                physical_id: a.allocation_id()?.to_string(),
                id: id_tag(a.tags()),
                attrs: json!({
                    "domain": a.domain().map(|d| d.as_str()).unwrap_or("vpc"),
                    "public_ip": a.public_ip(),
                    "tags": tags_json(a.tags()),
                }),
            })
        })
        .collect())
}

#[async_trait::async_trait]
impl Adapter for ElasticIp {
    fn kind(&self) -> Kind {
        Kind::ElasticIp
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![env_filter(&aws.environment)]).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![filter("allocation-id", ids)]).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(ResourceType::ElasticIp, attrs))
            .customize()
            .config_override(not_idempotent())
            .send()
            .await
            .map_err(sdk_error("ec2", "AllocateAddress"))?;
        read_one(self, aws, out.allocation_id().unwrap_or_default()).await
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
        // Still associated while its NAT gateway finishes deleting.
        gone_ok(
            retry_while(&["InvalidIPAddress.InUse"], || async {
                aws.ec2
                    .release_address()
                    .allocation_id(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "ReleaseAddress"))
            })
            .await,
        )
    }
}
