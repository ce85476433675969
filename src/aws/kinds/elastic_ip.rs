//! Elastic IPs for NAT gateways. The public address is read back for `infra output`.

use aws_sdk_ec2::types::{DomainType, ResourceType};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Live, ResourceKind, Scope, Want, gone_ok};
use crate::aws::ec2::{not_idempotent, retry_while, scope_filters};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    /// Always `vpc`.
    pub domain: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub public_ip: Option<String>,
}

pub struct ElasticIp;

impl super::Desire for Attrs {
    type Kind = ElasticIp;
}

#[async_trait::async_trait]
impl ResourceKind for ElasticIp {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["domain"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeAddresses"],
        create: &["ec2:AllocateAddress"],
        change: &[],
        delete: &["ec2:ReleaseAddress"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        // DescribeAddresses is not paginated: it returns every match at once.
        let out = aws
            .ec2
            .describe_addresses()
            .set_filters(Some(scope_filters(aws, scope, "allocation-id")))
            .send()
            .await
            .map_err(sdk_error("ec2", "DescribeAddresses"))?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| {
                Some(Live {
                    physical_id: a.allocation_id()?.to_string(),
                    attrs: Attrs {
                        domain: a.domain().map(|d| d.as_str()).unwrap_or("vpc").to_string(),
                    },
                    outputs: Outputs {
                        public_ip: a.public_ip().map(str::to_string),
                    },
                    tags: tags::from_ec2(a.tags()),
                })
            })
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .allocate_address()
            .domain(DomainType::from(want.attrs.domain.as_str()))
            .tag_specifications(tags::ec2_spec(ResourceType::ElasticIp, &want.tags))
            .customize()
            .config_override(not_idempotent())
            .send()
            .await
            .map_err(sdk_error("ec2", "AllocateAddress"))?;
        Ok(out.allocation_id().unwrap_or_default().to_string())
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
