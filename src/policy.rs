//! `infra policy`: the IAM policy a command needs for one environment, least privilege, made
//! offline from the file and the actions each kind declares next to its adapter
//! (`ResourceKind::IAM`), plus the engine's own (state backend, image resolution, rollout
//! following, rollback). Pure: no AWS call.
//!
//! Reads cannot be scoped on most AWS APIs (describes and lists take no resource), and a plan
//! policy holds nothing else — not even the state lock, which a plan never takes. Writes are
//! scoped by ARN where the name is known (repositories, log groups, roles, the cluster and its
//! services, alarms, the topic, the dashboard, the state object), otherwise by the environment
//! tag (EC2 and load balancing: `aws:RequestTag` on creates, `aws:ResourceTag` on the rest); the
//! few AWS cannot scope stand alone, each with its reason in `UNSCOPED`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::aws::kinds::{IamScope, Kind};
use crate::config::{Environment, StateConfig};
use crate::model::TAG_ENVIRONMENT;

/// What the policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum For {
    /// `plan`, and every read-only command (`status`, `output`, `state list|show|versions|pull`).
    Plan,
    /// `apply`, and every state-changing command (`rollback`, `import`, `state` writes).
    Apply,
    /// `infra deploy`: the pipeline's image rollout only.
    Deploy,
    Destroy,
}

/// IAM's limit on a managed policy document, counted without whitespace.
pub const MANAGED_POLICY_LIMIT: usize = 6144;

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: String,
    pub actions: BTreeSet<String>,
    pub resources: Vec<String>,
    pub condition: Option<Value>,
}

impl Statement {
    fn json(&self) -> Value {
        let mut v = json!({
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": self.actions.iter().collect::<Vec<_>>(),
            "Resource": if self.resources.len() == 1 { json!(self.resources[0]) } else { json!(self.resources) },
        });
        if let Some(c) = &self.condition {
            v["Condition"] = c.clone();
        }
        v
    }

    /// Whether it allows anything but reading (by the action's verb).
    pub fn writes(&self) -> bool {
        self.actions.iter().any(|a| !is_read(a))
    }
}

/// Reads by their verb: describes, lists, gets (and `s3:ListBucket…`, `kms:Decrypt`).
pub fn is_read(action: &str) -> bool {
    let op = action.split_once(':').map_or(action, |(_, op)| op);
    ["Describe", "List", "Get"]
        .iter()
        .any(|v| op.starts_with(v))
        || action == "kms:Decrypt"
}

/// The roles services are passed, and to whom.
const PASSED_TO: [&str; 2] = ["ecs-tasks.amazonaws.com", "ecs.amazonaws.com"];

/// Service-linked roles ECS, load balancing and autoscaling create on their first use.
const LINKED_SERVICES: [&str; 3] = [
    "ecs.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
];

