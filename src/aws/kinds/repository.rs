//! ECR repositories: scan on push, tag immutability and a lifecycle policy keeping the newest
//! images. DescribeRepositories returns neither tags nor lifecycle policies, so each costs one
//! call per repository of this environment (repositories are few, and do not grow with the
//! network).

use aws_sdk_ecr::types::{
    ImageScanningConfiguration, ImageTagMutability, Repository as EcrRepository, Tag,
};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::{Aws, sdk_error, tag_changes, tag_pairs, tags_value};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Repository;

fn mutability(immutable: bool) -> ImageTagMutability {
    if immutable {
        ImageTagMutability::Immutable
    } else {
        ImageTagMutability::Mutable
    }
}

async fn describe(aws: &Aws, r: &EcrRepository) -> Result<LiveResource, AwsError> {
    let name = r.repository_name().unwrap_or_default();
    let arn = r.repository_arn().unwrap_or_default();
    let tags = aws
        .ecr
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(sdk_error("ecr", "ListTagsForResource"))?;
    let tags = tags_value(tags.tags().iter().map(|t| (t.key(), t.value())));
    let policy = match aws
        .ecr
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
    {
        Ok(out) => out
            .lifecycle_policy_text()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null),
        Err(e) => {
            let e = sdk_error("ecr", "GetLifecyclePolicy")(e);
            if e.code_is("LifecyclePolicyNotFoundException") {
                Value::Null
            } else {
                return Err(e);
            }
        }
    };
    let id = tags["infra:id"].as_str().map(str::to_string);
    Ok(LiveResource {
        kind: Kind::Repository,
        physical_id: name.to_string(),
        id,
        attrs: json!({
            "name": name,
            "scan_on_push": r.image_scanning_configuration().is_some_and(|c| c.scan_on_push()),
            "immutable_tags": r.image_tag_mutability() == Some(&ImageTagMutability::Immutable),
            "lifecycle_policy": policy,
            "uri": r.repository_uri(),
            "arn": arn,
            "tags": tags,
        }),
    })
}

/// Every repository whose name passes `keep`, read fully.
async fn read(aws: &Aws, keep: impl Fn(&str) -> bool) -> Result<Vec<LiveResource>, AwsError> {
    let repos = aws
        .ecr
        .describe_repositories()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("ecr", "DescribeRepositories"))?;
    let mut out = Vec::new();
    for r in repos
        .iter()
        .filter(|r| r.repository_name().is_some_and(&keep))
    {
        out.push(describe(aws, r).await?);
    }
    Ok(out)
}

async fn put_policy(aws: &Aws, name: &str, policy: &Value) -> Result<(), AwsError> {
    aws.ecr
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(policy.to_string())
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("ecr", "PutLifecyclePolicy"))
}

#[async_trait::async_trait]
impl Adapter for Repository {
    fn kind(&self) -> Kind {
        Kind::Repository
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        let prefix = format!("{}/", aws.environment);
        read(aws, |name| name.starts_with(&prefix)).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, |name| ids.iter().any(|i| i == name)).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let name = attrs["name"].as_str().unwrap_or_default();
        let tags: Vec<Tag> = tag_pairs(attrs)
            .into_iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("key and value set")
            })
            .collect();
        aws.ecr
            .create_repository()
            .repository_name(name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(attrs["scan_on_push"].as_bool().unwrap_or(true))
                    .build(),
            )
            .image_tag_mutability(mutability(
                attrs["immutable_tags"].as_bool().unwrap_or(true),
            ))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(sdk_error("ecr", "CreateRepository"))?;
        put_policy(aws, name, &attrs["lifecycle_policy"]).await?;
        read_one(self, aws, name).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        if have.attrs["scan_on_push"] != attrs["scan_on_push"] {
            aws.ecr
                .put_image_scanning_configuration()
                .repository_name(physical)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(attrs["scan_on_push"].as_bool().unwrap_or(true))
                        .build(),
                )
                .send()
                .await
                .map_err(sdk_error("ecr", "PutImageScanningConfiguration"))?;
        }
        if have.attrs["immutable_tags"] != attrs["immutable_tags"] {
            aws.ecr
                .put_image_tag_mutability()
                .repository_name(physical)
                .image_tag_mutability(mutability(
                    attrs["immutable_tags"].as_bool().unwrap_or(true),
                ))
                .send()
                .await
                .map_err(sdk_error("ecr", "PutImageTagMutability"))?;
        }
        if have.attrs["lifecycle_policy"] != attrs["lifecycle_policy"] {
            put_policy(aws, physical, &attrs["lifecycle_policy"]).await?;
        }
        let arn = have.attrs["arn"].as_str().unwrap_or_default();
        let (set, remove) = tag_changes(&have.attrs["tags"], &attrs["tags"]);
        if !set.is_empty() {
            let tags: Vec<Tag> = set
                .into_iter()
                .map(|(k, v)| {
                    Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .expect("key and value set")
                })
                .collect();
            aws.ecr
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(sdk_error("ecr", "TagResource"))?;
        }
        if !remove.is_empty() {
            aws.ecr
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(sdk_error("ecr", "UntagResource"))?;
        }
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // `force`: the plan said this repository goes, images included.
        match aws
            .ecr
            .delete_repository()
            .repository_name(physical)
            .force(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("ecr", "DeleteRepository")(e);
                if e.code_is("RepositoryNotFoundException") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
