//! `infra status`: how the environment's services are doing, read live — per service its task
//! counts, its current rollout and the health of the targets in its target groups, with its
//! latest events; and the state of every alarm — in one batched round: DescribeServices ten at a
//! time, DescribeTargetHealth per target group and DescribeAlarms a hundred at a time, all in
//! flight together. `judge` (pure) decides healthy or degraded.

use serde::Serialize;

use super::{Aws, sdk_error};
use crate::error::AwsError;

/// One service as it runs.
/// The IAM actions `infra status` calls beside the kinds' reads (`infra policy`).
pub const IAM_READS: &[&str] = &[
    "ecs:DescribeServices",
    "elasticloadbalancing:DescribeTargetHealth",
    "cloudwatch:DescribeAlarms",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub running: i32,
    pub desired: i32,
    pub pending: i32,
    /// The rollout state of the service's newest deployment (IN_PROGRESS, COMPLETED, FAILED).
    pub rollout: Option<String>,
    /// Where a blue/green, canary or linear deployment in progress is (`baking`, `shifting
    /// production traffic`, …), from its service deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Why the rollout failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_reason: Option<String>,
    /// The image it runs and the tag it was deployed with (from state).
    pub image: Option<String>,
    pub tag: Option<String>,
    pub targets: Targets,
    /// Its latest events, newest first.
    pub events: Vec<String>,
}

/// Targets of a service's target groups by health.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Targets {
    pub healthy: u32,
    pub unhealthy: u32,
    /// Why unhealthy targets are (`target 10.0.1.5:3000: Target.ResponseCodeMismatch`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// One alarm as CloudWatch holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmStatus {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// CloudWatch's reason for the state.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What `infra status` read, and why the environment is degraded (empty when healthy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub services: Vec<ServiceStatus>,
    pub alarms: Vec<AlarmStatus>,
    pub problems: Vec<String>,
}

/// What `status` needs of one service, from state.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub name: String,
    pub arn: String,
    pub target_groups: Vec<String>,
    pub image: Option<String>,
    pub tag: Option<String>,
}