/// Writes AWS cannot scope, and why, by statement id: what the README lists beside them.
pub fn unscoped() -> Vec<(String, &'static str)> {
    Kind::ALL
        .iter()
        .filter_map(|k| match k.iam().scope {
            IamScope::Unscoped(why) | IamScope::TagsExcept(_, why) => Some((sid_of(*k), why)),
            _ => None,
        })
        .collect()
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The kinds the file's environment is made of.
fn kinds(env: &Environment) -> BTreeSet<Kind> {
    crate::desired::expand(env)
        .resources
        .values()
        .map(|r| r.kind)
        .collect()
}

/// `task-definition` → `TaskDefinition`: a statement id for a kind.
fn sid_of(kind: Kind) -> String {
    kind.name()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn fill(pattern: &str, env: &Environment) -> String {
    pattern
        .replace("{partition}", partition(&env.region))
        .replace("{region}", &env.region)
        .replace("{env}", &env.name)
        .replace("{cluster}", env.cluster_name().unwrap_or(&env.name))
}

/// The statements `infra policy ENV --for <what>` prints.
pub fn statements(env: &Environment, what: For) -> Vec<Statement> {
    let mut used = kinds(env);
    if what == For::Deploy {
        used.retain(|k| matches!(k, Kind::TaskDefinition | Kind::Service));
    }
    let mut reads: BTreeSet<String> = BTreeSet::new();
    let add = |set: &mut BTreeSet<String>, actions: &[&str]| {
        set.extend(actions.iter().map(|a| a.to_string()))
    };
    add(&mut reads, crate::aws::tags::IAM_READS);
    add(&mut reads, crate::aws::images::IAM_READS);
    for k in &used {
        add(&mut reads, k.iam().read);
    }
    if what != For::Deploy {
        if env.network.managed().is_none() {
            add(&mut reads, crate::aws::existing::IAM_READS);
        }
        add(&mut reads, crate::aws::status::IAM_READS);
    }
    if what != For::Plan {
        add(&mut reads, crate::aws::rollout::IAM_READS);
    }
    let mut out = vec![Statement {
        sid: "Read".into(),
        actions: reads,
        resources: vec!["*".into()],
        condition: None,
    }];
    out.extend(state_statements(env, what));
    if what == For::Plan {
        return out;
    }

    // By scope: ARNs (one statement per kind), tags (creates and the rest, per service), none.
    let mut tagged_create: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut tagged_rest: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for k in &used {
        let iam = k.iam();
        let (tag_add, tag_remove) = k.tag_api().actions();
        let mut create = BTreeSet::new();
        let mut rest = BTreeSet::new();
        if what != For::Destroy {
            add(&mut create, iam.create);
            add(&mut create, tag_add);
            add(&mut rest, iam.change);
            add(&mut rest, tag_add);
            add(&mut rest, tag_remove);
        }
        if what == For::Deploy && *k == Kind::Service {
            // A deploy updates services; it never creates or deletes one.
            create.clear();
        } else {
            add(&mut rest, iam.delete);
        }
        match iam.scope {
            IamScope::Arns(patterns) => {
                let actions: BTreeSet<String> = create.into_iter().chain(rest).collect();
                if !actions.is_empty() {
                    out.push(Statement {
                        sid: sid_of(*k),
                        actions,
                        resources: patterns.iter().map(|p| fill(p, env)).collect(),
                        condition: None,
                    });
                }
            }
            IamScope::Tags | IamScope::TagsExcept(..) => {
                if let IamScope::TagsExcept(unscoped, _) = iam.scope {
                    let loose: BTreeSet<String> = create
                        .iter()
                        .chain(&rest)
                        .filter(|a| unscoped.contains(&a.as_str()))
                        .cloned()
                        .collect();
                    create.retain(|a| !loose.contains(a));
                    rest.retain(|a| !loose.contains(a));
                    if !loose.is_empty() {
                        out.push(Statement {
                            sid: sid_of(*k),
                            actions: loose,
                            resources: vec!["*".into()],
                            condition: None,
                        });
                    }
                }
                // Only the call that makes the resource carries its tags; what it then does to
                // it (attach, associate, authorize) acts on a resource already tagged.
                let creating: BTreeSet<String> = create
                    .iter()
                    .filter(|a| {
                        iam.create.first() == Some(&a.as_str()) || tag_add.contains(&a.as_str())
                    })
                    .cloned()
                    .collect();
                rest.extend(create.difference(&creating).cloned());
                let create = creating;
                let service = iam
                    .read
                    .first()
                    .and_then(|a| a.split_once(':'))
                    .map_or("", |(s, _)| s);
                tagged_create.entry(service).or_default().extend(create);
                tagged_rest.entry(service).or_default().extend(rest);
            }
            IamScope::Unscoped(_) => {
                let actions: BTreeSet<String> = create.into_iter().chain(rest).collect();
                if !actions.is_empty() {
                    out.push(Statement {
                        sid: sid_of(*k),
                        actions,
                        resources: vec!["*".into()],
                        condition: None,
                    });
                }
            }
        }
    }
    let tag_condition =
        |key: &str| json!({"StringEquals": {format!("aws:{key}/{TAG_ENVIRONMENT}"): env.name}});
    fn service_sid(s: &str) -> &str {
        match s {
            "ec2" => "Network",
            "elasticloadbalancing" => "LoadBalancing",
            "ecs" => "Ecs",
            other => other,
        }
    }
    for (service, actions) in tagged_create {
        if !actions.is_empty() {
            out.push(Statement {
                sid: format!("{}Create", service_sid(service)),
                actions,
                resources: vec!["*".into()],
                condition: Some(tag_condition("RequestTag")),
            });
        }
    }
    for (service, actions) in tagged_rest {
        if !actions.is_empty() {
            out.push(Statement {
                sid: format!("{}Change", service_sid(service)),
                actions,
                resources: vec!["*".into()],
                condition: Some(tag_condition("ResourceTag")),
            });
        }
    }
    if what != For::Destroy {
        out.extend(pass_role(env, &used));
    }
    if what == For::Apply {
        out.push(Statement {
            sid: "Rollback".into(),
            actions: crate::aws::rollback::IAM_ACTIONS
                .iter()
                .map(|a| a.to_string())
                .collect(),
            resources: vec![fill(
                "arn:{partition}:ecs:{region}:*:service/{cluster}/*",
                env,
            )],
            condition: None,
        });
        if used
            .iter()
            .any(|k| matches!(k, Kind::Service | Kind::LoadBalancer | Kind::ScalableTarget))
        {
            out.push(Statement {
                sid: "ServiceLinkedRoles".into(),
                actions: ["iam:CreateServiceLinkedRole".to_string()].into(),
                resources: vec!["*".into()],
                condition: Some(json!({"StringEquals": {"iam:AWSServiceName": LINKED_SERVICES}})),
            });
        }
    }
    out
}

/// `iam:PassRole` for the environment's roles, only to ECS.
fn pass_role(env: &Environment, used: &BTreeSet<Kind>) -> Option<Statement> {
    let passes = used.contains(&Kind::TaskDefinition) || used.contains(&Kind::Service);
    passes.then(|| Statement {
        sid: "PassRoles".into(),
        actions: ["iam:PassRole".to_string()].into(),
        resources: vec![fill(
            "arn:{partition}:iam::*:role/infra-{env}-{region}-*",
            env,
        )],
        condition: Some(json!({"StringEquals": {"iam:PassedToService": PASSED_TO}})),
    })
}

/// The state object (and its lock, beside it): read for a plan; written, with the bucket made
/// safe on first use, by everything else. Nothing for a local state file.
fn state_statements(env: &Environment, what: For) -> Vec<Statement> {
    let StateConfig::S3 {
        bucket,
        key,
        kms_key_id,
    } = &env.state
    else {
        return Vec::new();
    };
    let p = partition(&env.region);
    let bucket_arn = format!("arn:{p}:s3:::{bucket}");
    let objects = vec![
        format!("{bucket_arn}/{key}"),
        format!("{bucket_arn}/{key}.lock"),
    ];
    use crate::aws::s3_backend as s3;
    let set = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let mut out = vec![
        Statement {
            sid: "StateBucketRead".into(),
            actions: set(s3::IAM_BUCKET_READS),
            resources: vec![bucket_arn.clone()],
            condition: None,
        },
        Statement {
            sid: "StateRead".into(),
            actions: set(s3::IAM_OBJECT_READS),
            resources: objects.clone(),
            condition: None,
        },
    ];
    if what != For::Plan {
        out.push(Statement {
            sid: "StateWrite".into(),
            actions: set(s3::IAM_OBJECT_WRITES),
            resources: objects,
            condition: None,
        });
        out.push(Statement {
            sid: "StateBucketCreate".into(),
            actions: set(s3::IAM_BUCKET_SETUP),
            resources: vec![bucket_arn],
            condition: None,
        });
    }
    if let Some(key_id) = kms_key_id {
        let mut actions = set(&["kms:Decrypt"]);
        if what != For::Plan {
            actions.insert("kms:GenerateDataKey".into());
        }
        let (resources, condition) = if key_id.starts_with("arn:") {
            (vec![key_id.clone()], None)
        } else if key_id.starts_with("alias/") {
            (
                vec![format!("arn:{p}:kms:{}:*:key/*", env.region)],
                Some(json!({"ForAnyValue:StringEquals": {"kms:ResourceAliases": key_id}})),
            )
        } else {
            (
                vec![format!("arn:{p}:kms:{}:*:key/{key_id}", env.region)],
                None,
            )
        };
        out.push(Statement {
            sid: "StateKey".into(),
            actions,
            resources,
            condition,
        });
    }
    out
}

/// A policy document of these statements.
pub fn document(statements: &[Statement]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": statements.iter().map(Statement::json).collect::<Vec<_>>(),
    })
}

