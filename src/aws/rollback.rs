//! `infra rollback`: what it does to one service, decided from what AWS says. A deployment still
//! in progress (the service's current service deployment, PENDING or IN_PROGRESS) is stopped with
//! rollback; otherwise the service is moved back to the revision its task definition kept for
//! this (`infra:previous`, see `kinds::task_definition`).

use std::time::Duration;

use aws_sdk_ecs::types::{ServiceDeploymentStatus as Status, StopServiceDeploymentStopType};

use super::kinds::task_definition::{family_of, kept};
use super::{Aws, sdk_error};
use crate::error::AwsError;

/// What a rollback of the service does.
/// The IAM action a rollback calls beyond a service update and the rollout follower's reads
/// (`infra policy`).
pub const IAM_ACTIONS: &[&str] = &["ecs:StopServiceDeployment"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Stop the deployment in progress; ECS returns the service to what it ran before.
    Stop { deployment: String },
    /// Move the service from revision `from` back to `to`.
    Revert { from: String, to: String },
}

use super::rollout::{describe, service_deployment, split};

fn not_a_service(arn: &str) -> AwsError {
    AwsError::local(
        "ecs",
        "DescribeServices",
        format!("{arn} is not a service ARN"),
    )
}

/// Decides what rolling the service back means now.
pub async fn decide(aws: &Aws, service_arn: &str) -> Result<Intent, AwsError> {
    let (cluster, name) = split(service_arn).ok_or_else(|| not_a_service(service_arn))?;
    let service = describe(&aws.ecs, cluster, service_arn).await?;
    if service.status() != Some("ACTIVE") {
        return Err(AwsError::local(
            "ecs",
            "DescribeServices",
            format!("service {name} does not exist (any more) in cluster {cluster}"),
        ));
    }
    if let Some(deployment) = service.current_service_deployment() {
        let running = service_deployment(&aws.ecs, deployment)
            .await?
            .as_ref()
            .and_then(|d| d.status())
            .is_some_and(|s| matches!(s, Status::Pending | Status::InProgress));
        if running {
            return Ok(Intent::Stop {
                deployment: deployment.to_string(),
            });
        }
    }
    let current = service.task_definition().unwrap_or_default().to_string();
    let (family, _) = family_of(&current).ok_or_else(|| {
        AwsError::local(
            "ecs",
            "DescribeServices",
            format!("service {name} runs `{current}`, not a task definition revision"),
        )
    })?;
    let earlier = kept(aws, family).await?;
    match earlier.into_iter().rev().find(|arn| *arn != current) {
        Some(to) => Ok(Intent::Revert { from: current, to }),
        None => Err(AwsError::local(
            "ecs",
            "rollback",
            format!(
                "service {name} has no earlier revision to return to: infra keeps the revision each change replaces, and {family} has none kept besides the one running ({})",
                current.rsplit('/').next().unwrap_or(&current)
            ),
        )),
    }
}

/// Carries the intent out.
pub async fn carry_out(aws: &Aws, service_arn: &str, intent: &Intent) -> Result<(), AwsError> {
    let (cluster, _) = split(service_arn).ok_or_else(|| not_a_service(service_arn))?;
    match intent {
        Intent::Stop { deployment } => aws
            .ecs
            .stop_service_deployment()
            .service_deployment_arn(deployment)
            .stop_type(StopServiceDeploymentStopType::Rollback)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("ecs", "StopServiceDeployment")),
        Intent::Revert { to, .. } => aws
            .ecs
            .update_service()
            .cluster(cluster)
            .service(service_arn)
            .task_definition(to)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("ecs", "UpdateService")),
    }
}

/// After returning to the kept revision `to` from `from`, for a service whose image the pipeline
/// owns: `to` becomes the environment's revision again and `from` the kept one (a later rollback
/// returns to it).
pub async fn swap_kept(aws: &Aws, from: &str, to: &str) -> Result<(), AwsError> {
    use super::kinds::task_definition::TAG_PREVIOUS;
    aws.ecs
        .untag_resource()
        .resource_arn(to)
        .tag_keys(TAG_PREVIOUS)
        .send()
        .await
        .map_err(sdk_error("ecs", "UntagResource"))?;
    aws.ecs
        .tag_resource()
        .resource_arn(from)
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key(TAG_PREVIOUS)
                .value("true")
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("ecs", "TagResource"))
}

