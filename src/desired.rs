//! Expands a validated `Environment` into the resources it describes, each with a stable logical
//! id, its typed attributes and the references that order it. Pure and deterministic: the same
//! file gives the same graph, byte for byte.

use std::collections::BTreeMap;

use serde_json::json;

use crate::aws::kinds::attrs::{self as a, ListenerAction, Route, Rule};
use crate::aws::kinds::{Desire, HasKind, ResourceKind};
use crate::aws::tags::TagApi;
use crate::config::{Environment, NatMode};
use crate::model::{Kind, Ref, Resource, tags_for};
use crate::naming::{self, id};

/// The desired resources of an environment, keyed by logical id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub resources: BTreeMap<String, Resource>,
}

impl Desired {
    /// Files a resource under the kind its attribute type belongs to, tagged with its identity.
    fn add<A: Desire>(
        &mut self,
        env: &Environment,
        id: impl Into<String>,
        attrs: A,
    ) -> &mut Resource {
        let id = id.into();
        let mut value = serde_json::to_value(&attrs).expect("attributes serialise");
        // What AWS cannot tag carries only the identity its name gives it.
        let user_tags = match <A::Kind as ResourceKind>::TAGS {
            TagApi::None => BTreeMap::new(),
            _ => env.tags.clone(),
        };
        value["tags"] = json!(tags_for(&env.name, &user_tags, &id));
        let kind: Kind = <A::Kind as HasKind>::KIND;
        self.resources.insert(
            id.clone(),
            Resource {
                id: id.clone(),
                kind,
                attrs: value,
                depends_on: Vec::new(),
                protected: env.protect,
            },
        );
        self.resources.get_mut(&id).expect("just inserted")
    }
}

/// The zones that get a NAT gateway under each mode (none in a network someone else owns).
pub fn nat_zones(env: &Environment) -> Vec<&str> {
    let Some(net) = env.network.managed() else {
        return Vec::new();
    };
    let zones = net.availability_zones.iter().map(String::as_str);
    match net.nat {
        NatMode::None => Vec::new(),
        NatMode::Single => zones.take(1).collect(),
        NatMode::PerAz => zones.collect(),
    }
}

/// What plan time reads from AWS that the file cannot say: the CIDR of a network someone else
/// owns (`network.existing`), which the load balancer's egress rule names; the id of the
/// domain's hosted zone, which its records live in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub vpc_cidr: Option<String>,
    pub hosted_zone_id: Option<String>,
    /// The validation record ACM gave this environment's certificate for each name (record
    /// name, value). ACM gives an account the same record for a name on every certificate, so
    /// a new certificate for names already proven needs no new record: known now, not after
    /// apply (a record that turns out different is corrected by the next plan).
    pub validation: BTreeMap<String, (String, String)>,
    /// The bastion's AMI: the one it was created with while it exists, else the latest Amazon
    /// Linux 2023 (read from AWS's public parameter when the plan is made).
    pub bastion_ami: Option<String>,
}

/// The AMI a bastion is written with when it was not looked up (offline commands).
pub const UNRESOLVED_AMI: &str = "(latest Amazon Linux 2023, looked up at plan time)";

/// The AWS managed policy that lets an instance use Session Manager.
pub const SSM_POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";

impl Facts {
    /// `validation` from certificates as read or recorded (their `validation` output): a
    /// certificate still waiting to be issued wins over an issued one, being the newer.
    pub fn validation_of<'a>(
        certificates: impl Iterator<Item = &'a serde_json::Value>,
    ) -> BTreeMap<String, (String, String)> {
        let mut sorted: Vec<&serde_json::Value> = certificates.collect();
        sorted.sort_by_key(|c| c["status"] != "ISSUED");
        let mut out = BTreeMap::new();
        for c in sorted {
            for (name, r) in c["validation"].as_object().into_iter().flatten() {
                if let (Some(n), Some(v)) = (r["name"].as_str(), r["value"].as_str()) {
                    out.insert(name.clone(), (n.to_string(), v.to_string()));
                }
            }
        }
        out
    }
}

/// The zone id records carry when the zone was not looked up (offline commands).
pub const UNRESOLVED_ZONE: &str = "(hosted zone looked up at plan time)";

/// What a task definition's image is written as when its tag could not be resolved.
pub const UNRESOLVED_IMAGE: &str = "(image not resolved)";

/// A service's image as its task definition pins it (`repo@sha256:…` for this environment's
/// repositories), and as the plan shows it (`web:1.2.3`, the `infra:image` tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub image: String,
    pub shown: String,
}

/// Expands the environment into its resource graph, with no image resolved and nothing read of
/// an existing network (offline).
pub fn expand(env: &Environment) -> Desired {
    expand_with(env, &BTreeMap::new(), &Facts::default())
}

/// Expands the environment into its resource graph. `images` gives each service's image of this
/// environment's repositories as resolved (a tag's digest, or the one the service runs); `facts`
/// what was read of an existing network.
pub fn expand_with(env: &Environment, images: &BTreeMap<String, Pinned>, facts: &Facts) -> Desired {
    let mut d = Desired::default();
    if let Some(net) = env.network.managed() {
        network(env, net, &mut d);
    }
    platform(env, facts, &mut d);
    load_balancer(env, &mut d);
    domain(env, facts, &mut d);
    services(env, images, &mut d);
    autoscaling(env, &mut d);
    databases(env, &mut d);
    if let Some(b) = &env.bastion {
        bastion(env, b, facts, &mut d);
    }
    if let Some(alarms) = &env.alarms {
        watching(env, alarms, &mut d);
    }
    d
}

/// The bastion: its role (Session Manager's managed policy), instance profile, security group
/// (port 22 from `ssh_cidrs` with `access: ssh`, nothing in otherwise; out to anywhere, which
/// Session Manager needs) and the instance in the first public subnet.
fn bastion(env: &Environment, b: &crate::config::Bastion, facts: &Facts, d: &mut Desired) {
    use crate::config::BastionAccess;
    let name = naming::bastion(&env.name, &env.region);
    d.add(
        env,
        id::BASTION_ROLE,
        a::Role {
            name: name.clone(),
            assume_role_policy: json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": "ec2.amazonaws.com" },
                    "Action": "sts:AssumeRole"
                }]
            }),
            policy: None,
            managed_policies: vec![SSM_POLICY.to_string()],
        },
    );
    d.add(
        env,
        id::BASTION_PROFILE,
        a::InstanceProfile {
            name,
            role: Ref::to(id::BASTION_ROLE),
        },
    );
    let (ingress, key_name) = match &b.access {
        BastionAccess::Ssm => (Vec::new(), None),
        BastionAccess::Ssh { cidrs, key_name } => (
            cidrs
                .iter()
                .map(|c| {
                    let mut rule = Rule::tcp(22);
                    if c.addr().is_ipv4() {
                        rule.cidr_ipv4 = Some(c.to_string());
                    } else {
                        rule.cidr_ipv6 = Some(c.to_string());
                    }
                    rule
                })
                .collect(),
            Some(key_name.clone()),
        ),
    };
    d.add(
        env,
        id::BASTION_SECURITY_GROUP,
        a::SecurityGroup {
            name: format!("{}-bastion", env.name),
            description: format!("infra {}: bastion", env.name),
            vpc_id: vpc(env),
            ingress,
            egress: vec![Rule {
                cidr_ipv4: Some("0.0.0.0/0".into()),
                ..Rule::all()
            }],
        },
    );
    let Some(subnet) = subnets(env, "public").into_iter().next() else {
        return;
    };
    d.add(
        env,
        id::BASTION,
        a::Instance {
            image_id: facts
                .bastion_ami
                .clone()
                .unwrap_or_else(|| UNRESOLVED_AMI.to_string()),
            instance_type: b.instance_type.clone(),
            subnet_id: subnet,
            security_groups: vec![Ref::to(id::BASTION_SECURITY_GROUP)],
            instance_profile: Ref::to(id::BASTION_PROFILE),
            key_name,
        },
    );
}

