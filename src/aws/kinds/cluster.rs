//! The ECS cluster and its Container Insights setting. Read with one DescribeClusters by name
//! (tags and settings included); a deleted cluster lingers as INACTIVE and counts as gone.

use aws_sdk_ecs::types::{Cluster as EcsCluster, ClusterField, ClusterSetting, ClusterSettingName};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Live, NoOutputs, ResourceKind, Scope, Taken, Want, gone_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub name: String,
    pub container_insights: bool,
}

pub struct Cluster;

impl super::Desire for Attrs {
    type Kind = Cluster;
}

fn insights(on: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if on { "enabled" } else { "disabled" })
        .build()
}

fn live(c: &EcsCluster) -> Option<Live<Attrs>> {
    if c.status() != Some("ACTIVE") {
        return None;
    }
    let insights = c
        .settings()
        .iter()
        .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        .and_then(|s| s.value())
        .is_some_and(|v| v == "enabled" || v == "enhanced");
    Some(Live {
        physical_id: c.cluster_arn()?.to_string(),
        attrs: Attrs {
            name: c.cluster_name()?.to_string(),
            container_insights: insights,
        },
        outputs: NoOutputs {},
        tags: tags::from_ecs(c.tags()),
    })
}

#[async_trait::async_trait]
impl ResourceKind for Cluster {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]);
    const TAGS: TagApi = TagApi::Ecs;
    const IAM: Iam = Iam {
        read: &["ecs:DescribeClusters"],
        create: &["ecs:CreateCluster"],
        change: &["ecs:UpdateCluster"],
        delete: &["ecs:DeleteCluster"],
        scope: IamScope::Arns(&["arn:{partition}:ecs:{region}:*:cluster/{cluster}"]),
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let clusters: Vec<String> = match scope {
            Scope::Environment(_) => aws.names.cluster.iter().cloned().collect(),
            Scope::Ids(ids) => ids.to_vec(),
        };
        if clusters.is_empty() {
            return Ok(Vec::new());
        }
        let out = aws
            .ecs
            .describe_clusters()
            .set_clusters(Some(clusters))
            .include(ClusterField::Tags)
            .include(ClusterField::Settings)
            .send()
            .await
            .map_err(sdk_error("ecs", "DescribeClusters"))?;
        Ok(out.clusters().iter().filter_map(live).collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ecs
            .create_cluster()
            .cluster_name(&want.attrs.name)
            .settings(insights(want.attrs.container_insights))
            .set_tags(Some(tags::ecs(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("ecs", "CreateCluster"))?;
        Ok(out
            .cluster()
            .and_then(|c| c.cluster_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        if have.attrs.container_insights != want.attrs.container_insights {
            aws.ecs
                .update_cluster()
                .cluster(&have.physical_id)
                .settings(insights(want.attrs.container_insights))
                .send()
                .await
                .map_err(sdk_error("ecs", "UpdateCluster"))?;
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.ecs
                .delete_cluster()
                .cluster(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("ecs", "DeleteCluster")),
        )
    }

    /// CreateCluster would quietly return a cluster of the same name: that is a take-over,
    /// which only `infra import` does.
    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let found = aws
            .ecs
            .describe_clusters()
            .set_clusters(Some(wants.iter().map(|w| w.attrs.name.clone()).collect()))
            .send()
            .await
            .map_err(sdk_error("ecs", "DescribeClusters"))?;
        Ok(wants
            .iter()
            .filter_map(|w| {
                let c = found.clusters().iter().find(|c| {
                    c.cluster_name() == Some(w.attrs.name.as_str()) && c.status() == Some("ACTIVE")
                })?;
                Some(Taken::new(&w.id, &w.attrs.name, c.cluster_arn()?))
            })
            .collect())
    }
}
