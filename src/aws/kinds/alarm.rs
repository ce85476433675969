//! CloudWatch metric alarms: per service (CPU, memory, unhealthy targets, running tasks), per
//! load balancer (5xx rate, response time) and per NAT gateway (port allocation errors and
//! dropped packets), each notifying the environment's topic on ALARM and on OK.
//!
//! Every alarm is written in one shape, a list of metric queries of which the last returns the
//! value compared with the threshold, so single metrics and metric math read and diff alike.
//! Dimensions that name a load balancer or a target group hold their ARNs (references), turned
//! into what CloudWatch calls them (`app/<name>/<id>`, `targetgroup/<name>/<id>`) on the way out
//! and back into ARNs on the way in. Read with one prefix-filtered DescribeAlarms (all alarms
//! of the environment, a hundred a page) beside one tag lookup.

use std::collections::HashMap;

use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension as CwDimension, Metric, MetricAlarm, MetricDataQuery,
    MetricStat, Tag,
};
use serde::{Deserialize, Serialize};

use super::{
    Iam, IamScope, Id, Live, ResourceKind, Scope, Tags, Taken, Want, gone_ok, taken_among,
};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    pub description: String,
    /// The metrics read and the expression over them; the last query's value is compared.
    pub queries: Vec<Query<R>>,
    /// `GreaterThanThreshold` or `LessThanThreshold`.
    pub comparison: String,
    pub threshold: f64,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    /// `missing`, `notBreaching`, `breaching` or `ignore`.
    pub treat_missing_data: String,
    /// Notified when the alarm fires, and when it returns to OK.
    pub alarm_actions: Vec<R>,
    pub ok_actions: Vec<R>,
}

/// One metric query: a metric with its statistic, or an expression over earlier queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query<R = Id> {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricQuery<R>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    pub returns: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricQuery<R = Id> {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<Dimension<R>>,
    pub period: u32,
    /// `Average`, `Sum`, `Maximum`, `p95`, …
    pub stat: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension<R = Id> {
    pub name: String,
    pub value: DimensionValue<R>,
}

/// A dimension's value: text (a cluster or service name), a resource's physical id (a NAT
/// gateway), or a load balancer's or target group's ARN, which CloudWatch names by its suffix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DimensionValue<R = Id> {
    Text(String),
    Id(R),
    LoadBalancer(R),
    TargetGroup(R),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub arn: String,
}

pub struct Alarm;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Alarm;
}

impl DimensionValue {
    /// What CloudWatch calls it.
    pub(super) fn wire(&self) -> String {
        match self {
            DimensionValue::Text(s) | DimensionValue::Id(s) => s.clone(),
            DimensionValue::LoadBalancer(arn) => arn
                .split_once(":loadbalancer/")
                .map_or(arn.as_str(), |(_, s)| s)
                .to_string(),
            DimensionValue::TargetGroup(arn) => arn
                .rsplit_once(':')
                .map_or(arn.as_str(), |(_, s)| s)
                .to_string(),
        }
    }

    /// From what CloudWatch calls it; `elb` is the start of the ARNs of the environment's load
    /// balancing resources (see `elb_arn_prefix`).
    pub(super) fn from_wire(name: &str, value: &str, elb: Option<&str>) -> DimensionValue {
        match (name, elb) {
            ("LoadBalancer", Some(p)) => {
                DimensionValue::LoadBalancer(format!("{p}:loadbalancer/{value}"))
            }
            ("TargetGroup", Some(p)) => DimensionValue::TargetGroup(format!("{p}:{value}")),
            ("NatGatewayId", _) => DimensionValue::Id(value.to_string()),
            _ => DimensionValue::Text(value.to_string()),
        }
    }
}

/// `arn:<partition>:elasticloadbalancing:<region>:<account>`, from any ARN of the same account
/// (its region, unless given: dashboards' ARNs have none).
pub(super) fn elb_arn_prefix(arn: &str, region: Option<&str>) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (_, partition, _, arn_region, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let region = region.unwrap_or(arn_region);
    Some(format!(
        "arn:{partition}:elasticloadbalancing:{region}:{account}"
    ))
}

