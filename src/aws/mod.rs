//! Everything that speaks to AWS. The only module that imports `aws_sdk_*`.
//!
//! `connect` builds one `SdkConfig` (one TLS stack, adaptive retries, the standard credential
//! chain, `AWS_ENDPOINT_URL` overrides) and the service clients from it. `refresh` reads every
//! kind concurrently, one batched call per kind. `s3_backend` stores state in S3.

pub mod ec2;
pub mod ecs;
pub mod elbv2;
pub mod existing;
pub mod gate;
pub mod images;
pub mod kinds;
pub mod rollback;
pub mod rollout;
pub mod s3_backend;
pub mod status;
pub mod tags;
pub mod wait;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::ErrorKind;
use aws_types::request_id::RequestId;

use crate::error::AwsError;
use crate::model::LiveResource;
pub use crate::model::Names;
use crate::model::TAG_ENVIRONMENT;
use crate::state::StateDoc;

/// The clients of one environment's region, and what every adapter needs to know.
/// The one way a service client is made: from the shared `SdkConfig`, over the gated HTTP client
/// (the `--max-rps` pace and the lock's fence), with the call log. A new service's client is one
/// more line in `build` with this macro; it cannot skip the fence.
macro_rules! fenced_client {
    ($sdk_crate:ident, $sdk:expr, $http:expr) => {
        $sdk_crate::Client::from_conf(
            $sdk_crate::config::Builder::from($sdk)
                .http_client($http.clone())
                .interceptor(CallLog)
                .build(),
        )
    };
}

#[derive(Clone)]
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub iam: aws_sdk_iam::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// The Resource Groups Tagging API: ARNs and tags of many resources in one call.
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    /// Clients of services only some environments use, made on first use (see `Aws::autoscaling`).
    lazy: Arc<LazyClients>,
    pub region: String,
    /// The environment whose resources are read and tagged.
    pub environment: String,
    /// Names that ECS reads need (it has no tag filters): the cluster and the services.
    pub names: Names,
    /// What holds requests back while the state lock's lease is in doubt (see `gate`).
    pub fence: Arc<gate::Fence>,
}

/// What makes the clients only some environments need, and the clients once made: an
/// environment without autoscaling or alarms never builds (nor pages in) their SDKs.
struct LazyClients {
    sdk: aws_config::SdkConfig,
    fenced: aws_smithy_runtime_api::client::http::SharedHttpClient,
    autoscaling: std::sync::OnceLock<aws_sdk_applicationautoscaling::Client>,
    cloudwatch: std::sync::OnceLock<aws_sdk_cloudwatch::Client>,
    sns: std::sync::OnceLock<aws_sdk_sns::Client>,
    acm: std::sync::OnceLock<aws_sdk_acm::Client>,
    route53: std::sync::OnceLock<aws_sdk_route53::Client>,
    rds: std::sync::OnceLock<aws_sdk_rds::Client>,
    ssm: std::sync::OnceLock<aws_sdk_ssm::Client>,
}

impl Aws {
    /// Application Auto Scaling (scalable targets and scaling policies of ECS services).
    pub fn autoscaling(&self) -> &aws_sdk_applicationautoscaling::Client {
        let l = &self.lazy;
        l.autoscaling
            .get_or_init(|| fenced_client!(aws_sdk_applicationautoscaling, &l.sdk, &l.fenced))
    }

    /// CloudWatch alarms and dashboards.
    pub fn cloudwatch(&self) -> &aws_sdk_cloudwatch::Client {
        let l = &self.lazy;
        l.cloudwatch
            .get_or_init(|| fenced_client!(aws_sdk_cloudwatch, &l.sdk, &l.fenced))
    }

    /// The topic alarms notify.
    pub fn sns(&self) -> &aws_sdk_sns::Client {
        let l = &self.lazy;
        l.sns
            .get_or_init(|| fenced_client!(aws_sdk_sns, &l.sdk, &l.fenced))
    }

    /// The certificate of a domain.
    pub fn acm(&self) -> &aws_sdk_acm::Client {
        let l = &self.lazy;
        l.acm
            .get_or_init(|| fenced_client!(aws_sdk_acm, &l.sdk, &l.fenced))
    }

    /// The records of a domain in its hosted zone.
    pub fn route53(&self) -> &aws_sdk_route53::Client {
        let l = &self.lazy;
        l.route53
            .get_or_init(|| fenced_client!(aws_sdk_route53, &l.sdk, &l.fenced))
    }