/// The database subnets of the environment: the ones infra builds, or those of a network
/// someone else owns.
fn database_subnets(env: &Environment) -> Vec<Ref> {
    match &env.network {
        crate::config::Network::Managed(m) => m
            .availability_zones
            .iter()
            .take(m.database_subnets.len())
            .map(|z| Ref::to(id::subnet("database", z)))
            .collect(),
        crate::config::Network::Existing(e) => e
            .database_subnet_ids
            .iter()
            .map(|s| Ref::existing(s.clone()))
            .collect(),
    }
}

/// The port every database listens on.
pub const DATABASE_PORT: u16 = 5432;

/// `databases`: the subnet group over the database subnets, and per database its security
/// group (PostgreSQL's port from the services that use it, nothing else) and the RDS instance.
fn databases(env: &Environment, d: &mut Desired) {
    if env.databases.is_empty() {
        return;
    }
    d.add(
        env,
        id::DB_SUBNET_GROUP,
        a::DbSubnetGroup {
            name: naming::db_subnet_group(&env.name),
            description: format!("infra {}: databases", env.name),
            subnet_ids: database_subnets(env),
        },
    );
    for (name, db) in &env.databases {
        let mut ingress: Vec<Rule<Ref>> = env
            .services
            .iter()
            .filter(|(_, s)| s.uses.contains(name))
            .map(|(svc, _)| Rule {
                source_security_group_id: Some(Ref::to(id::service_security_group(svc))),
                ..Rule::tcp(DATABASE_PORT)
            })
            .collect();
        // Operators, through the bastion.
        if env.bastion.is_some() {
            ingress.push(Rule {
                source_security_group_id: Some(Ref::to(id::BASTION_SECURITY_GROUP)),
                ..Rule::tcp(DATABASE_PORT)
            });
        }
        d.add(
            env,
            id::database_security_group(name),
            a::SecurityGroup {
                name: naming::database_security_group(&env.name, name),
                description: format!("infra {}: database {name}", env.name),
                vpc_id: vpc(env),
                ingress,
                egress: Vec::new(),
            },
        );
        d.add(
            env,
            id::database(name),
            a::Database {
                identifier: naming::database(&env.name, name),
                engine: "postgres".into(),
                engine_version: db.version.clone(),
                instance_class: db.instance_class.clone(),
                allocated_storage: db.storage_gb,
                multi_az: db.multi_az,
                backup_retention_days: db.backup_retention_days,
                db_name: name.clone(),
                master_username: "app".into(),
                subnet_group: Ref::to(id::DB_SUBNET_GROUP),
                security_groups: vec![Ref::to(id::database_security_group(name))],
                storage_encrypted: true,
                publicly_accessible: false,
                deletion_protection: env.protect,
                managed_password: true,
            },
        );
    }
}

/// How many days service logs are kept.
pub const LOG_RETENTION_DAYS: u32 = 30;

/// The ECR lifecycle policy that keeps the newest `keep` images.
pub fn lifecycle_policy(keep: u32) -> serde_json::Value {
    json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("keep the newest {keep} images"),
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
            "action": {"type": "expire"}
        }]
    })
}

/// The VPC: the one infra builds, or the one the file names.
fn vpc(env: &Environment) -> Ref {
    match env.network.existing() {
        Some(e) => Ref::existing(&e.vpc_id),
        None => Ref::to(id::VPC),
    }
}

/// The subnets of a tier (`public`, `private`): infra's, one per zone, or the file's.
fn subnets(env: &Environment, tier: &str) -> Vec<Ref> {
    match &env.network {
        crate::config::Network::Managed(m) => m
            .availability_zones
            .iter()
            .map(|z| Ref::to(id::subnet(tier, z)))
            .collect(),
        crate::config::Network::Existing(e) => {
            let ids = if tier == "public" {
                &e.public_subnet_ids
            } else {
                &e.private_subnet_ids
            };
            ids.iter().map(Ref::existing).collect()
        }
    }
}

/// Least privilege: the load balancer takes its listener ports from `ingress_cidrs` and reaches
/// only the range of service ports inside the VPC (one rule, so the group never grows into its
/// rule quota); a service takes its port only from the load balancer's group, and may call out
/// anywhere (image pulls, logs, secrets, its own dependencies).
fn security_groups(env: &Environment, facts: &Facts, d: &mut Desired) {
    let vpc_cidr = match &env.network {
        crate::config::Network::Managed(m) => m.cidr.to_string(),
        crate::config::Network::Existing(e) => facts
            .vpc_cidr
            .clone()
            .unwrap_or_else(|| format!("(the CIDR of {}, read at plan time)", e.vpc_id)),
    };
    if let Some(lb) = &env.load_balancer {
        let ports: Vec<u16> = std::iter::once(lb.http_port)
            .chain(lb.https.as_ref().map(|h| h.port))
            .chain(test_port(env))
            .collect();
        let mut ingress = Vec::new();
        for cidr in &lb.ingress_cidrs {
            for port in &ports {
                let mut rule = Rule::tcp(*port);
                if cidr.addr().is_ipv4() {
                    rule.cidr_ipv4 = Some(cidr.to_string());
                } else {
                    rule.cidr_ipv6 = Some(cidr.to_string());
                }
                ingress.push(rule);
            }
        }
        // One rule, whatever the number of services: the range of their ports, inside the VPC.
        // Each task's own group still admits only its port, and only from this group.
        let ports = env.services.values().filter_map(|s| s.port);
        let egress = match (ports.clone().min(), ports.max()) {
            (Some(lo), Some(hi)) => vec![Rule {
                cidr_ipv4: Some(vpc_cidr),
                ..Rule::tcp_range(lo, hi)
            }],
            _ => Vec::new(),
        };
        d.add(
            env,
            id::ALB_SECURITY_GROUP,
            a::SecurityGroup {
                name: naming::alb_security_group(&env.name),
                description: format!("infra {}: load balancer", env.name),
                vpc_id: vpc(env),
                ingress,
                egress,
            },
        );
    }
    for (name, service) in &env.services {
        let ingress = match (service.port, &env.load_balancer) {
            (Some(port), Some(_)) => vec![Rule {
                source_security_group_id: Some(Ref::to(id::ALB_SECURITY_GROUP)),
                ..Rule::tcp(port)
            }],
            _ => Vec::new(),
        };
        d.add(
            env,
            id::service_security_group(name),
            a::SecurityGroup {
                name: naming::service_security_group(&env.name, name),
                description: format!("infra {}: service {name}", env.name),
                vpc_id: vpc(env),
                ingress,
                egress: vec![Rule {
                    cidr_ipv4: Some("0.0.0.0/0".into()),
                    ..Rule::all()
                }],
            },
        );
    }
}