/// How long IAM counts a document: without whitespace.
pub fn size(doc: &Value) -> usize {
    doc.to_string().len()
}

/// Documents of at most `limit` characters each, statements kept whole where they fit and split
/// by actions where one alone is too long.
pub fn split(statements: &[Statement], limit: usize) -> Vec<Value> {
    let mut pieces: Vec<Statement> = Vec::new();
    for s in statements {
        if size(&document(std::slice::from_ref(s))) <= limit {
            pieces.push(s.clone());
            continue;
        }
        let mut part = Statement {
            actions: BTreeSet::new(),
            ..s.clone()
        };
        let mut n = 1;
        for a in &s.actions {
            part.actions.insert(a.clone());
            if size(&document(std::slice::from_ref(&part))) > limit && part.actions.len() > 1 {
                part.actions.remove(a);
                let mut done = part.clone();
                done.sid = format!("{}{n}", s.sid);
                pieces.push(done);
                n += 1;
                part.actions = [a.clone()].into();
            }
        }
        part.sid = format!("{}{n}", s.sid);
        pieces.push(part);
    }
    let mut docs: Vec<Vec<Statement>> = Vec::new();
    for p in pieces {
        if let Some(last) = docs.last_mut() {
            last.push(p.clone());
            if size(&document(last)) <= limit {
                continue;
            }
            last.pop();
        }
        docs.push(vec![p]);
    }
    docs.iter().map(|d| document(d)).collect()
}

