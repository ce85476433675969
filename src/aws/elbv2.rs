//! Elastic Load Balancing v2 helpers shared by the load balancer, target group, listener and
//! rule adapters: finding the environment's load balancer by its name, reading tags in batches
//! of twenty, and listener actions as a typed value.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use serde::{Deserialize, Serialize};

use super::kinds::{Id, Tags, absent_ok};
use super::{Aws, sdk_error, tags};
use crate::error::AwsError;
use crate::naming;

/// The environment's load balancer and its listeners, as several kinds' reads need them, with
/// the tags of both (one DescribeTags) and the load balancer's attributes.
#[derive(Debug, Default)]
pub struct ElbView {
    pub load_balancer: Option<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>,
    pub listeners: Vec<aws_sdk_elasticloadbalancingv2::types::Listener>,
    /// Tags of the load balancer and of each listener, by ARN.
    pub tags: HashMap<String, Tags>,
    pub attributes: Vec<aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute>,
}

impl ElbView {
    /// One DescribeLoadBalancers by the environment's name, and its listeners: at the same time
    /// when state recorded the load balancer's ARN (`recorded`), after it otherwise (or when
    /// the recorded one is no longer the environment's). The tags of the load balancer and of
    /// the listeners state recorded (`listeners`), and the attributes, are asked for in that
    /// same round trip when the ARNs are known; what the lookup finds besides them (or a stale
    /// recording) is asked for after it.
    pub async fn read(
        aws: &Aws,
        recorded: Option<&str>,
        listeners: &[String],
    ) -> Result<ElbView, AwsError> {
        let known: Vec<String> = recorded
            .map(|lb| std::iter::once(lb.to_string()).chain(listeners.iter().cloned()))
            .into_iter()
            .flatten()
            .collect();
        let (lbs, guessed, early_tags, early_attributes) = futures::try_join!(
            async {
                absent_ok(
                    aws.elbv2
                        .describe_load_balancers()
                        .names(naming::load_balancer(&aws.environment))
                        .send()
                        .await
                        .map(|out| out.load_balancers().to_vec())
                        .map_err(sdk_error("elbv2", "DescribeLoadBalancers")),
                )
            },
            async {
                match recorded {
                    Some(arn) => listeners_of(aws, arn).await.map(Some),
                    None => Ok(None),
                }
            },
            async { Ok(tags_of(aws, &known).await.ok()) },
            async {
                Ok(match recorded {
                    Some(arn) => attributes_of(aws, arn).await.ok(),
                    None => None,
                })
            },
        )?;
        let Some(lb) = lbs.into_iter().next() else {
            return Ok(ElbView::default());
        };
        let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        let as_recorded = lb.load_balancer_arn() == recorded;
        let listeners = match guessed {
            Some(l) if as_recorded => l,
            _ => listeners_of(aws, &arn).await?,
        };
        let mut tags = early_tags.unwrap_or_default();
        let mut missing = vec![arn.clone()];
        missing.extend(
            listeners
                .iter()
                .filter_map(|l| l.listener_arn().map(str::to_string)),
        );
        missing.retain(|a| !tags.contains_key(a));
        let (late_tags, attributes) = futures::try_join!(tags_of(aws, &missing), async {
            match early_attributes {
                Some(a) if as_recorded => Ok(a),
                _ => attributes_of(aws, &arn).await,
            }
        })?;
        tags.extend(late_tags);
        Ok(ElbView {
            load_balancer: Some(lb),
            listeners,
            tags,
            attributes,
        })
    }

    pub fn load_balancer_arn(&self) -> Option<&str> {
        self.load_balancer
            .as_ref()
            .and_then(|lb| lb.load_balancer_arn())
    }
}

/// A load balancer's attributes.
pub async fn attributes_of(
    aws: &Aws,
    lb: &str,
) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute>, AwsError> {
    aws.elbv2
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb)
        .send()
        .await
        .map(|out| out.attributes().to_vec())
        .map_err(sdk_error("elbv2", "DescribeLoadBalancerAttributes"))
}

/// A load balancer's listeners (one page holds the most a load balancer may have).
async fn listeners_of(
    aws: &Aws,
    lb: &str,
) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::Listener>, AwsError> {
    absent_ok(
        aws.elbv2
            .describe_listeners()
            .load_balancer_arn(lb)
            .page_size(400)
            .send()
            .await
            .map(|out| out.listeners().to_vec())
            .map_err(sdk_error("elbv2", "DescribeListeners")),
    )
}

/// Tags of many resources by ARN: one DescribeTags per twenty ARNs, all in parallel.
pub async fn tags_of(aws: &Aws, arns: &[String]) -> Result<HashMap<String, Tags>, AwsError> {
    let chunks = arns.chunks(20).map(|chunk| async move {
        let described = aws
            .elbv2
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(sdk_error("elbv2", "DescribeTags"))?;
        Ok::<_, AwsError>(
            described
                .tag_descriptions()
                .iter()
                .map(|d| {
                    let tags = tags::collect(
                        d.tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                    );
                    (d.resource_arn().unwrap_or_default().to_string(), tags)
                })
                .collect::<Vec<_>>(),
        )
    });
    Ok(futures::future::try_join_all(chunks)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// What a listener (or rule) does with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ListenerAction<R = Id> {
    Forward {
        target_group_arn: R,
    },
    Redirect {
        protocol: String,
        port: String,
        status_code: String,
    },
    FixedResponse {
        status_code: String,
        content_type: String,
    },
}

impl ListenerAction {
    /// An action as AWS describes it, with only the fields infra sets.
    pub fn from_aws(a: &Action) -> ListenerAction {
        let text = |s: Option<&str>| s.unwrap_or_default().to_string();
        match a.r#type() {
            Some(ActionTypeEnum::Redirect) => {
                let r = a.redirect_config();
                ListenerAction::Redirect {
                    protocol: text(r.and_then(|r| r.protocol())),
                    port: text(r.and_then(|r| r.port())),
                    status_code: text(r.and_then(|r| r.status_code()).map(|s| s.as_str())),
                }
            }
            Some(ActionTypeEnum::FixedResponse) => {
                let f = a.fixed_response_config();
                ListenerAction::FixedResponse {
                    status_code: text(f.and_then(|f| f.status_code())),
                    content_type: text(f.and_then(|f| f.content_type())),
                }
            }
            _ => {
                let tg = a.target_group_arn().or_else(|| {
                    a.forward_config()
                        .and_then(|f| f.target_groups().first())
                        .and_then(|t| t.target_group_arn())
                });
                ListenerAction::Forward {
                    target_group_arn: text(tg),
                }
            }
        }
    }

    pub fn to_aws(&self) -> Action {
        match self {
            ListenerAction::Redirect {
                protocol,
                port,
                status_code,
            } => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol(protocol)
                        .port(port)
                        .status_code(RedirectActionStatusCodeEnum::from(status_code.as_str()))
                        .build(),
                )
                .build(),
            ListenerAction::FixedResponse {
                status_code,
                content_type,
            } => Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code(status_code)
                        .content_type(content_type)
                        .build(),
                )
                .build(),
            ListenerAction::Forward { target_group_arn } => Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(target_group_arn)
                .build(),
        }
    }
}
