//! Security and resilience rules over an environment file: each finding has a stable rule id, a
//! severity, the `file:line` it concerns, why it matters and the fix. Pure: the file as read
//! (`Environment`, with its source text for the lines) and the graph it expands to.

use std::collections::BTreeSet;

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{CircuitBreaker, Environment, NatMode, Strategy};
use crate::model::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A rule: its id (stable: files accept findings by it), severity, why it matters, the fix.
#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub why: &'static str,
    pub fix: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        id: "lb-no-https",
        severity: Severity::Warning,
        why: "a protected environment serves plain HTTP: traffic and cookies cross the internet unencrypted",
        fix: "add `load_balancer.https: {certificate_arn: …}` (HTTP then redirects to HTTPS)",
    },
    Rule {
        id: "lb-no-deletion-protection",
        severity: Severity::Warning,
        why: "the load balancer of a protected environment can be deleted by one API call",
        fix: "set `load_balancer.deletion_protection: true`",
    },
    Rule {
        id: "nat-single",
        severity: Severity::Warning,
        why: "one NAT gateway (or none) for a protected environment: losing its zone cuts every private subnet's egress",
        fix: "set `network.nat: per_az` (one NAT gateway per zone)",
    },
    Rule {
        id: "service-single-task",
        severity: Severity::Warning,
        why: "fewer than two tasks in a protected environment: one task's or one zone's loss takes the service down",
        fix: "run at least 2 tasks (`desired_count: 2`, or `autoscaling.min: 2`)",
    },
    Rule {
        id: "db-single-az",
        severity: Severity::Warning,
        why: "a database without a standby in a protected environment: its zone's loss takes the data offline until it is restored",
        fix: "set `multi_az: true` (a synchronous standby in another zone)",
    },
    Rule {
        id: "ingress-admin-open",
        severity: Severity::Error,
        why: "SSH to the bastion is open to the whole internet: every scanner may try its key",
        fix: "list only the blocks operators connect from in `ssh_cidrs`, or use `access: ssm` (no port at all)",
    },
    Rule {
        id: "ecr-mutable-tags",
        severity: Severity::Warning,
        why: "a pushed tag can be moved to another image: what a plan pinned is no longer what the tag names",
        fix: "set `immutable_tags: true`",
    },
    Rule {
        id: "ecr-no-scan",
        severity: Severity::Warning,
        why: "images are not scanned for vulnerabilities when pushed",
        fix: "set `scan_on_push: true`",
    },
    Rule {
        id: "secret-in-environment",
        severity: Severity::Error,
        why: "a credential in plain `environment` is readable by anyone who can read the task definition, the plan or the state",
        fix: "move it to `secrets:` (a Secrets Manager secret or SSM parameter ARN, read by the task at start)",
    },
    Rule {
        id: "circuit-breaker-off",
        severity: Severity::Warning,
        why: "a rolling deploy of a broken image keeps replacing healthy tasks with failing ones",
        fix: "set `deployment.circuit_breaker: rollback`",
    },
    Rule {
        id: "sg-world-open",
        severity: Severity::Error,
        why: "a security group admits the whole internet on a port no listener serves",
        fix: "narrow the source to the addresses that need it, or serve the port through the load balancer",
    },
    Rule {
        id: "state-bucket-unprotected",
        severity: Severity::Error,
        why: "the state bucket is the memory of everything infra manages: without versioning a bad write cannot be undone, without encryption or a public access block it can leak",
        fix: "turn on versioning, default encryption and all four public access block settings on the bucket (infra sets them on a bucket it creates)",
    },
    Rule {
        id: "image-not-scanned",
        severity: Severity::Warning,
        why: "the image this plan pins has no completed vulnerability scan, so the image gate cannot judge it",
        fix: "turn on `scan_on_push` for its repository (or start a scan in ECR) before deploying it",
    },
    Rule {
        id: "task-public-ip",
        severity: Severity::Error,
        why: "tasks with public IP addresses are reachable from the internet, bypassing the load balancer",
        fix: "run tasks in the private subnets without public IPs (infra's default)",
    },
];

pub fn rule(id: &str) -> &'static Rule {
    RULES.iter().find(|r| r.id == id).expect("a known rule")
}

/// One finding. `accepted` is the file's reason when it accepts the rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub message: String,
    pub fix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
}