/// Repositories, the cluster, and each service's log group.
fn platform(env: &Environment, facts: &Facts, d: &mut Desired) {
    security_groups(env, facts, d);
    for (key, repo) in &env.repositories {
        d.add(
            env,
            id::repository(key),
            a::Repository {
                name: naming::repository(&env.name, key),
                scan_on_push: repo.scan_on_push,
                immutable_tags: repo.immutable_tags,
                lifecycle_policy: lifecycle_policy(repo.keep_last),
            },
        );
    }
    if let Some(cluster) = &env.cluster {
        d.add(
            env,
            id::CLUSTER,
            a::Cluster {
                name: cluster.name.clone(),
                container_insights: cluster.container_insights,
            },
        );
    }
    for name in env.services.keys() {
        d.add(
            env,
            id::log_group(name),
            a::LogGroup {
                name: naming::log_group(&env.name, name),
                retention_in_days: LOG_RETENTION_DAYS,
            },
        );
    }
}

/// The port of the test listener, when a service that shifts traffic asks for one (the file
/// gives every such service the same one).
fn test_port(env: &Environment) -> Option<u16> {
    env.load_balancer.as_ref()?;
    env.services
        .values()
        .filter(|s| s.port.is_some() && s.deployment.shifts_traffic())
        .find_map(|s| s.deployment.test_port)
}

/// The priority of the catch-all rule a traffic-shifting service on the default action gets:
/// after every path rule.
const CATCH_ALL_PRIORITY: u32 = 50_000;

/// The listener that routes to services: HTTPS when configured, else HTTP.
fn routing_listener(env: &Environment) -> &'static str {
    match env.load_balancer.as_ref().and_then(|lb| lb.https.as_ref()) {
        Some(_) => id::LISTENER_HTTPS,
        None => id::LISTENER_HTTP,
    }
}

/// The certificate an HTTPS listener uses: the file's, or the one infra requests.
fn certificate(https: &crate::config::Https) -> Ref {
    match &https.certificate_arn {
        Some(arn) => Ref::existing(arn.clone()),
        None => Ref::to(id::CERTIFICATE),
    }
}

/// `load_balancer.domain`: the certificate (unless the file gives one) with a validation record
/// per name, which the HTTPS listener waits for; then an alias record per name pointing at the
/// load balancer, written once the listener is there.
fn domain(env: &Environment, facts: &Facts, d: &mut Desired) {
    let Some(lb) = &env.load_balancer else { return };
    let Some(domain) = &lb.domain else { return };
    let zone_id = facts
        .hosted_zone_id
        .clone()
        .unwrap_or_else(|| UNRESOLVED_ZONE.to_string());
    let managed = lb
        .https
        .as_ref()
        .is_some_and(|h| h.certificate_arn.is_none());
    let mut validations = Vec::new();
    if managed {
        let mut aliases = domain.aliases.clone();
        aliases.sort();
        d.add(
            env,
            id::CERTIFICATE,
            a::Certificate {
                domain_name: domain.name.clone(),
                subject_alternative_names: aliases,
                validation_method: "DNS".into(),
            },
        );
        for name in domain.names() {
            // ACM proves `*.x` and `x` with one record: one resource for both.
            let rid = id::validation_record(name.trim_start_matches("*."));
            if validations.contains(&rid) {
                continue;
            }
            let output = |field: &str| {
                Ref::output(
                    id::CERTIFICATE,
                    format!("/validation/{}/{field}", pointer_escape(name)),
                )
            };
            let (record, value) = match facts.validation.get(name) {
                Some((n, v)) => (Ref::existing(n.clone()), Ref::existing(v.clone())),
                None => (output("name"), output("value")),
            };
            d.add(
                env,
                rid.clone(),
                a::DnsRecord {
                    zone_id: zone_id.clone(),
                    name: record,
                    record_type: "CNAME".into(),
                    ttl: Some(300),
                    values: vec![value],
                    alias: None,
                },
            )
            .depends_on
            .push(id::CERTIFICATE.to_string());
            validations.push(rid);
        }
    }
    if let Some(listener) = d.resources.get_mut(id::LISTENER_HTTPS) {
        listener.depends_on.extend(validations.iter().cloned());
    }
    for name in domain.names() {
        d.add(
            env,
            id::dns_record(name),
            a::DnsRecord {
                zone_id: zone_id.clone(),
                name: Ref::existing(format!("{name}.")),
                record_type: "A".into(),
                ttl: None,
                values: Vec::new(),
                alias: Some(a::DnsAlias {
                    dns_name: Ref::output(id::LOAD_BALANCER, "/dns_name"),
                    hosted_zone_id: Ref::output(id::LOAD_BALANCER, "/canonical_hosted_zone_id"),
                    evaluate_target_health: false,
                }),
            },
        )
        .depends_on
        .push(id::LISTENER_HTTPS.to_string());
    }
}