    /// The environment's databases and their subnet group.
    pub fn rds(&self) -> &aws_sdk_rds::Client {
        let l = &self.lazy;
        l.rds
            .get_or_init(|| fenced_client!(aws_sdk_rds, &l.sdk, &l.fenced))
    }

    /// The public parameter that names the latest Amazon Linux AMI.
    pub fn ssm(&self) -> &aws_sdk_ssm::Client {
        let l = &self.lazy;
        l.ssm
            .get_or_init(|| fenced_client!(aws_sdk_ssm, &l.sdk, &l.fenced))
    }

    /// Whether a live resource carries this environment's tag. Every describe already filters by
    /// it; checking again means a service that ignores a tag filter can never make infra touch
    /// what is not its own.
    pub fn owns(&self, live: &LiveResource) -> bool {
        live.attrs["tags"][TAG_ENVIRONMENT].as_str() == Some(self.environment.as_str())
    }
}

/// Whether the endpoint is overridden (a local emulator): then S3 needs path-style addressing.
fn endpoint_overridden() -> bool {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Logs every AWS operation at debug level under the `infra::aws::call` target, so
/// `-v` (or `RUST_LOG=infra::aws::call=debug`) shows exactly which calls a command makes.
#[derive(Debug)]
struct CallLog;

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            tracing::debug!(target: "infra::aws::call", "aws call: {} {}", m.service(), m.name());
        }
        cfg.interceptor_state()
            .store_put(CallStarted(std::time::Instant::now()));
        Ok(())
    }

    /// How the call ended: its duration and how many attempts it took (retries included).
    fn read_after_execution(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let elapsed = cfg.load::<CallStarted>().map(|s| s.0.elapsed());
        let attempts = cfg
            .load::<aws_smithy_runtime_api::client::retries::RequestAttempts>()
            .map(|a| a.attempts())
            .unwrap_or(1);
        let status = context
            .response()
            .map(|r| r.status().as_u16().to_string())
            .unwrap_or_else(|| "no answer".into());
        if let (Some(m), Some(elapsed)) = (cfg.load::<Metadata>(), elapsed) {
            tracing::debug!(
                target: "infra::aws::call",
                "aws reply: {} {} {status} in {} ms, {attempts} attempt{}",
                m.service(),
                m.name(),
                elapsed.as_millis(),
                if attempts == 1 { "" } else { "s" }
            );
        }
        Ok(())
    }
}

/// When the call in this bag started, for its log line.
#[derive(Debug, Clone, Copy)]
struct CallStarted(std::time::Instant);

impl aws_smithy_types::config_bag::Storable for CallStarted {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

/// The retry policy of calls that are not idempotent (CreateVpc, AllocateAddress,
/// CreateInternetGateway, RegisterTaskDefinition: no client token, no unique name). Throttling is
/// still retried — the service refused the request, nothing happened. Every other error (a 5xx,
/// a timeout, a dropped connection) may come after the call was carried out, and a blind retry
/// would create a twin; it goes back to the caller, which looks for the resource by its tag
/// before trying again (`exec`). Runs after the SDK's own classifiers and narrows their verdict.
#[derive(Debug)]
pub struct NotIdempotent;

impl ClassifyRetry for NotIdempotent {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, _ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        narrow_to_throttling(previous)
    }

