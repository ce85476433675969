//! CloudWatch log groups, one per service, with a retention. Found with one prefix-filtered
//! describe (`/ecs/<env>/`) and one tag lookup for all of them.

use std::collections::HashMap;

use aws_sdk_cloudwatchlogs::types::LogGroup as CwLogGroup;
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Live, ResourceKind, Scope, Tags, Taken, Want, gone_ok, taken_among};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub name: String,
    pub retention_in_days: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    /// Without the `:*` suffix DescribeLogGroups gives it: what the tagging API wants.
    pub arn: String,
}

pub struct LogGroup;

impl super::Desire for Attrs {
    type Kind = LogGroup;
}

/// Log group ARNs as DescribeLogGroups gives them end in `:*`; tagging APIs want them without.
fn bare_arn(arn: &str) -> &str {
    arn.strip_suffix(":*").unwrap_or(arn)
}

/// The groups whose names start with `prefix`: one paginated describe.
async fn groups(aws: &Aws, prefix: &str) -> Result<Vec<CwLogGroup>, AwsError> {
    aws.logs
        .describe_log_groups()
        .log_group_name_prefix(prefix)
        .limit(50)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("logs", "DescribeLogGroups"))
}

fn arn_of(g: &CwLogGroup) -> &str {
    g.log_group_arn()
        .or(g.arn())
        .map(bare_arn)
        .unwrap_or_default()
}

fn live(g: &CwLogGroup, tags: Tags) -> Live<Attrs, Outputs> {
    let name = g.log_group_name().unwrap_or_default();
    Live {
        physical_id: name.to_string(),
        attrs: Attrs {
            name: name.to_string(),
            retention_in_days: g
                .retention_in_days()
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or_default(),
        },
        outputs: Outputs {
            arn: arn_of(g).to_string(),
        },
        tags,
    }
}

async fn tags_of(aws: &Aws, arn: &str) -> Result<Tags, AwsError> {
    let listed = aws
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(sdk_error("logs", "ListTagsForResource"))?;
    Ok(tags::collect(
        listed
            .tags()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

async fn set_retention(aws: &Aws, name: &str, days: u32) -> Result<(), AwsError> {
    aws.logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days as i32)
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("logs", "PutRetentionPolicy"))
}

#[async_trait::async_trait]
impl ResourceKind for LogGroup {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]);
    const TAGS: TagApi = TagApi::Logs;
    const IAM: Iam = Iam {
        read: &["logs:DescribeLogGroups", "logs:ListTagsForResource"],
        create: &["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
        change: &["logs:PutRetentionPolicy"],
        delete: &["logs:DeleteLogGroup"],
        scope: IamScope::Arns(&["arn:{partition}:logs:{region}:*:log-group:/ecs/{env}/*"]),
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        match scope {
            // One describe by prefix and one tag lookup, in parallel, for any number of groups.
            Scope::Environment(_) => {
                let prefix = naming::log_group_prefix(&aws.environment);
                let (found, tagged) =
                    futures::try_join!(groups(aws, &prefix), tags::tagged(aws, &["logs"]),)?;
                let tagged: HashMap<&str, &Tags> =
                    tagged.iter().map(|(a, t)| (bare_arn(a), t)).collect();
                Ok(found
                    .iter()
                    .map(|g| {
                        let tags = tagged.get(arn_of(g)).map(|t| (*t).clone());
                        live(g, tags.unwrap_or_default())
                    })
                    .collect())
            }
            Scope::Ids(ids) => {
                let reads = ids.iter().map(|id| async move {
                    let mut out = Vec::new();
                    for g in groups(aws, id).await? {
                        if g.log_group_name() == Some(id.as_str()) {
                            out.push(live(&g, tags_of(aws, arn_of(&g)).await?));
                        }
                    }
                    Ok::<_, AwsError>(out)
                });
                Ok(futures::future::try_join_all(reads)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect())
            }
        }
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        aws.logs
            .create_log_group()
            .log_group_name(&a.name)
            .set_tags(Some(want.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(sdk_error("logs", "CreateLogGroup"))?;
        set_retention(aws, &a.name, a.retention_in_days).await?;
        Ok(a.name.clone())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        if have.attrs.retention_in_days != want.attrs.retention_in_days {
            set_retention(aws, &have.physical_id, want.attrs.retention_in_days).await?;
        }
        Ok(())
    }

    fn tag_target(have: &Live<Attrs, Outputs>) -> String {
        have.outputs.arn.clone()
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.logs
                .delete_log_group()
                .log_group_name(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("logs", "DeleteLogGroup")),
        )
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let existing = groups(aws, &naming::log_group_prefix(&aws.environment))
            .await?
            .iter()
            .filter_map(|g| g.log_group_name().map(|n| (n.to_string(), n.to_string())))
            .collect();
        Ok(taken_among(wants, |a| &a.name, &existing))
    }
}
