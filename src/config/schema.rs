//! The shape of the environment file, once: the reader takes each mapping's allowed keys from
//! these tables, and `infra schema` turns the same tables into JSON Schema (draft 2020-12) for
//! editors. A key cannot be accepted by one and unknown to the other.

use serde_json::{Map, Value, json};

/// What a value is.
#[derive(Debug)]
pub enum Ty {
    Str,
    Int(i64, i64),
    Num(f64, f64),
    Bool,
    Enum(&'static [&'static str]),
    List(&'static Ty),
    /// A mapping with exactly these keys.
    Obj(&'static [Field]),
    /// A mapping whose keys are names (services, repositories, tags…) and whose values are `Ty`.
    Map(&'static Ty),
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        doc,
    }
}

/// The keys a mapping of these fields accepts, in table order.
pub fn keys(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

pub const S3: &[Field] = &[
    req(
        "bucket",
        Ty::Str,
        "S3 bucket holding the state (created, versioned, on first apply)",
    ),
    opt(
        "key",
        Ty::Str,
        "object key; defaults to `<environment>.json`",
    ),
    opt(
        "kms_key_id",
        Ty::Str,
        "KMS key (id, ARN or alias) every state and lock write is encrypted with",
    ),
];

pub const STATE: &[Field] = &[
    opt(
        "s3",
        Ty::Obj(S3),
        "state in S3: locked, versioned, compare-and-swap",
    ),
    opt(
        "local",
        Ty::Str,
        "state in a local file (for trying infra out), relative to the working directory",
    ),
];

pub const EXISTING: &[Field] = &[
    req(
        "vpc_id",
        Ty::Str,
        "the VPC (vpc-…) infra places its resources in; read, never written",
    ),
    opt(
        "public_subnet_ids",
        Ty::List(&Ty::Str),
        "subnets for the load balancer (two zones at least)",
    ),
    req(
        "private_subnet_ids",
        Ty::List(&Ty::Str),
        "subnets for the tasks",
    ),
    opt(
        "database_subnet_ids",
        Ty::List(&Ty::Str),
        "subnets for databases",
    ),
];

pub const NETWORK: &[Field] = &[
    opt("cidr", Ty::Str, "the VPC's IPv4 CIDR block, /16 to /28"),
    opt(
        "availability_zones",
        Ty::List(&Ty::Str),
        "zones of the region, in order",
    ),
    opt(
        "public_subnets",
        Ty::List(&Ty::Str),
        "one CIDR per zone, in zone order",
    ),
    opt(
        "private_subnets",
        Ty::List(&Ty::Str),
        "one CIDR per zone, in zone order",
    ),
    opt(
        "database_subnets",
        Ty::List(&Ty::Str),
        "one CIDR per zone, in zone order: where databases go (their route table has no default route)",
    ),
    opt(
        "nat",
        Ty::Enum(&["none", "single", "per_az"]),
        "NAT gateways for private egress: none, one, or one per zone (default single)",
    ),
    opt(
        "existing",
        Ty::Obj(EXISTING),
        "a network someone else owns, instead of cidr, zones, subnets and nat",
    ),
];

pub const HTTPS: &[Field] = &[
    opt(
        "port",
        Ty::Int(1, 65535),
        "HTTPS listener port (default 443)",
    ),
    opt(
        "certificate_arn",
        Ty::Str,
        "ACM certificate ARN (required without `domain`; with it, infra requests and validates one)",
    ),
];

pub const DOMAIN: &[Field] = &[
    req(
        "name",
        Ty::Str,
        "the address the load balancer answers on (app.example.com)",
    ),
    req(
        "zone",
        Ty::Str,
        "an existing public Route 53 hosted zone that holds the name (example.com)",
    ),
    opt(
        "aliases",
        Ty::List(&Ty::Str),
        "more names in the same zone, on the same certificate and load balancer",
    ),
];

pub const LOAD_BALANCER: &[Field] = &[
    opt(
        "http_port",
        Ty::Int(1, 65535),
        "HTTP listener port (default 80); redirects to HTTPS when `https` is set",
    ),
    opt("https", Ty::Obj(HTTPS), "an HTTPS listener"),
    opt(
        "domain",
        Ty::Obj(DOMAIN),
        "a name in Route 53 for the load balancer, with an ACM certificate validated by DNS and HTTPS",
    ),
    opt(
        "ingress_cidrs",
        Ty::List(&Ty::Str),
        "who may reach the listeners (default 0.0.0.0/0 and ::/0)",
    ),
    opt(
        "idle_timeout_seconds",
        Ty::Int(1, 4000),
        "connection idle timeout (default 60)",
    ),
    opt(
        "deletion_protection",
        Ty::Bool,
        "refuse deletion in AWS (default false)",
    ),
];

pub const REPOSITORY: &[Field] = &[
    opt(
        "scan_on_push",
        Ty::Bool,
        "scan images for vulnerabilities when pushed (default true)",
    ),
    opt(
        "immutable_tags",
        Ty::Bool,
        "a tag, once pushed, never moves (default true)",
    ),
    opt(
        "keep_last",
        Ty::Int(1, 10000),
        "images kept by the lifecycle policy (default 30)",
    ),
];

pub const CLUSTER: &[Field] = &[
    opt("name", Ty::Str, "cluster name (default: the environment's)"),
    opt(
        "container_insights",
        Ty::Bool,
        "CloudWatch Container Insights (default true)",
    ),
];

pub const DEPLOYMENT: &[Field] = &[
    opt(
        "strategy",
        Ty::Enum(&["rolling", "blue_green", "canary", "linear"]),
        "how a new revision replaces the old (default rolling)",
    ),
    opt(
        "min_healthy_percent",
        Ty::Int(0, 100),
        "rolling: tasks kept running during a deploy (default 100)",
    ),
    opt(
        "max_percent",
        Ty::Int(100, 200),
        "rolling: tasks allowed during a deploy (default 200)",
    ),
    opt(
        "circuit_breaker",
        Ty::Enum(&["off", "on", "rollback"]),
        "rolling: stop a failing deploy, and roll it back (default rollback)",
    ),
    opt(
        "bake_minutes",
        Ty::Int(0, 1440),
        "blue_green, canary, linear: minutes both versions stay up after the shift",
    ),
    opt(
        "canary_percent",
        Ty::Num(0.1, 100.0),
        "canary: share of traffic shifted first",
    ),
    opt(
        "step_percent",
        Ty::Num(3.0, 100.0),
        "linear: share of traffic shifted at each step",
    ),
    opt(
        "step_bake_minutes",
        Ty::Int(0, 1440),
        "canary, linear: minutes between traffic shifts (AWS's default when unset)",
    ),
    opt(
        "test_port",
        Ty::Int(1, 65535),
        "blue_green, canary, linear: a test listener on this port reaches the new revision first",
    ),
    opt(
        "rollback_alarms",
        Ty::Bool,
        "roll a deployment back when the service's alarms fire (needs `alarms`)",
    ),
];

pub const AUTOSCALING: &[Field] = &[
    req("min", Ty::Int(0, 5000), "fewest tasks"),
    req("max", Ty::Int(1, 5000), "most tasks"),
    opt("cpu_percent", Ty::Int(1, 100), "target average CPU"),
    opt("memory_percent", Ty::Int(1, 100), "target average memory"),
    opt(
        "requests_per_target",
        Ty::Int(1, 1_000_000),
        "target requests per task (behind the load balancer)",
    ),
];

pub const SERVICE: &[Field] = &[
    req(
        "image",
        Ty::Str,
        "`<repository key>:<tag>` of this environment's repositories; `<repository key>` alone when the pipeline owns the tag (`--image KEY=TAG`, `infra deploy`); or a full image reference",
    ),
    req("cpu", Ty::Int(256, 16384), "Fargate CPU units"),
    req(
        "memory",
        Ty::Int(512, 122880),
        "Fargate memory (MiB), a valid pair with cpu",
    ),
    opt(
        "port",
        Ty::Int(1, 65535),
        "container port served behind the load balancer",
    ),
    opt(
        "desired_count",
        Ty::Int(0, 5000),
        "tasks to run (default 1)",
    ),
    opt(
        "health_check_path",
        Ty::Str,
        "target group health check path (default /)",
    ),
    opt(
        "path_patterns",
        Ty::List(&Ty::Str),
        "listener rule paths routed to this service; none: the default action",
    ),
    opt("environment", Ty::Map(&Ty::Str), "environment variables"),
    opt(
        "uses",
        Ty::List(&Ty::Str),
        "databases it reaches: port 5432 opened to it, DB_HOST, DB_PORT, DB_NAME in its environment, DB_USER and DB_PASSWORD as secrets",
    ),
    opt(
        "secrets",
        Ty::Map(&Ty::Str),
        "environment variables from Secrets Manager or SSM parameter ARNs",
    ),
    opt("deployment", Ty::Obj(DEPLOYMENT), "how deploys roll out"),
    opt(
        "autoscaling",
        Ty::Obj(AUTOSCALING),
        "target tracking on CPU, memory or requests",
    ),
];

pub const USAGE: &[Field] = &[
    opt(
        "nat_gb_per_month",
        Ty::Num(0.0, 1_000_000.0),
        "GB the NAT gateways process in a month, all together (default 100)",
    ),
    opt(
        "alb_lcu",
        Ty::Num(0.0, 100_000.0),
        "load balancer capacity units used on average (default 1)",
    ),
    opt(
        "log_gb_per_month",
        Ty::Num(0.0, 1_000_000.0),
        "GB of logs ingested in a month, all services together (default 5)",
    ),
];

pub const ALARMS: &[Field] = &[
    opt(
        "notify",
        Ty::List(&Ty::Str),
        "email addresses subscribed to the alarm topic (each confirms by email)",
    ),
    opt(
        "alb_5xx_percent",
        Ty::Num(0.1, 100.0),
        "alarm when 5xx answers exceed this percentage of requests (default 5)",
    ),
    opt(
        "target_response_ms",
        Ty::Int(1, 600_000),
        "alarm when the targets' p95 response time exceeds this (default 1000)",
    ),
    opt(
        "cpu_percent",
        Ty::Num(1.0, 100.0),
        "alarm when a service's average CPU exceeds this (default 80)",
    ),
    opt(
        "memory_percent",
        Ty::Num(1.0, 100.0),
        "alarm when a service's average memory exceeds this (default 80)",
    ),
    opt(
        "nat_errors",
        Ty::Int(0, 1_000_000_000),
        "alarm when a NAT gateway's port allocation errors plus dropped packets in 5 minutes exceed this (default 0)",
    ),
];

pub const LINT: &[Field] = &[opt(
    "accept",
    Ty::Map(&Ty::Str),
    "lint findings this file accepts: rule id → the reason (shown with the finding)",
)];

pub const BASTION: &[Field] = &[
    opt(
        "instance_type",
        Ty::Str,
        "EC2 instance type (default t3.micro); the AMI is the latest Amazon Linux 2023, pinned when created",
    ),
    opt(
        "access",
        Ty::Enum(&["ssm", "ssh"]),
        "ssm (default): Session Manager, no inbound port; ssh: port 22 from `ssh_cidrs` with `key_name`",
    ),
    opt(
        "ssh_cidrs",
        Ty::List(&Ty::Str),
        "who may reach port 22 (required with access: ssh)",
    ),
    opt(
        "key_name",
        Ty::Str,
        "the EC2 key pair to log in with (required with access: ssh)",
    ),
];

pub const DATABASE: &[Field] = &[
    opt(
        "version",
        Ty::Str,
        "PostgreSQL major version (default \"16\")",
    ),
    opt(
        "instance_class",
        Ty::Str,
        "RDS instance class (default db.t4g.micro)",
    ),
    opt(
        "storage_gb",
        Ty::Int(20, 65536),
        "allocated storage in GiB (default 20)",
    ),
    opt(
        "multi_az",
        Ty::Bool,
        "a standby in another zone (default: true when the environment is protected)",
    ),
    opt(
        "backup_retention_days",
        Ty::Int(1, 35),
        "days of automated backups (default 7)",
    ),
];

pub const TOP: &[Field] = &[
    req(
        "environment",
        Ty::Str,
        "the environment's name; must equal the file name",
    ),
    req("region", Ty::Str, "AWS region"),
    opt(
        "protect",
        Ty::Bool,
        "protect every resource from deletion and replacement (default false)",
    ),
    opt(
        "tags",
        Ty::Map(&Ty::Str),
        "tags added to every taggable resource",
    ),
    req(
        "state",
        Ty::Obj(STATE),
        "where infra keeps its state: exactly one of s3 or local",
    ),
    req(
        "network",
        Ty::Obj(NETWORK),
        "the VPC, zones, subnets and NAT, or an existing network",
    ),
    opt(
        "load_balancer",
        Ty::Obj(LOAD_BALANCER),
        "a public Application Load Balancer",
    ),
    opt(
        "repositories",
        Ty::Map(&Ty::Obj(REPOSITORY)),
        "ECR repositories by key (named `<environment>/<key>`)",
    ),
    opt(
        "cluster",
        Ty::Obj(CLUSTER),
        "the ECS cluster (implied by services)",
    ),
    opt(
        "bastion",
        Ty::Obj(BASTION),
        "a jump host in a public subnet, the way into the private network and its databases",
    ),
    opt(
        "databases",
        Ty::Map(&Ty::Obj(DATABASE)),
        "RDS PostgreSQL instances in the database subnets, by name; the master password is managed by RDS in Secrets Manager",
    ),
    opt(
        "services",
        Ty::Map(&Ty::Obj(SERVICE)),
        "Fargate services by name",
    ),
    opt(
        "alarms",
        Ty::Obj(ALARMS),
        "CloudWatch alarms to an SNS topic, and the environment's dashboard",
    ),
    opt("lint", Ty::Obj(LINT), "lint settings"),
    opt(
        "usage",
        Ty::Obj(USAGE),
        "assumptions for the usage-priced lines of the cost estimate",
    ),
];

/// Where the published schema lives in the repository, for the `$id` and editors.
pub const SCHEMA_PATH: &str = "schema/environment.schema.json";

fn ty(t: &Ty) -> Value {
    match t {
        Ty::Str => json!({"type": "string"}),
        Ty::Int(lo, hi) => json!({"type": "integer", "minimum": lo, "maximum": hi}),
        Ty::Num(lo, hi) => json!({"type": "number", "minimum": lo, "maximum": hi}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum(values) => json!({"enum": values}),
        Ty::List(item) => json!({"type": "array", "items": ty(item)}),
        Ty::Obj(fields) => object(fields),
        Ty::Map(value) => json!({"type": "object", "additionalProperties": ty(value)}),
    }
}

fn object(fields: &[Field]) -> Value {
    let mut properties = Map::new();
    for f in fields {
        let mut p = ty(&f.ty);
        p["description"] = json!(f.doc);
        properties.insert(f.name.to_string(), p);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The environment file as JSON Schema, draft 2020-12.
pub fn json_schema() -> Value {
    let mut s = object(TOP);
    let top = s.as_object_mut().expect("an object");
    let mut head = Map::new();
    head.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    head.insert("$id".into(), json!(SCHEMA_PATH));
    head.insert("title".into(), json!("infra environment file"));
    head.insert(
        "description".into(),
        json!("One environment of infra: network, load balancer, repositories, cluster and services. String values may use ${VAR} and ${VAR:-default}."),
    );
    head.extend(std::mem::take(top));
    Value::Object(head)
}
