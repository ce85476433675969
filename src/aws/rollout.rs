//! Following an ECS deployment to its end. A rolling deployment a change started is the
//! service's PRIMARY one right after the change; it is done when ECS marks it COMPLETED, and
//! failed when ECS marks it FAILED or the circuit breaker rolls back to an earlier deployment.
//! Blue/green, canary and linear deployments are followed through the service deployments API:
//! the service's current service deployment, its lifecycle stage and the share of production
//! traffic the new revision has, until it is SUCCESSFUL, rolled back or stopped. A failure
//! comes with the service's latest events and the reasons its tasks stopped.

use std::time::Duration;

use aws_sdk_ecs::types::{
    DesiredStatus, Service, ServiceDeployment, ServiceDeploymentLifecycleStage as Stage,
    ServiceDeploymentStatus as Status,
};

use super::sdk_error;
use crate::error::AwsError;

/// Where a deployment stands.
/// The IAM actions following a deployment to its end calls (`infra policy`).
pub const IAM_READS: &[&str] = &[
    "ecs:DescribeServices",
    "ecs:DescribeServiceDeployments",
    "ecs:DescribeTasks",
    "ecs:ListTasks",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    Failed(String),
    InProgress { running: i32, desired: i32 },
}

/// The PRIMARY deployment's id: the one an apply just started.
pub fn primary(service: &Service) -> Option<String> {
    service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id().map(str::to_string))
}

/// Judges deployment `ours` of a freshly described service.
pub fn assess(service: &Service, ours: &str) -> Verdict {
    let Some(d) = service.deployments().iter().find(|d| d.id() == Some(ours)) else {
        return Verdict::Failed(format!(
            "deployment {ours} is gone: the circuit breaker rolled the service back to {}",
            primary(service).unwrap_or_else(|| "an earlier deployment".into())
        ));
    };
    match d.rollout_state().map(|s| s.as_str()) {
        Some("COMPLETED") => Verdict::Done,
        Some("FAILED") => Verdict::Failed(
            d.rollout_state_reason()
                .unwrap_or("the deployment failed")
                .to_string(),
        ),
        _ if d.status() != Some("PRIMARY") => Verdict::Failed(format!(
            "deployment {ours} was replaced by {} before it completed (rolled back)",
            primary(service).unwrap_or_else(|| "another deployment".into())
        )),
        _ => Verdict::InProgress {
            running: d.running_count(),
            desired: d.desired_count(),
        },
    }
}

/// `arn:…:service/CLUSTER/NAME` → (CLUSTER, NAME).
pub(crate) fn split(arn: &str) -> Option<(&str, &str)> {
    let path = arn.split(':').nth(5)?;
    let mut parts = path.split('/');
    parts.next()?;
    Some((parts.next()?, parts.next()?))
}

pub(crate) async fn describe(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    arn: &str,
) -> Result<Service, AwsError> {
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(arn)
        .send()
        .await
        .map_err(sdk_error("ecs", "DescribeServices"))?;
    out.services().first().cloned().ok_or_else(|| {
        AwsError::local(
            "ecs",
            "DescribeServices",
            format!("service {arn} not found"),
        )
    })
}

/// Why the service's recent tasks stopped, newest first.
async fn stopped_reasons(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    name: &str,
) -> Result<Vec<String>, AwsError> {
    let tasks = ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(name)
        .desired_status(DesiredStatus::Stopped)
        .max_results(10)
        .send()
        .await
        .map_err(sdk_error("ecs", "ListTasks"))?;
    if tasks.task_arns().is_empty() {
        return Ok(Vec::new());
    }
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(tasks.task_arns().to_vec()))
        .send()
        .await
        .map_err(sdk_error("ecs", "DescribeTasks"))?;
    Ok(described
        .tasks()
        .iter()
        .map(|t| {
            let containers: Vec<String> = t
                .containers()
                .iter()
                .filter_map(|c| Some(format!("{}: {}", c.name()?, c.reason()?)))
                .collect();
            let mut line = t.stopped_reason().unwrap_or("stopped").to_string();
            if !containers.is_empty() {
                line.push_str(&format!(" ({})", containers.join("; ")));
            }
            line
        })
        .collect())
}