/// Finds the line of the deepest key of `path` the file has (1-based), else 1.
struct Lines<'a> {
    doc: Option<MarkedYaml<'a>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            doc: MarkedYaml::load_from_str(text)
                .ok()
                .and_then(|d| d.into_iter().next()),
        }
    }

    fn line(&self, path: &[&str]) -> usize {
        self.find(path).0
    }

    /// Whether the file has every key of `path`.
    fn has(&self, path: &[&str]) -> bool {
        self.find(path).1 == path.len()
    }

    /// The line of the deepest key of `path` found, and how many keys were found.
    fn find(&self, path: &[&str]) -> (usize, usize) {
        let Some(mut node) = self.doc.as_ref() else {
            return (1, 0);
        };
        let (mut line, mut depth) = (1, 0);
        for key in path {
            let YamlData::Mapping(m) = &node.data else {
                break;
            };
            let Some((k, v)) = m
                .iter()
                .find(|(k, _)| crate::config::yaml::scalar_text(k).as_deref() == Some(*key))
            else {
                break;
            };
            line = k.span.start.line();
            depth += 1;
            node = v;
        }
        (line, depth)
    }
}

/// Whether an environment variable looks like a credential, by its name or its value.
fn looks_secret(key: &str, value: &str) -> bool {
    if value.trim().is_empty() {
        return false;
    }
    let k = key.to_ascii_uppercase();
    let by_name = [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_KEY");
    let v = value.trim();
    let by_value = [
        "-----BEGIN",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "sk_live_",
    ]
    .iter()
    .any(|p| v.starts_with(p))
        || ((v.starts_with("AKIA") || v.starts_with("ASIA"))
            && v.len() == 20
            && v.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        || v.split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .is_some_and(|authority| authority.contains(':') && authority.contains('@'));
    by_name || by_value
}

/// A finding of `rule` at the line of `path` in the file (for rules a plan checks live).
pub fn finding_at(env: &Environment, id: &str, path: &[&str], message: String) -> Finding {
    let r = rule(id);
    Finding {
        rule: id.to_string(),
        severity: r.severity,
        file: env.source.path.display().to_string(),
        line: Lines::new(&env.source.text).line(path),
        message,
        fix: r.fix.to_string(),
        accepted: env.lint_accept.get(id).cloned(),
    }
}

/// Every finding of the file, accepted ones included (marked), in file order.
pub fn lint(env: &Environment) -> Vec<Finding> {
    lint_graph(env, &crate::desired::expand(env))
}

/// `lint`, with the graph the file expands to already at hand (a plan has it).
pub fn lint_graph(env: &Environment, desired: &crate::desired::Desired) -> Vec<Finding> {
    let lines = Lines::new(&env.source.text);
    let file = env.source.path.display().to_string();
    let mut out: Vec<Finding> = Vec::new();
    let mut add = |id: &str, path: &[&str], message: String| {
        let r = rule(id);
        out.push(Finding {
            rule: id.to_string(),
            severity: r.severity,
            file: file.clone(),
            line: lines.line(path),
            message,
            fix: r.fix.to_string(),
            accepted: env.lint_accept.get(id).cloned(),
        });
    };
    if env.protect {
        if let Some(lb) = &env.load_balancer {
            if lb.https.is_none() {
                add(
                    "lb-no-https",
                    &["load_balancer"],
                    "the load balancer of a protected environment has no HTTPS listener".into(),
                );
            }
            if !lb.deletion_protection {
                add(
                    "lb-no-deletion-protection",
                    &["load_balancer", "deletion_protection"],
                    "the load balancer of a protected environment has deletion protection off"
                        .into(),
                );
            }
        }
        if let Some(net) = env.network.managed()
            && net.nat != NatMode::PerAz
            && !net.private_subnets.is_empty()
        {
            add(
                "nat-single",
                &["network", "nat"],
                format!(
                    "`nat: {}` gives {} private subnets one way out (or none)",
                    match net.nat {
                        NatMode::None => "none",
                        _ => "single",
                    },
                    net.private_subnets.len()
                ),
            );
        }
        for (name, s) in &env.services {
            // At `desired_count`; at `autoscaling.min` when only autoscaling says a count.
            let at_count = vec!["services", name.as_str(), "desired_count"];
            let (count, path): (u32, Vec<&str>) = match &s.autoscaling {
                Some(a) if !lines.has(&at_count) => {
                    (a.min, vec!["services", name, "autoscaling", "min"])
                }
                Some(a) => (a.min, at_count),
                None => (s.desired_count, at_count),
            };
            if count < 2 {
                add(
                    "service-single-task",
                    &path,
                    format!("service `{name}` runs {count} task(s) at least"),
                );
            }
        }
        for (name, db) in &env.databases {
            if !db.multi_az {
                let at = vec!["databases", name.as_str(), "multi_az"];
                let path = if lines.has(&at) {
                    at
                } else {
                    vec!["databases", name.as_str()]
                };
                add(
                    "db-single-az",
                    &path,
                    format!("database `{name}` has no standby in another zone"),
                );
            }
        }
    }
    if let Some(crate::config::Bastion {
        access: crate::config::BastionAccess::Ssh { cidrs, .. },
        ..
    }) = &env.bastion
        && cidrs.iter().any(|c| c.prefix_len() == 0)
    {
        add(
            "ingress-admin-open",
            &["bastion", "ssh_cidrs"],
            "the bastion admits SSH from anywhere (a /0 block in `ssh_cidrs`)".into(),
        );
    }
    for (key, repo) in &env.repositories {
        if !repo.immutable_tags {
            add(
                "ecr-mutable-tags",
                &["repositories", key, "immutable_tags"],
                format!("repository `{key}` lets pushed tags move"),
            );
        }
        if !repo.scan_on_push {
            add(
                "ecr-no-scan",
                &["repositories", key, "scan_on_push"],
                format!("repository `{key}` does not scan images on push"),
            );
        }
    }
    for (name, s) in &env.services {
        for (key, value) in &s.environment {
            if looks_secret(key, value) {
                // The value is never repeated: only where it is.
                add(
                    "secret-in-environment",
                    &["services", name, "environment", key],
                    format!(
                        "`{key}` of service `{name}` looks like a credential in plain `environment`"
                    ),
                );
            }
        }
        if s.deployment.strategy == Strategy::Rolling
            && s.deployment.circuit_breaker == CircuitBreaker::Off
        {
            add(
                "circuit-breaker-off",
                &["services", name, "deployment", "circuit_breaker"],
                format!("service `{name}` deploys without a circuit breaker"),
            );
        }
    }
    // What the file expands to: security groups and tasks, whatever section made them.
    let listener_ports: BTreeSet<i64> = desired
        .resources
        .values()
        .filter(|r| r.kind == Kind::Listener)
        .filter_map(|r| r.attrs["port"].as_i64())
        .collect();
    for r in desired.resources.values() {
        match r.kind {
            // The bastion's SSH is `ingress-admin-open`'s, at its own line.
            Kind::SecurityGroup if r.id == crate::naming::id::BASTION_SECURITY_GROUP => {}
            Kind::SecurityGroup => {
                for rule in r.attrs["ingress"].as_array().into_iter().flatten() {
                    let world = rule["cidr_ipv4"] == json!("0.0.0.0/0")
                        || rule["cidr_ipv6"] == json!("::/0");
                    let (from, to) = (rule["from_port"].as_i64(), rule["to_port"].as_i64());
                    let listener = from == to && from.is_some_and(|p| listener_ports.contains(&p));
                    if world && !listener {
                        add(
                            "sg-world-open",
                            &["load_balancer", "ingress_cidrs"],
                            format!(
                                "`{}` admits the internet on ports {}–{}",
                                r.id,
                                from.unwrap_or(0),
                                to.unwrap_or(65535)
                            ),
                        );
                    }
                }
            }
            Kind::Service if r.attrs["assign_public_ip"] == json!(true) => {
                let name = r.attrs["name"].as_str().unwrap_or_default();
                add(
                    "task-public-ip",
                    &["services", name],
                    format!("the tasks of `{name}` get public IP addresses"),
                );
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| (a.line, &a.rule).cmp(&(b.line, &b.rule)));
    out
}

/// Whether a finding counts against `deny` (accepted ones never do).
pub fn denied(f: &Finding, deny: Severity) -> bool {
    f.accepted.is_none() && f.severity >= deny
}

/// Findings as SARIF 2.1.0, for code scanning.
pub fn sarif(findings: &[Finding]) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "shortDescription": {"text": r.why},
                "help": {"text": r.fix},
                "defaultConfiguration": {"level": r.severity.name()},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut result = json!({
                "ruleId": f.rule,
                "level": f.severity.name(),
                "message": {"text": format!("{} ({})", f.message, f.fix)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file},
                        "region": {"startLine": f.line},
                    }
                }],
            });
            if let Some(reason) = &f.accepted {
                result["suppressions"] = json!([{"kind": "inSource", "justification": reason}]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "infra", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_recognised_by_name_or_value_and_ordinary_settings_are_not() {
        let cases = [
            ("DB_PASSWORD", "hunter2", true),
            ("API_TOKEN", "x", true),
            ("STRIPE_KEY", "abc", true),
            ("ANYTHING", "AKIAIOSFODNN7EXAMPLE", true),
            ("DATABASE_URL", "postgres://app:s3cret@db:5432/app", true),
            ("CERT", "-----BEGIN PRIVATE KEY-----", true),
            ("NODE_ENV", "production", false),
            ("DATABASE_URL", "postgres://db:5432/app", false),
            ("LOG_LEVEL", "info", false),
            ("DB_PASSWORD", "", false),
        ];
        for (k, v, want) in cases {
            assert_eq!(looks_secret(k, v), want, "{k}={v}");
        }
    }
}

#[cfg(test)]
mod corpus {
    use super::*;

    fn findings(name: &str, text: &str) -> Vec<Finding> {
        let path = std::path::PathBuf::from(format!("environments/{name}.yaml"));
        let env = crate::config::parse(&path, text, &|_| None).expect("a valid file");
        lint(&env)
    }

    #[test]
    fn ssh_open_to_the_internet_is_an_error_at_its_line() {
        let text = "environment: open
region: us-east-1
state: {local: s.json}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a]
  public_subnets: [10.0.0.0/24]
  private_subnets: [10.0.10.0/24]
bastion:
  access: ssh
  ssh_cidrs: [0.0.0.0/0]
  key_name: ops
";
        let got: Vec<(String, usize, Severity)> = findings("open", text)
            .into_iter()
            .map(|f| (f.rule, f.line, f.severity))
            .collect();
        assert_eq!(
            got,
            [("ingress-admin-open".to_string(), 11, Severity::Error)]
        );
        let narrow = text.replace("0.0.0.0/0", "203.0.113.0/24");
        assert!(findings("open", &narrow).is_empty());
    }

    /// Each insecure line gets its rule, at its line; the fixed file lints clean; an accepted
    /// finding is shown with the file's reason and fails nothing.
    #[test]
    fn insecure_files_get_the_right_rule_at_the_right_line() {
        let insecure = findings(
            "insecure",
            include_str!("../tests/corpus/lint/insecure.yaml"),
        );
        let got: Vec<(&str, usize)> = insecure.iter().map(|f| (f.rule.as_str(), f.line)).collect();
        assert_eq!(
            got,
            [
                ("nat-single", 12),
                ("lb-no-https", 13),
                ("lb-no-deletion-protection", 14),
                ("ecr-mutable-tags", 16),
                ("ecr-no-scan", 16),
                ("service-single-task", 23),
                ("secret-in-environment", 26),
                ("secret-in-environment", 27),
                ("circuit-breaker-off", 28),
                ("service-single-task", 33),
                ("db-single-az", 35),
            ]
        );
        let text = anstream::adapter::strip_str(&crate::render::lint_text(&insecure)).to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        insta::assert_snapshot!("insecure", text);
        assert!(insecure.iter().any(|f| denied(f, Severity::Error)));

        let fixed = findings("fixed", include_str!("../tests/corpus/lint/fixed.yaml"));
        assert_eq!(fixed, []);

        let accepted = findings(
            "accepted",
            include_str!("../tests/corpus/lint/accepted.yaml"),
        );
        assert_eq!(accepted.len(), 1);
        assert_eq!(
            accepted[0].accepted.as_deref(),
            Some("stage re-tags `latest` on every merge; prod pins digests")
        );
        assert!(!accepted.iter().any(|f| denied(f, Severity::Warning)));
        let sarif = sarif(&accepted);
        assert_eq!(sarif["version"], "2.1.0");
        assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "ecr-mutable-tags");
        assert_eq!(
            sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"],
            11
        );
        assert_eq!(
            sarif["runs"][0]["results"][0]["suppressions"][0]["kind"],
            "inSource"
        );
    }

    /// As the contract places them: `nat-single` whatever the zone count; `service-single-task`
    /// at `desired_count` when the file says one, even with autoscaling.
    #[test]
    fn single_zone_nat_and_the_count_line() {
        let text = "environment: one\nregion: us-east-1\nprotect: true\nstate: {local: s.json}\nnetwork:\n  cidr: 10.0.0.0/16\n  availability_zones: [us-east-1a]\n  public_subnets: [10.0.0.0/24]\n  private_subnets: [10.0.10.0/24]\ncluster: {}\nservices:\n  web:\n    image: public.ecr.aws/docker/library/nginx:1.27\n    cpu: 256\n    memory: 512\n    desired_count: 1\n    autoscaling: {min: 1, max: 3}\n";
        let got: Vec<(String, usize)> = findings("one", text)
            .into_iter()
            .map(|f| (f.rule, f.line))
            .collect();
        assert_eq!(
            got,
            [
                ("nat-single".to_string(), 5),
                ("service-single-task".to_string(), 16)
            ]
        );
    }
}