/// A name as one token of a JSON pointer (`~` and `/` escaped).
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The load balancer, a target group per service with a port, the listeners, and a path rule per
/// service with path patterns. The service without patterns (if any) is the default action.
fn load_balancer(env: &Environment, d: &mut Desired) {
    let Some(lb) = &env.load_balancer else { return };
    let public = subnets(env, "public");
    d.add(
        env,
        id::LOAD_BALANCER,
        a::LoadBalancer {
            name: naming::load_balancer(&env.name),
            scheme: "internet-facing".into(),
            lb_type: "application".into(),
            subnets: public,
            security_groups: vec![Ref::to(id::ALB_SECURITY_GROUP)],
            idle_timeout_seconds: lb.idle_timeout_seconds,
            deletion_protection: lb.deletion_protection,
        },
    )
    .protected |= lb.deletion_protection;
    let web: Vec<(&String, &crate::config::Service, u16)> = env
        .services
        .iter()
        .filter_map(|(n, s)| Some((n, s, s.port?)))
        .collect();
    for (name, s, port) in &web {
        d.add(
            env,
            id::target_group(name),
            a::TargetGroup {
                name: naming::target_group(&env.name, name),
                port: *port,
                protocol: "HTTP".into(),
                target_type: "ip".into(),
                vpc_id: vpc(env),
                health_check_path: s.health_check_path.clone(),
            },
        );
        if s.deployment.shifts_traffic() {
            d.add(
                env,
                id::green_target_group(name),
                a::TargetGroup {
                    name: naming::green_target_group(&env.name, name),
                    port: *port,
                    protocol: "HTTP".into(),
                    target_type: "ip".into(),
                    vpc_id: vpc(env),
                    health_check_path: s.health_check_path.clone(),
                },
            );
        }
    }
    let not_found = || ListenerAction::FixedResponse {
        status_code: "404".into(),
        content_type: "text/plain".into(),
    };
    // A service that shifts traffic is reached through a rule ECS can reweigh, never through
    // the listener's default action: its catch-all rule takes that place.
    let default_action = match web.iter().find(|(_, s, _)| s.path_patterns.is_empty()) {
        Some((name, s, _)) if !s.deployment.shifts_traffic() => ListenerAction::Forward {
            target_group_arn: Ref::to(id::target_group(name)),
        },
        _ => not_found(),
    };
    match &lb.https {
        Some(https) => {
            d.add(
                env,
                id::LISTENER_HTTP,
                a::Listener {
                    load_balancer_arn: Ref::to(id::LOAD_BALANCER),
                    port: lb.http_port,
                    protocol: "HTTP".into(),
                    certificate_arn: None,
                    default_action: ListenerAction::Redirect {
                        protocol: "HTTPS".into(),
                        port: https.port.to_string(),
                        status_code: "HTTP_301".into(),
                    },
                },
            );
            d.add(
                env,
                id::LISTENER_HTTPS,
                a::Listener {
                    load_balancer_arn: Ref::to(id::LOAD_BALANCER),
                    port: https.port,
                    protocol: "HTTPS".into(),
                    certificate_arn: Some(certificate(https)),
                    default_action,
                },
            );
        }
        None => {
            d.add(
                env,
                id::LISTENER_HTTP,
                a::Listener {
                    load_balancer_arn: Ref::to(id::LOAD_BALANCER),
                    port: lb.http_port,
                    protocol: "HTTP".into(),
                    certificate_arn: None,
                    default_action,
                },
            );
        }
    }
    // Most specific first: the longest pattern of each service decides its place.
    let mut routed: Vec<_> = web
        .iter()
        .filter(|(_, s, _)| !s.path_patterns.is_empty())
        .collect();
    routed.sort_by_key(|(name, s, _)| {
        let longest = s
            .path_patterns
            .iter()
            .map(|p| p.trim_end_matches('*').len())
            .max()
            .unwrap_or(0);
        (std::cmp::Reverse(longest), (*name).clone())
    });
    let mut rules: Vec<(&String, &crate::config::Service, u32, Vec<String>)> = routed
        .iter()
        .enumerate()
        .map(|(i, (name, s, _))| (*name, *s, 10 * (i as u32 + 1), s.path_patterns.clone()))
        .collect();
    if let Some((name, s, _)) = web
        .iter()
        .find(|(_, s, _)| s.path_patterns.is_empty() && s.deployment.shifts_traffic())
    {
        rules.push((name, s, CATCH_ALL_PRIORITY, vec!["/*".to_string()]));
    }
    let test = test_port(env);
    if let Some(port) = test {
        let https = lb.https.as_ref();
        d.add(
            env,
            id::LISTENER_TEST,
            a::Listener {
                load_balancer_arn: Ref::to(id::LOAD_BALANCER),
                port,
                protocol: if https.is_some() { "HTTPS" } else { "HTTP" }.into(),
                certificate_arn: https.map(certificate),
                default_action: not_found(),
            },
        );
    }
    for (name, s, priority, path_patterns) in rules {
        let shifts = s.deployment.shifts_traffic();
        let alternate = shifts.then(|| Ref::to(id::green_target_group(name)));
        d.add(
            env,
            id::listener_rule(name),
            a::ListenerRule {
                listener_arn: Ref::to(routing_listener(env)),
                priority,
                path_patterns: path_patterns.clone(),
                target_group_arn: Ref::to(id::target_group(name)),
                alternate_target_group_arn: alternate.clone(),
            },
        );
        if shifts && test.is_some() && s.deployment.test_port.is_some() {
            d.add(
                env,
                id::test_listener_rule(name),
                a::ListenerRule {
                    listener_arn: Ref::to(id::LISTENER_TEST),
                    priority,
                    path_patterns,
                    target_group_arn: Ref::to(id::target_group(name)),
                    alternate_target_group_arn: alternate,
                },
            );
        }
    }
}

/// The prefix of the variables of the `i`-th database a service uses: `DB_` for the first,
/// `DB_<NAME>_` for any other.
fn db_prefix(i: usize, db: &str) -> String {
    if i == 0 {
        "DB_".into()
    } else {
        format!("DB_{}_", db.to_ascii_uppercase())
    }
}

/// A service's environment variables, with those of the databases it uses (`DB_HOST`, `DB_PORT`,
/// `DB_NAME` for the first in file order, `DB_<NAME>_HOST`… for others), sorted by name.
fn environment_of(s: &crate::config::Service) -> Vec<a::NameValue<Ref>> {
    let mut out: Vec<a::NameValue<Ref>> = s
        .environment
        .iter()
        .map(|(k, v)| a::NameValue {
            name: k.clone(),
            value: Ref::existing(v.clone()),
        })
        .collect();
    for (i, db) in s.uses.iter().enumerate() {
        let prefix = db_prefix(i, db);
        for (name, value) in [
            ("HOST", Ref::output(id::database(db), "/address")),
            ("PORT", Ref::existing(DATABASE_PORT.to_string())),
            ("NAME", Ref::existing(db.clone())),
        ] {
            out.push(a::NameValue {
                name: format!("{prefix}{name}"),
                value,
            });
        }
    }
    out.sort_by(|x, y| x.name.cmp(&y.name));
    out
}

/// A service's secrets, with the user and password of the database it uses: keys of the
/// secret RDS keeps (its ARN in the task definition, never the password), sorted by name.
fn secrets_of(s: &crate::config::Service) -> Vec<a::SecretRef<Ref>> {
    let mut out: Vec<a::SecretRef<Ref>> = s
        .secrets
        .iter()
        .map(|(k, v)| {
            let (value_from, json_key) = crate::aws::kinds::task_definition::split_secret(v);
            a::SecretRef {
                name: k.clone(),
                value_from: Ref::existing(value_from),
                json_key,
            }
        })
        .collect();
    for (i, db) in s.uses.iter().enumerate() {
        let prefix = db_prefix(i, db);
        for (name, key) in [("USER", "username"), ("PASSWORD", "password")] {
            out.push(a::SecretRef {
                name: format!("{prefix}{name}"),
                value_from: Ref::output(id::database(db), "/secret_arn"),
                json_key: Some(key.into()),
            });
        }
    }
    out.sort_by(|x, y| x.name.cmp(&y.name));
    out
}

