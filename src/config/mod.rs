//! The environment file: its typed model, and the offline parse + validation that produces it.
//!
//! `parse` never stops at the first problem: it reads the whole file and returns every diagnostic,
//! each naming the file, line and column. Nothing here does I/O except `load_file`, which only reads
//! the file; nothing talks to AWS.

mod expand;
mod load;
mod read;
pub mod schema;
mod starter;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, FileDiagnostics, Loc};

pub use expand::expand_vars;
pub use load::{list_environments, load};
pub use starter::{SCHEMA_FILE, starter, workflow};

/// One environment, fully validated, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    pub region: String,
    /// Every resource is protected: deleting one needs `--allow-destroy-protected`, even after
    /// the file stops saying so (the state remembers).
    pub protect: bool,
    pub tags: BTreeMap<String, String>,
    pub state: StateConfig,
    pub network: Network,
    pub load_balancer: Option<LoadBalancer>,
    pub repositories: BTreeMap<String, Repository>,
    pub cluster: Option<Cluster>,
    pub services: BTreeMap<String, Service>,
    /// RDS PostgreSQL instances by name (`databases:`).
    pub databases: BTreeMap<String, Database>,
    /// A jump host into the private network (`bastion:`).
    pub bastion: Option<Bastion>,
    /// Lint findings the file accepts, by rule id, with the reason it gives.
    pub lint_accept: BTreeMap<String, String>,
    /// Assumptions for the usage-priced lines of the cost estimate.
    pub usage: Usage,
    /// CloudWatch alarms to an SNS topic, and the environment's dashboard (`alarms:`).
    pub alarms: Option<Alarms>,
    /// The file as read: lint points at its lines.
    pub source: Source,
}

/// What the cost estimate assumes of usage-priced lines (`usage:`; the defaults are these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// GB processed by the NAT gateways in a month, all together.
    pub nat_gb_per_month: f64,
    /// Load balancer capacity units used on average.
    pub alb_lcu: f64,
    /// GB of logs ingested in a month, all services together.
    pub log_gb_per_month: f64,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            nat_gb_per_month: 100.0,
            alb_lcu: 1.0,
            log_gb_per_month: 5.0,
        }
    }
}

/// `alarms:`: an SNS topic with these email subscriptions, the alarms that notify it (on ALARM
/// and on OK) with these thresholds, and the environment's dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarms {
    pub notify: Vec<String>,
    /// Load balancer 5xx answers (its own and its targets') as a percentage of requests.
    pub alb_5xx_percent: f64,
    /// The targets' 95th percentile response time.
    pub target_response_ms: u32,
    /// Per service, average CPU and memory utilisation.
    pub cpu_percent: f64,
    pub memory_percent: f64,
    /// Per NAT gateway, port allocation errors plus dropped packets in five minutes.
    pub nat_errors: u32,
}

impl Alarms {
    pub const DEFAULT_5XX_PERCENT: f64 = 5.0;
    pub const DEFAULT_RESPONSE_MS: u32 = 1000;
    pub const DEFAULT_CPU_PERCENT: f64 = 80.0;
    pub const DEFAULT_MEMORY_PERCENT: f64 = 80.0;
    pub const DEFAULT_NAT_ERRORS: u32 = 0;
}

/// Where an environment came from, and its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Where the state document lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateConfig {
    S3 {
        bucket: String,
        key: String,
        /// SSE-KMS with this customer key for the state and the lock (SSE-S3 otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
    },
    Local {
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatMode {
    None,
    Single,
    PerAz,
}

/// The environment's network: one infra builds and owns, or one someone else owns that infra
/// only places its resources in.
#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    Managed(ManagedNetwork),
    Existing(ExistingNetwork),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedNetwork {
    pub cidr: Ipv4Net,
    pub availability_zones: Vec<String>,
    pub public_subnets: Vec<Ipv4Net>,
    pub private_subnets: Vec<Ipv4Net>,
    /// One per zone, or none.
    pub database_subnets: Vec<Ipv4Net>,
    pub nat: NatMode,
}

/// A VPC and subnets infra reads and never writes: no tag, no route, no delete.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingNetwork {
    pub vpc_id: String,
    pub public_subnet_ids: Vec<String>,
    pub private_subnet_ids: Vec<String>,
    pub database_subnet_ids: Vec<String>,
}

impl Network {
    /// The network infra builds, if it builds one.
    pub fn managed(&self) -> Option<&ManagedNetwork> {
        match self {
            Network::Managed(m) => Some(m),
            Network::Existing(_) => None,
        }
    }

    pub fn existing(&self) -> Option<&ExistingNetwork> {
        match self {
            Network::Managed(_) => None,
            Network::Existing(e) => Some(e),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub http_port: u16,
    /// Set when the file says `https`, or implied (port 443) by `domain`.
    pub https: Option<Https>,
    pub domain: Option<Domain>,
    pub ingress_cidrs: Vec<IpNet>,
    pub idle_timeout_seconds: u32,
    pub deletion_protection: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Https {
    pub port: u16,
    /// The file's certificate; `None` with a `domain`: infra requests and validates one.
    pub certificate_arn: Option<String>,
}

/// A name for the load balancer in a Route 53 hosted zone (names lower-case, without the
/// trailing dot).
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub name: String,
    pub zone: String,
    pub aliases: Vec<String>,
}

impl Domain {
    /// The name, then the aliases: every name the certificate covers and a record points.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.name).chain(&self.aliases)
    }
}

/// The jump host (`bastion:`), defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Bastion {
    pub instance_type: String,
    pub access: BastionAccess,
}

