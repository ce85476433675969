//! A service's scalable target: Application Auto Scaling may set its desired count between a
//! minimum and a maximum. One per autoscaled service; its physical id is the resource id
//! (`service/<cluster>/<service>`), which AWS allows once per service, so the target is identified
//! by it (its identity tags are derived from it; the emulator cannot tag these). Read with one
//! DescribeScalableTargets per fifty services.

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Live, NoOutputs, ResourceKind, Scope, Want, gone_ok, identity_tags};
use crate::aws::tags::TagApi;
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    /// `service/<cluster>/<service>`.
    pub resource_id: String,
    pub min_capacity: u32,
    pub max_capacity: u32,
}

pub struct ScalableTarget;

impl super::Desire for Attrs {
    type Kind = ScalableTarget;
}

/// The logical id of the target of `resource_id`, if it is one of this environment's services.
fn logical_id(resource_id: &str) -> Option<String> {
    let service = resource_id.rsplit('/').next()?;
    Some(naming::id::scalable_target(service))
}

async fn describe(aws: &Aws, resource_ids: &[String]) -> Result<Vec<Live<Attrs>>, AwsError> {
    let chunks = resource_ids.chunks(50).map(|chunk| async move {
        aws.autoscaling()
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .set_resource_ids(Some(chunk.to_vec()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error(
                "application-autoscaling",
                "DescribeScalableTargets",
            ))
    });
    let found = try_join_all(chunks).await?;
    Ok(found
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let rid = t.resource_id().to_string();
            let id = logical_id(&rid)?;
            Some(Live {
                attrs: Attrs {
                    resource_id: rid.clone(),
                    min_capacity: u32::try_from(t.min_capacity()).unwrap_or_default(),
                    max_capacity: u32::try_from(t.max_capacity()).unwrap_or_default(),
                },
                physical_id: rid,
                outputs: NoOutputs {},
                tags: identity_tags(aws, &id),
            })
        })
        .collect())
}

async fn register(aws: &Aws, a: &Attrs) -> Result<(), AwsError> {
    aws.autoscaling()
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .resource_id(&a.resource_id)
        .min_capacity(a.min_capacity as i32)
        .max_capacity(a.max_capacity as i32)
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error(
            "application-autoscaling",
            "RegisterScalableTarget",
        ))
}

#[async_trait::async_trait]
impl ResourceKind for ScalableTarget {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["resource_id"]);
    const TAGS: TagApi = TagApi::None;
    const IAM: Iam = Iam {
        read: &["application-autoscaling:DescribeScalableTargets"],
        create: &["application-autoscaling:RegisterScalableTarget"],
        change: &["application-autoscaling:RegisterScalableTarget"],
        delete: &["application-autoscaling:DeregisterScalableTarget"],
        scope: IamScope::Unscoped(
            "Application Auto Scaling takes no resource-level permissions or tags for ECS scalable targets",
        ),
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let ids: Vec<String> = match scope {
            // Only the services the file autoscales: a target someone else registered for
            // another service is not infra's to touch.
            Scope::Environment(_) => match &aws.names.cluster {
                Some(cluster) => aws
                    .names
                    .autoscaled
                    .iter()
                    .map(|s| naming::scalable_resource(cluster, s))
                    .collect(),
                None => Vec::new(),
            },
            Scope::Ids(ids) => ids.to_vec(),
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        describe(aws, &ids).await
    }

    /// Registering is an upsert keyed by the resource id: safe to repeat.
    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        register(aws, &want.attrs).await?;
        Ok(want.attrs.resource_id.clone())
    }

    async fn change(
        &self,
        aws: &Aws,
        _have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        register(aws, &want.attrs).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.autoscaling()
                .deregister_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error(
                    "application-autoscaling",
                    "DeregisterScalableTarget",
                )),
        )
    }
}
