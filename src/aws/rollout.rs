//! Following an ECS deployment to its end. The deployment a change started is the service's
//! PRIMARY one right after the change; it is done when ECS marks it COMPLETED, and failed when
//! ECS marks it FAILED or the circuit breaker rolls back to an earlier deployment. A failure
//! comes with the service's latest events and the reasons its tasks stopped.

use std::time::Duration;

use aws_sdk_ecs::types::{DesiredStatus, Service};

use super::sdk_error;
use crate::error::AwsError;

/// Where a deployment stands.
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
fn split(arn: &str) -> Option<(&str, &str)> {
    let path = arn.split(':').nth(5)?;
    let mut parts = path.split('/');
    parts.next()?;
    Some((parts.next()?, parts.next()?))
}

async fn describe(
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
                let mut message = format!("the rollout of {name} failed: {why}");
                for e in service.events().iter().take(5) {
                    message.push_str(&format!("\n    event: {}", e.message().unwrap_or_default()));
                }
                for r in stopped_reasons(ecs, cluster, name).await? {
                    message.push_str(&format!("\n    stopped task: {r}"));
                }
                return Err(AwsError::local("ecs", "rollout", message));
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
    use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::types::{
        Container, Deployment, DeploymentRolloutState, Service, ServiceEvent, Task,
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

    async fn run(client: &Client) -> (Result<(), AwsError>, Vec<String>) {
        let seen = Mutex::new(Vec::new());
        let record = |line: String| seen.lock().unwrap().push(line);
        let r = follow(
            client,
            ARN,
            Duration::from_secs(60),
            Duration::from_millis(1),
            &record,
        )
        .await;
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
        let (result, progress) = run(&client).await;
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
        let (result, _) = run(&client).await;
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
        let (result, _) = run(&client).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("rolled the service back to rollback"),
            "{message}"
        );
    }

    #[test]
    fn service_arns_split_into_cluster_and_name() {
        assert_eq!(split(ARN), Some(("stage", "web")));
        assert_eq!(split("arn:aws:ecs:us-east-1:1:cluster/stage"), None);
    }
}
