//! Tags, once for every AWS service: reading them into a map (without the `aws:` tags nobody can
//! change), and bringing a resource's tags to exactly the wanted set with the service's own
//! tagging calls. Every kind names its `TagApi`; none writes its own tag sync.

use aws_smithy_types::error::operation::BuildError;

use super::kinds::Tags;
use super::{Aws, sdk_error};
use crate::error::AwsError;

/// The tagging API a kind's resources answer to.
/// The IAM action of the one lookup of tagged resources many kinds share (`infra policy`).
pub const IAM_READS: &[&str] = &["tag:GetResources"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagApi {
    /// CreateTags / DeleteTags by resource id.
    Ec2,
    /// AddTags / RemoveTags by ARN.
    Elbv2,
    /// TagResource / UntagResource by ARN.
    Ecs,
    /// TagResource / UntagResource by ARN (without the `:*` suffix).
    Logs,
    /// TagResource / UntagResource by ARN.
    Ecr,
    /// TagRole / UntagRole by role name.
    Iam,
    /// CloudWatch TagResource / UntagResource by ARN (alarms).
    CloudWatch,
    /// SNS TagResource / UntagResource by ARN.
    Sns,
    /// ACM AddTagsToCertificate / RemoveTagsFromCertificate by ARN.
    Acm,
    /// RDS AddTagsToResource / RemoveTagsFromResource by ARN.
    Rds,
    /// TagInstanceProfile / UntagInstanceProfile by instance profile name.
    IamInstanceProfile,
    /// Not taggable here: the kind is identified by its name, and its identity tags are derived
    /// from it (Application Auto Scaling's targets and policies).
    None,
}

impl TagApi {
    /// The IAM actions that add (or change) and remove tags through this API.
    pub fn actions(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            TagApi::Ec2 => (&["ec2:CreateTags"], &["ec2:DeleteTags"]),
            TagApi::Elbv2 => (
                &["elasticloadbalancing:AddTags"],
                &["elasticloadbalancing:RemoveTags"],
            ),
            TagApi::Ecs => (&["ecs:TagResource"], &["ecs:UntagResource"]),
            TagApi::Logs => (&["logs:TagResource"], &["logs:UntagResource"]),
            TagApi::Ecr => (&["ecr:TagResource"], &["ecr:UntagResource"]),
            TagApi::Iam => (&["iam:TagRole"], &["iam:UntagRole"]),
            TagApi::CloudWatch => (&["cloudwatch:TagResource"], &["cloudwatch:UntagResource"]),
            TagApi::Sns => (&["sns:TagResource"], &["sns:UntagResource"]),
            TagApi::Acm => (
                &["acm:AddTagsToCertificate"],
                &["acm:RemoveTagsFromCertificate"],
            ),
            TagApi::Rds => (&["rds:AddTagsToResource"], &["rds:RemoveTagsFromResource"]),
            TagApi::IamInstanceProfile => {
                (&["iam:TagInstanceProfile"], &["iam:UntagInstanceProfile"])
            }
            TagApi::None => (&[], &[]),
        }
    }
}