fn live(a: &MetricAlarm, tags: Tags) -> Option<Live<Attrs, Outputs>> {
    let name = a.alarm_name()?;
    let arn = a.alarm_arn().unwrap_or_default();
    let elb = elb_arn_prefix(arn, None);
    let queries = a
        .metrics()
        .iter()
        .map(|q| Query {
            id: q.id().unwrap_or_default().to_string(),
            expression: q.expression().map(str::to_string),
            returns: q.return_data().unwrap_or(true),
            metric: q.metric_stat().map(|s| {
                let m = s.metric();
                MetricQuery {
                    namespace: m.and_then(|m| m.namespace()).unwrap_or_default().into(),
                    name: m.and_then(|m| m.metric_name()).unwrap_or_default().into(),
                    dimensions: m
                        .map(|m| m.dimensions())
                        .unwrap_or_default()
                        .iter()
                        .map(|d| Dimension {
                            name: d.name().unwrap_or_default().to_string(),
                            value: DimensionValue::from_wire(
                                d.name().unwrap_or_default(),
                                d.value().unwrap_or_default(),
                                elb.as_deref(),
                            ),
                        })
                        .collect(),
                    period: s.period().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                    stat: s.stat().unwrap_or_default().to_string(),
                }
            }),
        })
        .collect();
    let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    Some(Live {
        physical_id: name.to_string(),
        attrs: Attrs {
            name: name.to_string(),
            description: a.alarm_description().unwrap_or_default().to_string(),
            queries,
            comparison: a
                .comparison_operator()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            threshold: a.threshold().unwrap_or_default(),
            evaluation_periods: count(a.evaluation_periods()),
            // AWS leaves it out when it equals the evaluation periods.
            datapoints_to_alarm: a
                .datapoints_to_alarm()
                .map_or(count(a.evaluation_periods()), |n| count(Some(n))),
            treat_missing_data: a.treat_missing_data().unwrap_or("missing").to_string(),
            alarm_actions: a.alarm_actions().to_vec(),
            ok_actions: a.ok_actions().to_vec(),
        },
        outputs: Outputs {
            arn: arn.to_string(),
        },
        tags,
    })
}

/// The environment's alarms (names starting with its prefix), or those named (at most 100).
pub(crate) async fn describe(
    aws: &Aws,
    names: Option<&[String]>,
) -> Result<Vec<MetricAlarm>, AwsError> {
    let request = aws
        .cloudwatch()
        .describe_alarms()
        .alarm_types(AlarmType::MetricAlarm)
        .max_records(100);
    let request = match names {
        Some(names) => request.set_alarm_names(Some(names.to_vec())),
        None => request.alarm_name_prefix(naming::alarm_prefix(&aws.environment)),
    };
    let pages = request
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("cloudwatch", "DescribeAlarms"))?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.metric_alarms.unwrap_or_default())
        .collect())
}

async fn tags_of(aws: &Aws, arn: &str) -> Result<Tags, AwsError> {
    let listed = aws
        .cloudwatch()
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(sdk_error("cloudwatch", "ListTagsForResource"))?;
    Ok(tags::collect(listed.tags().iter().map(|t| {
        (t.key().unwrap_or_default(), t.value().unwrap_or_default())
    })))
}

fn queries(a: &Attrs) -> Vec<MetricDataQuery> {
    a.queries
        .iter()
        .map(|q| {
            MetricDataQuery::builder()
                .id(&q.id)
                .set_expression(q.expression.clone())
                .return_data(q.returns)
                .set_metric_stat(q.metric.as_ref().map(|m| {
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(&m.namespace)
                                .metric_name(&m.name)
                                .set_dimensions(Some(
                                    m.dimensions
                                        .iter()
                                        .map(|d| {
                                            CwDimension::builder()
                                                .name(&d.name)
                                                .value(d.value.wire())
                                                .build()
                                        })
                                        .collect(),
                                ))
                                .build(),
                        )
                        .period(m.period as i32)
                        .stat(&m.stat)
                        .build()
                }))
                .build()
        })
        .collect()
}