/// Only what Fargate needs to start this environment's tasks: pull from its repositories, write
/// to its log groups, read the secrets its services reference (those of the databases they
/// use among them).
fn execution_policy(env: &Environment) -> serde_json::Value {
    let region = &env.region;
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Action": "ecr:GetAuthorizationToken",
        "Resource": "*"
    })];
    if !env.repositories.is_empty() {
        statements.push(json!({
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": format!("arn:aws:ecr:{region}:*:repository/{}*", naming::repository_prefix(&env.name))
        }));
    }
    statements.push(json!({
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": format!("arn:aws:logs:{region}:*:log-group:{}*:*", naming::log_group_prefix(&env.name))
    }));
    let mut secrets: Vec<&str> = Vec::new();
    let mut parameters: Vec<&str> = Vec::new();
    for s in env.services.values() {
        for arn in s.secrets.values() {
            if arn.split(':').nth(2) == Some("ssm") {
                parameters.push(arn);
            } else {
                secrets.push(arn);
            }
        }
    }
    for (list, action) in [
        (&mut secrets, "secretsmanager:GetSecretValue"),
        (&mut parameters, "ssm:GetParameters"),
    ] {
        list.sort_unstable();
        list.dedup();
        let mut resources: Vec<serde_json::Value> = list
            .iter()
            .map(|arn| json!(crate::aws::kinds::task_definition::split_secret(arn).0))
            .collect();
        // Exactly the secret of each database a service uses.
        if action == "secretsmanager:GetSecretValue" {
            let mut used: Vec<&String> = env.services.values().flat_map(|s| &s.uses).collect();
            used.sort_unstable();
            used.dedup();
            resources.extend(used.into_iter().map(|db| {
                serde_json::to_value(Ref::output(id::database(db), "/secret_arn"))
                    .expect("a reference serialises")
            }));
        }
        if !resources.is_empty() {
            statements.push(json!({ "Effect": "Allow", "Action": action, "Resource": resources }));
        }
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The execution role, and per service its task definition and ECS service.
fn services(env: &Environment, images: &BTreeMap<String, Pinned>, d: &mut Desired) {
    if env.cluster.is_none() || env.services.is_empty() {
        return;
    }
    d.add(
        env,
        id::EXECUTION_ROLE,
        a::Role {
            name: naming::execution_role(&env.name, &env.region),
            assume_role_policy: json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": "ecs-tasks.amazonaws.com" },
                    "Action": "sts:AssumeRole"
                }]
            }),
            policy: Some(execution_policy(env)),
            managed_policies: Vec::new(),
        },
    );
    let shifting = env.load_balancer.is_some()
        && env
            .services
            .values()
            .any(|s| s.port.is_some() && s.deployment.shifts_traffic());
    if shifting {
        d.add(
            env,
            id::INFRASTRUCTURE_ROLE,
            a::Role {
                name: naming::infrastructure_role(&env.name, &env.region),
                assume_role_policy: json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": { "Service": "ecs.amazonaws.com" },
                        "Action": "sts:AssumeRole"
                    }]
                }),
                policy: None,
                managed_policies: vec![INFRASTRUCTURE_POLICY.to_string()],
            },
        );
    }
    let private = subnets(env, "private");
    for (name, s) in &env.services {
        let (image, shown) = match &s.image {
            crate::config::Image::Repository { key, tag } => match images.get(name) {
                Some(p) => (p.image.clone(), p.shown.clone()),
                None => (
                    UNRESOLVED_IMAGE.to_string(),
                    match tag {
                        Some(tag) => format!("{key}:{tag}"),
                        None => key.clone(),
                    },
                ),
            },
            crate::config::Image::External(r) => (r.clone(), r.clone()),
        };
        let td = id::task_definition(name);
        let resource = d.add(
            env,
            td.clone(),
            a::TaskDefinition {
                family: naming::task_family(&env.name, name),
                cpu: s.cpu.to_string(),
                memory: s.memory.to_string(),
                network_mode: "awsvpc".into(),
                requires_compatibilities: vec!["FARGATE".into()],
                execution_role_arn: Ref::to(id::EXECUTION_ROLE),
                container: a::Container {
                    name: name.clone(),
                    image,
                    essential: true,
                    port_mappings: s
                        .port
                        .map(|p| a::PortMapping {
                            container_port: p,
                            protocol: "tcp".into(),
                        })
                        .into_iter()
                        .collect(),
                    environment: environment_of(s),
                    secrets: secrets_of(s),
                    log_group: Ref::to(id::log_group(name)),
                    log_region: env.region.clone(),
                    log_stream_prefix: name.clone(),
                },
            },
        );
        // The tag as written, beside the digest the container pins: shown in plans, kept in AWS.
        resource.attrs["tags"]["infra:image"] = json!(shown);
        let dep = &s.deployment;
        let behind_lb = s.port.is_some() && env.load_balancer.is_some();
        let load_balancers = match (behind_lb, s.port) {
            (true, Some(port)) => vec![a::LoadBalancerLink {
                target_group_arn: Ref::to(id::target_group(name)),
                container_name: name.clone(),
                container_port: port,
            }],
            _ => Vec::new(),
        };
        let rollback = rollback_alarms(env, name);
        let service = d.add(
            env,
            id::service(name),
            a::Service {
                name: name.clone(),
                cluster: Ref::to(id::CLUSTER),
                task_definition: Ref::to(td),
                // Autoscaling owns the count of an autoscaled service once it exists.
                desired_count: s.autoscaling.is_none().then_some(s.desired_count),
                initial_count: s.autoscaling.is_some().then_some(s.desired_count),
                launch_type: "FARGATE".into(),
                subnets: private.clone(),
                security_groups: vec![Ref::to(id::service_security_group(name))],
                assign_public_ip: false,
                load_balancers,
                deployment: Some(a::Deployment {
                    rollback_alarms: rollback.iter().map(|(_, n)| n.clone()).collect(),
                    ..deployment(dep)
                }),
                advanced: (behind_lb && dep.shifts_traffic()).then(|| a::Advanced {
                    alternate_target_group_arn: Ref::to(id::green_target_group(name)),
                    production_listener_rule: Ref::to(id::listener_rule(name)),
                    test_listener_rule: dep
                        .test_port
                        .map(|_| Ref::to(id::test_listener_rule(name))),
                    role_arn: Ref::to(id::INFRASTRUCTURE_ROLE),
                }),
            },
        );
        // ECS takes only alarms that exist.
        service
            .depends_on
            .extend(rollback.into_iter().map(|(alarm, _)| alarm));
        // ECS refuses a target group that no listener or rule uses yet.
        if behind_lb {
            let route = if s.path_patterns.is_empty() && !dep.shifts_traffic() {
                routing_listener(env).to_string()
            } else {
                id::listener_rule(name)
            };
            service.depends_on.push(route);
        }
    }
}

/// The alarms of a service (what `rollback_alarms` hands its deployments), by the short name
/// its logical id and AWS name end with: CPU and memory always; unhealthy targets behind the
/// load balancer; running tasks where Container Insights reports them.
pub fn service_alarms(env: &Environment, service: &str) -> Vec<&'static str> {
    let Some(s) = env.services.get(service) else {
        return Vec::new();
    };
    let mut out = vec!["cpu", "memory"];
    if s.port.is_some() && env.load_balancer.is_some() {
        out.push("unhealthy");
    }
    if env.cluster.as_ref().is_some_and(|c| c.container_insights) {
        out.push("running");
    }
    out
}

/// The names of the alarms that roll a service's deployments back (`rollback_alarms`), sorted.
/// Each as its logical id (the service depends on it) and its AWS name (what ECS is given).
fn rollback_alarms(env: &Environment, service: &str) -> Vec<(String, String)> {
    let wanted = env.alarms.is_some()
        && env
            .services
            .get(service)
            .is_some_and(|s| s.deployment.rollback_alarms);
    if !wanted {
        return Vec::new();
    }
    let mut alarms: Vec<(String, String)> = service_alarms(env, service)
        .into_iter()
        .map(|short| {
            let what = format!("{service}.{short}");
            (id::alarm(&what), naming::alarm(&env.name, &what))
        })
        .collect();
    alarms.sort_by(|a, b| a.1.cmp(&b.1));
    alarms
}

/// One period's metric, for an alarm or a dashboard line.
fn metric(
    namespace: &str,
    name: &str,
    dims: Vec<a::Dimension<Ref>>,
    stat: &str,
) -> a::MetricQuery<Ref> {
    a::MetricQuery {
        namespace: namespace.into(),
        name: name.into(),
        dimensions: dims,
        period: 60,
        stat: stat.into(),
    }
}

fn dim(name: &str, value: a::DimensionValue<Ref>) -> a::Dimension<Ref> {
    a::Dimension {
        name: name.into(),
        value,
    }
}