/// A map of tags from key/value pairs, without the `aws:` tags AWS sets.
pub fn collect<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Tags {
    pairs
        .into_iter()
        .filter(|(k, _)| !k.starts_with("aws:"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// ARNs and tags of this environment's resources of `types` (`ecs:task-definition`, `logs`, …):
/// one paginated GetResources for all of them, however many there are.
pub async fn tagged(
    aws: &Aws,
    types: &[&str],
) -> Result<std::collections::HashMap<String, Tags>, AwsError> {
    tagged_with(aws, types, None).await
}

/// Like `tagged`, narrowed to the resources of one logical id (`infra:id`).
pub async fn tagged_with(
    aws: &Aws,
    types: &[&str],
    id: Option<&str>,
) -> Result<std::collections::HashMap<String, Tags>, AwsError> {
    use aws_sdk_resourcegroupstagging::types::TagFilter;
    let mut filters = vec![
        TagFilter::builder()
            .key(crate::model::TAG_ENVIRONMENT)
            .values(&aws.environment)
            .build(),
    ];
    if let Some(id) = id {
        filters.push(
            TagFilter::builder()
                .key(crate::model::TAG_ID)
                .values(id)
                .build(),
        );
    }
    let pages = aws
        .tagging
        .get_resources()
        .set_tag_filters(Some(filters))
        .set_resource_type_filters(Some(types.iter().map(|t| t.to_string()).collect()))
        .resources_per_page(100)
        .tags_per_page(500)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("tagging", "GetResources"))?;
    Ok(pages
        .into_iter()
        .filter_map(|m| {
            let arn = m.resource_arn()?.to_string();
            let tags = collect(m.tags().iter().map(|t| (t.key(), t.value())));
            Some((arn, tags))
        })
        .collect())
}

/// Tag keys to set (new or changed) and to remove, going from `have` to `want`.
pub fn changes(have: &Tags, want: &Tags) -> (Tags, Vec<String>) {
    let set = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    (set, remove)
}

fn built<T>(r: Result<T, BuildError>, op: &'static str) -> Result<T, AwsError> {
    r.map_err(|e| AwsError::local("infra", op, e.to_string()))
}

/// Makes the tags of `target` exactly `want`: adds and changes in one call, removes in another.
pub async fn sync(
    aws: &Aws,
    api: TagApi,
    target: &str,
    have: &Tags,
    want: &Tags,
) -> Result<(), AwsError> {
    let (set, remove) = changes(have, want);
    if api == TagApi::None {
        return Ok(());
    }
    if !set.is_empty() {
        match api {
            TagApi::Ec2 => {
                aws.ec2
                    .create_tags()
                    .resources(target)
                    .set_tags(Some(ec2(&set)))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "CreateTags"))?;
            }
            TagApi::Elbv2 => {
                aws.elbv2
                    .add_tags()
                    .resource_arns(target)
                    .set_tags(Some(elbv2(&set)))
                    .send()
                    .await
                    .map_err(sdk_error("elbv2", "AddTags"))?;
            }
            TagApi::Ecs => {
                aws.ecs
                    .tag_resource()
                    .resource_arn(target)
                    .set_tags(Some(ecs(&set)))
                    .send()
                    .await
                    .map_err(sdk_error("ecs", "TagResource"))?;
            }
            TagApi::Logs => {
                aws.logs
                    .tag_resource()
                    .resource_arn(target)
                    .set_tags(Some(set.into_iter().collect()))
                    .send()
                    .await
                    .map_err(sdk_error("logs", "TagResource"))?;
            }
            TagApi::Ecr => {
                aws.ecr
                    .tag_resource()
                    .resource_arn(target)
                    .set_tags(Some(ecr(&set)?))
                    .send()
                    .await
                    .map_err(sdk_error("ecr", "TagResource"))?;
            }
            TagApi::Iam => {
                aws.iam
                    .tag_role()
                    .role_name(target)
                    .set_tags(Some(iam(&set)?))
                    .send()
                    .await
                    .map_err(sdk_error("iam", "TagRole"))?;
            }
            TagApi::IamInstanceProfile => {
                aws.iam
                    .tag_instance_profile()
                    .instance_profile_name(target)
                    .set_tags(Some(iam(&set)?))
                    .send()
                    .await
                    .map_err(sdk_error("iam", "TagInstanceProfile"))?;
            }
            TagApi::CloudWatch => {
                let tags = set
                    .iter()
                    .map(|(k, v)| {
                        aws_sdk_cloudwatch::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                    })
                    .collect();
                aws.cloudwatch()
                    .tag_resource()
                    .resource_arn(target)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(sdk_error("cloudwatch", "TagResource"))?;
            }
            TagApi::Sns => {
                let tags = set
                    .iter()
                    .map(|(k, v)| aws_sdk_sns::types::Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>();
                aws.sns()
                    .tag_resource()
                    .resource_arn(target)
                    .set_tags(Some(built(tags, "TagResource")?))
                    .send()
                    .await
                    .map_err(sdk_error("sns", "TagResource"))?;
            }
            TagApi::Acm => {
                let tags = set
                    .iter()
                    .map(|(k, v)| aws_sdk_acm::types::Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>();
                aws.acm()
                    .add_tags_to_certificate()
                    .certificate_arn(target)
                    .set_tags(Some(built(tags, "AddTagsToCertificate")?))
                    .send()
                    .await
                    .map_err(sdk_error("acm", "AddTagsToCertificate"))?;
            }
            TagApi::Rds => {
                let tags = set
                    .iter()
                    .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
                    .collect();
                aws.rds()
                    .add_tags_to_resource()
                    .resource_name(target)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(sdk_error("rds", "AddTagsToResource"))?;
            }
            TagApi::None => {}
        }
    }
    if !remove.is_empty() {
        match api {
            TagApi::Ec2 => {
                let keys = remove
                    .iter()
                    .map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build())
                    .collect();
                aws.ec2
                    .delete_tags()
                    .resources(target)
                    .set_tags(Some(keys))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "DeleteTags"))?;
            }
            TagApi::Elbv2 => {
                aws.elbv2
                    .remove_tags()
                    .resource_arns(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("elbv2", "RemoveTags"))?;
            }
            TagApi::Ecs => {
                aws.ecs
                    .untag_resource()
                    .resource_arn(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("ecs", "UntagResource"))?;
            }
            TagApi::Logs => {
                aws.logs
                    .untag_resource()
                    .resource_arn(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("logs", "UntagResource"))?;
            }
            TagApi::Ecr => {
                aws.ecr
                    .untag_resource()
                    .resource_arn(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("ecr", "UntagResource"))?;
            }
            TagApi::Iam => {
                aws.iam
                    .untag_role()
                    .role_name(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("iam", "UntagRole"))?;
            }
            TagApi::IamInstanceProfile => {
                aws.iam
                    .untag_instance_profile()
                    .instance_profile_name(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("iam", "UntagInstanceProfile"))?;
            }
            TagApi::CloudWatch => {
                aws.cloudwatch()
                    .untag_resource()
                    .resource_arn(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("cloudwatch", "UntagResource"))?;
            }
            TagApi::Sns => {
                aws.sns()
                    .untag_resource()
                    .resource_arn(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("sns", "UntagResource"))?;
            }
            TagApi::Acm => {
                let tags = remove
                    .iter()
                    .map(|k| aws_sdk_acm::types::Tag::builder().key(k).build())
                    .collect::<Result<Vec<_>, _>>();
                aws.acm()
                    .remove_tags_from_certificate()
                    .certificate_arn(target)
                    .set_tags(Some(built(tags, "RemoveTagsFromCertificate")?))
                    .send()
                    .await
                    .map_err(sdk_error("acm", "RemoveTagsFromCertificate"))?;
            }
            TagApi::Rds => {
                aws.rds()
                    .remove_tags_from_resource()
                    .resource_name(target)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(sdk_error("rds", "RemoveTagsFromResource"))?;
            }
            TagApi::None => {}
        }
    }
    Ok(())
}