/// PutMetricAlarm: creates the alarm, or replaces every setting of an existing one (its tags
/// are set only at creation).
async fn put(aws: &Aws, a: &Attrs, tags: &Tags) -> Result<(), AwsError> {
    let tags = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Vec<_>>();
    aws.cloudwatch()
        .put_metric_alarm()
        .alarm_name(&a.name)
        .alarm_description(&a.description)
        .set_metrics(Some(queries(a)))
        .comparison_operator(ComparisonOperator::from(a.comparison.as_str()))
        .threshold(a.threshold)
        .evaluation_periods(a.evaluation_periods as i32)
        .datapoints_to_alarm(a.datapoints_to_alarm as i32)
        .treat_missing_data(&a.treat_missing_data)
        .actions_enabled(true)
        .set_alarm_actions(Some(a.alarm_actions.clone()))
        .set_ok_actions(Some(a.ok_actions.clone()))
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("cloudwatch", "PutMetricAlarm"))
}

#[async_trait::async_trait]
impl ResourceKind for Alarm {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]).deep(&["queries"]);
    const TAGS: TagApi = TagApi::CloudWatch;
    const IAM: Iam = Iam {
        read: &[
            "cloudwatch:DescribeAlarms",
            "cloudwatch:ListTagsForResource",
        ],
        create: &["cloudwatch:PutMetricAlarm"],
        change: &["cloudwatch:PutMetricAlarm"],
        delete: &["cloudwatch:DeleteAlarms"],
        scope: IamScope::Arns(&["arn:{partition}:cloudwatch:{region}:*:alarm:infra-{env}-*"]),
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        match scope {
            // One prefix-filtered describe and one tag lookup, together, for any number.
            Scope::Environment(_) => {
                let (found, tagged) = futures::try_join!(
                    describe(aws, None),
                    tags::tagged(aws, &["cloudwatch:alarm"]),
                )?;
                let tagged: HashMap<&str, &Tags> =
                    tagged.iter().map(|(a, t)| (a.as_str(), t)).collect();
                Ok(found
                    .iter()
                    .filter_map(|a| {
                        let tags = tagged.get(a.alarm_arn()?)?;
                        live(a, (*tags).clone())
                    })
                    .collect())
            }
            Scope::Ids(ids) => {
                let chunks = ids.chunks(100).map(|chunk| async move {
                    let found = describe(aws, Some(chunk)).await?;
                    let tags = futures::future::try_join_all(
                        found
                            .iter()
                            .map(|a| tags_of(aws, a.alarm_arn().unwrap_or_default())),
                    )
                    .await?;
                    Ok::<_, AwsError>(
                        found
                            .iter()
                            .zip(tags)
                            .filter_map(|(a, t)| live(a, t))
                            .collect::<Vec<_>>(),
                    )
                });
                Ok(futures::future::try_join_all(chunks)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect())
            }
        }
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        put(aws, &want.attrs, &want.tags).await?;
        Ok(want.attrs.name.clone())
    }

    async fn change(
        &self,
        aws: &Aws,
        _have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        put(aws, &want.attrs, &Tags::new()).await
    }

    fn tag_target(have: &Live<Attrs, Outputs>) -> String {
        have.outputs.arn.clone()
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.cloudwatch()
                .delete_alarms()
                .alarm_names(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("cloudwatch", "DeleteAlarms")),
        )
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let existing = describe(aws, None)
            .await?
            .iter()
            .filter_map(|a| a.alarm_name().map(|n| (n.to_string(), n.to_string())))
            .collect();
        Ok(taken_among(wants, |a| &a.name, &existing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_and_target_group_dimensions_go_out_as_cloudwatch_names_and_come_back_as_arns()
    {
        let alarm = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:infra-stage-alb-5xx";
        let lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/stage/50dc6c495c0c9188";
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stage-web/73e2d6bc24d8a067";
        for (name, value, wire) in [
            (
                "LoadBalancer",
                DimensionValue::LoadBalancer(lb.to_string()),
                "app/stage/50dc6c495c0c9188",
            ),
            (
                "TargetGroup",
                DimensionValue::TargetGroup(tg.to_string()),
                "targetgroup/stage-web/73e2d6bc24d8a067",
            ),
            (
                "NatGatewayId",
                DimensionValue::Id("nat-0abc".to_string()),
                "nat-0abc",
            ),
            (
                "ClusterName",
                DimensionValue::Text("stage".to_string()),
                "stage",
            ),
        ] {
            assert_eq!(value.wire(), wire, "{name}");
            let elb = elb_arn_prefix(alarm, None);
            assert_eq!(
                DimensionValue::from_wire(name, wire, elb.as_deref()),
                value,
                "{name}"
            );
        }
    }
}
