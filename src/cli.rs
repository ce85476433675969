//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

/// The environments a shell completes: the files in `--dir` as the command line being completed
/// gives it, else `INFRA_DIR`, else `environments`.
fn environment_names() -> Vec<CompletionCandidate> {
    let words: Vec<String> = std::env::args().collect();
    let dir = words
        .windows(2)
        .find(|w| w[0] == "--dir")
        .map(|w| w[1].clone())
        .or_else(|| {
            words
                .iter()
                .find_map(|w| w.strip_prefix("--dir=").map(str::to_string))
        })
        .or_else(|| std::env::var("INFRA_DIR").ok())
        .unwrap_or_else(|| "environments".to_string());
    crate::config::list_environments(std::path::Path::new(&dir))
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

#[derive(Debug, Parser)]
#[command(
    name = "infra",
    version,
    about = "Plan and apply ECS Fargate platforms on AWS from one YAML file per environment"
)]
pub struct Cli {
    /// Folder holding the environment files.
    #[arg(
        long,
        global = true,
        env = "INFRA_DIR",
        hide_env_values = true,
        default_value = "environments"
    )]
    pub dir: PathBuf,
    /// How many AWS operations may run at once during apply and destroy.
    #[arg(long, global = true, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// At most this many AWS requests a second, retries included (also: INFRA_MAX_RPS).
    #[arg(
        long,
        global = true,
        env = "INFRA_MAX_RPS",
        hide_env_values = true,
        value_name = "N"
    )]
    pub max_rps: Option<std::num::NonZeroU32>,
    /// Never colour the output (also: NO_COLOR).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Log what infra does (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check environment files offline (all of them when none is named).
    Validate {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        envs: Vec<String>,
    },
    /// Refresh live state and show what apply would change.
    Plan(PlanArgs),
    /// Plan, confirm and carry out the changes.
    Apply(ApplyArgs),
    /// Delete everything the environment's state holds, in reverse dependency order.
    Destroy(DestroyArgs),
    /// Print values of the applied environment (from state).
    Output(OutputArgs),
    /// Inspect, restore and move the state; stop managing a resource; break a lock.
    #[command(subcommand)]
    State(StateCommand),
    /// Adopt an existing resource as logical id ID: checked against the file, tagged, recorded.
    Import {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        /// The logical id the file gives it (`infra graph ENV` lists them).
        id: String,
        /// Its id or ARN (repositories, log groups and clusters also by name).
        physical_id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Live health of the environment's services: tasks, rollout, targets, latest events. Exit
    /// 0 healthy, 3 degraded, 1 error.
    Status {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Keep reading every 5 seconds and print the status again whenever it changes, until
        /// interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// The pipeline's fast path: resolve each tag to a digest, register task definitions and
    /// update only the services whose file says `image: KEY` (or those named); reads nothing
    /// else. Never asks.
    Deploy(DeployArgs),
    /// Roll a service back: stop its deployment in progress with rollback, or move it back to
    /// the task definition revision its last change replaced.
    Rollback {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        /// The service, as the file names it.
        service: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// Do not follow the deployment the rollback starts.
        #[arg(long)]
        no_wait: bool,
    },
    /// The resource dependency graph of the environment, offline (Mermaid or Graphviz dot).
    Graph(GraphArgs),
    /// A shell completion script (commands, flags and environment names).
    ///
    /// Install it once, e.g. `infra completions bash > /etc/bash_completion.d/infra`; it calls
    /// `infra` back as you type, so environment names come from the files of the moment (in
    /// `--dir` when the line gives one).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Security and resilience rules over environment files (offline; all of them when none is
    /// named).
    ///
    /// Each finding has a rule id, a severity, the file:line it concerns, why it matters and the
    /// fix. A file accepts a finding with `lint: {accept: {RULE_ID: "reason"}}`. Exit 1 when a
    /// finding not accepted is at or above `--deny`.
    Lint {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        envs: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: LintFormat,
        /// The lowest severity that fails the command.
        #[arg(long, value_enum, default_value = "error")]
        deny: DenyLevel,
    },
    /// The monthly cost estimate of environments, side by side (offline, from the files).
    ///
    /// Prices come from a table shipped with infra (dated; see `infra cost --help` in the README);
    /// usage-priced lines (NAT data, load balancer capacity, logs) use each file's `usage`.
    Cost {
        #[arg(required = true, add = ArgValueCandidates::new(environment_names))]
        envs: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The IAM policy a command needs for this environment, least privilege (offline).
    ///
    /// `plan` reads only (every read-only command falls under it); `apply` the writes of the kinds
    /// the file uses (and every state-changing command); `deploy` only what `infra deploy`
    /// needs; `destroy` the deletes. Writes are scoped to the environment by ARN or by its tag.
    Policy {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        #[arg(long = "for", value_enum, default_value = "apply")]
        for_: crate::policy::For,
        /// Several documents (a JSON array), each within IAM's 6,144 characters for a managed
        /// policy.
        #[arg(long)]
        split: bool,
    },
    /// Print the JSON Schema of the environment file, for editors (offline).
    ///
    /// Environment files that start with `# yaml-language-server: $schema=<path or URL of it>` get
    /// completion, hover docs and checks in editors that speak the YAML language server.
    Schema,
    /// Write a commented, valid starter environment file (`<dir>/<ENV>.yaml`).
    Init {
        /// The environment's name.
        #[arg(default_value = "stage")]
        env: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// How many availability zones (1 to 6).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=6))]
        zones: u8,
        /// Also write a GitHub Actions workflow for the environment
        /// (`.github/workflows/infra-<ENV>.yml`): plan on pull requests, apply the reviewed plan on
        /// merge, with a pinned, checksum-verified release of this version of infra.
        #[arg(long)]
        ci: bool,
    },
    /// The manual page (roff): `infra man > infra.1`.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Pastes into a pull request or a README, which render it.
    Mermaid,
    /// Graphviz: `infra graph stage --format dot | dot -Tsvg > graph.svg`.
    Dot,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[arg(add = ArgValueCandidates::new(environment_names))]
    pub env: String,
    #[arg(long, value_enum, default_value = "mermaid")]
    pub format: GraphFormat,
    /// Colour each resource by what this saved plan does to it.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[arg(add = ArgValueCandidates::new(environment_names))]
    pub env: String,
    /// Save the plan for `infra apply --plan FILE`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Only this logical id, or every id under a prefix, plus what it depends on. Repeatable.
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<String>,
    /// Allow the plan to delete or replace protected resources.
    #[arg(long)]
    pub allow_destroy_protected: bool,
    /// Replace this logical id although nothing about it differs (a bastion onto a newer AMI).
    /// Repeatable.
    #[arg(long = "replace", value_name = "ID")]
    pub replace: Vec<String>,
    /// Pin images even when their scan has findings at or above `--block-severity`.
    #[arg(long)]
    pub allow_vulnerable: bool,
    /// The least severity of a scan finding that stops the plan.
    #[arg(long, value_enum, default_value = "critical")]
    pub block_severity: BlockSeverity,
    /// The tag of repository KEY for services whose file says `image: KEY` (no tag). Repeatable.
    #[arg(long = "image", value_name = "KEY=TAG", value_parser = crate::ops::parse_image_arg)]
    pub images: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[arg(required_unless_present = "plan", conflicts_with = "plan", add = ArgValueCandidates::new(environment_names))]
    pub env: Option<String>,
    /// Run a saved plan exactly as saved (refused if the state moved since).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Only this logical id, or every id under a prefix, plus what it depends on. Repeatable.
    #[arg(long = "target", value_name = "ID", conflicts_with = "plan")]
    pub targets: Vec<String>,
    /// Do not wait for ECS rollouts to finish.
    #[arg(long)]
    pub no_wait: bool,
    /// Allow deleting or replacing protected resources.
    #[arg(long, conflicts_with = "plan")]
    pub allow_destroy_protected: bool,
    /// Replace this logical id although nothing about it differs (a bastion onto a newer AMI).
    /// Repeatable.
    #[arg(long = "replace", value_name = "ID", conflicts_with = "plan")]
    pub replace: Vec<String>,
    /// Pin images even when their scan has findings at or above `--block-severity`.
    #[arg(long, conflicts_with = "plan")]
    pub allow_vulnerable: bool,
    /// The least severity of a scan finding that stops the plan.
    #[arg(long, value_enum, default_value = "critical", conflicts_with = "plan")]
    pub block_severity: BlockSeverity,
    /// The tag of repository KEY for services whose file says `image: KEY` (no tag). Repeatable.
    #[arg(long = "image", value_name = "KEY=TAG", value_parser = crate::ops::parse_image_arg, conflicts_with = "plan")]
    pub images: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[arg(add = ArgValueCandidates::new(environment_names))]
    pub env: String,
    /// The tag of repository KEY to deploy. Repeatable.
    #[arg(long = "image", value_name = "KEY=TAG", value_parser = crate::ops::parse_image_arg, required = true)]
    pub images: Vec<(String, String)>,
    /// Only this service (of those using the keys). Repeatable.
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Do not wait for the ECS rollouts to finish.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[arg(add = ArgValueCandidates::new(environment_names))]
    pub env: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Also delete protected resources (the load balancer with deletion protection, everything of
    /// an environment with `protect: true`).
    #[arg(long)]
    pub allow_destroy_protected: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    #[arg(add = ArgValueCandidates::new(environment_names))]
    pub env: String,
    /// One output only.
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the resources in state.
    List {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Show one resource as recorded.
    Show {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        id: String,
    },
    /// Stop managing a resource without deleting it: removed from state, and never matched,
    /// adopted or deleted again (its tags stay).
    Forget {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Remove a lock by its id (from the error that named it).
    Unlock {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        lock_id: String,
    },
    /// Rebuild lost state from AWS: record every resource tagged for this environment that the
    /// state does not hold. Changes nothing in AWS.
    Recover {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        /// Also when the current document does not parse: start from the environment's tags
        /// (the broken document stays in the bucket's history).
        #[arg(long)]
        force: bool,
    },
    /// The state object's stored versions, newest first (S3 state is versioned).
    Versions {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the current state document (to keep a copy, or to move it: `state push`).
    Pull {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
    },
    /// Make a document the current state (as a new version, serial above the current one; its
    /// lineage must match unless --force). Moving state between backends: `pull` from one, change
    /// `state:` in the file, `push` to the other.
    Push {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        file: PathBuf,
        /// Also a document of another lineage.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Make an earlier version of the state current again (as a new version; nothing is deleted).
    Restore {
        #[arg(add = ArgValueCandidates::new(environment_names))]
        env: String,
        version_id: String,
        /// Also a version of another lineage.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command's help, as users see it: a change to the surface shows in review.
    #[test]
    fn every_command_help() {
        fn walk(cmd: &mut clap::Command, path: &str) {
            let name = if path.is_empty() {
                "infra".to_string()
            } else {
                format!("infra {path}")
            };
            let help = cmd.render_long_help().to_string();
            insta::assert_snapshot!(format!("help-{}", name.replace(' ', "-")), help);
            let subs: Vec<String> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .map(|s| s.get_name().to_string())
                .collect();
            for sub in subs {
                let child = cmd.find_subcommand_mut(&sub).expect("listed");
                let mut child = child.clone();
                let next = if path.is_empty() {
                    sub
                } else {
                    format!("{path} {sub}")
                };
                walk(&mut child, &next);
            }
        }
        let mut cmd = super::Cli::command();
        cmd.build();
        walk(&mut cmd, "");
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LintFormat {
    Text,
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DenyLevel {
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BlockSeverity {
    Critical,
    High,
    Medium,
    Low,
}

impl BlockSeverity {
    /// ECR's name of the severity.
    pub fn ecr(self) -> &'static str {
        match self {
            BlockSeverity::Critical => "CRITICAL",
            BlockSeverity::High => "HIGH",
            BlockSeverity::Medium => "MEDIUM",
            BlockSeverity::Low => "LOW",
        }
    }
}
