//! Path-pattern rules that route to each service's target group. Priorities follow pattern
//! specificity (longer patterns first), so `/api/*` is matched before `/*`. A service that
//! deploys blue/green, canary or linear has a rule forwarding to both of its target groups,
//! whose weights ECS moves during a deployment: infra sets them once (100 / 0) and never
//! compares or resets them. Read with one DescribeRules per listener.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, PathPatternConditionConfig, Rule as ElbRule,
    RuleCondition, RulePriorityPair, TargetGroupTuple,
};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Want, absent_ok, gone_ok};
use crate::aws::elbv2::{ListenerAction, tags_of};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub listener_arn: R,
    pub priority: u32,
    pub path_patterns: Vec<String>,
    pub target_group_arn: R,
    /// The second target group of a traffic-shifting deployment (weight 0 when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_target_group_arn: Option<R>,
}

pub struct ListenerRule;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = ListenerRule;
}

fn live(r: &ElbRule, tags: crate::aws::kinds::Tags) -> Option<Live<Attrs>> {
    let arn = r.rule_arn()?;
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
    let action = r.actions().first();
    let weighted: Vec<String> = action
        .and_then(|a| a.forward_config())
        .map(|f| {
            f.target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let (target_group_arn, alternate_target_group_arn) = match weighted.as_slice() {
        [first, second] => (first.clone(), Some(second.clone())),
        _ => match action.map(ListenerAction::from_aws) {
            Some(ListenerAction::Forward { target_group_arn }) => (target_group_arn, None),
            _ => (String::new(), None),
        },
    };
    // The listener a rule belongs to is in its ARN: listener-rule/app/LB/ID/LISTENER/RULE.
    let listener = arn
        .replace(":listener-rule/", ":listener/")
        .rsplit_once('/')
        .map(|(l, _)| l.to_string())
        .unwrap_or_default();
    Some(Live {
        physical_id: arn.to_string(),
        attrs: Attrs {
            listener_arn: listener,
            priority: r
                .priority()
                .and_then(|p| p.parse().ok())
                .unwrap_or_default(),
            path_patterns: paths,
            target_group_arn,
            alternate_target_group_arn,
        },
        outputs: NoOutputs {},
        tags,
    })
}

/// The rules of `listener` (or those of `arns`) with their tags. Tags of the rules state
/// recorded (`known`) are asked for beside DescribeRules, so a listener whose rules are all known
/// costs one round trip; those of rules found besides them after it. A recorded rule that is gone
/// fails the early ask, which is then made again for the rules found.
async fn read(
    aws: &Aws,
    listener: Option<&str>,
    arns: Option<Vec<String>>,
    known: &[String],
) -> Result<Vec<Live<Attrs>>, AwsError> {
    let describe = async {
        absent_ok(
            aws.elbv2
                .describe_rules()
                // A listener's rules in one page: the default quota is 100 per load balancer.
                .set_page_size(listener.map(|_| 400))
                .set_listener_arn(listener.map(str::to_string))
                .set_rule_arns(arns)
                .send()
                .await
                .map(|out| out.rules().to_vec())
                .map_err(sdk_error("elbv2", "DescribeRules")),
        )
    };
    let early = async { Ok::<_, AwsError>(tags_of(aws, known).await.ok()) };
    let (rules, early) = futures::try_join!(describe, early)?;
    let rules: Vec<_> = rules
        .into_iter()
        .filter(|r| r.is_default() != Some(true))
        .collect();
    let mut all_tags = early.unwrap_or_default();
    let rest: Vec<String> = rules
        .iter()
        .filter_map(|r| r.rule_arn())
        .filter(|arn| !all_tags.contains_key(*arn))
        .map(str::to_string)
        .collect();
    all_tags.extend(tags_of(aws, &rest).await?);
    Ok(rules
        .iter()
        .filter_map(|r| {
            let tags = all_tags.remove(r.rule_arn()?).unwrap_or_default();
            live(r, tags)
        })
        .collect())
}

fn condition(attrs: &Attrs) -> RuleCondition {
    RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .set_values(Some(attrs.path_patterns.clone()))
                .build(),
        )
        .build()
}

fn forward(attrs: &Attrs) -> Action {
    let Some(alternate) = &attrs.alternate_target_group_arn else {
        return ListenerAction::Forward {
            target_group_arn: attrs.target_group_arn.clone(),
        }
        .to_aws();
    };
    let group = |arn: &str, weight: i32| {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .weight(weight)
            .build()
    };
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(group(&attrs.target_group_arn, 100))
                .target_groups(group(alternate, 0))
                .build(),
        )
        .build()
}

/// The pair of target groups as a set: which of the two ECS currently weighs is its business.
fn targets(a: &Attrs) -> Vec<&str> {
    let mut t: Vec<&str> = std::iter::once(a.target_group_arn.as_str())
        .chain(a.alternate_target_group_arn.as_deref())
        .collect();
    t.sort_unstable();
    t
}

/// A rule read in the orientation state recorded (after a deployment ECS may weigh the other
/// target group of the pair), so finishing a deployment is never a difference.
fn oriented(mut live: Live<Attrs>, recorded: &super::Recorded) -> Live<Attrs> {
    let was = recorded
        .get(&live.physical_id)
        .and_then(|v| serde_json::from_value::<Attrs>(v.clone()).ok());
    if let (Some(was), Some(alt)) = (was, live.attrs.alternate_target_group_arn.as_mut())
        && was.alternate_target_group_arn.as_deref() == Some(live.attrs.target_group_arn.as_str())
        && *alt == was.target_group_arn
    {
        std::mem::swap(&mut live.attrs.target_group_arn, alt);
    }
    live
}