/// The IAM action an SDK operation needs: the service's IAM prefix and the operation's name,
/// except where AWS names it otherwise (S3).
pub fn action_of(service: &str, operation: &str) -> String {
    let prefix = match service {
        "elbv2" => "elasticloadbalancing",
        "tagging" => "tag",
        "autoscaling" => "application-autoscaling",
        other => other,
    };
    let op = match (prefix, operation) {
        ("s3", "HeadBucket") => "ListBucket",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        ("s3", "PutBucketEncryption") => "PutEncryptionConfiguration",
        ("s3", "GetBucketEncryption") => "GetEncryptionConfiguration",
        ("s3", "PutPublicAccessBlock") => "PutBucketPublicAccessBlock",
        ("s3", "GetPublicAccessBlock") => "GetBucketPublicAccessBlock",
        ("s3", "HeadObject") => "GetObject",
        (_, op) => op,
    };
    format!("{prefix}:{op}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> Environment {
        crate::config::parse(std::path::Path::new("stage.yaml"), text, &|_| None).unwrap()
    }

    const FULL: &str = r#"
environment: stage
region: us-east-1
state: {s3: {bucket: acme-state, key: stage.json, kms_key_id: alias/infra-state}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24]
  nat: single
load_balancer: {}
repositories: {web: {}}
cluster: {}
alarms: {notify: [ops@example.com]}
services:
  web:
    image: web:1
    cpu: 256
    memory: 512
    port: 3000
    desired_count: 2
    deployment: {strategy: blue_green, rollback_alarms: true}
    autoscaling: {min: 2, max: 4}
"#;

    #[test]
    fn a_plan_policy_only_reads() {
        let s = statements(&env(FULL), For::Plan);
        for st in &s {
            assert!(!st.writes(), "{} writes: {:?}", st.sid, st.actions);
        }
        let all: BTreeSet<&String> = s.iter().flat_map(|s| &s.actions).collect();
        assert!(all.iter().any(|a| *a == "ec2:DescribeVpcs"));
        assert!(
            !all.iter().any(|a| *a == "s3:PutObject"),
            "no lock for a plan"
        );
    }

    #[test]
    fn every_write_is_scoped_by_resource_or_condition_unless_aws_cannot() {
        for what in [For::Apply, For::Destroy, For::Deploy] {
            for st in statements(&env(FULL), what) {
                if !st.writes() {
                    continue;
                }
                let scoped = st.condition.is_some() || st.resources.iter().all(|r| r != "*");
                let excused = unscoped().iter().any(|(sid, _)| *sid == st.sid);
                assert!(scoped || excused, "{what:?}: {} is unscoped", st.sid);
            }
        }
    }

    #[test]
    fn kinds_the_file_does_not_use_get_nothing() {
        let small = FULL
            .replace("alarms: {notify: [ops@example.com]}\n", "")
            .replace(", rollback_alarms: true", "")
            .replace("    autoscaling: {min: 2, max: 4}\n", "")
            .replace("    desired_count: 2\n", "");
        let all: BTreeSet<String> = statements(&env(&small), For::Apply)
            .into_iter()
            .flat_map(|s| s.actions)
            .collect();
        for absent in [
            "cloudwatch:PutMetricAlarm",
            "sns:CreateTopic",
            "application-autoscaling:RegisterScalableTarget",
        ] {
            assert!(!all.contains(absent), "{absent}");
        }
        assert!(all.contains("ecs:CreateService"));
    }

    #[test]
    fn split_documents_stay_under_the_limit_and_keep_every_action() {
        let s = statements(&env(FULL), For::Apply);
        let docs = split(&s, 1500);
        assert!(docs.len() > 1);
        let mut seen = BTreeSet::new();
        for d in &docs {
            assert!(size(d) <= 1500, "{}", size(d));
            for st in d["Statement"].as_array().unwrap() {
                for a in st["Action"].as_array().unwrap() {
                    seen.insert(a.as_str().unwrap().to_string());
                }
            }
        }
        let all: BTreeSet<String> = s.into_iter().flat_map(|s| s.actions).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn sdk_operations_map_to_aws_action_names() {
        for (service, op, action) in [
            ("s3", "HeadBucket", "s3:ListBucket"),
            ("s3", "ListObjectVersions", "s3:ListBucketVersions"),
            ("s3", "PutBucketEncryption", "s3:PutEncryptionConfiguration"),
            ("elbv2", "CreateRule", "elasticloadbalancing:CreateRule"),
            ("tagging", "GetResources", "tag:GetResources"),
            ("ec2", "CreateVpc", "ec2:CreateVpc"),
        ] {
            assert_eq!(action_of(service, op), action);
        }
    }
}