/// What the service deployment says now: the verdict, or the progress line while in progress.
pub fn assess_deployment(d: &ServiceDeployment) -> Result<Verdict, String> {
    let reason = || {
        let mut why: Vec<&str> = d.status_reason().into_iter().collect();
        why.extend(d.rollback().and_then(|r| r.reason()));
        match why.is_empty() {
            true => String::new(),
            false => format!(": {}", why.join("; ")),
        }
    };
    match d.status() {
        Some(Status::Successful) => Ok(Verdict::Done),
        Some(
            s @ (Status::RollbackRequested
            | Status::RollbackInProgress
            | Status::RollbackSuccessful
            | Status::RollbackFailed),
        ) => Ok(Verdict::Failed(format!(
            "the deployment was rolled back ({}){}",
            s.as_str(),
            reason()
        ))),
        Some(s @ (Status::Stopped | Status::StopRequested)) => Ok(Verdict::Failed(format!(
            "the deployment was stopped ({}){}",
            s.as_str(),
            reason()
        ))),
        _ => {
            let target = d.target_service_revision();
            let stage = d.lifecycle_stage().map_or("PENDING", |s| s.as_str());
            let mut line = format!(
                "{} — {}/{} new tasks running",
                stage_name(d.lifecycle_stage()).unwrap_or(stage),
                target.map_or(0, |t| t.running_task_count()),
                target.map_or(0, |t| t.requested_task_count()),
            );
            if let Some(w) = target.and_then(|t| t.requested_production_traffic_weight()) {
                line.push_str(&format!(", {w}% of production traffic"));
            }
            Err(line)
        }
    }
}

/// A service deployment by ARN, as ECS describes it now.
pub(crate) async fn service_deployment(
    ecs: &aws_sdk_ecs::Client,
    arn: &str,
) -> Result<Option<ServiceDeployment>, AwsError> {
    let out = ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .map_err(sdk_error("ecs", "DescribeServiceDeployments"))?;
    Ok(out.service_deployments().first().cloned())
}

/// A lifecycle stage in words.
pub(crate) fn stage_name(stage: Option<&Stage>) -> Option<&'static str> {
    Some(match stage? {
        Stage::ReconcileService => "reconciling the service",
        Stage::PreScaleUp => "before scale-up",
        Stage::ScaleUp => "scaling up the new revision",
        Stage::PostScaleUp => "after scale-up",
        Stage::TestTrafficShift => "shifting test traffic",
        Stage::PostTestTrafficShift => "after test traffic shift",
        Stage::ProductionTrafficShift => "shifting production traffic",
        Stage::PostProductionTrafficShift => "after production traffic shift",
        Stage::BakeTime => "baking",
        Stage::CleanUp => "cleaning up the old revision",
        _ => return None,
    })
}

/// The failure message: what went wrong, the service's latest events, why its tasks stopped.
async fn failure(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    name: &str,
    service: &Service,
    why: &str,
) -> AwsError {
    let mut message = format!("the rollout of {name} failed: {why}");
    for e in service.events().iter().take(5) {
        message.push_str(&format!("\n    event: {}", e.message().unwrap_or_default()));
    }
    match stopped_reasons(ecs, cluster, name).await {
        Ok(reasons) => {
            for r in reasons {
                message.push_str(&format!("\n    stopped task: {r}"));
            }
        }
        Err(e) => return e,
    }
    AwsError::local("ecs", "rollout", message)
}

