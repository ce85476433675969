//! Expands a validated `Environment` into the resources it describes, each with a stable logical
//! id, its attributes and the references that order it. Pure and deterministic: the same file gives
//! the same graph, byte for byte.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::{Environment, NatMode};
use crate::model::{Kind, Resource, reference, tags_for};

/// The desired resources of an environment, keyed by logical id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub resources: BTreeMap<String, Resource>,
    /// Parts of the file this version validates but does not provision yet: the plan says so.
    pub not_provisioned: Vec<String>,
}

impl Desired {
    fn add(&mut self, env: &Environment, id: String, kind: Kind, mut attrs: serde_json::Value) {
        attrs["tags"] = json!(tags_for(&env.name, &env.tags, &id));
        self.resources.insert(
            id.clone(),
            Resource {
                id,
                kind,
                attrs,
                depends_on: Vec::new(),
                protected: env.protect,
            },
        );
    }
}

/// The zones that get a NAT gateway under each mode.
pub fn nat_zones(env: &Environment) -> Vec<&str> {
    let zones = env.network.availability_zones.iter().map(String::as_str);
    match env.network.nat {
        NatMode::None => Vec::new(),
        NatMode::Single => zones.take(1).collect(),
        NatMode::PerAz => zones.collect(),
    }
}

/// What a task definition's image is written as when its tag could not be resolved.
pub const UNRESOLVED_IMAGE: &str = "(image not resolved)";

/// Expands the environment into its resource graph, with no image resolved (offline).
pub fn expand(env: &Environment) -> Desired {
    expand_with(env, &BTreeMap::new())
}

/// Expands the environment into its resource graph. `images` gives each service's image as the
/// task definition must pin it (`repo@sha256:…` for this environment's repositories).
pub fn expand_with(env: &Environment, images: &BTreeMap<String, String>) -> Desired {
    let mut d = Desired::default();
    network(env, &mut d);
    platform(env, &mut d);
    load_balancer(env, &mut d);
    services(env, images, &mut d);
    d.not_provisioned = env
        .services
        .iter()
        .filter(|(_, s)| s.autoscaling.is_some())
        .map(|(name, _)| format!("services.{name}.autoscaling"))
        .collect();
    d
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

/// One security-group rule: a protocol and port from one source (a CIDR block, or a group).
fn tcp_rule(port: u16, source: (&str, serde_json::Value)) -> serde_json::Value {
    let mut rule = json!({ "protocol": "tcp", "from_port": port, "to_port": port });
    rule[source.0] = source.1;
    rule
}

/// Least privilege: the load balancer takes its listener ports from `ingress_cidrs` and reaches
/// only the service ports inside the VPC; a service takes its port only from the load balancer's
/// group, and may call out anywhere (image pulls, logs, secrets, its own dependencies).
fn security_groups(env: &Environment, d: &mut Desired) {
    let vpc = env.network.cidr.to_string();
    if let Some(lb) = &env.load_balancer {
        let ports: Vec<u16> = std::iter::once(lb.http_port)
            .chain(lb.https.as_ref().map(|h| h.port))
            .collect();
        let mut ingress = Vec::new();
        for cidr in &lb.ingress_cidrs {
            let key = if cidr.addr().is_ipv4() {
                "cidr_ipv4"
            } else {
                "cidr_ipv6"
            };
            for port in &ports {
                ingress.push(tcp_rule(*port, (key, json!(cidr.to_string()))));
            }
        }
        let mut service_ports: Vec<u16> = env.services.values().filter_map(|s| s.port).collect();
        service_ports.sort_unstable();
        service_ports.dedup();
        let egress: Vec<_> = service_ports
            .iter()
            .map(|p| tcp_rule(*p, ("cidr_ipv4", json!(vpc))))
            .collect();
        d.add(
            env,
            "security-group.alb".into(),
            Kind::SecurityGroup,
            json!({
                "name": format!("{}-alb", env.name),
                "description": format!("infra {}: load balancer", env.name),
                "vpc_id": reference("vpc"),
                "ingress": ingress,
                "egress": egress,
            }),
        );
    }
    for (name, service) in &env.services {
        let ingress: Vec<_> = match (service.port, &env.load_balancer) {
            (Some(port), Some(_)) => vec![tcp_rule(
                port,
                ("source_security_group_id", reference("security-group.alb")),
            )],
            _ => Vec::new(),
        };
        d.add(
            env,
            format!("security-group.service.{name}"),
            Kind::SecurityGroup,
            json!({
                "name": format!("{}-service-{name}", env.name),
                "description": format!("infra {}: service {name}", env.name),
                "vpc_id": reference("vpc"),
                "ingress": ingress,
                "egress": [{ "protocol": "-1", "cidr_ipv4": "0.0.0.0/0" }],
            }),
        );
    }
}

/// Repositories, the cluster, and each service's log group.
fn platform(env: &Environment, d: &mut Desired) {
    security_groups(env, d);
    for (key, repo) in &env.repositories {
        d.add(
            env,
            format!("repository.{key}"),
            Kind::Repository,
            json!({
                "name": format!("{}/{key}", env.name),
                "scan_on_push": repo.scan_on_push,
                "immutable_tags": repo.immutable_tags,
                "lifecycle_policy": lifecycle_policy(repo.keep_last),
            }),
        );
    }
    if let Some(cluster) = &env.cluster {
        d.add(
            env,
            "cluster".into(),
            Kind::Cluster,
            json!({ "name": cluster.name, "container_insights": cluster.container_insights }),
        );
    }
    for name in env.services.keys() {
        d.add(
            env,
            format!("log-group.{name}"),
            Kind::LogGroup,
            json!({ "name": format!("/ecs/{}/{name}", env.name), "retention_in_days": LOG_RETENTION_DAYS }),
        );
    }
}

/// A target group name: `<env>-<service>`, or when that exceeds AWS's 32 characters, a prefix of
/// it and a stable hash of the whole.
pub fn target_group_name(env: &str, service: &str) -> String {
    let full = format!("{env}-{service}");
    if full.len() <= 32 {
        return full;
    }
    // FNV-1a: stable across builds and platforms.
    let hash = full.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let prefix = full[..23].trim_end_matches('-');
    format!("{prefix}-{hash:08x}")
}

/// The listener that routes to services: HTTPS when configured, else HTTP.
fn routing_listener(env: &Environment) -> &'static str {
    match env.load_balancer.as_ref().and_then(|lb| lb.https.as_ref()) {
        Some(_) => "listener.https",
        None => "listener.http",
    }
}

