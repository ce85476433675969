//! Target groups, one per service with a port: HTTP to the tasks' IPs, with the service's health
//! check path. Read by name, one DescribeTargetGroups per service, plus one DescribeTags.

use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroup as Tg, TargetTypeEnum,
};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{retry_while, str_attr};
use crate::aws::elbv2::{sync_tags, tag_list, tags};
use crate::aws::{Aws, sdk_error, tag_pairs};
use crate::desired::target_group_name;
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct TargetGroup;

async fn describe(aws: &Aws, groups: &[Tg]) -> Result<Vec<LiveResource>, AwsError> {
    let arns: Vec<String> = groups
        .iter()
        .filter_map(|g| g.target_group_arn().map(str::to_string))
        .collect();
    let all_tags = tags(aws, &arns).await?;
    Ok(groups
        .iter()
        .filter_map(|g| {
            let arn = g.target_group_arn()?;
            let tags = all_tags
                .iter()
                .find(|(a, _)| a == arn)
                .map(|(_, t)| t.clone())
                .unwrap_or(json!({}));
            Some(LiveResource {
                kind: Kind::TargetGroup,
                physical_id: arn.to_string(),
                id: tags["infra:id"].as_str().map(str::to_string),
                attrs: json!({
                    "name": g.target_group_name(),
                    "port": g.port(),
                    "protocol": g.protocol().map(|p| p.as_str()),
                    "target_type": g.target_type().map(|t| t.as_str()),
                    "vpc_id": g.vpc_id(),
                    "health_check_path": g.health_check_path(),
                    "tags": tags,
                }),
            })
        })
        .collect())
}

/// Groups by name or ARN; a missing one is simply not there.
async fn find(
    aws: &Aws,
    name: Option<&str>,
    arn: Option<&str>,
) -> Result<Vec<LiveResource>, AwsError> {
    let req = aws
        .elbv2
        .describe_target_groups()
        .set_names(name.map(|n| vec![n.to_string()]))
        .set_target_group_arns(arn.map(|a| vec![a.to_string()]));
    match req.send().await {
        Ok(out) => describe(aws, out.target_groups()).await,
        Err(e) => {
            let e = sdk_error("elbv2", "DescribeTargetGroups")(e);
            if e.code_is("TargetGroupNotFound") {
                Ok(Vec::new())
            } else {
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl Adapter for TargetGroup {
    fn kind(&self) -> Kind {
        Kind::TargetGroup
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for service in &aws.names.services {
            out.extend(
                find(
                    aws,
                    Some(&target_group_name(&aws.environment, service)),
                    None,
                )
                .await?,
            );
        }
        Ok(out)
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(find(aws, None, Some(id)).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .elbv2
            .create_target_group()
            .name(str_attr(attrs, "name"))
            .port(attrs["port"].as_i64().unwrap_or(80) as i32)
            .protocol(ProtocolEnum::from(str_attr(attrs, "protocol")))
            .target_type(TargetTypeEnum::from(str_attr(attrs, "target_type")))
            .vpc_id(str_attr(attrs, "vpc_id"))
            .health_check_path(str_attr(attrs, "health_check_path"))
            .matcher(Matcher::builder().http_code("200-399").build())
            .set_tags(Some(tag_list(tag_pairs(attrs))))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateTargetGroup"))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .unwrap_or_default()
            .to_string();
        read_one(self, aws, &arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        if have.attrs["health_check_path"] != attrs["health_check_path"] {
            aws.elbv2
                .modify_target_group()
                .target_group_arn(physical)
                .health_check_path(str_attr(attrs, "health_check_path"))
                .send()
                .await
                .map_err(sdk_error("elbv2", "ModifyTargetGroup"))?;
        }
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // Still in use until the listener or rule that forwards to it is gone.
        match retry_while(&["ResourceInUse"], || async {
            aws.elbv2
                .delete_target_group()
                .target_group_arn(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("elbv2", "DeleteTargetGroup"))
        })
        .await
        {
            Err(e) if e.code_is("TargetGroupNotFound") => Ok(()),
            other => other,
        }
    }
}
