//! The environment's CloudWatch dashboard: requests, 5xx answers, response time percentiles,
//! healthy targets, per-service CPU, memory and running tasks, NAT traffic.
//!
//! Its attributes are typed widgets, not the body's text: the body is generated from them on the
//! way out and parsed back on the way in, so AWS's reformatting of the body (spacing, key order)
//! never reads as a difference, while an edit made in the console does. Dashboards cannot be
//! tagged: it is identified by its name, `infra-<env>` (its identity tags are derived from it),
//! and read by that name with one GetDashboard. PutDashboard is an upsert by name.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alarm::{Dimension, DimensionValue, elb_arn_prefix};
use super::{
    Iam, IamScope, Id, Live, ResourceKind, Scope, Taken, Want, absent_ok, gone_ok, identity_tags,
};
use crate::aws::tags::TagApi;
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    /// The region every widget reads its metrics in.
    pub region: String,
    pub widgets: Vec<Widget<R>>,
}

/// A graph of metric lines, at a place on the dashboard's 24-column grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget<R = Id> {
    pub title: String,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub period: u32,
    /// The statistic of lines that do not give their own.
    pub stat: String,
    pub lines: Vec<Line<R>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<R = Id> {
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<Dimension<R>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
    pub label: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    pub arn: String,
}

pub struct Dashboard;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Dashboard;
}

/// The body CloudWatch stores.
pub fn body(a: &Attrs) -> Value {
    let widgets: Vec<Value> = a
        .widgets
        .iter()
        .map(|w| {
            let metrics: Vec<Value> = w
                .lines
                .iter()
                .map(|l| {
                    let mut line = vec![json!(l.namespace), json!(l.metric)];
                    for d in &l.dimensions {
                        line.push(json!(d.name));
                        line.push(json!(d.value.wire()));
                    }
                    let mut options = json!({"label": l.label});
                    if let Some(stat) = &l.stat {
                        options["stat"] = json!(stat);
                    }
                    line.push(options);
                    Value::Array(line)
                })
                .collect();
            json!({
                "type": "metric",
                "x": w.x,
                "y": w.y,
                "width": w.width,
                "height": w.height,
                "properties": {
                    "title": w.title,
                    "view": "timeSeries",
                    "region": a.region,
                    "period": w.period,
                    "stat": w.stat,
                    "metrics": metrics,
                }
            })
        })
        .collect();
    json!({ "widgets": widgets })
}