#[async_trait::async_trait]
impl ResourceKind for ListenerRule {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["listener_arn"]).sets(&["path_patterns"]);
    const TAGS: TagApi = TagApi::Elbv2;
    const IAM: Iam = Iam {
        read: &[
            "elasticloadbalancing:DescribeRules",
            "elasticloadbalancing:DescribeTags",
        ],
        create: &[
            "elasticloadbalancing:CreateRule",
            "elasticloadbalancing:SetRulePriorities",
        ],
        change: &[
            "elasticloadbalancing:ModifyRule",
            "elasticloadbalancing:SetRulePriorities",
        ],
        delete: &["elasticloadbalancing:DeleteRule"],
        scope: IamScope::Tags,
    };

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let mut out = Vec::new();
        match scope {
            // The rules of the listeners state recorded rules on are read at once, beside the
            // lookup of the load balancer; then those of any other listener it has. A listener
            // that is gone has no rules (and no longer counts).
            Scope::Environment(env) => {
                let mut recorded: Vec<String> = env
                    .recorded
                    .values()
                    .filter_map(|a| a["listener_arn"].as_str().map(str::to_string))
                    .collect();
                recorded.sort();
                recorded.dedup();
                let known = |listener: &str| -> Vec<String> {
                    env.recorded
                        .iter()
                        .filter(|(_, a)| a["listener_arn"].as_str() == Some(listener))
                        .map(|(arn, _)| arn.clone())
                        .collect()
                };
                let early = futures::future::try_join_all(recorded.iter().map(|l| async move {
                    Ok::<_, AwsError>((l.clone(), read(aws, Some(l), None, &known(l)).await?))
                }));
                let (early, view) = futures::try_join!(early, env.shared.elb())?;
                let current: Vec<&str> = view
                    .listeners
                    .iter()
                    .filter_map(|l| l.listener_arn())
                    .collect();
                for (listener, rules) in early {
                    if current.contains(&listener.as_str()) {
                        out.extend(rules);
                    }
                }
                let late = current
                    .iter()
                    .filter(|l| !recorded.iter().any(|r| r == *l))
                    .map(|l| read(aws, Some(l), None, &[]));
                out.extend(
                    futures::future::try_join_all(late)
                        .await?
                        .into_iter()
                        .flatten(),
                );
                out = out.into_iter().map(|l| oriented(l, env.recorded)).collect();
            }
            Scope::Ids(ids) => {
                for id in ids {
                    out.extend(read(aws, None, Some(vec![id.clone()]), &[]).await?);
                }
            }
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = aws
            .elbv2
            .create_rule()
            .listener_arn(&a.listener_arn)
            .priority(a.priority as i32)
            .conditions(condition(a))
            .actions(forward(a))
            .set_tags(Some(tags::elbv2(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateRule"))?;
        Ok(out
            .rules()
            .first()
            .and_then(|r| r.rule_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let (h, w) = (&have.attrs, &want.attrs);
        if h.priority != w.priority {
            aws.elbv2
                .set_rule_priorities()
                .rule_priorities(
                    RulePriorityPair::builder()
                        .rule_arn(&have.physical_id)
                        .priority(w.priority as i32)
                        .build(),
                )
                .send()
                .await
                .map_err(sdk_error("elbv2", "SetRulePriorities"))?;
        }
        let sorted = |v: &[String]| {
            let mut s = v.to_vec();
            s.sort();
            s
        };
        // The action is sent only when the target groups change: sending it resets the weights
        // a deployment in progress has moved.
        let retarget = targets(h) != targets(w);
        if sorted(&h.path_patterns) != sorted(&w.path_patterns) || retarget {
            aws.elbv2
                .modify_rule()
                .rule_arn(&have.physical_id)
                .conditions(condition(w))
                .set_actions(retarget.then(|| vec![forward(w)]))
                .send()
                .await
                .map_err(sdk_error("elbv2", "ModifyRule"))?;
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.elbv2
                .delete_rule()
                .rule_arn(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("elbv2", "DeleteRule")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(first: &str, second: &str) -> Live<Attrs> {
        Live {
            physical_id: "rule-1".into(),
            attrs: Attrs {
                listener_arn: "listener-1".into(),
                priority: 10,
                path_patterns: vec!["/api/*".into()],
                target_group_arn: first.into(),
                alternate_target_group_arn: Some(second.into()),
            },
            outputs: NoOutputs {},
            tags: Default::default(),
        }
    }

    /// After a deployment ECS may list the pair the other way round: read as recorded, it is
    /// no difference; a pair that really changed stays as read.
    #[test]
    fn a_pair_read_the_other_way_round_is_read_as_recorded() {
        let recorded: super::super::Recorded = [(
            "rule-1".to_string(),
            serde_json::to_value(rule("blue", "green").attrs).unwrap(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            oriented(rule("green", "blue"), &recorded).attrs,
            rule("blue", "green").attrs
        );
        assert_eq!(
            oriented(rule("green", "other"), &recorded).attrs,
            rule("green", "other").attrs
        );
        assert_eq!(
            targets(&rule("green", "blue").attrs),
            targets(&rule("blue", "green").attrs)
        );
    }
}
