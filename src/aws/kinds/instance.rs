//! The bastion: one small EC2 instance in a public subnet, Amazon Linux 2023 (the AMI resolved
//! when it is created and kept: a newer one is a plan note, not a surprise), IMDSv2 only, its
//! instance profile letting Session Manager in. Anything about it that differs is a
//! replacement: it keeps no data.

use std::time::Duration;

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, Instance as Ec2Instance,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType,
};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, ResourceKind, Scope, Want};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error, wait};
use crate::error::AwsError;
use crate::model::{Schema, TAG_ENVIRONMENT};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: R,
    /// A set.
    pub security_groups: Vec<R>,
    /// The instance profile's ARN.
    pub instance_profile: R,
    #[serde(default)]
    pub key_name: Option<String>,
}

/// Where to reach it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
}

pub struct Instance;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Instance;
}

/// How long an instance may take to start or to end.
const WAIT: Duration = Duration::from_secs(10 * 60);

/// How long a new instance profile may take to be usable by EC2 (IAM is eventually consistent).
const PROFILE_WAIT: Duration = Duration::from_secs(90);

fn live(i: &Ec2Instance) -> Option<Live<Attrs, Outputs>> {
    let mut security_groups: Vec<String> = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    security_groups.sort();
    Some(Live {
        physical_id: i.instance_id()?.to_string(),
        attrs: Attrs {
            image_id: i.image_id().unwrap_or_default().to_string(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            subnet_id: i.subnet_id().unwrap_or_default().to_string(),
            security_groups,
            instance_profile: i
                .iam_instance_profile()
                .and_then(|p| p.arn())
                .unwrap_or_default()
                .to_string(),
            key_name: i.key_name().map(str::to_string),
        },
        outputs: Outputs {
            public_ip: i.public_ip_address().map(str::to_string),
            private_ip: i.private_ip_address().map(str::to_string),
        },
        tags: tags::collect(
            i.tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
        ),
    })
}

/// Instances not terminated (nor on their way), by filter.
async fn find(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<Ec2Instance>, AwsError> {
    let alive = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(
            ["pending", "running", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        ))
        .build();
    let pages = aws
        .ec2
        .describe_instances()
        .set_filters(Some(filters.into_iter().chain([alive]).collect()))
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("ec2", "DescribeInstances"))?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.reservations.unwrap_or_default())
        .flat_map(|r| r.instances.unwrap_or_default())
        .collect())
}

async fn state_of(aws: &Aws, id: &str) -> Result<Option<InstanceStateName>, AwsError> {
    let out = aws
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(sdk_error("ec2", "DescribeInstances"));
    let out = match out {
        Ok(out) => out,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.state().and_then(|s| s.name()).cloned()))
}