/// Follows a blue/green, canary or linear deployment through its lifecycle stages until it is
/// SUCCESSFUL (Ok), rolled back or stopped (Err, with the reasons), or the timeout passes.
pub async fn follow_deployment(
    ecs: &aws_sdk_ecs::Client,
    service_arn: &str,
    timeout: Duration,
    poll: Duration,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), AwsError> {
    let (cluster, name) = split(service_arn).ok_or_else(|| {
        AwsError::local(
            "ecs",
            "DescribeServices",
            format!("{service_arn} is not a service ARN"),
        )
    })?;
    let service = describe(ecs, cluster, service_arn).await?;
    let Some(ours) = service.current_service_deployment().map(str::to_string) else {
        // No service deployment to follow (the change started none): the deployments list says
        // all there is.
        return follow(ecs, service_arn, timeout, poll, progress).await;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let Some(d) = service_deployment(ecs, &ours).await? else {
            return Err(AwsError::local(
                "ecs",
                "DescribeServiceDeployments",
                format!("service deployment {ours} of {name} not found"),
            ));
        };
        match assess_deployment(&d) {
            Ok(Verdict::Done) => return Ok(()),
            Ok(Verdict::Failed(why)) => {
                let service = describe(ecs, cluster, service_arn).await?;
                return Err(failure(ecs, cluster, name, &service, &why).await);
            }
            Ok(Verdict::InProgress { .. }) => {}
            Err(line) => {
                if tokio::time::Instant::now() > deadline {
                    return Err(AwsError::local(
                        "ecs",
                        "rollout",
                        format!(
                            "the deployment of {name} did not finish within {}s ({line}); `apply --no-wait` does not wait",
                            timeout.as_secs()
                        ),
                    ));
                }
                if last.as_ref() != Some(&line) {
                    progress(format!("{name}: {line}"));
                    last = Some(line);
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Polls the service until the deployment started by the last change completes or fails.
pub async fn follow(
    ecs: &aws_sdk_ecs::Client,
    service_arn: &str,
    timeout: Duration,
    poll: Duration,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), AwsError> {
    let (cluster, name) = split(service_arn).ok_or_else(|| {
        AwsError::local(
            "ecs",
            "DescribeServices",
            format!("{service_arn} is not a service ARN"),
        )
    })?;
    let first = describe(ecs, cluster, service_arn).await?;
    let Some(ours) = primary(&first) else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut service = first;
    let mut last = None;
    loop {
        match assess(&service, &ours) {
            Verdict::Done => return Ok(()),
            Verdict::Failed(why) => {
                return Err(failure(ecs, cluster, name, &service, &why).await);
            }
            Verdict::InProgress { running, desired } => {
                if last != Some((running, desired)) {
                    progress(format!("{name}: {running}/{desired} tasks running"));
                    last = Some((running, desired));
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(AwsError::local(
                        "ecs",
                        "rollout",
                        format!(
                            "the rollout of {name} did not finish within {}s ({running}/{desired} tasks running); `apply --no-wait` does not wait",
                            timeout.as_secs()
                        ),
                    ));
                }
            }
        }
        tokio::time::sleep(poll).await;
        service = describe(ecs, cluster, service_arn).await?;
    }
}

#[cfg(test)]
mod tests {
    //! The emulator never finishes a rollout, so success, failure and rollback are shown here
    //! with canned ECS responses.

    use std::sync::Mutex;

    use aws_sdk_ecs::Client;
    use aws_sdk_ecs::operation::describe_service_deployments::DescribeServiceDeploymentsOutput;
    use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::types::{
        Container, Deployment, DeploymentRolloutState, Rollback, Service, ServiceEvent,
        ServiceRevisionSummary, Task,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:service/stage/web";

    fn deployment(
        id: &str,
        status: &str,
        state: DeploymentRolloutState,
        running: i32,
    ) -> Deployment {
        Deployment::builder()
            .id(id)
            .status(status)
            .rollout_state(state)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .running_count(running)
            .desired_count(3)
            .build()
    }

    fn service(deployments: Vec<Deployment>) -> DescribeServicesOutput {
        let s = Service::builder()
            .service_arn(ARN)
            .service_name("web")
            .set_deployments(Some(deployments))
            .events(
                ServiceEvent::builder()
                    .message("(service web) has started 3 tasks")
                    .build(),
            )
            .events(
                ServiceEvent::builder()
                    .message("(service web) is unhealthy in target-group stage-web")
                    .build(),
            )
            .build();
        DescribeServicesOutput::builder().services(s).build()
    }

    /// Follows the deployment of `ARN` against canned answers: a rolling one through the
    /// deployments list, a traffic-shifting one through its service deployment.
    async fn run(client: &Client, shifting: bool) -> (Result<(), AwsError>, Vec<String>) {
        let seen = Mutex::new(Vec::new());
        let record = |line: String| seen.lock().unwrap().push(line);
        let (timeout, poll) = (Duration::from_secs(60), Duration::from_millis(1));
        let r = match shifting {
            true => follow_deployment(client, ARN, timeout, poll, &record).await,
            false => follow(client, ARN, timeout, poll, &record).await,
        };
        (r, seen.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_completed_rollout_succeeds_after_reporting_progress() {
        use DeploymentRolloutState::*;
        let describe = mock!(Client::describe_services)
            .sequence()
            .output(|| {
                service(vec![
                    deployment("new", "PRIMARY", InProgress, 0),
                    deployment("old", "ACTIVE", Completed, 3),
                ])
            })
            .output(|| {
                service(vec![
                    deployment("new", "PRIMARY", InProgress, 2),
                    deployment("old", "ACTIVE", Completed, 1),
                ])
            })
            .output(|| service(vec![deployment("new", "PRIMARY", Completed, 3)]))
            .build();
        let client = mock_client!(aws_sdk_ecs, [&describe]);
        let (result, progress) = run(&client, false).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            progress,
            ["web: 0/3 tasks running", "web: 2/3 tasks running"]
        );
        assert_eq!(describe.num_calls(), 3);
    }

    #[tokio::test]
    async fn a_failed_rollout_lists_events_and_stopped_task_reasons() {
        use DeploymentRolloutState::*;
        let describe = mock!(Client::describe_services)
            .sequence()
            .output(|| service(vec![deployment("new", "PRIMARY", InProgress, 0)]))
            .output(|| service(vec![deployment("new", "PRIMARY", Failed, 0)]))
            .build();
        let list = mock!(Client::list_tasks).then_output(|| {
            ListTasksOutput::builder()
                .task_arns("arn:aws:ecs:us-east-1:123456789012:task/stage/abc")
                .build()
        });
        let tasks = mock!(Client::describe_tasks).then_output(|| {
            DescribeTasksOutput::builder()
                .tasks(
                    Task::builder()
                        .stopped_reason("Essential container in task exited")
                        .containers(
                            Container::builder()
                                .name("web")
                                .reason("CannotPullContainerError: not found")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &list, &tasks]);
        let (result, _) = run(&client, false).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("the rollout of web failed: ECS deployment circuit breaker"),
            "{message}"
        );
        assert!(
            message.contains("event: (service web) is unhealthy in target-group stage-web"),
            "{message}"
        );
        assert!(
            message.contains("stopped task: Essential container in task exited (web: CannotPullContainerError: not found)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_rollback_is_a_failure() {
        use DeploymentRolloutState::*;
        let describe = mock!(Client::describe_services)
            .sequence()
            .output(|| {
                service(vec![
                    deployment("new", "PRIMARY", InProgress, 0),
                    deployment("old", "ACTIVE", Completed, 3),
                ])
            })
            .output(|| service(vec![deployment("rollback", "PRIMARY", InProgress, 3)]))
            .build();
        let list = mock!(Client::list_tasks).then_output(|| ListTasksOutput::builder().build());
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &list]);
        let (result, _) = run(&client, false).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("rolled the service back to rollback"),
            "{message}"
        );
    }

    const DEPLOYMENT: &str = "arn:aws:ecs:us-east-1:123456789012:service-deployment/stage/web/abc";

    /// A blue/green service whose current service deployment is `DEPLOYMENT`.
    fn shifting_service() -> DescribeServicesOutput {
        let s = Service::builder()
            .service_arn(ARN)
            .service_name("web")
            .current_service_deployment(DEPLOYMENT)
            .events(
                ServiceEvent::builder()
                    .message("(service web) deployment failed: alarm web-5xx in ALARM")
                    .build(),
            )
            .build();
        DescribeServicesOutput::builder().services(s).build()
    }

    fn stage(
        status: Status,
        stage: Option<Stage>,
        running: i32,
        weight: Option<f64>,
    ) -> DescribeServiceDeploymentsOutput {
        let target = ServiceRevisionSummary::builder()
            .arn("arn:aws:ecs:us-east-1:123456789012:service-revision/stage/web/2")
            .requested_task_count(3)
            .running_task_count(running)
            .set_requested_production_traffic_weight(weight)
            .build();
        let d = ServiceDeployment::builder()
            .service_deployment_arn(DEPLOYMENT)
            .status(status.clone())
            .set_lifecycle_stage(stage)
            .target_service_revision(target);
        let d = match status {
            Status::RollbackInProgress => d
                .status_reason("Service deployment rolled back because of alarm web-5xx")
                .rollback(Rollback::builder().reason("alarm web-5xx in ALARM").build()),
            Status::Stopped => d.status_reason("stopped by the user"),
            _ => d,
        };
        DescribeServiceDeploymentsOutput::builder()
            .service_deployments(d.build())
            .build()
    }

    #[tokio::test]
    async fn a_blue_green_deployment_is_followed_through_its_stages_to_success() {
        let describe = mock!(Client::describe_services).then_output(shifting_service);
        let stages = mock!(Client::describe_service_deployments)
            .sequence()
            .output(|| stage(Status::Pending, None, 0, None))
            .output(|| stage(Status::InProgress, Some(Stage::ScaleUp), 1, Some(0.0)))
            .output(|| stage(Status::InProgress, Some(Stage::ScaleUp), 3, Some(0.0)))
            .output(|| {
                stage(
                    Status::InProgress,
                    Some(Stage::ProductionTrafficShift),
                    3,
                    Some(10.0),
                )
            })
            .output(|| stage(Status::InProgress, Some(Stage::BakeTime), 3, Some(100.0)))
            .output(|| stage(Status::InProgress, Some(Stage::BakeTime), 3, Some(100.0)))
            .output(|| stage(Status::Successful, Some(Stage::CleanUp), 3, Some(100.0)))
            .build();
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &stages]);
        let (result, progress) = run(&client, true).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            progress,
            [
                "web: PENDING — 0/3 new tasks running",
                "web: scaling up the new revision — 1/3 new tasks running, 0% of production traffic",
                "web: scaling up the new revision — 3/3 new tasks running, 0% of production traffic",
                "web: shifting production traffic — 3/3 new tasks running, 10% of production traffic",
                "web: baking — 3/3 new tasks running, 100% of production traffic",
            ]
        );
        assert_eq!(stages.num_calls(), 7);
    }

    #[tokio::test]
    async fn a_rolled_back_deployment_fails_with_its_reasons() {
        let describe = mock!(Client::describe_services).then_output(shifting_service);
        let stages = mock!(Client::describe_service_deployments)
            .sequence()
            .output(|| {
                stage(
                    Status::InProgress,
                    Some(Stage::ProductionTrafficShift),
                    3,
                    Some(10.0),
                )
            })
            .output(|| stage(Status::RollbackInProgress, None, 3, Some(0.0)))
            .build();
        let list = mock!(Client::list_tasks).then_output(|| ListTasksOutput::builder().build());
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &stages, &list]);
        let (result, _) = run(&client, true).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("the rollout of web failed: the deployment was rolled back (ROLLBACK_IN_PROGRESS): Service deployment rolled back because of alarm web-5xx; alarm web-5xx in ALARM"),
            "{message}"
        );
        assert!(
            message.contains("event: (service web) deployment failed: alarm web-5xx in ALARM"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_stopped_deployment_fails() {
        let describe = mock!(Client::describe_services).then_output(shifting_service);
        let stages = mock!(Client::describe_service_deployments)
            .then_output(|| stage(Status::Stopped, None, 1, None));
        let list = mock!(Client::list_tasks).then_output(|| ListTasksOutput::builder().build());
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &stages, &list]);
        let (result, progress) = run(&client, true).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("the deployment was stopped (STOPPED): stopped by the user"),
            "{message}"
        );
        assert!(progress.is_empty(), "{progress:?}");
    }

    #[test]
    fn service_arns_split_into_cluster_and_name() {
        assert_eq!(split(ARN), Some(("stage", "web")));
        assert_eq!(split("arn:aws:ecs:us-east-1:1:cluster/stage"), None);
    }
}
