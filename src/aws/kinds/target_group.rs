//! Target groups, one per service with a port: HTTP to the tasks' IPs, with the service's health
//! check path. Found with one tag lookup for the environment, described twenty at a time.

use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroup as Tg, TargetTypeEnum,
};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{
    Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Tags, Taken, Want, absent_ok, gone_ok,
};
use crate::aws::ec2::retry_while;
use crate::aws::elbv2::tags_of;
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    pub port: u16,
    pub protocol: String,
    pub target_type: String,
    pub vpc_id: R,
    pub health_check_path: String,
}

pub struct TargetGroup;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = TargetGroup;
}

fn live(g: &Tg, tags: Tags) -> Option<Live<Attrs>> {
    Some(Live {
        physical_id: g.target_group_arn()?.to_string(),
        attrs: Attrs {
            name: g.target_group_name().unwrap_or_default().to_string(),
            port: g
                .port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or_default(),
            protocol: g
                .protocol()
                .map(|p| p.as_str())
                .unwrap_or_default()
                .to_string(),
            target_type: g
                .target_type()
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            vpc_id: g.vpc_id().unwrap_or_default().to_string(),
            health_check_path: g.health_check_path().unwrap_or_default().to_string(),
        },
        outputs: NoOutputs {},
        tags,
    })
}

/// The groups with these ARNs that exist (one DescribeTargetGroups per twenty, in parallel).
async fn describe(aws: &Aws, arns: &[String]) -> Result<Vec<Tg>, AwsError> {
    let chunks = arns.chunks(20).map(|chunk| async move {
        let found = absent_ok(
            aws.elbv2
                .describe_target_groups()
                .set_target_group_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map(|out| Some(out.target_groups().to_vec()))
                .map_err(sdk_error("elbv2", "DescribeTargetGroups")),
        )?;
        match found {
            Some(groups) => Ok(groups),
            // One of them is gone (the whole call fails then): ask for each alone.
            None => {
                let one = chunk.iter().map(|arn| async move {
                    absent_ok(
                        aws.elbv2
                            .describe_target_groups()
                            .target_group_arns(arn)
                            .send()
                            .await
                            .map(|out| out.target_groups().to_vec())
                            .map_err(sdk_error("elbv2", "DescribeTargetGroups")),
                    )
                });
                Ok(try_join_all(one).await?.into_iter().flatten().collect())
            }
        }
    });
    Ok(try_join_all(chunks).await?.into_iter().flatten().collect())
}

#[async_trait::async_trait]
impl ResourceKind for TargetGroup {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema =
        Schema::replace_on(&["name", "port", "protocol", "target_type", "vpc_id"]);
    const TAGS: TagApi = TagApi::Elbv2;
    const IAM: Iam = Iam {
        read: &[
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTags",
        ],
        create: &["elasticloadbalancing:CreateTargetGroup"],
        change: &["elasticloadbalancing:ModifyTargetGroup"],
        delete: &["elasticloadbalancing:DeleteTargetGroup"],
        scope: IamScope::Tags,
    };

    /// The environment's groups come from one tag lookup (ARNs and tags together), then one
    /// DescribeTargetGroups per twenty: the cost does not grow with the number of services.
    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let (groups, mut tags) = match scope {
            // Tags (and which groups are ours) from one tag lookup; the groups the load balancer
            // uses from one describe; any other of ours (not attached yet) by ARN.
            Scope::Environment(env) => {
                // The load balancer's groups by the ARN state recorded (at once), or by the one
                // the lookup by name finds; whatever they miss is described by ARN below.
                let by_lb = async {
                    let lb = match &env.shared.recorded_load_balancer {
                        Some(arn) => Some(arn.clone()),
                        None => env
                            .shared
                            .elb()
                            .await?
                            .load_balancer_arn()
                            .map(str::to_string),
                    };
                    match lb {
                        Some(lb) => absent_ok(
                            aws.elbv2
                                .describe_target_groups()
                                .load_balancer_arn(lb)
                                .page_size(400)
                                .send()
                                .await
                                .map(|out| out.target_groups().to_vec())
                                .map_err(sdk_error("elbv2", "DescribeTargetGroups")),
                        ),
                        None => Ok(Vec::new()),
                    }
                };
                let (tagged, mut groups) = futures::try_join!(
                    tags::tagged(aws, &["elasticloadbalancing:targetgroup"]),
                    by_lb,
                )?;
                groups.retain(|g| g.target_group_arn().is_some_and(|a| tagged.contains_key(a)));
                let rest: Vec<String> = tagged
                    .keys()
                    .filter(|a| {
                        !groups
                            .iter()
                            .any(|g| g.target_group_arn() == Some(a.as_str()))
                    })
                    .cloned()
                    .collect();
                groups.extend(describe(aws, &rest).await?);
                (groups, tagged)
            }
            Scope::Ids(ids) => (describe(aws, ids).await?, tags_of(aws, ids).await?),
        };
        Ok(groups
            .iter()
            .filter_map(|g| {
                let tags = tags.remove(g.target_group_arn()?).unwrap_or_default();
                live(g, tags)
            })
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = aws
            .elbv2
            .create_target_group()
            .name(&a.name)
            .port(i32::from(a.port))
            .protocol(ProtocolEnum::from(a.protocol.as_str()))
            .target_type(TargetTypeEnum::from(a.target_type.as_str()))
            .vpc_id(&a.vpc_id)
            .health_check_path(&a.health_check_path)
            .matcher(Matcher::builder().http_code("200-399").build())
            .set_tags(Some(tags::elbv2(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateTargetGroup"))?;
        Ok(out
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        if have.attrs.health_check_path != want.attrs.health_check_path {
            aws.elbv2
                .modify_target_group()
                .target_group_arn(&have.physical_id)
                .health_check_path(&want.attrs.health_check_path)
                .send()
                .await
                .map_err(sdk_error("elbv2", "ModifyTargetGroup"))?;
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // Still in use until the listener or rule that forwards to it is gone.
        gone_ok(
            retry_while(&["ResourceInUse"], || async {
                aws.elbv2
                    .delete_target_group()
                    .target_group_arn(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("elbv2", "DeleteTargetGroup"))
            })
            .await,
        )
    }

    /// Every target group of the region, listed (a few pages at most: the quota is 3,000).
    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let all = aws
            .elbv2
            .describe_target_groups()
            .page_size(400)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("elbv2", "DescribeTargetGroups"))?;
        Ok(wants
            .iter()
            .filter_map(|w| {
                let g = all
                    .iter()
                    .find(|g| g.target_group_name() == Some(w.attrs.name.as_str()))?;
                Some(Taken::new(&w.id, &w.attrs.name, g.target_group_arn()?))
            })
            .collect())
    }
}