/// The load balancer, a target group per service with a port, the listeners, and a path rule per
/// service with path patterns. The service without patterns (if any) is the default action.
fn load_balancer(env: &Environment, d: &mut Desired) {
    let Some(lb) = &env.load_balancer else { return };
    let public: Vec<_> = env
        .network
        .availability_zones
        .iter()
        .map(|z| reference(&format!("subnet.public.{z}")))
        .collect();
    d.add(
        env,
        "load-balancer".into(),
        Kind::LoadBalancer,
        json!({
            "name": env.name,
            "scheme": "internet-facing",
            "type": "application",
            "subnets": public,
            "security_groups": [reference("security-group.alb")],
            "idle_timeout_seconds": lb.idle_timeout_seconds,
            "deletion_protection": lb.deletion_protection,
        }),
    );
    if let Some(r) = d.resources.get_mut("load-balancer") {
        r.protected |= lb.deletion_protection;
    }
    let web: Vec<(&String, &crate::config::Service, u16)> = env
        .services
        .iter()
        .filter_map(|(n, s)| Some((n, s, s.port?)))
        .collect();
    for (name, s, port) in &web {
        d.add(
            env,
            format!("target-group.{name}"),
            Kind::TargetGroup,
            json!({
                "name": target_group_name(&env.name, name),
                "port": port,
                "protocol": "HTTP",
                "target_type": "ip",
                "vpc_id": reference("vpc"),
                "health_check_path": s.health_check_path,
            }),
        );
    }
    let default_action = match web.iter().find(|(_, s, _)| s.path_patterns.is_empty()) {
        Some((name, _, _)) => {
            json!({ "type": "forward", "target_group_arn": reference(&format!("target-group.{name}")) })
        }
        None => {
            json!({ "type": "fixed-response", "status_code": "404", "content_type": "text/plain" })
        }
    };
    match &lb.https {
        Some(https) => {
            d.add(
                env,
                "listener.http".into(),
                Kind::Listener,
                json!({
                    "load_balancer_arn": reference("load-balancer"),
                    "port": lb.http_port,
                    "protocol": "HTTP",
                    "default_action": { "type": "redirect", "protocol": "HTTPS", "port": https.port.to_string(), "status_code": "HTTP_301" },
                }),
            );
            d.add(
                env,
                "listener.https".into(),
                Kind::Listener,
                json!({
                    "load_balancer_arn": reference("load-balancer"),
                    "port": https.port,
                    "protocol": "HTTPS",
                    "certificate_arn": https.certificate_arn,
                    "default_action": default_action,
                }),
            );
        }
        None => d.add(
            env,
            "listener.http".into(),
            Kind::Listener,
            json!({
                "load_balancer_arn": reference("load-balancer"),
                "port": lb.http_port,
                "protocol": "HTTP",
                "default_action": default_action,
            }),
        ),
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
    for (i, (name, s, _)) in routed.iter().enumerate() {
        d.add(
            env,
            format!("listener-rule.{name}"),
            Kind::ListenerRule,
            json!({
                "listener_arn": reference(routing_listener(env)),
                "priority": 10 * (i + 1),
                "path_patterns": s.path_patterns,
                "target_group_arn": reference(&format!("target-group.{name}")),
            }),
        );
    }
}

/// The IAM role name of the environment's task execution role (IAM names are global to the
/// account, hence the region).
pub fn execution_role_name(env: &Environment) -> String {
    format!("infra-{}-{}-task-execution", env.name, env.region)
}

/// Only what Fargate needs to start this environment's tasks: pull from its repositories, write
/// to its log groups, read the secrets its services reference.
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
            "Resource": format!("arn:aws:ecr:{region}:*:repository/{}/*", env.name)
        }));
    }
    statements.push(json!({
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": format!("arn:aws:logs:{region}:*:log-group:/ecs/{}/*:*", env.name)
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
        if !list.is_empty() {
            statements.push(json!({ "Effect": "Allow", "Action": action, "Resource": list }));
        }
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The execution role, and per service its task definition and ECS service.
fn services(env: &Environment, images: &BTreeMap<String, String>, d: &mut Desired) {
    if env.cluster.is_none() || env.services.is_empty() {
        return;
    }
    d.add(
        env,
        "role.task-execution".into(),
        Kind::Role,
        json!({
            "name": execution_role_name(env),
            "assume_role_policy": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": "ecs-tasks.amazonaws.com" },
                    "Action": "sts:AssumeRole"
                }]
            },
            "policy": execution_policy(env),
        }),
    );
    let private: Vec<_> = env
        .network
        .availability_zones
        .iter()
        .map(|z| reference(&format!("subnet.private.{z}")))
        .collect();
    for (name, s) in &env.services {
        let (image, shown) = match &s.image {
            crate::config::Image::Repository { key, tag } => (
                images
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| UNRESOLVED_IMAGE.to_string()),
                format!("{key}:{tag}"),
            ),
            crate::config::Image::External(r) => (r.clone(), r.clone()),
        };
        let pairs = |m: &BTreeMap<String, String>, value: &str| -> Vec<serde_json::Value> {
            m.iter()
                .map(|(k, v)| json!({ "name": k, value: v }))
                .collect()
        };
        let ports: Vec<_> = s
            .port
            .map(|p| json!({ "container_port": p, "protocol": "tcp" }))
            .into_iter()
            .collect();
        let td = format!("task-definition.{name}");
        d.add(
            env,
            td.clone(),
            Kind::TaskDefinition,
            json!({
                "family": format!("{}-{name}", env.name),
                "cpu": s.cpu.to_string(),
                "memory": s.memory.to_string(),
                "network_mode": "awsvpc",
                "requires_compatibilities": ["FARGATE"],
                "execution_role_arn": reference("role.task-execution"),
                "container": {
                    "name": name,
                    "image": image,
                    "essential": true,
                    "port_mappings": ports,
                    "environment": pairs(&s.environment, "value"),
                    "secrets": pairs(&s.secrets, "value_from"),
                    "log_group": reference(&format!("log-group.{name}")),
                    "log_region": env.region,
                    "log_stream_prefix": name,
                },
            }),
        );
        // The tag as written, beside the digest the container pins: shown in plans, kept in AWS.
        if let Some(r) = d.resources.get_mut(&td) {
            r.attrs["tags"]["infra:image"] = json!(shown);
        }
        let dep = &s.deployment;
        let behind_lb = s.port.is_some() && env.load_balancer.is_some();
        let load_balancers: Vec<_> = match (behind_lb, s.port) {
            (true, Some(port)) => vec![json!({
                "target_group_arn": reference(&format!("target-group.{name}")),
                "container_name": name,
                "container_port": port,
            })],
            _ => Vec::new(),
        };
        d.add(
            env,
            format!("service.{name}"),
            Kind::Service,
            json!({
                "name": name,
                "cluster": reference("cluster"),
                "task_definition": reference(&td),
                "desired_count": s.desired_count,
                "launch_type": "FARGATE",
                "subnets": private,
                "security_groups": [reference(&format!("security-group.service.{name}"))],
                "assign_public_ip": false,
                "load_balancers": load_balancers,
                "deployment": {
                    "min_healthy_percent": dep.min_healthy_percent,
                    "max_percent": dep.max_percent,
                    "circuit_breaker": dep.circuit_breaker,
                },
            }),
        );
        // ECS refuses a target group that no listener or rule uses yet.
        if behind_lb && let Some(svc) = d.resources.get_mut(&format!("service.{name}")) {
            let route = if s.path_patterns.is_empty() {
                routing_listener(env).to_string()
            } else {
                format!("listener-rule.{name}")
            };
            svc.depends_on.push(route);
        }
    }
}

fn network(env: &Environment, d: &mut Desired) {
    let net = &env.network;
    d.add(
        env,
        "vpc".into(),
        Kind::Vpc,
        json!({
            "cidr_block": net.cidr.to_string(),
            "enable_dns_support": true,
            "enable_dns_hostnames": true,
        }),
    );
    d.add(
        env,
        "internet-gateway".into(),
        Kind::InternetGateway,
        json!({ "vpc_id": reference("vpc") }),
    );
    for (tier, cidrs, public) in [
        ("public", &net.public_subnets, true),
        ("private", &net.private_subnets, false),
    ] {
        for (zone, cidr) in net.availability_zones.iter().zip(cidrs) {
            d.add(
                env,
                format!("subnet.{tier}.{zone}"),
                Kind::Subnet,
                json!({
                    "vpc_id": reference("vpc"),
                    "cidr_block": cidr.to_string(),
                    "availability_zone": zone,
                    "map_public_ip_on_launch": public,
                }),
            );
        }
    }
    let nat_zones = nat_zones(env);
    for zone in &nat_zones {
        d.add(
            env,
            format!("elastic-ip.{zone}"),
            Kind::ElasticIp,
            json!({ "domain": "vpc" }),
        );
        let id = format!("nat.{zone}");
        d.add(
            env,
            id.clone(),
            Kind::NatGateway,
            json!({
                "subnet_id": reference(&format!("subnet.public.{zone}")),
                "allocation_id": reference(&format!("elastic-ip.{zone}")),
                "connectivity_type": "public",
            }),
        );
        // A public NAT gateway needs the VPC's internet gateway attached before it can be created.
        if let Some(nat) = d.resources.get_mut(&id) {
            nat.depends_on.push("internet-gateway".into());
        }
    }
    let public_subnets: Vec<_> = net
        .availability_zones
        .iter()
        .map(|z| reference(&format!("subnet.public.{z}")))
        .collect();
    d.add(
        env,
        "route-table.public".into(),
        Kind::RouteTable,
        json!({
            "vpc_id": reference("vpc"),
            "routes": [{ "destination_cidr_block": "0.0.0.0/0", "gateway_id": reference("internet-gateway") }],
            "subnet_ids": public_subnets,
        }),
    );
    for zone in &net.availability_zones {
        // Each private subnet routes to the NAT of its own zone, or to the single one.
        let nat = match env.network.nat {
            NatMode::None => None,
            NatMode::Single => nat_zones.first().copied(),
            NatMode::PerAz => Some(zone.as_str()),
        };
        let routes: Vec<_> = nat
            .map(|z| json!({ "destination_cidr_block": "0.0.0.0/0", "nat_gateway_id": reference(&format!("nat.{z}")) }))
            .into_iter()
            .collect();
        d.add(
            env,
            format!("route-table.private.{zone}"),
            Kind::RouteTable,
            json!({
                "vpc_id": reference("vpc"),
                "routes": routes,
                "subnet_ids": [reference(&format!("subnet.private.{zone}"))],
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
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
}
