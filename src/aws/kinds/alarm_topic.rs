//! The SNS topic every alarm notifies, with the file's email subscriptions. Found with one tag
//! lookup, its subscriptions listed with it.
//!
//! An email subscription waits for its recipient to confirm; pending, it counts as present
//! (AWS sends no second invitation). AWS cannot remove a subscription still pending: one infra
//! unsubscribed (no longer in the recorded list) is left to expire and not read back.

use aws_sdk_sns::types::{Subscription, Tag};
use serde::{Deserialize, Serialize};

use super::{
    Iam, IamScope, Live, NoOutputs, Recorded, ResourceKind, Scope, Tags, Taken, Want, absent_ok,
    gone_ok, taken_among,
};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub name: String,
    /// Email addresses subscribed (a set).
    pub emails: Vec<String>,
}

pub struct AlarmTopic;

impl super::Desire for Attrs {
    type Kind = AlarmTopic;
}

/// What SNS shows for a subscription its recipient has not confirmed yet.
const PENDING: &str = "PendingConfirmation";

fn name_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

async fn subscriptions(aws: &Aws, arn: &str) -> Result<Vec<Subscription>, AwsError> {
    let pages = aws
        .sns()
        .list_subscriptions_by_topic()
        .topic_arn(arn)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("sns", "ListSubscriptionsByTopic"))?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.subscriptions.unwrap_or_default())
        .filter(|s| s.protocol() == Some("email"))
        .collect())
}

/// The topic as live state: its email subscriptions, less those pending that the last apply
/// no longer wanted (AWS lets them expire).
async fn live(
    aws: &Aws,
    arn: &str,
    tags: Tags,
    recorded: Option<&Recorded>,
) -> Result<Live<Attrs>, AwsError> {
    let was: Option<Vec<String>> = recorded
        .and_then(|r| r.get(arn))
        .and_then(|v| serde_json::from_value(v["emails"].clone()).ok());
    let mut emails: Vec<String> = subscriptions(aws, arn)
        .await?
        .iter()
        .filter(|s| {
            let pending = s.subscription_arn() == Some(PENDING);
            let dropped = was
                .as_ref()
                .is_some_and(|w| !w.iter().any(|e| Some(e.as_str()) == s.endpoint()));
            !(pending && dropped)
        })
        .filter_map(|s| s.endpoint().map(str::to_string))
        .collect();
    emails.sort();
    emails.dedup();
    Ok(Live {
        physical_id: arn.to_string(),
        attrs: Attrs {
            name: name_of(arn).to_string(),
            emails,
        },
        outputs: NoOutputs {},
        tags,
    })
}

async fn tags_of(aws: &Aws, arn: &str) -> Result<Option<Tags>, AwsError> {
    let listed = absent_ok(
        aws.sns()
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map(Some)
            .map_err(sdk_error("sns", "ListTagsForResource")),
    )?;
    Ok(listed.map(|l| tags::collect(l.tags().iter().map(|t| (t.key(), t.value())))))
}

async fn subscribe(aws: &Aws, arn: &str, email: &str) -> Result<(), AwsError> {
    aws.sns()
        .subscribe()
        .topic_arn(arn)
        .protocol("email")
        .endpoint(email)
        .return_subscription_arn(true)
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("sns", "Subscribe"))
}

#[async_trait::async_trait]
impl ResourceKind for AlarmTopic {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]).sets(&["emails"]);
    const TAGS: TagApi = TagApi::Sns;
    const IAM: Iam = Iam {
        read: &[
            "sns:ListSubscriptionsByTopic",
            "sns:ListTagsForResource",
            "sns:ListTopics",
        ],
        create: &["sns:CreateTopic", "sns:Subscribe"],
        change: &["sns:Subscribe", "sns:Unsubscribe"],
        delete: &["sns:DeleteTopic"],
        scope: IamScope::Arns(&["arn:{partition}:sns:{region}:*:infra-{env}-alarms"]),
    };

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        match scope {
            Scope::Environment(env) => {
                let tagged = tags::tagged(aws, &["sns:topic"]).await?;
                let reads = tagged.into_iter().map(|(arn, tags)| async move {
                    live(aws, &arn, tags, Some(env.recorded)).await
                });
                futures::future::try_join_all(reads).await
            }
            Scope::Ids(ids) => {
                let reads = ids.iter().map(|arn| async move {
                    match tags_of(aws, arn).await? {
                        Some(tags) => absent_ok(live(aws, arn, tags, None).await.map(Some)),
                        None => Ok(None),
                    }
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
        let tags = want
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AwsError::local("sns", "CreateTopic", e.to_string()))?;
        // CreateTopic is idempotent by name (with the same attributes and tags).
        let arn = aws
            .sns()
            .create_topic()
            .name(&want.attrs.name)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(sdk_error("sns", "CreateTopic"))?
            .topic_arn
            .unwrap_or_default();
        for email in &want.attrs.emails {
            subscribe(aws, &arn, email).await?;
        }
        Ok(arn)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let arn = &have.physical_id;
        for email in &want.attrs.emails {
            if !have.attrs.emails.contains(email) {
                subscribe(aws, arn, email).await?;
            }
        }
        for s in subscriptions(aws, arn).await? {
            let wanted = want
                .attrs
                .emails
                .iter()
                .any(|e| Some(e.as_str()) == s.endpoint());
            match s.subscription_arn() {
                Some(sub) if !wanted && sub != PENDING => {
                    gone_ok(
                        aws.sns()
                            .unsubscribe()
                            .subscription_arn(sub)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(sdk_error("sns", "Unsubscribe")),
                    )?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // Deleting a topic deletes its subscriptions.
        gone_ok(
            aws.sns()
                .delete_topic()
                .topic_arn(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("sns", "DeleteTopic")),
        )
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let pages = aws
            .sns()
            .list_topics()
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("sns", "ListTopics"))?;
        let existing = pages
            .into_iter()
            .flat_map(|p| p.topics.unwrap_or_default())
            .filter_map(|t| t.topic_arn)
            .map(|arn| (name_of(&arn).to_string(), arn))
            .collect();
        Ok(taken_among(wants, |a| &a.name, &existing))
    }
}