#[async_trait::async_trait]
impl ResourceKind for Instance {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&[
        "image_id",
        "instance_type",
        "subnet_id",
        "security_groups",
        "instance_profile",
        "key_name",
    ])
    .sets(&["security_groups"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeInstances", "ssm:GetParameter"],
        create: &["ec2:RunInstances", "iam:PassRole"],
        change: &[],
        delete: &["ec2:TerminateInstances"],
        scope: IamScope::TagsExcept(
            &["iam:PassRole"],
            "RunInstances passes the bastion's role to EC2 through its instance profile",
        ),
    };
    const READS_STATE: bool = false;

    /// One DescribeInstances by the environment's tag, for its (one) bastion.
    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let found = match scope {
            Scope::Environment(_) => {
                find(
                    aws,
                    vec![
                        Filter::builder()
                            .name(format!("tag:{TAG_ENVIRONMENT}"))
                            .values(&aws.environment)
                            .build(),
                    ],
                )
                .await?
            }
            Scope::Ids(ids) => {
                find(
                    aws,
                    vec![
                        Filter::builder()
                            .name("instance-id")
                            .set_values(Some(ids.to_vec()))
                            .build(),
                    ],
                )
                .await?
            }
        };
        Ok(found.iter().filter_map(live).collect())
    }

    /// Starts it (tagged, with its volume), retrying while IAM has not yet made a new
    /// instance profile visible to EC2, and waits until it runs.
    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        // One token for every attempt: a retried request whose answer was lost gets the
        // instance the first one started, never a second bastion.
        let token = uuid::Uuid::new_v4().to_string();
        let run = || async {
            let r = aws
                .ec2
                .run_instances()
                .client_token(&token)
                .image_id(&a.image_id)
                .instance_type(InstanceType::from(a.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(&a.subnet_id)
                .set_security_group_ids(Some(a.security_groups.clone()))
                .iam_instance_profile(
                    IamInstanceProfileSpecification::builder()
                        .arn(&a.instance_profile)
                        .build(),
                )
                .set_key_name(a.key_name.clone())
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(HttpTokensState::Required)
                        .build(),
                )
                .tag_specifications(tags::ec2_spec(ResourceType::Instance, &want.tags))
                .tag_specifications(tags::ec2_spec(ResourceType::Volume, &want.tags))
                // Not retried blindly by the SDK: an answer lost after the instance started is
                // settled by looking for it by tag (AWS also honours the token; not every
                // implementation of the API does).
                .customize()
                .config_override(crate::aws::ec2::not_idempotent())
                .send()
                .await
                .map_err(sdk_error("ec2", "RunInstances"));
            match r {
                Ok(out) => Ok(out
                    .instances()
                    .first()
                    .and_then(|i| i.instance_id())
                    .map(str::to_string)),
                Err(e)
                    if e.code.as_deref() == Some("InvalidParameterValue")
                        && e.message.contains("iamInstanceProfile") =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        let id = wait::until(
            "ec2",
            "RunInstances",
            "the new instance profile to reach EC2",
            PROFILE_WAIT,
            run,
        )
        .await?;
        wait::until(
            "ec2",
            "DescribeInstances",
            &format!("the bastion {id} to run"),
            WAIT,
            || async {
                Ok(match state_of(aws, &id).await? {
                    Some(InstanceStateName::Running) => Some(()),
                    _ => None,
                })
            },
        )
        .await?;
        Ok(id)
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match state_of(aws, physical).await? {
            None | Some(InstanceStateName::Terminated) => return Ok(()),
            Some(_) => {}
        }
        aws.ec2
            .terminate_instances()
            .instance_ids(physical)
            .send()
            .await
            .map_err(sdk_error("ec2", "TerminateInstances"))?;
        wait::until(
            "ec2",
            "DescribeInstances",
            &format!("the bastion {physical} to terminate"),
            WAIT,
            || async {
                Ok(match state_of(aws, physical).await? {
                    None | Some(InstanceStateName::Terminated) => Some(()),
                    _ => None,
                })
            },
        )
        .await
    }
}

/// The public parameter that names the latest Amazon Linux 2023 AMI for an instance type's
/// architecture (Graviton families, `t4g`, `m7g`…, run arm64).
pub fn ami_parameter(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    let graviton = family
        .trim_start_matches(|c: char| c.is_ascii_lowercase())
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .contains('g');
    if graviton {
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    } else {
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    }
}

/// The latest Amazon Linux 2023 AMI for `instance_type`, from AWS's public parameter.
pub async fn latest_ami(aws: &Aws, instance_type: &str) -> Result<String, AwsError> {
    let out = aws
        .ssm()
        .get_parameter()
        .name(ami_parameter(instance_type))
        .send()
        .await
        .map_err(sdk_error("ssm", "GetParameter"))?;
    out.parameter
        .and_then(|p| p.value)
        .ok_or_else(|| AwsError::local("ssm", "GetParameter", "the AMI parameter has no value"))
}

#[cfg(test)]
mod tests {
    use super::ami_parameter;

    #[test]
    fn graviton_types_get_the_arm64_image() {
        assert!(ami_parameter("t3.micro").ends_with("x86_64"));
        assert!(ami_parameter("t4g.small").ends_with("arm64"));
        assert!(ami_parameter("m7gd.large").ends_with("arm64"));
        assert!(ami_parameter("c5n.large").ends_with("x86_64"));
    }
}
