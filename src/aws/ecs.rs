//! ECS helpers shared by the cluster, task definition and service adapters: tags as ECS takes
//! them, and bringing a resource's tags to exactly the wanted set.

use aws_sdk_ecs::types::Tag;
use serde_json::Value;

use super::{Aws, sdk_error, tag_changes};
use crate::error::AwsError;

/// Per-call configuration of RegisterTaskDefinition, which takes no client token: see
/// `NotIdempotent`.
pub fn not_idempotent() -> aws_sdk_ecs::config::Builder {
    aws_sdk_ecs::config::Builder::default().retry_classifier(super::NotIdempotent)
}

pub fn tags(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Adds and changes tags in one call, removes the unwanted ones in another.
pub async fn sync_tags(aws: &Aws, arn: &str, have: &Value, want: &Value) -> Result<(), AwsError> {
    let (set, remove) = tag_changes(have, want);
    if !set.is_empty() {
        aws.ecs
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags(set)))
            .send()
            .await
            .map_err(sdk_error("ecs", "TagResource"))?;
    }
    if !remove.is_empty() {
        aws.ecs
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(sdk_error("ecs", "UntagResource"))?;
    }
    Ok(())
}
