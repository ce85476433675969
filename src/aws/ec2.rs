//! EC2 helpers shared by the network adapters: the environment tag filter, tag specifications for
//! create calls, tag reading and in-place tag updates, and patient retries for deletes that AWS
//! refuses until a dependency has drained.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use serde_json::Value;

use super::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::{TAG_ENVIRONMENT, TAG_ID};

/// Per-call configuration of EC2 creates that have neither client token nor unique name: see
/// `NotIdempotent`.
pub fn not_idempotent() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_classifier(super::NotIdempotent)
}

/// `tag:infra:environment = <env>`: every describe of an adapter uses it.
pub fn env_filter(env: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_ENVIRONMENT}"))
        .values(env)
        .build()
}

pub fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

fn tag_list(tags: &Value) -> Vec<Tag> {
    tags.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v.as_str().unwrap_or_default())
                .build()
        })
        .collect()
}

/// The tags of `attrs["tags"]`, for the create call itself.
pub fn tag_spec(resource_type: ResourceType, attrs: &Value) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(tag_list(&attrs["tags"])))
        .build()
}

/// Tags as a JSON map, without the `aws:` tags AWS sets and nobody can change.
pub fn tags_json(tags: &[Tag]) -> Value {
    let map: BTreeMap<&str, &str> = tags
        .iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
        .filter(|(k, _)| !k.starts_with("aws:"))
        .collect();
    serde_json::to_value(map).expect("tags serialise")
}

pub fn id_tag(tags: &[Tag]) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(TAG_ID))
        .and_then(|t| t.value().map(str::to_string))
}

/// Makes the resource's tags exactly `want`: adds and changes in one call, removes in another.
pub async fn sync_tags(
    aws: &Aws,
    physical: &str,
    have: &Value,
    want: &Value,
) -> Result<(), AwsError> {
    let empty = serde_json::Map::new();
    let have = have.as_object().unwrap_or(&empty);
    let want_map = want.as_object().unwrap_or(&empty);
    let set: Vec<Tag> = want_map
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(v))
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v.as_str().unwrap_or_default())
                .build()
        })
        .collect();
    let remove: Vec<Tag> = have
        .keys()
        .filter(|k| !want_map.contains_key(*k))
        .map(|k| Tag::builder().key(k).build())
        .collect();
    if !set.is_empty() {
        aws.ec2
            .create_tags()
            .resources(physical)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateTags"))?;
    }
    if !remove.is_empty() {
        aws.ec2
            .delete_tags()
            .resources(physical)
            .set_tags(Some(remove))
            .send()
            .await
            .map_err(sdk_error("ec2", "DeleteTags"))?;
    }
    Ok(())
}

/// Retries `op` while AWS answers with one of `codes` (a dependency still draining, such as the
/// network interfaces of a deleted NAT gateway), up to about five minutes.
pub async fn retry_while<F, Fut, T>(codes: &[&str], mut op: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut delay = Duration::from_millis(500);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        match op().await {
            Err(e)
                if e.code.as_deref().is_some_and(|c| codes.contains(&c))
                    && tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::debug!("{e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(15));
            }
            other => return other,
        }
    }
}

/// Success when the resource was already gone.
pub fn gone_ok(r: Result<(), AwsError>) -> Result<(), AwsError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

pub fn str_attr<'a>(attrs: &'a Value, key: &str) -> &'a str {
    attrs[key].as_str().unwrap_or_default()
}
