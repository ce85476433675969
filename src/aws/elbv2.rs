//! Elastic Load Balancing v2 helpers shared by the load balancer, target group, listener and
//! rule adapters: finding the environment's load balancer by its name, reading tags in batches
//! of twenty, and listener actions in the shape `desired.rs` writes.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, RedirectActionConfig,
    RedirectActionStatusCodeEnum, Tag,
};
use serde_json::{Value, json};

use super::{Aws, sdk_error, tag_changes, tags_value};
use crate::aws::ec2::str_attr;
use crate::error::AwsError;

/// The environment's load balancer ARN, if it exists (its name is the environment's).
pub async fn load_balancer_arn(aws: &Aws) -> Result<Option<String>, AwsError> {
    match aws
        .elbv2
        .describe_load_balancers()
        .names(&aws.environment)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .map(str::to_string)),
        Err(e) => {
            let e = sdk_error("elbv2", "DescribeLoadBalancers")(e);
            if e.code_is("LoadBalancerNotFound") {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Tags of many resources: one DescribeTags per twenty ARNs.
pub async fn tags(aws: &Aws, arns: &[String]) -> Result<Vec<(String, Value)>, AwsError> {
    let mut out = Vec::new();
    for chunk in arns.chunks(20) {
        let described = aws
            .elbv2
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(sdk_error("elbv2", "DescribeTags"))?;
        for d in described.tag_descriptions() {
            let tags = tags_value(
                d.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
            );
            out.push((d.resource_arn().unwrap_or_default().to_string(), tags));
        }
    }
    Ok(out)
}

pub fn tag_list(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Makes a resource's tags exactly the wanted ones.
pub async fn sync_tags(aws: &Aws, arn: &str, have: &Value, want: &Value) -> Result<(), AwsError> {
    let (set, remove) = tag_changes(have, want);
    if !set.is_empty() {
        aws.elbv2
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(tag_list(set)))
            .send()
            .await
            .map_err(sdk_error("elbv2", "AddTags"))?;
    }
    if !remove.is_empty() {
        aws.elbv2
            .remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(sdk_error("elbv2", "RemoveTags"))?;
    }
    Ok(())
}

/// An action as JSON: forward, redirect or fixed-response, with only the fields infra sets.
pub fn action_json(a: &Action) -> Value {
    match a.r#type() {
        Some(ActionTypeEnum::Redirect) => {
            let r = a.redirect_config();
            json!({
                "type": "redirect",
                "protocol": r.and_then(|r| r.protocol()),
                "port": r.and_then(|r| r.port()),
                "status_code": r.and_then(|r| r.status_code()).map(|s| s.as_str()),
            })
        }
        Some(ActionTypeEnum::FixedResponse) => {
            let f = a.fixed_response_config();
            json!({
                "type": "fixed-response",
                "status_code": f.and_then(|f| f.status_code()),
                "content_type": f.and_then(|f| f.content_type()),
            })
        }
        _ => {
            let tg = a.target_group_arn().or_else(|| {
                a.forward_config()
                    .and_then(|f| f.target_groups().first())
                    .and_then(|t| t.target_group_arn())
            });
            json!({ "type": "forward", "target_group_arn": tg })
        }
    }
}

pub fn action(v: &Value) -> Action {
    match str_attr(v, "type") {
        "redirect" => Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol(str_attr(v, "protocol"))
                    .port(str_attr(v, "port"))
                    .status_code(RedirectActionStatusCodeEnum::from(str_attr(
                        v,
                        "status_code",
                    )))
                    .build(),
            )
            .build(),
        "fixed-response" => Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code(str_attr(v, "status_code"))
                    .content_type(str_attr(v, "content_type"))
                    .build(),
            )
            .build(),
        _ => Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(str_attr(v, "target_group_arn"))
            .build(),
    }
}
