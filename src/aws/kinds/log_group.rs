//! CloudWatch log groups, one per service, with a retention. Found with one prefix-filtered
//! describe (`/ecs/<env>/`); tags cost one call per group.

use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::{Aws, sdk_error, tag_changes, tag_pairs, tags_value};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct LogGroup;

/// Log group ARNs as DescribeLogGroups gives them end in `:*`; tagging APIs want them without.
fn bare_arn(arn: &str) -> &str {
    arn.strip_suffix(":*").unwrap_or(arn)
}

async fn read(
    aws: &Aws,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<LiveResource>, AwsError> {
    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(prefix)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("logs", "DescribeLogGroups"))?;
    let mut out = Vec::new();
    for g in groups
        .iter()
        .filter(|g| g.log_group_name().is_some_and(&keep))
    {
        let name = g.log_group_name().unwrap_or_default();
        let arn = g
            .log_group_arn()
            .or(g.arn())
            .map(bare_arn)
            .unwrap_or_default();
        let tags = aws
            .logs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(sdk_error("logs", "ListTagsForResource"))?;
        let tags = tags_value(
            tags.tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        out.push(LiveResource {
            kind: Kind::LogGroup,
            physical_id: name.to_string(),
            id: tags["infra:id"].as_str().map(str::to_string),
            attrs: json!({
                "name": name,
                "retention_in_days": g.retention_in_days(),
                "arn": arn,
                "tags": tags,
            }),
        });
    }
    Ok(out)
}

async fn set_retention(aws: &Aws, name: &str, attrs: &Value) -> Result<(), AwsError> {
    let days = attrs["retention_in_days"].as_i64().unwrap_or(30) as i32;
    aws.logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("logs", "PutRetentionPolicy"))
}

#[async_trait::async_trait]
impl Adapter for LogGroup {
    fn kind(&self) -> Kind {
        Kind::LogGroup
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, &format!("/ecs/{}/", aws.environment), |_| true).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(read(aws, id, |name| name == id).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let name = attrs["name"].as_str().unwrap_or_default();
        aws.logs
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(tag_pairs(attrs).into_iter().collect()))
            .send()
            .await
            .map_err(sdk_error("logs", "CreateLogGroup"))?;
        set_retention(aws, name, attrs).await?;
        read_one(self, aws, name).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        if have.attrs["retention_in_days"] != attrs["retention_in_days"] {
            set_retention(aws, physical, attrs).await?;
        }
        let arn = have.attrs["arn"].as_str().unwrap_or_default();
        let (set, remove) = tag_changes(&have.attrs["tags"], &attrs["tags"]);
        if !set.is_empty() {
            aws.logs
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(set.into_iter().collect()))
                .send()
                .await
                .map_err(sdk_error("logs", "TagResource"))?;
        }
        if !remove.is_empty() {
            aws.logs
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(sdk_error("logs", "UntagResource"))?;
        }
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws
            .logs
            .delete_log_group()
            .log_group_name(physical)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("logs", "DeleteLogGroup")(e);
                if e.code_is("ResourceNotFoundException") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