pub fn ec2(tags: &Tags) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// The tags for an EC2 create call itself.
pub fn ec2_spec(
    resource_type: aws_sdk_ec2::types::ResourceType,
    tags: &Tags,
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(ec2(tags)))
        .build()
}

pub fn from_ec2(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    collect(
        tags.iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    )
}

pub fn elbv2(tags: &Tags) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

pub fn ecs(tags: &Tags) -> Vec<aws_sdk_ecs::types::Tag> {
    tags.iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn from_ecs(tags: &[aws_sdk_ecs::types::Tag]) -> Tags {
    collect(tags.iter().filter_map(|t| Some((t.key()?, t.value()?))))
}

pub fn ecr(tags: &Tags) -> Result<Vec<aws_sdk_ecr::types::Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            built(
                aws_sdk_ecr::types::Tag::builder().key(k).value(v).build(),
                "ecr tag",
            )
        })
        .collect()
}

pub fn iam(tags: &Tags) -> Result<Vec<aws_sdk_iam::types::Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            built(
                aws_sdk_iam::types::Tag::builder().key(k).value(v).build(),
                "iam tag",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_what_differs_and_remove_what_is_unwanted() {
        let have: Tags = [("a", "1"), ("b", "2"), ("c", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want: Tags = [("a", "1"), ("b", "20"), ("d", "4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (set, remove) = changes(&have, &want);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            [
                ("b".to_string(), "20".to_string()),
                ("d".into(), "4".into())
            ]
        );
        assert_eq!(remove, ["c"]);
        assert_eq!(collect([("aws:x", "y"), ("k", "v")]).len(), 1);
    }
}
