//! One adapter per resource kind, and the registry that lists them.
//!
//! Each adapter reads all resources of its kind in the environment with one tag-filtered,
//! paginated describe; creates tag the resource in the create call itself, so a crash between
//! "created" and "state written" leaves a resource the next refresh finds; deletes treat "already
//! gone" as done. Attributes come back in the shape `desired.rs` writes, so a converged
//! environment diffs to nothing.

mod cluster;
mod elastic_ip;
mod internet_gateway;
mod listener;
mod listener_rule;
mod load_balancer;
mod log_group;
mod nat_gateway;
mod repository;
mod role;
mod route_table;
mod security_group;
mod service;
mod subnet;
mod target_group;
mod task_definition;
mod vpc;

use serde_json::Value;

use super::Aws;
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    fn kind(&self) -> Kind;
    /// Every resource of this kind tagged with the environment: one batched, paginated call.
    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError>;
    /// The resources with these physical ids that still exist (one batched call).
    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError>;
    /// Creates the resource from resolved attributes and returns it as read back.
    async fn create(&self, aws: &Aws, id: &str, attrs: &Value) -> Result<LiveResource, AwsError>;
    /// Brings an existing resource to the resolved attributes in place.
    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError>;
    /// Deletes the resource, detaching what must be detached first. Gone already is success.
    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError>;
}

/// The registry: one line per kind.
pub static ADAPTERS: &[&dyn Adapter] = &[
    &vpc::Vpc,
    &internet_gateway::InternetGateway,
    &subnet::Subnet,
    &elastic_ip::ElasticIp,
    &nat_gateway::NatGateway,
    &route_table::RouteTable,
    &security_group::SecurityGroup,
    &load_balancer::LoadBalancer,
    &target_group::TargetGroup,
    &listener::Listener,
    &listener_rule::ListenerRule,
    &repository::Repository,
    &log_group::LogGroup,
    &cluster::Cluster,
    &role::Role,
    &task_definition::TaskDefinition,
    &service::Service,
];

pub fn adapter(kind: Kind) -> &'static dyn Adapter {
    *ADAPTERS
        .iter()
        .find(|a| a.kind() == kind)
        .unwrap_or_else(|| panic!("no adapter registered for {kind}"))
}

/// Reads back one resource after a change.
async fn read_one(
    adapter: &dyn Adapter,
    aws: &Aws,
    physical: &str,
) -> Result<LiveResource, AwsError> {
    adapter
        .read_ids(aws, &[physical.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            AwsError::local(
                "infra",
                "read back",
                format!(
                    "{} {physical} vanished right after it was changed",
                    adapter.kind()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_adapter() {
        for kind in Kind::ALL {
            let n = ADAPTERS.iter().filter(|a| a.kind() == *kind).count();
            assert_eq!(n, 1, "{kind}");
        }
        assert_eq!(ADAPTERS.len(), Kind::ALL.len());
    }
}