/// Waits until a stopped deployment's rollback ends: Ok with the revision the service runs
/// then, Err when the rollback failed or did not end within `timeout`.
pub async fn await_stop(
    aws: &Aws,
    service_arn: &str,
    deployment: &str,
    timeout: Duration,
    poll: Duration,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<String, AwsError> {
    let (cluster, name) = split(service_arn).ok_or_else(|| not_a_service(service_arn))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let found = service_deployment(&aws.ecs, deployment).await?;
        let d = found.as_ref();
        let status = d.and_then(|d| d.status()).cloned();
        match status {
            Some(Status::RollbackSuccessful | Status::Stopped) => break,
            Some(Status::RollbackFailed) => {
                return Err(AwsError::local(
                    "ecs",
                    "rollback",
                    format!(
                        "the rollback of {name} failed: {}",
                        d.and_then(|d| d.status_reason())
                            .unwrap_or("ECS gave no reason")
                    ),
                ));
            }
            other => {
                let now = other.as_ref().map_or("PENDING", |s| s.as_str()).to_string();
                if tokio::time::Instant::now() > deadline {
                    return Err(AwsError::local(
                        "ecs",
                        "rollback",
                        format!(
                            "the rollback of {name} did not finish within {}s ({now})",
                            timeout.as_secs()
                        ),
                    ));
                }
                if last.as_ref() != Some(&now) {
                    progress(format!("{name}: {now}"));
                    last = Some(now);
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
    Ok(describe(&aws.ecs, cluster, service_arn)
        .await?
        .task_definition()
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    //! The emulator has no service deployments API: stopping a deployment in progress with
    //! rollback is shown here with canned ECS responses.

    use std::sync::Mutex;

    use aws_sdk_ecs::Client;
    use aws_sdk_ecs::operation::describe_service_deployments::DescribeServiceDeploymentsOutput;
    use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
    use aws_sdk_ecs::operation::stop_service_deployment::StopServiceDeploymentOutput;
    use aws_sdk_ecs::types::{Service, ServiceDeployment};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:service/stage/web";
    const DEPLOYMENT: &str = "arn:aws:ecs:us-east-1:123456789012:service-deployment/stage/web/d1";
    const OLD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/stage-web:6";

    fn service(task_definition: &str) -> DescribeServicesOutput {
        DescribeServicesOutput::builder()
            .services(
                Service::builder()
                    .service_arn(ARN)
                    .service_name("web")
                    .status("ACTIVE")
                    .task_definition(task_definition)
                    .current_service_deployment(DEPLOYMENT)
                    .build(),
            )
            .build()
    }

    fn deployment(status: Status) -> DescribeServiceDeploymentsOutput {
        DescribeServiceDeploymentsOutput::builder()
            .service_deployments(
                ServiceDeployment::builder()
                    .service_deployment_arn(DEPLOYMENT)
                    .status(status)
                    .status_reason("tasks failed their health checks")
                    .build(),
            )
            .build()
    }

    async fn aws_with(ecs: Client) -> Aws {
        // Every other client points at a closed loopback port: any call to it fails the test.
        let mut aws =
            crate::aws::connect_emulator("us-east-1", "stage", "http://127.0.0.1:9").await;
        aws.ecs = ecs;
        aws
    }

    #[tokio::test]
    async fn a_deployment_in_progress_is_stopped_with_rollback_and_followed_to_its_end() {
        let describe = mock!(Client::describe_services)
            .sequence()
            .output(|| service("arn:aws:ecs:us-east-1:123456789012:task-definition/stage-web:7"))
            .output(|| service(OLD))
            .build();
        let deployments = mock!(Client::describe_service_deployments)
            .sequence()
            .output(|| deployment(Status::InProgress))
            .output(|| deployment(Status::RollbackInProgress))
            .output(|| deployment(Status::RollbackSuccessful))
            .build();
        let stop = mock!(Client::stop_service_deployment)
            .match_requests(|r| {
                r.service_deployment_arn() == Some(DEPLOYMENT)
                    && r.stop_type() == Some(&StopServiceDeploymentStopType::Rollback)
            })
            .then_output(|| StopServiceDeploymentOutput::builder().build());
        let aws = aws_with(mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            [&describe, &deployments, &stop]
        ))
        .await;
        let intent = decide(&aws, ARN).await.unwrap();
        assert_eq!(
            intent,
            Intent::Stop {
                deployment: DEPLOYMENT.into()
            }
        );
        carry_out(&aws, ARN, &intent).await.unwrap();
        assert_eq!(stop.num_calls(), 1);
        let seen = Mutex::new(Vec::new());
        let record = |line: String| seen.lock().unwrap().push(line);
        let runs = await_stop(
            &aws,
            ARN,
            DEPLOYMENT,
            Duration::from_secs(60),
            Duration::from_millis(1),
            &record,
        )
        .await
        .unwrap();
        assert_eq!(runs, OLD);
        assert_eq!(seen.into_inner().unwrap(), ["web: ROLLBACK_IN_PROGRESS"]);
    }

    #[tokio::test]
    async fn a_failed_rollback_says_why() {
        let deployments = mock!(Client::describe_service_deployments)
            .then_output(|| deployment(Status::RollbackFailed));
        let aws = aws_with(mock_client!(aws_sdk_ecs, [&deployments])).await;
        let err = await_stop(
            &aws,
            ARN,
            DEPLOYMENT,
            Duration::from_secs(60),
            Duration::from_millis(1),
            &|_| {},
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("the rollback of web failed: tasks failed their health checks"),
            "{err}"
        );
    }
}
