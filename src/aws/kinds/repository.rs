//! ECR repositories: scan on push, tag immutability and a lifecycle policy keeping the newest
//! images. DescribeRepositories returns neither tags nor lifecycle policies, so each costs one
//! call per repository of this environment (repositories are few, and do not grow with the
//! network).

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository as Ecr};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Iam, IamScope, Live, ResourceKind, Scope, Taken, Want, absent_ok, gone_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub name: String,
    pub scan_on_push: bool,
    pub immutable_tags: bool,
    /// The ECR lifecycle policy document.
    pub lifecycle_policy: Value,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub uri: Option<String>,
    pub arn: String,
}

pub struct Repository;

impl super::Desire for Attrs {
    type Kind = Repository;
}

fn mutability(immutable: bool) -> ImageTagMutability {
    if immutable {
        ImageTagMutability::Immutable
    } else {
        ImageTagMutability::Mutable
    }
}

async fn describe(aws: &Aws, r: &Ecr) -> Result<Live<Attrs, Outputs>, AwsError> {
    let name = r.repository_name().unwrap_or_default();
    let arn = r.repository_arn().unwrap_or_default();
    let tags = aws
        .ecr
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(sdk_error("ecr", "ListTagsForResource"))?;
    let tags = tags::collect(tags.tags().iter().map(|t| (t.key(), t.value())));
    let policy = absent_ok(
        aws.ecr
            .get_lifecycle_policy()
            .repository_name(name)
            .send()
            .await
            .map(|out| {
                out.lifecycle_policy_text()
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                    .unwrap_or(Value::Null)
            })
            .map_err(sdk_error("ecr", "GetLifecyclePolicy")),
    )?;
    Ok(Live {
        physical_id: name.to_string(),
        attrs: Attrs {
            name: name.to_string(),
            scan_on_push: r
                .image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
            immutable_tags: r.image_tag_mutability() == Some(&ImageTagMutability::Immutable),
            lifecycle_policy: policy,
        },
        outputs: Outputs {
            uri: r.repository_uri().map(str::to_string),
            arn: arn.to_string(),
        },
        tags,
    })
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

fn scanning(on: bool) -> ImageScanningConfiguration {
    ImageScanningConfiguration::builder()
        .scan_on_push(on)
        .build()
}

#[async_trait::async_trait]
impl ResourceKind for Repository {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]);
    const TAGS: TagApi = TagApi::Ecr;
    const IAM: Iam = Iam {
        read: &[
            "ecr:DescribeRepositories",
            "ecr:GetLifecyclePolicy",
            "ecr:ListTagsForResource",
        ],
        create: &["ecr:CreateRepository", "ecr:PutLifecyclePolicy"],
        change: &[
            "ecr:PutImageScanningConfiguration",
            "ecr:PutImageTagMutability",
            "ecr:PutLifecyclePolicy",
        ],
        delete: &["ecr:DeleteRepository"],
        scope: IamScope::Arns(&["arn:{partition}:ecr:{region}:*:repository/{env}/*"]),
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let repos = aws
            .ecr
            .describe_repositories()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ecr", "DescribeRepositories"))?;
        let prefix = naming::repository_prefix(&aws.environment);
        let keep = |name: &str| match scope {
            Scope::Environment(_) => name.starts_with(&prefix),
            Scope::Ids(ids) => ids.iter().any(|i| i == name),
        };
        let reads = repos
            .iter()
            .filter(|r| r.repository_name().is_some_and(keep))
            .map(|r| describe(aws, r));
        futures::future::try_join_all(reads).await
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        aws.ecr
            .create_repository()
            .repository_name(&a.name)
            .image_scanning_configuration(scanning(a.scan_on_push))
            .image_tag_mutability(mutability(a.immutable_tags))
            .set_tags(Some(tags::ecr(&want.tags)?))
            .send()
            .await
            .map_err(sdk_error("ecr", "CreateRepository"))?;
        put_policy(aws, &a.name, &a.lifecycle_policy).await?;
        Ok(a.name.clone())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let (h, w, name) = (&have.attrs, &want.attrs, have.physical_id.as_str());
        if h.scan_on_push != w.scan_on_push {
            aws.ecr
                .put_image_scanning_configuration()
                .repository_name(name)
                .image_scanning_configuration(scanning(w.scan_on_push))
                .send()
                .await
                .map_err(sdk_error("ecr", "PutImageScanningConfiguration"))?;
        }
        if h.immutable_tags != w.immutable_tags {
            aws.ecr
                .put_image_tag_mutability()
                .repository_name(name)
                .image_tag_mutability(mutability(w.immutable_tags))
                .send()
                .await
                .map_err(sdk_error("ecr", "PutImageTagMutability"))?;
        }
        if h.lifecycle_policy != w.lifecycle_policy {
            put_policy(aws, name, &w.lifecycle_policy).await?;
        }
        Ok(())
    }

    fn tag_target(have: &Live<Attrs, Outputs>) -> String {
        have.outputs.arn.clone()
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // `force`: the plan said this repository goes, images included.
        gone_ok(
            aws.ecr
                .delete_repository()
                .repository_name(physical)
                .force(true)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("ecr", "DeleteRepository")),
        )
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let asks = wants.iter().map(|w| async move {
            let found = absent_ok(
                aws.ecr
                    .describe_repositories()
                    .repository_names(&w.attrs.name)
                    .send()
                    .await
                    .map(|out| out.repositories().len())
                    .map_err(sdk_error("ecr", "DescribeRepositories")),
            )?;
            Ok::<_, AwsError>((found > 0).then(|| Taken::new(&w.id, &w.attrs.name, &w.attrs.name)))
        });
        Ok(futures::future::try_join_all(asks)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}
