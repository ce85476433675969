//! The ECS cluster and its Container Insights setting. Read with one DescribeClusters by name
//! (tags and settings included); a deleted cluster lingers as INACTIVE and counts as gone.

use aws_sdk_ecs::types::{Cluster as EcsCluster, ClusterField, ClusterSetting, ClusterSettingName};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::{Aws, ecs, sdk_error, tag_pairs, tags_value};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Cluster;

fn insights(on: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if on { "enabled" } else { "disabled" })
        .build()
}

fn live(c: &EcsCluster) -> Option<LiveResource> {
    if c.status() != Some("ACTIVE") {
        return None;
    }
    let tags = tags_value(c.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))));
    let insights = c
        .settings()
        .iter()
        .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        .and_then(|s| s.value())
        .is_some_and(|v| v == "enabled" || v == "enhanced");
    Some(LiveResource {
        kind: Kind::Cluster,
        physical_id: c.cluster_arn()?.to_string(),
        id: tags["infra:id"].as_str().map(str::to_string),
        attrs: json!({ "name": c.cluster_name(), "container_insights": insights, "tags": tags }),
    })
}

async fn read(aws: &Aws, clusters: Vec<String>) -> Result<Vec<LiveResource>, AwsError> {
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

#[async_trait::async_trait]
impl Adapter for Cluster {
    fn kind(&self) -> Kind {
        Kind::Cluster
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, aws.names.cluster.iter().cloned().collect()).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, ids.to_vec()).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ecs
            .create_cluster()
            .cluster_name(attrs["name"].as_str().unwrap_or_default())
            .settings(insights(
                attrs["container_insights"].as_bool().unwrap_or(true),
            ))
            .set_tags(Some(ecs::tags(tag_pairs(attrs))))
            .send()
            .await
            .map_err(sdk_error("ecs", "CreateCluster"))?;
        let arn = out
            .cluster()
            .and_then(|c| c.cluster_arn())
            .unwrap_or_default();
        read_one(self, aws, arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        if have.attrs["container_insights"] != attrs["container_insights"] {
            aws.ecs
                .update_cluster()
                .cluster(physical)
                .settings(insights(
                    attrs["container_insights"].as_bool().unwrap_or(true),
                ))
                .send()
                .await
                .map_err(sdk_error("ecs", "UpdateCluster"))?;
        }
        ecs::sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws.ecs.delete_cluster().cluster(physical).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("ecs", "DeleteCluster")(e);
                if e.code_is("ClusterNotFoundException") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