    fn name(&self) -> &'static str {
        "NotIdempotent"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

fn narrow_to_throttling(previous: &RetryAction) -> RetryAction {
    match previous {
        RetryAction::RetryIndicated(RetryReason::RetryableError {
            kind: ErrorKind::ThrottlingError,
            ..
        }) => RetryAction::NoActionIndicated,
        RetryAction::RetryIndicated(_) => RetryAction::RetryForbidden,
        _ => RetryAction::NoActionIndicated,
    }
}

/// Builds the SDK configuration once and every client from it, from the standard credential
/// chain and `AWS_*` variables; with `max_rps`, every request of the process is paced to it.
pub async fn connect(region: &str, environment: &str, max_rps: Option<NonZeroU32>) -> Aws {
    build(region, environment, None, max_rps).await
}

/// Clients for an emulator at `endpoint` (tests, benchmarks): dummy static credentials and
/// path-style S3, whatever the process environment says.
pub async fn connect_emulator(region: &str, environment: &str, endpoint: &str) -> Aws {
    build(region, environment, Some(endpoint), None).await
}

async fn build(
    region: &str,
    environment: &str,
    emulator: Option<&str>,
    max_rps: Option<NonZeroU32>,
) -> Aws {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let pace = max_rps.map(|rps| Arc::new(gate::Pace::new(rps)));
    let fence = Arc::new(gate::Fence::default());
    // Everything but the state bucket's client is fenced by the lock (see `gate`).
    let fenced = gate::gated(http.clone(), pace.clone(), Some(fence.clone()));
    let http = gate::gated(http, pace, None);
    let mut retry = RetryConfig::adaptive()
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20));
    if std::env::var("AWS_MAX_ATTEMPTS").is_err() {
        retry = retry.with_max_attempts(8);
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(http)
        .retry_config(retry);
    if let Some(url) = emulator {
        loader =
            loader
                .endpoint_url(url)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test", "test", None, None, "emulator",
                ));
    }
    let sdk = loader.load().await;
    let s3_conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(emulator.is_some() || endpoint_overridden())
        .interceptor(CallLog)
        .build();
    Aws {
        ec2: fenced_client!(aws_sdk_ec2, &sdk, &fenced),
        ecr: fenced_client!(aws_sdk_ecr, &sdk, &fenced),
        ecs: fenced_client!(aws_sdk_ecs, &sdk, &fenced),
        logs: fenced_client!(aws_sdk_cloudwatchlogs, &sdk, &fenced),
        iam: fenced_client!(aws_sdk_iam, &sdk, &fenced),
        elbv2: fenced_client!(aws_sdk_elasticloadbalancingv2, &sdk, &fenced),
        tagging: fenced_client!(aws_sdk_resourcegroupstagging, &sdk, &fenced),
        lazy: Arc::new(LazyClients {
            sdk: sdk.clone(),
            fenced: fenced.clone(),
            autoscaling: Default::default(),
            cloudwatch: Default::default(),
            sns: Default::default(),
            acm: Default::default(),
            route53: Default::default(),
            rds: Default::default(),
            ssm: Default::default(),
        }),
        // The state bucket's client is the one left outside the fence: the lock itself is
        // renewed and released through it.
        s3: aws_sdk_s3::Client::from_conf(s3_conf),
        region: region.to_string(),
        environment: environment.to_string(),
        names: Names::default(),
        fence,
    }
}

/// Turns an SDK error into an `AwsError` that keeps code, status and request id.
pub fn sdk_error<E>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let request_id = e.request_id().map(str::to_string);
        let code = e.code().map(str::to_string);
        let message = match e.message() {
            Some(m) => m.to_string(),
            None => match &e {
                SdkError::ServiceError(_) => String::new(),
                other => aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
            },
        };
        // Only a service error below 500 proves the request was refused; after a timeout, a
        // dropped connection, an unreadable answer or a 5xx it may have been carried out.
        let outcome_unknown = match &e {
            SdkError::ConstructionFailure(_) => false,
            SdkError::ServiceError(_) => status.is_none_or(|s| s >= 500),
            _ => true,
        };
        AwsError {
            service,
            operation,
            code,
            message,
            status,
            request_id,
            outcome_unknown,
        }
    }
}

/// Reads of kinds that do not need the state (`Adapter::reads_state`), made while the state is
/// still being fetched: each kind's environment read, owned resources only.
pub type Early = std::collections::BTreeMap<crate::model::Kind, Vec<LiveResource>>;

/// The latest Amazon Linux 2023 AMI for a bastion of `instance_type`.
pub async fn bastion_ami(aws: &Aws, instance_type: &str) -> Result<String, AwsError> {
    kinds::instance::latest_ami(aws, instance_type).await
}

/// The environment reads of those of `kinds` that do not need the state, all at once.
pub async fn refresh_early(
    aws: &Aws,
    kinds: &std::collections::BTreeSet<crate::model::Kind>,
) -> Result<Early, AwsError> {
    let shared = kinds::Shared::new(aws, None, Vec::new());
    let shared = &shared;
    let none = kinds::Recorded::new();
    let none = &none;
    let reads = kinds
        .iter()
        .map(|&kind| kinds::adapter(kind))
        .filter(|a| !a.reads_state())
        .map(|adapter| async move {
            let env = kinds::Env {
                recorded: none,
                shared,
            };
            let found: Vec<LiveResource> = adapter
                .read_all(aws, env)
                .await?
                .into_iter()
                .filter(|l| aws.owns(l))
                .collect();
            Ok::<_, AwsError>((adapter.kind(), found))
        });
    Ok(futures::future::try_join_all(reads)
        .await?
        .into_iter()
        .collect())
}