/// The typed attributes of a body as `body` writes it; `None` for anything else (a body edited
/// into another shape reads as different from every desired one).
fn parse(name: &str, body: &Value, dashboard_arn: &str) -> Option<Attrs> {
    let widgets_json = body.get("widgets")?.as_array()?;
    let region = widgets_json
        .first()
        .and_then(|w| w["properties"]["region"].as_str())
        .map(str::to_string);
    let elb = elb_arn_prefix(dashboard_arn, region.as_deref());
    let mut widgets = Vec::new();
    for w in widgets_json {
        let p = w.get("properties")?;
        let num = |v: &Value, key: &str| v.get(key)?.as_u64().and_then(|n| u32::try_from(n).ok());
        let text = |v: &Value, key: &str| v.get(key)?.as_str().map(str::to_string);
        if text(p, "region") != region {
            return None;
        }
        let mut lines = Vec::new();
        for m in p.get("metrics")?.as_array()? {
            let items = m.as_array()?;
            let (options, rest) = items.split_last()?;
            let [ns, metric, dims @ ..] = rest else {
                return None;
            };
            if dims.len() % 2 != 0 {
                return None;
            }
            let dimensions = dims
                .chunks(2)
                .map(|pair| {
                    let (n, v) = (pair[0].as_str()?, pair[1].as_str()?);
                    Some(Dimension {
                        name: n.to_string(),
                        value: DimensionValue::from_wire(n, v, elb.as_deref()),
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            lines.push(Line {
                namespace: ns.as_str()?.to_string(),
                metric: metric.as_str()?.to_string(),
                dimensions,
                stat: text(options, "stat"),
                label: text(options, "label").unwrap_or_default(),
            });
        }
        widgets.push(Widget {
            title: text(p, "title").unwrap_or_default(),
            x: num(w, "x")?,
            y: num(w, "y")?,
            width: num(w, "width")?,
            height: num(w, "height")?,
            period: num(p, "period")?,
            stat: text(p, "stat")?,
            lines,
        });
    }
    Some(Attrs {
        name: name.to_string(),
        region: region.unwrap_or_default(),
        widgets,
    })
}

async fn get(aws: &Aws, name: &str) -> Result<Option<Live<Attrs, Outputs>>, AwsError> {
    let got = absent_ok(
        aws.cloudwatch()
            .get_dashboard()
            .dashboard_name(name)
            .send()
            .await
            .map(Some)
            .map_err(sdk_error("cloudwatch", "GetDashboard")),
    )?;
    let Some(got) = got else { return Ok(None) };
    let arn = got.dashboard_arn().unwrap_or_default().to_string();
    let body: Value =
        serde_json::from_str(got.dashboard_body().unwrap_or("{}")).unwrap_or(Value::Null);
    // A body infra would never write reads as a dashboard without widgets: a difference.
    let attrs = parse(name, &body, &arn).unwrap_or_else(|| Attrs {
        name: name.to_string(),
        region: String::new(),
        widgets: Vec::new(),
    });
    Ok(Some(Live {
        physical_id: name.to_string(),
        attrs,
        outputs: Outputs { arn },
        tags: identity_tags(aws, naming::id::DASHBOARD),
    }))
}

async fn put(aws: &Aws, a: &Attrs) -> Result<(), AwsError> {
    let answer = aws
        .cloudwatch()
        .put_dashboard()
        .dashboard_name(&a.name)
        .dashboard_body(body(a).to_string())
        .send()
        .await
        .map_err(sdk_error("cloudwatch", "PutDashboard"))?;
    // Warnings about the body are refusals here: infra writes only bodies it can read back.
    if let Some(problem) = answer.dashboard_validation_messages().first() {
        return Err(AwsError::local(
            "cloudwatch",
            "PutDashboard",
            format!(
                "dashboard `{}`: {} ({})",
                a.name,
                problem.message().unwrap_or_default(),
                problem.data_path().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl ResourceKind for Dashboard {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]).deep(&["widgets"]);
    const TAGS: TagApi = TagApi::None;
    const IAM: Iam = Iam {
        read: &["cloudwatch:GetDashboard"],
        create: &["cloudwatch:PutDashboard"],
        change: &["cloudwatch:PutDashboard"],
        delete: &["cloudwatch:DeleteDashboards"],
        scope: IamScope::Arns(&["arn:{partition}:cloudwatch::*:dashboard/infra-{env}"]),
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let names = match scope {
            Scope::Environment(_) => vec![naming::dashboard(&aws.environment)],
            Scope::Ids(ids) => ids.to_vec(),
        };
        let reads = names.iter().map(|n| get(aws, n));
        Ok(futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        put(aws, &want.attrs).await?;
        Ok(want.attrs.name.clone())
    }

    async fn change(
        &self,
        aws: &Aws,
        _have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        put(aws, &want.attrs).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.cloudwatch()
                .delete_dashboards()
                .dashboard_names(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("cloudwatch", "DeleteDashboards")),
        )
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let mut out = Vec::new();
        for w in wants {
            if get(aws, &w.attrs.name).await?.is_some() {
                out.push(Taken::new(&w.id, &w.attrs.name, &w.attrs.name));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_reads_back_as_the_widgets_it_was_written_from_however_it_is_formatted() {
        let arn = "arn:aws:cloudwatch::123456789012:dashboard/infra-stage";
        let a = Attrs {
            name: "infra-stage".into(),
            region: "us-east-1".into(),
            widgets: vec![Widget {
                title: "Healthy targets".into(),
                x: 12,
                y: 6,
                width: 12,
                height: 6,
                period: 60,
                stat: "Minimum".into(),
                lines: vec![Line {
                    namespace: "AWS/ApplicationELB".into(),
                    metric: "HealthyHostCount".into(),
                    dimensions: vec![
                        Dimension {
                            name: "TargetGroup".into(),
                            value: DimensionValue::TargetGroup(
                                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stage-web/1".into(),
                            ),
                        },
                        Dimension {
                            name: "ClusterName".into(),
                            value: DimensionValue::Text("stage".into()),
                        },
                    ],
                    stat: Some("p99".into()),
                    label: "web".into(),
                }],
            }],
        };
        let pretty = serde_json::to_string_pretty(&body(&a)).unwrap();
        let reread: Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(parse("infra-stage", &reread, arn), Some(a.clone()));
        let mut edited = reread.clone();
        edited["widgets"][0]["properties"]["metrics"][0] = json!(["AWS/ECS", "CPUUtilization"]);
        assert_ne!(parse("infra-stage", &edited, arn), Some(a));
    }
}