/// How operators reach the bastion.
#[derive(Debug, Clone, PartialEq)]
pub enum BastionAccess {
    /// Session Manager: no inbound port at all.
    Ssm,
    /// SSH on port 22 from these blocks, with this key pair.
    Ssh { cidrs: Vec<IpNet>, key_name: String },
}

/// An RDS PostgreSQL instance (`databases.<name>`), defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    /// The major version (`16`).
    pub version: String,
    pub instance_class: String,
    pub storage_gb: u32,
    pub multi_az: bool,
    pub backup_retention_days: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    pub scan_on_push: bool,
    pub immutable_tags: bool,
    pub keep_last: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub container_insights: bool,
}

/// Where a service's image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// A repository of this environment: `web:1.2.3` is resolved to a digest at plan time;
    /// `web` (no tag) leaves the tag to the pipeline (`--image web=TAG`, `infra deploy`), and a
    /// plan without one keeps the image the service runs.
    Repository { key: String, tag: Option<String> },
    /// Any other reference, used as written.
    External(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub image: Image,
    pub cpu: u32,
    pub memory: u32,
    pub port: Option<u16>,
    pub desired_count: u32,
    pub health_check_path: String,
    pub path_patterns: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    /// Databases it reaches (names of `databases`).
    pub uses: Vec<String>,
    pub deployment: Deployment,
    pub autoscaling: Option<Autoscaling>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Rolling,
    BlueGreen,
    Canary,
    Linear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitBreaker {
    Off,
    On,
    Rollback,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub strategy: Strategy,
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    pub circuit_breaker: CircuitBreaker,
    pub bake_minutes: u32,
    pub canary_percent: Option<f64>,
    pub step_percent: Option<f64>,
    /// canary / linear: minutes between traffic shifts (AWS's default when unset).
    pub step_bake_minutes: Option<u32>,
    /// blue_green / canary / linear: a test listener on this port reaches the new revision first.
    pub test_port: Option<u16>,
    /// Roll a deployment back when the service's alarms fire.
    pub rollback_alarms: bool,
}

impl Strategy {
    pub fn is_rolling(&self) -> bool {
        *self == Strategy::Rolling
    }

    /// The name ECS gives it in `deploymentConfiguration.strategy`.
    pub fn ecs_name(self) -> &'static str {
        match self {
            Strategy::Rolling => "ROLLING",
            Strategy::BlueGreen => "BLUE_GREEN",
            Strategy::Canary => "CANARY",
            Strategy::Linear => "LINEAR",
        }
    }
}

impl Deployment {
    /// Blue/green, canary and linear: ECS shifts load balancer traffic between two target groups.
    pub fn shifts_traffic(&self) -> bool {
        !self.strategy.is_rolling()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Autoscaling {
    pub min: u32,
    pub max: u32,
    /// Target average CPU, percent (70 when no target is given).
    pub cpu_percent: Option<u32>,
    /// Target average memory, percent.
    pub memory_percent: Option<u32>,
    /// Target requests per task through the load balancer, per minute.
    pub requests_per_target: Option<u32>,
}

/// Why an environment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no environment file `{}` (looked for {name}.yaml in {})", path.display(), dir.display())]
    NotFound {
        name: String,
        dir: PathBuf,
        path: PathBuf,
    },
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} has {} error{}", file.display(), diagnostics.diagnostics.len(), if diagnostics.diagnostics.len() == 1 { "" } else { "s" })]
    Invalid {
        file: PathBuf,
        diagnostics: FileDiagnostics,
    },
}

/// The path of an environment's file in `dir`.
pub fn env_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.yaml"))
}

/// Parses and validates one environment file. `path` names the file in diagnostics and gives the
/// expected environment name (its stem); `lookup` resolves `${VAR}`.
pub fn parse(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Environment, Vec<Diagnostic>> {
    use saphyr::LoadableYamlNode;
    let docs = match saphyr::MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            return Err(vec![Diagnostic {
                file: path.to_path_buf(),
                loc: Loc {
                    line: m.line(),
                    column: m.col() + 1,
                    len: 1,
                },
                message: format!("invalid YAML: {}", e.info()),
                hint: None,
            }]);
        }
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut reader = yaml::Reader::new(path, lookup);
    let env = match docs.as_slice() {
        [doc] => read::environment(&mut reader, doc, &stem),
        [] => {
            reader.error_at(
                Loc {
                    line: 1,
                    column: 1,
                    len: 1,
                },
                "the file is empty: expected an environment mapping",
                None,
            );
            None
        }
        [_, second, ..] => {
            reader.error(second.span, "expected one YAML document, found several");
            None
        }
    };
    match env {
        Some(mut env) if reader.errors.is_empty() => {
            env.source = Source {
                path: path.to_path_buf(),
                text: text.to_string(),
            };
            Ok(env)
        }
        _ => {
            let mut errors = reader.errors;
            errors.sort_by_key(|d| (d.loc.line, d.loc.column));
            Err(errors)
        }
    }
}

impl Environment {
    /// The ECS cluster name, when the environment has a cluster.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.name.as_str())
    }
}

#[cfg(test)]
mod tests;