fn text(s: &str) -> a::DimensionValue<Ref> {
    a::DimensionValue::Text(s.to_string())
}

fn balancer() -> a::Dimension<Ref> {
    dim(
        "LoadBalancer",
        a::DimensionValue::LoadBalancer(Ref::to(id::LOAD_BALANCER)),
    )
}

fn target_group(tg_id: String) -> a::Dimension<Ref> {
    dim(
        "TargetGroup",
        a::DimensionValue::TargetGroup(Ref::to(tg_id)),
    )
}

/// The NAT gateway of a zone, as a metric dimension.
fn nat_gateway(zone: &str) -> a::Dimension<Ref> {
    dim(
        "NatGatewayId",
        a::DimensionValue::Id(Ref::to(id::nat(zone))),
    )
}

fn service_dims(cluster: &str, service: &str) -> Vec<a::Dimension<Ref>> {
    vec![
        dim("ClusterName", text(cluster)),
        dim("ServiceName", text(service)),
    ]
}

/// An alarm's shape before its name and queries: compare the last query with `threshold` over
/// `periods` periods, `datapoints` of which must breach.
struct Check<'a> {
    what: String,
    description: String,
    queries: Vec<a::AlarmQuery<Ref>>,
    comparison: &'a str,
    threshold: f64,
    periods: u32,
    datapoints: u32,
    missing: &'a str,
}

fn single(q: a::MetricQuery<Ref>) -> Vec<a::AlarmQuery<Ref>> {
    vec![a::AlarmQuery {
        id: "m1".into(),
        metric: Some(q),
        expression: None,
        returns: true,
    }]
}

/// Metrics `m1…` (not returned) and an expression `e1` over them (returned).
fn math(metrics: Vec<a::MetricQuery<Ref>>, expression: &str) -> Vec<a::AlarmQuery<Ref>> {
    let mut out: Vec<a::AlarmQuery<Ref>> = metrics
        .into_iter()
        .enumerate()
        .map(|(i, q)| a::AlarmQuery {
            id: format!("m{}", i + 1),
            metric: Some(q),
            expression: None,
            returns: false,
        })
        .collect();
    out.push(a::AlarmQuery {
        id: "e1".into(),
        metric: None,
        expression: Some(expression.into()),
        returns: true,
    });
    out
}

/// `alarms:`: the topic with its subscriptions, every alarm notifying it on ALARM and on OK,
/// and the dashboard.
fn watching(env: &Environment, alarms: &crate::config::Alarms, d: &mut Desired) {
    d.add(
        env,
        id::ALARM_TOPIC,
        a::AlarmTopic {
            name: naming::alarm_topic(&env.name),
            emails: alarms.notify.clone(),
        },
    );
    let mut checks = Vec::new();
    let lb = env.load_balancer.is_some();
    if lb {
        let elb = |name: &str| metric("AWS/ApplicationELB", name, vec![balancer()], "Sum");
        checks.push(Check {
            what: "alb.5xx".into(),
            description: format!(
                "5xx answers of the load balancer and its targets above {}% of requests",
                alarms.alb_5xx_percent
            ),
            queries: math(
                vec![
                    elb("HTTPCode_ELB_5XX_Count"),
                    elb("HTTPCode_Target_5XX_Count"),
                    elb("RequestCount"),
                ],
                "IF(m3 > 0, 100 * (FILL(m1, 0) + FILL(m2, 0)) / m3, 0)",
            ),
            comparison: "GreaterThanThreshold",
            threshold: alarms.alb_5xx_percent,
            periods: 5,
            datapoints: 3,
            missing: "notBreaching",
        });
        checks.push(Check {
            what: "alb.latency".into(),
            description: format!(
                "targets' p95 response time above {} ms",
                alarms.target_response_ms
            ),
            queries: single(metric(
                "AWS/ApplicationELB",
                "TargetResponseTime",
                vec![balancer()],
                "p95",
            )),
            comparison: "GreaterThanThreshold",
            threshold: f64::from(alarms.target_response_ms) / 1000.0,
            periods: 5,
            datapoints: 3,
            missing: "notBreaching",
        });
    }
    let cluster = env.cluster_name().unwrap_or_default().to_string();
    for (name, s) in &env.services {
        for short in service_alarms(env, name) {
            let what = format!("{name}.{short}");
            let ecs = |m: &str| metric("AWS/ECS", m, service_dims(&cluster, name), "Average");
            checks.push(match short {
                "cpu" => Check {
                    what,
                    description: format!("{name}: average CPU above {}%", alarms.cpu_percent),
                    queries: single(ecs("CPUUtilization")),
                    comparison: "GreaterThanThreshold",
                    threshold: alarms.cpu_percent,
                    periods: 5,
                    datapoints: 3,
                    missing: "notBreaching",
                },
                "memory" => Check {
                    what,
                    description: format!("{name}: average memory above {}%", alarms.memory_percent),
                    queries: single(ecs("MemoryUtilization")),
                    comparison: "GreaterThanThreshold",
                    threshold: alarms.memory_percent,
                    periods: 5,
                    datapoints: 3,
                    missing: "notBreaching",
                },
                "unhealthy" => {
                    let tg = |tg_id: String| {
                        metric(
                            "AWS/ApplicationELB",
                            "UnHealthyHostCount",
                            vec![target_group(tg_id), balancer()],
                            "Maximum",
                        )
                    };
                    // Traffic-shifting services register in either group of their pair.
                    let queries = if s.deployment.shifts_traffic() {
                        math(
                            vec![tg(id::target_group(name)), tg(id::green_target_group(name))],
                            "FILL(m1, 0) + FILL(m2, 0)",
                        )
                    } else {
                        single(tg(id::target_group(name)))
                    };
                    Check {
                        what,
                        description: format!("{name}: unhealthy targets"),
                        queries,
                        comparison: "GreaterThanThreshold",
                        threshold: 0.0,
                        periods: 3,
                        datapoints: 3,
                        missing: "notBreaching",
                    }
                }
                _ => {
                    let floor = s.autoscaling.as_ref().map_or(s.desired_count, |x| x.min);
                    Check {
                        what,
                        description: format!("{name}: fewer than {floor} tasks running"),
                        queries: single(metric(
                            "ECS/ContainerInsights",
                            "RunningTaskCount",
                            service_dims(&cluster, name),
                            "Minimum",
                        )),
                        comparison: "LessThanThreshold",
                        threshold: f64::from(floor),
                        periods: 3,
                        datapoints: 3,
                        missing: "missing",
                    }
                }
            });
        }
    }
    for zone in nat_zones(env) {
        let nat = |m: &str| a::MetricQuery {
            period: 300,
            ..metric("AWS/NATGateway", m, vec![nat_gateway(zone)], "Sum")
        };
        checks.push(Check {
            what: format!("nat.{zone}"),
            description: format!(
                "NAT gateway in {zone}: port allocation errors and dropped packets above {}",
                alarms.nat_errors
            ),
            queries: math(
                vec![nat("ErrorPortAllocation"), nat("PacketsDropCount")],
                "FILL(m1, 0) + FILL(m2, 0)",
            ),
            comparison: "GreaterThanThreshold",
            threshold: f64::from(alarms.nat_errors),
            periods: 1,
            datapoints: 1,
            missing: "notBreaching",
        });
    }
    for c in checks {
        d.add(
            env,
            id::alarm(&c.what),
            a::Alarm {
                name: naming::alarm(&env.name, &c.what),
                description: c.description,
                queries: c.queries,
                comparison: c.comparison.into(),
                threshold: c.threshold,
                evaluation_periods: c.periods,
                datapoints_to_alarm: c.datapoints,
                treat_missing_data: c.missing.into(),
                alarm_actions: vec![Ref::to(id::ALARM_TOPIC)],
                ok_actions: vec![Ref::to(id::ALARM_TOPIC)],
            },
        );
    }
    dashboard(env, &cluster, d);
}

