//! Path-pattern rules that route to each service's target group. Priorities follow pattern
//! specificity (longer patterns first), so `/api/*` is matched before `/*`. Read with one
//! DescribeRules per listener.

use aws_sdk_elasticloadbalancingv2::types::{
    PathPatternConditionConfig, RuleCondition, RulePriorityPair,
};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::str_attr;
use crate::aws::elbv2::{action, action_json, load_balancer_arn, sync_tags, tag_list, tags};
use crate::aws::{Aws, sdk_error, tag_pairs};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct ListenerRule;

async fn read(
    aws: &Aws,
    listener: Option<&str>,
    arns: Option<Vec<String>>,
) -> Result<Vec<LiveResource>, AwsError> {
    let out = match aws
        .elbv2
        .describe_rules()
        .set_listener_arn(listener.map(str::to_string))
        .set_rule_arns(arns)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let e = sdk_error("elbv2", "DescribeRules")(e);
            return if e.code_is("RuleNotFound") || e.code_is("ListenerNotFound") {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
    };
    let rules: Vec<_> = out
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
        .collect();
    let arns: Vec<String> = rules
        .iter()
        .filter_map(|r| r.rule_arn().map(str::to_string))
        .collect();
    let all_tags = tags(aws, &arns).await?;
    Ok(rules
        .iter()
        .filter_map(|r| {
            let arn = r.rule_arn()?;
            let tags = all_tags
                .iter()
                .find(|(a, _)| a == arn)
                .map(|(_, t)| t.clone())
                .unwrap_or(json!({}));
            let paths: Vec<String> = r
                .conditions()
                .iter()
                .filter(|c| c.field() == Some("path-pattern"))
                .flat_map(|c| {
                    let configured = c
                        .path_pattern_config()
                        .map(|p| p.values().to_vec())
                        .unwrap_or_default();
                    if configured.is_empty() {
                        c.values().to_vec()
                    } else {
                        configured
                    }
                })
                .collect();
            let forward = r.actions().first().map(action_json).unwrap_or(Value::Null);
            // The listener a rule belongs to is in its ARN: listener-rule/app/LB/ID/LISTENER/RULE.
            let listener = arn
                .replace(":listener-rule/", ":listener/")
                .rsplit_once('/')
                .map(|(l, _)| l.to_string());
            Some(LiveResource {
                kind: Kind::ListenerRule,
                physical_id: arn.to_string(),
                id: tags["infra:id"].as_str().map(str::to_string),
                attrs: json!({
                    "listener_arn": listener,
                    "priority": r.priority().and_then(|p| p.parse::<u64>().ok()),
                    "path_patterns": paths,
                    "target_group_arn": forward["target_group_arn"],
                    "tags": tags,
                }),
            })
        })
        .collect())
}

fn condition(attrs: &Value) -> RuleCondition {
    let paths: Vec<String> = attrs["path_patterns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .set_values(Some(paths))
                .build(),
        )
        .build()
}

fn forward(attrs: &Value) -> aws_sdk_elasticloadbalancingv2::types::Action {
    action(&json!({ "type": "forward", "target_group_arn": attrs["target_group_arn"] }))
}

#[async_trait::async_trait]
impl Adapter for ListenerRule {
    fn kind(&self) -> Kind {
        Kind::ListenerRule
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        let Some(lb) = load_balancer_arn(aws).await? else {
            return Ok(Vec::new());
        };
        let listeners = aws
            .elbv2
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .map_err(sdk_error("elbv2", "DescribeListeners"))?;
        let mut out = Vec::new();
        for l in listeners.listeners() {
            out.extend(read(aws, l.listener_arn(), None).await?);
        }
        Ok(out)
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(read(aws, None, Some(vec![id.clone()])).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .elbv2
            .create_rule()
            .listener_arn(str_attr(attrs, "listener_arn"))
            .priority(attrs["priority"].as_i64().unwrap_or(1) as i32)
            .conditions(condition(attrs))
            .actions(forward(attrs))
            .set_tags(Some(tag_list(tag_pairs(attrs))))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateRule"))?;
        let arn = out
            .rules()
            .first()
            .and_then(|r| r.rule_arn())
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
        if have.attrs["priority"] != attrs["priority"] {
            aws.elbv2
                .set_rule_priorities()
                .rule_priorities(
                    RulePriorityPair::builder()
                        .rule_arn(physical)
                        .priority(attrs["priority"].as_i64().unwrap_or(1) as i32)
                        .build(),
                )
                .send()
                .await
                .map_err(sdk_error("elbv2", "SetRulePriorities"))?;
        }
        let mut have_paths = have.attrs["path_patterns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut want_paths = attrs["path_patterns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        have_paths.sort_by_key(|v| v.to_string());
        want_paths.sort_by_key(|v| v.to_string());
        if have_paths != want_paths || have.attrs["target_group_arn"] != attrs["target_group_arn"] {
            aws.elbv2
                .modify_rule()
                .rule_arn(physical)
                .conditions(condition(attrs))
                .actions(forward(attrs))
                .send()
                .await
                .map_err(sdk_error("elbv2", "ModifyRule"))?;
        }
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws.elbv2.delete_rule().rule_arn(physical).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("elbv2", "DeleteRule")(e);
                if e.code_is("RuleNotFound") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