/// Reads `kinds` at once, each with one batched call where the API allows (plus one for ids
/// recorded in state but not found by tag), sharing what several kinds need (the load balancer
/// and its listeners). Kinds in `early` were read already (`refresh_early`); only what state
/// recorded and they did not find is read for them. Returns every live resource of this
/// environment of those kinds.
pub async fn refresh(
    aws: &Aws,
    state: &StateDoc,
    kinds: &std::collections::BTreeSet<crate::model::Kind>,
    early: Early,
) -> Result<Vec<LiveResource>, AwsError> {
    let early = std::sync::Mutex::new(early);
    let early = &early;
    let recorded_lb = state
        .resources
        .values()
        .find(|r| r.kind == crate::model::Kind::LoadBalancer)
        .map(|r| r.physical_id.clone());
    let recorded_listeners = state
        .resources
        .values()
        .filter(|r| r.kind == crate::model::Kind::Listener)
        .map(|r| r.physical_id.clone())
        .collect();
    let shared = kinds::Shared::new(aws, recorded_lb, recorded_listeners);
    let shared = &shared;
    let reads = kinds.iter().map(|&kind| {
        let adapter = kinds::adapter(kind);
        let recorded: kinds::Recorded = state
            .resources
            .values()
            .filter(|r| r.kind == adapter.kind())
            .map(|r| (r.physical_id.clone(), r.attributes.clone()))
            .collect();
        async move {
            let prefetched = early.lock().expect("early reads").remove(&adapter.kind());
            let mut found: Vec<LiveResource> = match prefetched {
                Some(read) => read,
                None => adapter
                    .read_all(
                        aws,
                        kinds::Env {
                            recorded: &recorded,
                            shared,
                        },
                    )
                    .await?
                    .into_iter()
                    .filter(|l| aws.owns(l))
                    .collect(),
            };
            let missing: Vec<String> = recorded
                .into_keys()
                .filter(|p| !found.iter().any(|l| &l.physical_id == p))
                .collect();
            if !missing.is_empty() {
                found.extend(adapter.read_ids(aws, &missing).await?);
            }
            Ok::<_, AwsError>(found)
        }
    });
    let results = futures::future::try_join_all(reads).await?;
    Ok(results.into_iter().flatten().collect())
}

/// Of the resources a plan would create (kind, logical id, attributes resolved as far as state
/// knows), those whose unique name AWS already holds: each kind asked once, all at once.
pub async fn taken(
    aws: &Aws,
    creates: &[(crate::model::Kind, String, serde_json::Value)],
) -> Result<Vec<kinds::Taken>, AwsError> {
    let mut by_kind: std::collections::BTreeMap<
        crate::model::Kind,
        Vec<(String, serde_json::Value)>,
    > = Default::default();
    for (kind, id, attrs) in creates {
        by_kind
            .entry(*kind)
            .or_default()
            .push((id.clone(), attrs.clone()));
    }
    let asks = by_kind
        .into_iter()
        .map(|(kind, creates)| async move { kinds::adapter(kind).taken(aws, &creates).await });
    Ok(futures::future::try_join_all(asks)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_that_are_not_idempotent_retry_only_throttling() {
        let cases = [
            (
                RetryAction::throttling_error(),
                RetryAction::NoActionIndicated,
            ),
            (RetryAction::server_error(), RetryAction::RetryForbidden),
            (RetryAction::transient_error(), RetryAction::RetryForbidden),
            (RetryAction::client_error(), RetryAction::RetryForbidden),
            (
                RetryAction::NoActionIndicated,
                RetryAction::NoActionIndicated,
            ),
            (RetryAction::RetryForbidden, RetryAction::NoActionIndicated),
        ];
        for (previous, want) in cases {
            assert_eq!(narrow_to_throttling(&previous), want, "{previous}");
        }
        assert!(
            NotIdempotent.priority() > RetryClassifierPriority::transient_error_classifier(),
            "must run after the SDK's classifiers to narrow their verdict"
        );
    }
}