/// The dashboard: two graphs a row, load balancer first, then services, then NAT.
fn dashboard(env: &Environment, cluster: &str, d: &mut Desired) {
    let line = |q: a::MetricQuery<Ref>, stat: Option<&str>, label: &str| a::DashboardLine {
        namespace: q.namespace,
        metric: q.name,
        dimensions: q.dimensions,
        stat: stat.map(str::to_string),
        label: label.to_string(),
    };
    let mut graphs: Vec<(String, &str, Vec<a::DashboardLine<Ref>>)> = Vec::new();
    if env.load_balancer.is_some() {
        let elb = |name: &str| metric("AWS/ApplicationELB", name, vec![balancer()], "Sum");
        graphs.push((
            "Requests".into(),
            "Sum",
            vec![line(elb("RequestCount"), None, "requests")],
        ));
        graphs.push((
            "5xx answers".into(),
            "Sum",
            vec![
                line(elb("HTTPCode_ELB_5XX_Count"), None, "load balancer"),
                line(elb("HTTPCode_Target_5XX_Count"), None, "targets"),
            ],
        ));
        graphs.push((
            "Response time (seconds)".into(),
            "p50",
            ["p50", "p90", "p99"]
                .iter()
                .map(|p| line(elb("TargetResponseTime"), Some(p), p))
                .collect(),
        ));
        let healthy: Vec<_> = env
            .services
            .iter()
            .filter(|(_, s)| s.port.is_some())
            .map(|(name, _)| {
                line(
                    metric(
                        "AWS/ApplicationELB",
                        "HealthyHostCount",
                        vec![target_group(id::target_group(name)), balancer()],
                        "Minimum",
                    ),
                    None,
                    name,
                )
            })
            .collect();
        if !healthy.is_empty() {
            graphs.push(("Healthy targets".into(), "Minimum", healthy));
        }
    }
    if !env.services.is_empty() {
        let per_service = |ns: &str, m: &str| -> Vec<a::DashboardLine<Ref>> {
            env.services
                .keys()
                .map(|name| {
                    line(
                        metric(ns, m, service_dims(cluster, name), "Average"),
                        None,
                        name,
                    )
                })
                .collect()
        };
        graphs.push((
            "CPU (%)".into(),
            "Average",
            per_service("AWS/ECS", "CPUUtilization"),
        ));
        graphs.push((
            "Memory (%)".into(),
            "Average",
            per_service("AWS/ECS", "MemoryUtilization"),
        ));
        if env.cluster.as_ref().is_some_and(|c| c.container_insights) {
            graphs.push((
                "Running tasks".into(),
                "Average",
                per_service("ECS/ContainerInsights", "RunningTaskCount"),
            ));
        }
    }
    let zones = nat_zones(env);
    if !zones.is_empty() {
        let mut lines = Vec::new();
        for zone in zones {
            for (m, dir) in [
                ("BytesOutToDestination", "out"),
                ("BytesInFromDestination", "in"),
            ] {
                let q = metric("AWS/NATGateway", m, vec![nat_gateway(zone)], "Sum");
                lines.push(line(q, None, &format!("{zone} {dir}")));
            }
        }
        graphs.push(("NAT traffic (bytes)".into(), "Sum", lines));
    }
    let widgets = graphs
        .into_iter()
        .enumerate()
        .map(|(i, (title, stat, lines))| a::Widget {
            title,
            x: (i as u32 % 2) * 12,
            y: (i as u32 / 2) * 6,
            width: 12,
            height: 6,
            period: 60,
            stat: stat.to_string(),
            lines,
        })
        .collect();
    d.add(
        env,
        id::DASHBOARD,
        a::Dashboard {
            name: naming::dashboard(&env.name),
            region: env.region.clone(),
            widgets,
        },
    );
}

/// AWS's managed policy for the role ECS shifts load balancer traffic with.
pub const INFRASTRUCTURE_POLICY: &str =
    "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers";

/// The deployment as ECS gets it: rolling with its circuit breaker, or a traffic-shifting
/// strategy with its bake times and percentages (and no circuit breaker).
fn deployment(dep: &crate::config::Deployment) -> a::Deployment {
    let shifts = dep.shifts_traffic();
    a::Deployment {
        min_healthy_percent: dep.min_healthy_percent,
        max_percent: dep.max_percent,
        circuit_breaker: if shifts {
            crate::config::CircuitBreaker::Off
        } else {
            dep.circuit_breaker
        },
        strategy: dep.strategy,
        bake_minutes: shifts.then_some(dep.bake_minutes),
        canary_percent: dep.canary_percent,
        step_percent: dep.step_percent,
        step_bake_minutes: dep.step_bake_minutes,
        rollback_alarms: Vec::new(),
    }
}

/// Per autoscaled service: its scalable target, and a target-tracking policy per metric the
/// file sets.
fn autoscaling(env: &Environment, d: &mut Desired) {
    let Some(cluster) = env.cluster_name() else {
        return;
    };
    for (name, s) in &env.services {
        let Some(auto) = &s.autoscaling else { continue };
        let resource_id = naming::scalable_resource(cluster, name);
        let target = id::scalable_target(name);
        d.add(
            env,
            target.clone(),
            a::ScalableTarget {
                resource_id: resource_id.clone(),
                min_capacity: auto.min,
                max_capacity: auto.max,
            },
        )
        .depends_on
        .push(id::service(name));
        let behind_lb = s.port.is_some() && env.load_balancer.is_some();
        for (short, metric) in a::SCALING_METRICS {
            let (value, via_lb) = match *short {
                "cpu" => (auto.cpu_percent, false),
                "memory" => (auto.memory_percent, false),
                _ => (auto.requests_per_target, true),
            };
            let Some(value) = value else { continue };
            let lb = |r: &str| (via_lb && behind_lb).then(|| Ref::to(r));
            d.add(
                env,
                id::scaling_policy(name, short),
                a::ScalingPolicy {
                    name: naming::scaling_policy(&env.name, name, short),
                    resource_id: resource_id.clone(),
                    metric: metric.to_string(),
                    target_value: f64::from(value),
                    load_balancer: lb(id::LOAD_BALANCER),
                    target_group: lb(&id::target_group(name)),
                },
            )
            .depends_on
            .push(target.clone());
        }
    }
}

