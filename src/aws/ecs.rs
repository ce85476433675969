//! ECS helpers shared by the cluster, task definition and service adapters.

/// Per-call configuration of RegisterTaskDefinition, which takes no client token: see
/// `NotIdempotent`.
pub fn not_idempotent() -> aws_sdk_ecs::config::Builder {
    aws_sdk_ecs::config::Builder::default().retry_classifier(super::NotIdempotent)
}