/// Why the environment is degraded (empty when healthy): an alarm in ALARM, an unhealthy
/// target, a failed rollout, or a finished rollout that left fewer tasks running than desired.
/// A rollout in progress, pending tasks, an empty target group and an alarm without data yet are
/// shown, not degraded.
pub fn judge(services: &[ServiceStatus], alarms: &[AlarmStatus]) -> Vec<String> {
    let mut out: Vec<String> = alarms
        .iter()
        .filter(|a| a.state == "ALARM")
        .map(|a| match a.reason.is_empty() {
            true => format!("alarm {} is in ALARM", a.name),
            false => format!("alarm {} is in ALARM: {}", a.name, a.reason),
        })
        .collect();
    for s in services {
        match s.rollout.as_deref() {
            Some("FAILED") => out.push(format!(
                "{}: the rollout failed{}",
                s.name,
                s.rollout_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
            Some("IN_PROGRESS") => {}
            _ if s.running < s.desired => out.push(format!(
                "{}: {} of {} tasks running",
                s.name, s.running, s.desired
            )),
            _ => {}
        }
        if s.targets.unhealthy > 0 {
            out.push(format!(
                "{}: {} unhealthy target(s)",
                s.name, s.targets.unhealthy
            ));
        }
    }
    out
}

async fn health(aws: &Aws, target_group: &str) -> Result<Targets, AwsError> {
    let out = aws
        .elbv2
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(sdk_error("elbv2", "DescribeTargetHealth"))?;
    let mut t = Targets::default();
    for d in out.target_health_descriptions() {
        let state = d
            .target_health()
            .and_then(|h| h.state())
            .map(|s| s.as_str().to_string());
        match state.as_deref() {
            Some("healthy") => t.healthy += 1,
            // Registering, draining and unused targets are neither.
            Some("unhealthy") => {
                t.unhealthy += 1;
                let target = d.target().map(|t| {
                    format!(
                        "{}:{}",
                        t.id().unwrap_or_default(),
                        t.port().unwrap_or_default()
                    )
                });
                let reason = d
                    .target_health()
                    .and_then(|h| h.reason())
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default();
                t.reasons
                    .push(format!("target {}: {reason}", target.unwrap_or_default()));
            }
            _ => {}
        }
    }
    Ok(t)
}

/// The state of the alarms named, a hundred a call, all calls at once; sorted by name.
pub async fn alarms(aws: &Aws, names: &[String]) -> Result<Vec<AlarmStatus>, AwsError> {
    let pages = futures::future::try_join_all(
        names
            .chunks(100)
            .map(|chunk| super::kinds::alarm::describe(aws, Some(chunk))),
    )
    .await?;
    let mut out: Vec<AlarmStatus> = pages
        .into_iter()
        .flatten()
        .map(|a| AlarmStatus {
            name: a.alarm_name().unwrap_or_default().to_string(),
            state: a
                .state_value()
                .map_or("INSUFFICIENT_DATA", |s| s.as_str())
                .to_string(),
            reason: a.state_reason().unwrap_or_default().to_string(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The lifecycle stage, in words, of each of these service deployments (by ARN), twenty a call.
pub async fn stages(
    ecs: &aws_sdk_ecs::Client,
    arns: &[String],
) -> Result<std::collections::HashMap<String, String>, AwsError> {
    let calls = arns.chunks(20).map(|chunk| async move {
        ecs.describe_service_deployments()
            .set_service_deployment_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map(|o| o.service_deployments().to_vec())
            .map_err(sdk_error("ecs", "DescribeServiceDeployments"))
    });
    Ok(futures::future::try_join_all(calls)
        .await?
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let stage = super::rollout::stage_name(d.lifecycle_stage())?;
            Some((d.service_deployment_arn()?.to_string(), stage.to_string()))
        })
        .collect())
}

/// Reads every wanted service and its targets at once (then the stage of the blue/green,
/// canary and linear deployments in progress).
pub async fn read(
    aws: &Aws,
    cluster: &str,
    wanted: &[Wanted],
) -> Result<Vec<ServiceStatus>, AwsError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let arns: Vec<String> = wanted.iter().map(|w| w.arn.clone()).collect();
    let describe = futures::future::try_join_all(arns.chunks(10).map(|chunk| async move {
        aws.ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .map(|o| o.services().to_vec())
            .map_err(sdk_error("ecs", "DescribeServices"))
    }));
    let targets = futures::future::try_join_all(wanted.iter().map(|w| async move {
        let groups =
            futures::future::try_join_all(w.target_groups.iter().map(|tg| health(aws, tg))).await?;
        Ok::<_, AwsError>(groups.into_iter().fold(Targets::default(), |mut a, t| {
            a.healthy += t.healthy;
            a.unhealthy += t.unhealthy;
            a.reasons.extend(t.reasons);
            a
        }))
    }));
    let (described, targets) = futures::try_join!(describe, targets)?;
    let described: Vec<_> = described.into_iter().flatten().collect();
    let shifting: Vec<String> = described
        .iter()
        .filter(|s| {
            s.deployments().first().and_then(|d| d.rollout_state())
                == Some(&aws_sdk_ecs::types::DeploymentRolloutState::InProgress)
        })
        .filter_map(|s| s.current_service_deployment().map(str::to_string))
        .collect();
    let stages = match shifting.is_empty() {
        true => Default::default(),
        false => stages(&aws.ecs, &shifting).await?,
    };
    Ok(wanted
        .iter()
        .zip(targets)
        .map(|(w, targets)| {
            let s = described
                .iter()
                .find(|s| s.service_arn() == Some(w.arn.as_str()));
            let newest = s.and_then(|s| s.deployments().first());
            ServiceStatus {
                name: w.name.clone(),
                running: s.map_or(0, |s| s.running_count()),
                desired: s.map_or(0, |s| s.desired_count()),
                pending: s.map_or(0, |s| s.pending_count()),
                rollout: newest
                    .and_then(|d| d.rollout_state())
                    .map(|r| r.as_str().to_string()),
                stage: s
                    .and_then(|s| s.current_service_deployment())
                    .and_then(|arn| stages.get(arn))
                    .cloned(),
                rollout_reason: newest
                    .filter(|d| d.rollout_state().map(|r| r.as_str()) == Some("FAILED"))
                    .and_then(|d| d.rollout_state_reason())
                    .map(str::to_string),
                image: w.image.clone(),
                tag: w.tag.clone(),
                targets,
                events: s
                    .map(|s| {
                        s.events()
                            .iter()
                            .take(3)
                            .filter_map(|e| e.message().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(rollout: Option<&str>, running: i32, unhealthy: u32) -> ServiceStatus {
        ServiceStatus {
            name: "web".into(),
            running,
            desired: 3,
            pending: 0,
            rollout: rollout.map(str::to_string),
            stage: None,
            rollout_reason: rollout
                .filter(|r| *r == "FAILED")
                .map(|_| "tasks failed to start".to_string()),
            image: None,
            tag: None,
            targets: Targets {
                healthy: 0,
                unhealthy,
                reasons: Vec::new(),
            },
            events: Vec::new(),
        }
    }

    #[test]
    fn what_is_degraded_and_what_is_only_shown() {
        let cases: &[(Option<&str>, i32, u32, &[&str])] = &[
            (Some("COMPLETED"), 3, 0, &[]),
            // In progress, pending, empty target group: shown, not degraded.
            (Some("IN_PROGRESS"), 0, 0, &[]),
            (Some("COMPLETED"), 2, 0, &["web: 2 of 3 tasks running"]),
            (None, 1, 0, &["web: 1 of 3 tasks running"]),
            (
                Some("FAILED"),
                0,
                0,
                &["web: the rollout failed: tasks failed to start"],
            ),
            (Some("COMPLETED"), 3, 1, &["web: 1 unhealthy target(s)"]),
        ];
        for (rollout, running, unhealthy, want) in cases {
            assert_eq!(
                judge(&[service(*rollout, *running, *unhealthy)], &[]),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{rollout:?} {running} {unhealthy}"
            );
        }
    }

    #[test]
    fn an_alarm_firing_degrades_and_one_without_data_does_not() {
        let alarm = |state: &str, reason: &str| AlarmStatus {
            name: "infra-stage-web-cpu".into(),
            state: state.into(),
            reason: reason.into(),
        };
        let healthy = [service(Some("COMPLETED"), 3, 0)];
        for (state, reason, want) in [
            ("OK", "", vec![]),
            ("INSUFFICIENT_DATA", "no datapoints", vec![]),
            (
                "ALARM",
                "Threshold Crossed",
                vec!["alarm infra-stage-web-cpu is in ALARM: Threshold Crossed".to_string()],
            ),
            (
                "ALARM",
                "",
                vec!["alarm infra-stage-web-cpu is in ALARM".to_string()],
            ),
        ] {
            assert_eq!(judge(&healthy, &[alarm(state, reason)]), want, "{state}");
        }
    }

    /// The emulator answers the service deployments API with HTTP 500: canned answers.
    #[tokio::test]
    async fn deployments_in_progress_are_read_at_their_stage() {
        use aws_sdk_ecs::Client;
        use aws_sdk_ecs::operation::describe_service_deployments::DescribeServiceDeploymentsOutput;
        use aws_sdk_ecs::types::{ServiceDeployment, ServiceDeploymentLifecycleStage as Stage};
        use aws_smithy_mocks::{mock, mock_client};
        let arn = |n: u32| {
            format!("arn:aws:ecs:us-east-1:123456789012:service-deployment/stage/web{n}/x")
        };
        let answer = mock!(Client::describe_service_deployments).then_output(move || {
            DescribeServiceDeploymentsOutput::builder()
                .service_deployments(
                    ServiceDeployment::builder()
                        .service_deployment_arn(arn(1))
                        .lifecycle_stage(Stage::BakeTime)
                        .build(),
                )
                .service_deployments(
                    ServiceDeployment::builder()
                        .service_deployment_arn(arn(2))
                        .lifecycle_stage(Stage::ProductionTrafficShift)
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_ecs, [&answer]);
        let got = stages(&client, &[arn(1), arn(2)]).await.unwrap();
        assert_eq!(got[&arn(1)], "baking");
        assert_eq!(got[&arn(2)], "shifting production traffic");
        assert_eq!(answer.num_calls(), 1);
    }
}