fn network(env: &Environment, net: &crate::config::ManagedNetwork, d: &mut Desired) {
    d.add(
        env,
        id::VPC,
        a::Vpc {
            cidr_block: net.cidr.to_string(),
            enable_dns_support: true,
            enable_dns_hostnames: true,
        },
    );
    d.add(
        env,
        id::INTERNET_GATEWAY,
        a::InternetGateway {
            vpc_id: Some(vpc(env)),
        },
    );
    for (tier, cidrs, public) in [
        ("public", &net.public_subnets, true),
        ("private", &net.private_subnets, false),
        ("database", &net.database_subnets, false),
    ] {
        for (zone, cidr) in net.availability_zones.iter().zip(cidrs) {
            d.add(
                env,
                id::subnet(tier, zone),
                a::Subnet {
                    vpc_id: vpc(env),
                    cidr_block: cidr.to_string(),
                    availability_zone: zone.clone(),
                    map_public_ip_on_launch: public,
                },
            );
        }
    }
    let nat_zones = nat_zones(env);
    for zone in &nat_zones {
        d.add(
            env,
            id::elastic_ip(zone),
            a::ElasticIp {
                domain: "vpc".into(),
            },
        );
        d.add(
            env,
            id::nat(zone),
            a::NatGateway {
                subnet_id: Ref::to(id::subnet("public", zone)),
                allocation_id: Ref::to(id::elastic_ip(zone)),
                connectivity_type: "public".into(),
            },
        )
        // A public NAT gateway needs the VPC's internet gateway attached before it can be created.
        .depends_on
        .push(id::INTERNET_GATEWAY.into());
    }
    d.add(
        env,
        id::ROUTE_TABLE_PUBLIC,
        a::RouteTable {
            vpc_id: vpc(env),
            routes: vec![Route {
                destination_cidr_block: "0.0.0.0/0".into(),
                gateway_id: Some(Ref::to(id::INTERNET_GATEWAY)),
                nat_gateway_id: None,
            }],
            subnet_ids: net
                .availability_zones
                .iter()
                .map(|z| Ref::to(id::subnet("public", z)))
                .collect(),
        },
    );
    // The database subnets reach nothing outside the VPC, nor does anything reach them from
    // outside: their route table has the VPC's local route only.
    if !net.database_subnets.is_empty() {
        d.add(
            env,
            id::ROUTE_TABLE_DATABASE,
            a::RouteTable {
                vpc_id: vpc(env),
                routes: Vec::new(),
                subnet_ids: net
                    .availability_zones
                    .iter()
                    .take(net.database_subnets.len())
                    .map(|z| Ref::to(id::subnet("database", z)))
                    .collect(),
            },
        );
    }
    for zone in &net.availability_zones {
        // Each private subnet routes to the NAT of its own zone, or to the single one.
        let nat = match net.nat {
            NatMode::None => None,
            NatMode::Single => nat_zones.first().copied(),
            NatMode::PerAz => Some(zone.as_str()),
        };
        d.add(
            env,
            id::private_route_table(zone),
            a::RouteTable {
                vpc_id: vpc(env),
                routes: nat
                    .map(|z| Route {
                        destination_cidr_block: "0.0.0.0/0".into(),
                        gateway_id: None,
                        nat_gateway_id: Some(Ref::to(id::nat(z))),
                    })
                    .into_iter()
                    .collect(),
                subnet_ids: vec![Ref::to(id::subnet("private", zone))],
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::model::reference;
    use std::path::Path;

    pub(crate) fn env(nat: &str, zones: usize) -> Environment {
        let zs = ["us-east-1a", "us-east-1b", "us-east-1c"];
        let text = format!(
            "environment: stage\nregion: us-east-1\nstate: {{local: s.json}}\nnetwork:\n  cidr: 10.0.0.0/16\n  availability_zones: [{}]\n  public_subnets: [{}]\n  private_subnets: [{}]\n  nat: {nat}\n",
            zs[..zones].join(", "),
            (0..zones)
                .map(|i| format!("10.0.{i}.0/24"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..zones)
                .map(|i| format!("10.0.1{i}.0/24"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        config::parse(Path::new("stage.yaml"), &text, &|_| None).unwrap()
    }

    #[test]
    fn resource_counts_follow_the_nat_mode() {
        // (nat mode, zones) → (total resources, NAT gateways)
        let table = [
            ("none", 2, 1 + 1 + 4 + 3, 0),
            ("single", 2, 1 + 1 + 4 + 2 + 3, 1),
            ("per_az", 3, 1 + 1 + 6 + 6 + 4, 3),
        ];
        for (nat, zones, total, nats) in table {
            let d = expand(&env(nat, zones));
            assert_eq!(d.resources.len(), total, "{nat}/{zones}");
            let n = d
                .resources
                .values()
                .filter(|r| r.kind == Kind::NatGateway)
                .count();
            assert_eq!(n, nats, "{nat}/{zones}");
        }
    }

    #[test]
    fn private_routes_point_at_the_right_nat() {
        let single = expand(&env("single", 2));
        let rt = &single.resources["route-table.private.us-east-1b"];
        assert_eq!(
            rt.attrs["routes"][0]["nat_gateway_id"],
            reference("nat.us-east-1a")
        );
        let per_az = expand(&env("per_az", 2));
        let rt = &per_az.resources["route-table.private.us-east-1b"];
        assert_eq!(
            rt.attrs["routes"][0]["nat_gateway_id"],
            reference("nat.us-east-1b")
        );
        let none = expand(&env("none", 2));
        assert_eq!(
            none.resources["route-table.private.us-east-1b"].attrs["routes"],
            json!([])
        );
    }

    #[test]
    fn every_resource_is_tagged_with_its_identity() {
        for r in expand(&env("per_az", 3)).resources.values() {
            let tags = &r.attrs["tags"];
            assert_eq!(tags["infra:environment"], "stage");
            assert_eq!(tags["infra:id"], r.id.as_str());
            assert_eq!(tags["managed-by"], "infra");
        }
    }

    #[test]
    fn every_dependency_exists() {
        let d = expand(&env("per_az", 3));
        for r in d.resources.values() {
            for dep in r.deps() {
                assert!(
                    d.resources.contains_key(&dep),
                    "{} needs missing {dep}",
                    r.id
                );
            }
        }
    }

    #[test]
    fn the_load_balancer_reaches_any_number_of_services_through_one_rule() {
        let mut text = String::from(
            "environment: stage\nregion: us-east-1\nstate: {local: s.json}\nnetwork:\n  cidr: 10.0.0.0/16\n  availability_zones: [us-east-1a]\n  public_subnets: [10.0.0.0/24]\n  private_subnets: [10.0.10.0/24]\nload_balancer: {}\nservices:\n",
        );
        for i in 0..100 {
            text.push_str(&format!(
                "  s{i}: {{image: docker.io/library/nginx, cpu: 256, memory: 512, port: {}, path_patterns: [/s{i}/*]}}\n",
                4000 + 7 * i
            ));
        }
        let env = config::parse(Path::new("stage.yaml"), &text, &|_| None).unwrap();
        let d = expand(&env);
        let alb = &d.resources["security-group.alb"].attrs;
        assert_eq!(
            alb["egress"],
            json!([{"protocol": "tcp", "from_port": 4000, "to_port": 4693, "cidr_ipv4": "10.0.0.0/16"}])
        );
        // Each service still admits only its own port, only from the load balancer.
        let s7 = &d.resources["security-group.service.s7"].attrs;
        assert_eq!(
            s7["ingress"],
            json!([{"protocol": "tcp", "from_port": 4049, "to_port": 4049, "source_security_group_id": reference("security-group.alb")}])
        );
    }
}
