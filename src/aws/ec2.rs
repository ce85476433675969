//! EC2 helpers shared by the network adapters: the environment tag filter, the retry policy of
//! creates without client token, and patient retries for deletes that AWS refuses until a
//! dependency has drained.

use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;

use super::kinds::Scope;
use crate::error::AwsError;
use crate::model::TAG_ENVIRONMENT;

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

/// The filters of an EC2 describe for `scope`: the environment's tag, or the recorded ids under
/// the describe's id filter (`vpc-id`, `subnet-id`, …).
pub fn scope_filters(aws: &super::Aws, scope: Scope<'_>, id_filter: &str) -> Vec<Filter> {
    match scope {
        Scope::Environment(_) => vec![env_filter(&aws.environment)],
        Scope::Ids(ids) => vec![filter(id_filter, ids)],
    }
}
