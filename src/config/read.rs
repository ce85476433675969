//! Reading each section of the environment file into the typed model, with every check that can be
//! made offline. Cross-field checks live next to the fields they relate, so each error points at the
//! value that is wrong.

use std::collections::{BTreeMap, HashMap};

use ipnet::{IpNet, Ipv4Net};
use saphyr_parser::Span;

use super::yaml::{Node, Reader};
use super::*;

const TOP: &[&str] = &[
    "environment",
    "region",
    "protect",
    "tags",
    "state",
    "network",
    "load_balancer",
    "repositories",
    "cluster",
    "services",
];

pub(super) fn environment(r: &mut Reader<'_>, doc: &Node<'_>, stem: &str) -> Option<Environment> {
    let top = r.mapping(doc, TOP)?;

    let name = r.require(&top, "environment").and_then(|n| {
        let name = r.string(n)?;
        if name != stem {
            r.error_hint(
                n.span,
                format!("environment `{name}` does not match the file name `{stem}.yaml`"),
                format!("write `environment: {stem}` or rename the file to `{name}.yaml`"),
            );
            return None;
        }
        if !valid_name(&name, 1, 24) {
            r.error(
                n.span,
                format!(
                    "environment `{name}` must be 1-24 of a-z, 0-9 and `-`, starting with a letter"
                ),
            );
            return None;
        }
        Some(name)
    });
    let region = r.require(&top, "region").and_then(|n| region(r, n));
    let tags = top.get("tags").map(|n| tags(r, n)).unwrap_or_default();
    let protect = top
        .get("protect")
        .map(|n| r.boolean(n))
        .unwrap_or(Some(false));
    let state = r
        .require(&top, "state")
        .and_then(|n| state(r, n, name.as_deref().unwrap_or(stem)));
    let network = r
        .require(&top, "network")
        .and_then(|n| network(r, n, region.as_deref()));
    let load_balancer = top.get("load_balancer").map(|n| load_balancer(r, n));
    let repositories = top.get("repositories").map(|n| repositories(r, n));
    let cluster = top
        .get("cluster")
        .map(|n| cluster(r, n, name.as_deref().unwrap_or(stem)));
    let services = top
        .get("services")
        .map(|n| {
            services(
                r,
                n,
                repositories.as_ref().and_then(|x| x.as_ref()),
                load_balancer.as_ref().and_then(|x| x.as_ref()),
                top.get("load_balancer").is_some(),
                region.as_deref(),
            )
        })
        .unwrap_or_else(|| Some(BTreeMap::new()));

    let services = services?;
    let cluster = match cluster {
        Some(c) => Some(c?),
        None if !services.is_empty() => Some(Cluster {
            name: name.clone().unwrap_or_default(),
            container_insights: true,
        }),
        None => None,
    };
    Some(Environment {
        name: name?,
        region: region?,
        protect: protect?,
        tags,
        state: state?,
        network: network?,
        load_balancer: match load_balancer {
            Some(lb) => Some(lb?),
            None => None,
        },
        repositories: match repositories {
            Some(repos) => repos?,
            None => BTreeMap::new(),
        },
        cluster,
        services,
    })
}

/// Lowercase letters, digits and dashes, starting with a letter, within a length range.
fn valid_name(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn region(r: &mut Reader<'_>, n: &Node<'_>) -> Option<String> {
    let region = r.string(n)?;
    // e.g. us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if !ok {
        r.error(
            n.span,
            format!("`{region}` is not an AWS region name (like us-east-1)"),
        );
        return None;
    }
    Some(region)
}

fn tags(r: &mut Reader<'_>, n: &Node<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(fields) = r.open_mapping(n) else {
        return out;
    };
    for (key, key_span, value) in fields.iter() {
        if key.starts_with("aws:") || key.starts_with("infra:") || key == "managed-by" {
            r.error(
                key_span,
                format!("tag key `{key}` is reserved (`aws:`, `infra:` and `managed-by` are set by AWS or infra)"),
            );
            continue;
        }
        if key.is_empty() || key.chars().count() > 128 {
            r.error(key_span, "tag keys must be 1 to 128 characters");
            continue;
        }
        if let Some(v) = r.scalar_string(value) {
            if v.chars().count() > 256 {
                r.error(value.span, "tag values must be at most 256 characters");
                continue;
            }
            out.insert(key.to_string(), v);
        }
    }
    out
}

fn state(r: &mut Reader<'_>, n: &Node<'_>, env: &str) -> Option<StateConfig> {
    let f = r.mapping(n, &["s3", "local"])?;
    match (f.get("s3"), f.get("local")) {
        (Some(_), Some(local)) => {
            r.error(
                local.span,
                "`state` takes exactly one of `s3` or `local`, not both",
            );
            None
        }
        (None, None) => {
            r.error(
                f.span,
                "`state` needs one of `s3: {bucket: …}` or `local: PATH`",
            );
            None
        }
        (Some(s3), None) => {
            let f = r.mapping(s3, &["bucket", "key"])?;
            let bucket = r.require(&f, "bucket").and_then(|b| {
                let name = r.string(b)?;
                let ok = (3..=63).contains(&name.len())
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    })
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name.ends_with(|c: char| c.is_ascii_alphanumeric());
                if !ok {
                    r.error(
                        b.span,
                        format!(
                            "`{name}` is not a valid S3 bucket name (3-63 of a-z, 0-9, `-`, `.`)"
                        ),
                    );
                    return None;
                }
                Some(name)
            });
            let key = match f.get("key") {
                Some(k) => {
                    let key = r.string(k)?;
                    if key.is_empty() || key.ends_with('/') {
                        r.error(k.span, "the state key must name an object, not a folder");
                        return None;
                    }
                    key
                }
                None => format!("{env}.json"),
            };
            Some(StateConfig::S3 {
                bucket: bucket?,
                key,
            })
        }
        (None, Some(local)) => {
            let path = r.string(local)?;
            if path.is_empty() {
                r.error(local.span, "the local state path is empty");
                return None;
            }
            Some(StateConfig::Local { path: path.into() })
        }
    }
}

fn cidr(r: &mut Reader<'_>, n: &Node<'_>) -> Option<Ipv4Net> {
    let text = r.string(n)?;
    match text.parse::<Ipv4Net>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            r.error_hint(
                n.span,
                format!("`{text}` has host bits set"),
                format!("did you mean `{}`?", net.trunc()),
            );
            None
        }
        Err(_) => {
            r.error(
                n.span,
                format!("`{text}` is not an IPv4 CIDR block (like 10.0.0.0/16)"),
            );
            None
        }
    }
}

fn network(r: &mut Reader<'_>, n: &Node<'_>, region: Option<&str>) -> Option<Network> {
    let f = r.mapping(
        n,
        &[
            "cidr",
            "availability_zones",
            "public_subnets",
            "private_subnets",
            "nat",
        ],
    )?;
    let vpc = r.require(&f, "cidr").and_then(|c| {
        let net = cidr(r, c)?;
        if !(16..=28).contains(&net.prefix_len()) {
            r.error(
                c.span,
                format!(
                    "a VPC CIDR block must be between /16 and /28, not /{}",
                    net.prefix_len()
                ),
            );
            return None;
        }
        Some(net)
    });

    let mut zones: Vec<String> = Vec::new();
    let mut zones_ok = true;
    let zones_node = r.require(&f, "availability_zones");
    if let Some(zn) = zones_node {
        match r.sequence(zn) {
            Some([]) => {
                r.error(zn.span, "at least one availability zone is needed");
                zones_ok = false;
            }
            Some(items) => {
                for item in items {
                    let Some(z) = r.string(item) else {
                        zones_ok = false;
                        continue;
                    };
                    if let Some(region) = region {
                        let suffix = z.strip_prefix(region).unwrap_or("");
                        if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_lowercase()) {
                            r.error(
                                item.span,
                                format!("availability zone `{z}` is not in region `{region}` (zones look like {region}a)"),
                            );
                            zones_ok = false;
                            continue;
                        }
                    }
                    if zones.contains(&z) {
                        r.error(
                            item.span,
                            format!("availability zone `{z}` is listed twice"),
                        );
                        zones_ok = false;
                        continue;
                    }
                    zones.push(z);
                }
            }
            None => zones_ok = false,
        }
    } else {
        zones_ok = false;
    }

    let mut seen: Vec<(Ipv4Net, &'static str)> = Vec::new();
    let mut subnets = |r: &mut Reader<'_>, key: &'static str| -> Option<Vec<Ipv4Net>> {
        let node = r.require(&f, key)?;
        let items = r.sequence(node)?;
        if zones_ok && items.len() != zones.len() {
            r.error(
                node.span,
                format!(
                    "{} {key} for {} availability zone{}: give exactly one per zone, in zone order",
                    items.len(),
                    zones.len(),
                    if zones.len() == 1 { "" } else { "s" }
                ),
            );
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(net) = cidr(r, item) else {
                ok = false;
                continue;
            };
            if let Some(vpc) = vpc
                && !vpc.contains(&net)
            {
                r.error(
                    item.span,
                    format!("subnet {net} is outside the VPC CIDR block {vpc}"),
                );
                ok = false;
                continue;
            }
            if !(16..=28).contains(&net.prefix_len()) {
                r.error(
                    item.span,
                    format!(
                        "a subnet must be between /16 and /28, not /{}",
                        net.prefix_len()
                    ),
                );
                ok = false;
                continue;
            }
            if let Some((other, kind)) = seen
                .iter()
                .find(|(o, _)| o.contains(&net) || net.contains(o))
            {
                r.error(
                    item.span,
                    format!("subnet {net} overlaps {kind} subnet {other}"),
                );
                ok = false;
                continue;
            }
            seen.push((
                net,
                if key == "public_subnets" {
                    "public"
                } else {
                    "private"
                },
            ));
            out.push(net);
        }
        (ok && (!zones_ok || items.len() == zones.len())).then_some(out)
    };
    let public_subnets = subnets(r, "public_subnets");
    let private_subnets = subnets(r, "private_subnets");

    let nat = match f.get("nat") {
        Some(n) => r.choice(
            n,
            &[
                ("none", NatMode::None),
                ("single", NatMode::Single),
                ("per_az", NatMode::PerAz),
            ],
        ),
        None => Some(NatMode::Single),
    };
    Some(Network {
        cidr: vpc?,
        availability_zones: zones_ok.then_some(zones)?,
        public_subnets: public_subnets?,
        private_subnets: private_subnets?,
        nat: nat?,
    })
}

fn port(r: &mut Reader<'_>, n: &Node<'_>) -> Option<u16> {
    r.int(n, 1, 65535).map(|p| p as u16)
}

fn load_balancer(r: &mut Reader<'_>, n: &Node<'_>) -> Option<LoadBalancer> {
    let f = r.mapping(
        n,
        &[
            "http_port",
            "https",
            "ingress_cidrs",
            "idle_timeout_seconds",
            "deletion_protection",
        ],
    )?;
    let http_port = f.get("http_port").map(|n| port(r, n)).unwrap_or(Some(80));
    let https = match f.get("https") {
        None => Some(None),
        Some(h) => (|| {
            let hf = r.mapping(h, &["port", "certificate_arn"])?;
            let port = hf.get("port").map(|n| port(r, n)).unwrap_or(Some(443));
            let cert = r.require(&hf, "certificate_arn").and_then(|c| {
                let arn = r.string(c)?;
                if !(arn.starts_with("arn:") && arn.contains(":certificate/")) {
                    r.error(
                        c.span,
                        format!("`{arn}` is not a certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"),
                    );
                    return None;
                }
                Some(arn)
            });
            if let (Some(p), Some(hp)) = (port, http_port)
                && p == hp
            {
                let at = hf.get("port").map(|n| n.span).unwrap_or(hf.span);
                r.error(at, format!("HTTPS port {p} is also the HTTP port"));
                return None;
            }
            Some(Some(Https {
                port: port?,
                certificate_arn: cert?,
            }))
        })(),
    };
    let ingress_cidrs = match f.get("ingress_cidrs") {
        None => Some(vec!["0.0.0.0/0".parse::<IpNet>().expect("literal CIDR")]),
        Some(list) => r.sequence(list).and_then(|items| {
            if items.is_empty() {
                r.error(
                    list.span,
                    "`ingress_cidrs` is empty: nobody could reach the load balancer",
                );
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for item in items {
                let Some(text) = r.string(item) else {
                    ok = false;
                    continue;
                };
                match text.parse::<IpNet>() {
                    Ok(net) if !out.contains(&net) => out.push(net),
                    Ok(net) => {
                        r.error(item.span, format!("{net} is listed twice"));
                        ok = false;
                    }
                    Err(_) => {
                        r.error(item.span, format!("`{text}` is not a CIDR block"));
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }),
    };
    // The load balancer's group admits each listener port from each CIDR: one rule each.
    if let (Some(cidrs), Some(hp), Some(h)) = (&ingress_cidrs, http_port, &https) {
        let ports = 1 + usize::from(h.is_some());
        for v4 in [true, false] {
            let n = cidrs.iter().filter(|c| c.addr().is_ipv4() == v4).count() * ports;
            if n > quotas::RULES_PER_SECURITY_GROUP {
                let at = f.get("ingress_cidrs").map(|n| n.span).unwrap_or(f.span);
                r.error_hint(
                    at,
                    format!(
                        "{n} inbound {} rules on the load balancer's security group (port {hp}{} from each CIDR) exceed AWS's `Inbound rules per security group` quota of {}",
                        if v4 { "IPv4" } else { "IPv6" },
                        if ports == 2 { " and the HTTPS port" } else { "" },
                        quotas::RULES_PER_SECURITY_GROUP
                    ),
                    "use fewer, wider CIDR blocks (or a managed prefix list outside infra)",
                );
            }
        }
    }
    let idle = f
        .get("idle_timeout_seconds")
        .map(|n| r.int(n, 1, 4000).map(|v| v as u32))
        .unwrap_or(Some(60));
    let deletion_protection = f
        .get("deletion_protection")
        .map(|n| r.boolean(n))
        .unwrap_or(Some(false));
    Some(LoadBalancer {
        http_port: http_port?,
        https: https?,
        ingress_cidrs: ingress_cidrs?,
        idle_timeout_seconds: idle?,
        deletion_protection: deletion_protection?,
    })
}

fn repositories(r: &mut Reader<'_>, n: &Node<'_>) -> Option<BTreeMap<String, Repository>> {
    let f = r.open_mapping(n)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, key_span, value) in f.iter() {
        let valid = (2..=200).contains(&key.len())
            && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            r.error(
                key_span,
                format!("repository name `{key}` must be 2-200 of a-z, 0-9, `-`, `_`, `.`"),
            );
            ok = false;
            continue;
        }
        let repo = (|| {
            if matches!(value.data, saphyr::YamlData::Value(saphyr::Scalar::Null)) {
                return Some(Repository {
                    scan_on_push: true,
                    immutable_tags: true,
                    keep_last: 30,
                });
            }
            let rf = r.mapping(value, &["scan_on_push", "immutable_tags", "keep_last"])?;
            let scan = rf
                .get("scan_on_push")
                .map(|n| r.boolean(n))
                .unwrap_or(Some(true));
            let immutable = rf
                .get("immutable_tags")
                .map(|n| r.boolean(n))
                .unwrap_or(Some(true));
            let keep = rf
                .get("keep_last")
                .map(|n| r.int(n, 1, 10000).map(|v| v as u32))
                .unwrap_or(Some(30));
            Some(Repository {
                scan_on_push: scan?,
                immutable_tags: immutable?,
                keep_last: keep?,
            })
        })();
        match repo {
            Some(repo) => {
                out.insert(key.to_string(), repo);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn cluster(r: &mut Reader<'_>, n: &Node<'_>, env: &str) -> Option<Cluster> {
    let f = r.mapping(n, &["name", "container_insights"])?;
    let name = match f.get("name") {
        Some(n) => r.string(n).and_then(|name| {
            let ok = (1..=255).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                r.error(
                    n.span,
                    format!("cluster name `{name}` must be 1-255 of letters, digits, `-` and `_`"),
                );
                return None;
            }
            Some(name)
        }),
        None => Some(env.to_string()),
    };
    let insights = f
        .get("container_insights")
        .map(|n| r.boolean(n))
        .unwrap_or(Some(true));
    Some(Cluster {
        name: name?,
        container_insights: insights?,
    })
}

/// Valid Fargate task sizes: memory (MiB) allowed for each cpu (units).
pub fn fargate_memory_ok(cpu: u32, memory: u32) -> bool {
    let gib = |g: u32| g * 1024;
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (gib(1)..=gib(4)).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (gib(2)..=gib(8)).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (gib(4)..=gib(16)).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (gib(8)..=gib(30)).contains(&memory) && memory.is_multiple_of(1024),
        8192 => (gib(16)..=gib(60)).contains(&memory) && memory.is_multiple_of(gib(4)),
        16384 => (gib(32)..=gib(120)).contains(&memory) && memory.is_multiple_of(gib(8)),
        _ => false,
    }
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "cpu",
    "memory",
    "port",
    "desired_count",
    "health_check_path",
    "path_patterns",
    "environment",
    "secrets",
    "deployment",
    "autoscaling",
];

fn services(
    r: &mut Reader<'_>,
    n: &Node<'_>,
    repos: Option<&BTreeMap<String, Repository>>,
    lb: Option<&LoadBalancer>,
    lb_given: bool,
    region: Option<&str>,
) -> Option<BTreeMap<String, Service>> {
    let f = r.open_mapping(n)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    // (pattern, service, span) for duplicate detection; services on the default action.
    let mut paths: HashMap<String, String> = HashMap::new();
    let mut default_action: Option<String> = None;
    // Key spans, in file order, of services that get a target group and a listener rule.
    let (mut with_port, mut routed): (Vec<Span>, Vec<Span>) = (Vec::new(), Vec::new());
    for (name, key_span, value) in f.iter() {
        let valid = (1..=255).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            r.error(
                key_span,
                format!("service name `{name}` must start with a letter and use letters, digits, `-` and `_`"),
            );
            ok = false;
            continue;
        }
        match service(
            r,
            name,
            key_span,
            value,
            repos,
            lb,
            lb_given,
            region,
            &mut paths,
            &mut default_action,
        ) {
            Some(s) => {
                if s.port.is_some() && lb.is_some() {
                    with_port.push(key_span);
                    if !s.path_patterns.is_empty() {
                        routed.push(key_span);
                    }
                }
                out.insert(name.to_string(), s);
            }
            None => ok = false,
        }
    }
    // Quotas that grow with the file: refused here, with the line that crosses them, rather
    // than halfway through an apply.
    for (spans, quota, what) in [
        (
            &with_port,
            quotas::TARGET_GROUPS_PER_LOAD_BALANCER,
            "Target groups per Application Load Balancer",
        ),
        (
            &routed,
            quotas::RULES_PER_LOAD_BALANCER,
            "Rules per Application Load Balancer",
        ),
    ] {
        if let Some(&at) = spans.get(quota) {
            r.error_hint(
                at,
                format!(
                    "{} services here need one each of AWS's `{what}`, whose default quota is {quota}",
                    spans.len()
                ),
                "split the services across environments, or have the quota raised for the account",
            );
            ok = false;
        }
    }
    if let Some(at) = f
        .iter()
        .nth(quotas::SERVICES_PER_CLUSTER)
        .map(|(_, s, _)| s)
    {
        r.error(
            at,
            format!(
                "more than {} services: AWS's `Services per cluster` quota",
                quotas::SERVICES_PER_CLUSTER
            ),
        );
        ok = false;
    }
    ok.then_some(out)
}

/// AWS's default quotas for what grows with the file.
pub mod quotas {
    pub const TARGET_GROUPS_PER_LOAD_BALANCER: usize = 100;
    /// Listener rules, not counting the default ones.
    pub const RULES_PER_LOAD_BALANCER: usize = 100;
    pub const SERVICES_PER_CLUSTER: usize = 5000;
    /// Inbound (or outbound) rules per security group, per IP version.
    pub const RULES_PER_SECURITY_GROUP: usize = 60;
}

#[allow(clippy::too_many_arguments)]
fn service(
    r: &mut Reader<'_>,
    name: &str,
    key_span: Span,
    n: &Node<'_>,
    repos: Option<&BTreeMap<String, Repository>>,
    lb: Option<&LoadBalancer>,
    lb_given: bool,
    region: Option<&str>,
    paths: &mut HashMap<String, String>,
    default_action: &mut Option<String>,
) -> Option<Service> {
    let f = r.mapping(n, SERVICE_KEYS)?;
    let image = r.require(&f, "image").and_then(|n| image(r, n, repos));
    let cpu_node = r.require(&f, "cpu");
    let cpu = cpu_node.and_then(|n| r.int(n, 256, 16384).map(|v| v as u32));
    let memory_node = r.require(&f, "memory");
    let memory = memory_node.and_then(|n| r.int(n, 512, 122880).map(|v| v as u32));
    if let (Some(c), Some(m), Some(mn)) = (cpu, memory, memory_node)
        && !fargate_memory_ok(c, m)
    {
        r.error_hint(
                mn.span,
                format!("Fargate has no task size with cpu {c} and memory {m}"),
                "cpu 256 takes 512, 1024 or 2048; cpu 512 takes 1024-4096; cpu 1024 takes 2048-8192; cpu 2048 takes 4096-16384; cpu 4096 takes 8192-30720 (steps of 1024)",
            );
    }
    let port_node = f.get("port");
    let port = match port_node {
        Some(p) => port(r, p).map(Some),
        None => Some(None),
    };
    if let (Some(Some(_)), Some(pn)) = (port, port_node)
        && !lb_given
    {
        r.error_hint(
            pn.span,
            format!("service `{name}` has a port but the environment has no `load_balancer`"),
            "add `load_balancer: {}` to use the defaults",
        );
    }
    let desired_count = f
        .get("desired_count")
        .map(|n| r.int(n, 0, 5000).map(|v| v as u32))
        .unwrap_or(Some(1));
    let health_check_path = match f.get("health_check_path") {
        Some(n) => r.string(n).and_then(|p| {
            if !p.starts_with('/') || p.len() > 1024 {
                r.error(
                    n.span,
                    format!("health check path `{p}` must start with `/`"),
                );
                return None;
            }
            Some(p)
        }),
        None => Some("/".to_string()),
    };
    let path_patterns = match f.get("path_patterns") {
        None => Some(Vec::new()),
        Some(list) => r.sequence(list).map(|items| {
            let mut out = Vec::new();
            for item in items {
                let Some(p) = r.string(item) else { continue };
                if !p.starts_with('/') || p.len() > 128 {
                    r.error(
                        item.span,
                        format!(
                            "path pattern `{p}` must start with `/` and be at most 128 characters"
                        ),
                    );
                    continue;
                }
                if let Some(other) = paths.get(&p) {
                    r.error(
                        item.span,
                        format!("path pattern `{p}` is already routed to service `{other}`"),
                    );
                    continue;
                }
                paths.insert(p.clone(), name.to_string());
                out.push(p);
            }
            if items.len() > 5 {
                r.error(list.span, "an ALB rule takes at most 5 path patterns");
            }
            out
        }),
    };
    if let (Some(Some(_)), Some(patterns)) = (port, &path_patterns)
        && patterns.is_empty()
        && lb.is_some()
    {
        if let Some(other) = default_action.as_ref() {
            r.error_hint(
                    key_span,
                    format!("services `{other}` and `{name}` both have a port and no `path_patterns`; only one can take the listener's default action"),
                    "give one of them `path_patterns`",
                );
        } else {
            *default_action = Some(name.to_string());
        }
    }
    let environment = f
        .get("environment")
        .map(|n| env_vars(r, n))
        .unwrap_or_default();
    let secrets = f
        .get("secrets")
        .map(|n| secrets(r, n, region))
        .unwrap_or_default();
    if let Some(dup) = secrets.keys().find(|k| environment.contains_key(*k)) {
        let at = f.get("secrets").map(|n| n.span).unwrap_or(f.span);
        r.error(
            at,
            format!("`{dup}` is both an environment variable and a secret"),
        );
    }
    let deployment = match f.get("deployment") {
        Some(n) => deployment(r, n),
        None => Some(Deployment {
            strategy: Strategy::Rolling,
            min_healthy_percent: 100,
            max_percent: 200,
            circuit_breaker: CircuitBreaker::Rollback,
            bake_minutes: 0,
            canary_percent: None,
            step_percent: None,
        }),
    };
    let autoscaling = match f.get("autoscaling") {
        Some(n) => autoscaling(r, n, desired_count).map(Some),
        None => Some(None),
    };
    Some(Service {
        image: image?,
        cpu: cpu?,
        memory: memory?,
        port: port?,
        desired_count: desired_count?,
        health_check_path: health_check_path?,
        path_patterns: path_patterns?,
        environment,
        secrets,
        deployment: deployment?,
        autoscaling: autoscaling?,
    })
}

fn image(
    r: &mut Reader<'_>,
    n: &Node<'_>,
    repos: Option<&BTreeMap<String, Repository>>,
) -> Option<Image> {
    let text = r.string(n)?;
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        r.error(n.span, format!("`{text}` is not an image reference"));
        return None;
    }
    // A full reference has a registry or a namespace: anything with a `/`.
    if text.contains('/') {
        return Some(Image::External(text));
    }
    let (key, tag) = match text.split_once(':') {
        Some((k, t)) => (k, t),
        None => (text.as_str(), "latest"),
    };
    if tag.is_empty() || tag.len() > 128 {
        r.error(n.span, format!("`{text}` has an empty or too long tag"));
        return None;
    }
    if repos.is_some_and(|repos| repos.contains_key(key)) {
        return Some(Image::Repository {
            key: key.to_string(),
            tag: tag.to_string(),
        });
    }
    let known: Vec<&str> = repos
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default();
    r.error_hint(
        n.span,
        format!("image `{text}` names repository `{key}`, which is not in `repositories`"),
        if known.is_empty() {
            format!("add `repositories: {{{key}: {{}}}}`, or write a full reference such as `docker.io/library/{text}`")
        } else {
            format!("known repositories: {}; or write a full reference such as `docker.io/library/{text}`", known.join(", "))
        },
    );
    None
}

fn env_vars(r: &mut Reader<'_>, n: &Node<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(f) = r.open_mapping(n) else {
        return out;
    };
    for (key, key_span, value) in f.iter() {
        if !valid_env_name(key) {
            r.error(
                key_span,
                format!("`{key}` is not a valid environment variable name"),
            );
            continue;
        }
        if let Some(v) = r.scalar_string(value) {
            out.insert(key.to_string(), v);
        }
    }
    out
}

fn valid_env_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn secrets(r: &mut Reader<'_>, n: &Node<'_>, region: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(f) = r.open_mapping(n) else {
        return out;
    };
    for (key, key_span, value) in f.iter() {
        if !valid_env_name(key) {
            r.error(
                key_span,
                format!("`{key}` is not a valid environment variable name"),
            );
            continue;
        }
        let Some(arn) = r.string(value) else { continue };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && matches!(parts[2], "secretsmanager" | "ssm")
            && !parts[5].is_empty();
        if !ok {
            r.error(
                value.span,
                format!("secret `{key}` must be a Secrets Manager or SSM parameter ARN"),
            );
            continue;
        }
        if let Some(region) = region
            && parts[3] != region
        {
            r.error(
                value.span,
                format!(
                    "secret `{key}` is in region `{}`, not the environment's `{region}`",
                    parts[3]
                ),
            );
            continue;
        }
        out.insert(key.to_string(), arn);
    }
    out
}

fn deployment(r: &mut Reader<'_>, n: &Node<'_>) -> Option<Deployment> {
    let f = r.mapping(
        n,
        &[
            "strategy",
            "min_healthy_percent",
            "max_percent",
            "circuit_breaker",
            "bake_minutes",
            "canary_percent",
            "step_percent",
        ],
    )?;
    let strategy = f
        .get("strategy")
        .map(|n| {
            r.choice(
                n,
                &[
                    ("rolling", Strategy::Rolling),
                    ("blue_green", Strategy::BlueGreen),
                    ("canary", Strategy::Canary),
                    ("linear", Strategy::Linear),
                ],
            )
        })
        .unwrap_or(Some(Strategy::Rolling));
    let min = f
        .get("min_healthy_percent")
        .map(|n| r.int(n, 0, 100).map(|v| v as u32))
        .unwrap_or(Some(100));
    let max = f
        .get("max_percent")
        .map(|n| r.int(n, 100, 200).map(|v| v as u32))
        .unwrap_or(Some(200));
    if let (Some(lo), Some(hi)) = (min, max)
        && lo == 100
        && hi == 100
    {
        let at = f.get("max_percent").map(|n| n.span).unwrap_or(f.span);
        r.error(
            at,
            "min_healthy_percent 100 with max_percent 100 leaves ECS no room to deploy",
        );
    }
    let cb = f
        .get("circuit_breaker")
        .map(|n| {
            r.choice(
                n,
                &[
                    ("off", CircuitBreaker::Off),
                    ("on", CircuitBreaker::On),
                    ("rollback", CircuitBreaker::Rollback),
                ],
            )
        })
        .unwrap_or(Some(CircuitBreaker::Rollback));
    let bake = f
        .get("bake_minutes")
        .map(|n| r.int(n, 0, 1440).map(|v| v as u32));
    let canary = f
        .get("canary_percent")
        .map(|n| (n, r.number(n, 0.1, 100.0)));
    let step = f.get("step_percent").map(|n| (n, r.number(n, 3.0, 100.0)));
    if let Some(s) = strategy {
        if let (Some(b), true) = (f.get("bake_minutes"), s == Strategy::Rolling) {
            r.error(
                b.span,
                "`bake_minutes` applies to blue_green, canary and linear, not rolling",
            );
        }
        if let Some((cn, _)) = canary.filter(|_| s != Strategy::Canary) {
            r.error(
                cn.span,
                "`canary_percent` applies only to `strategy: canary`",
            );
        }
        if let Some((sn, _)) = step.filter(|_| s != Strategy::Linear) {
            r.error(sn.span, "`step_percent` applies only to `strategy: linear`");
        }
        if s == Strategy::Canary && canary.is_none() {
            r.error(f.span, "`strategy: canary` needs `canary_percent`");
        }
        if s == Strategy::Linear && step.is_none() {
            r.error(f.span, "`strategy: linear` needs `step_percent`");
        }
    }
    Some(Deployment {
        strategy: strategy?,
        min_healthy_percent: min?,
        max_percent: max?,
        circuit_breaker: cb?,
        bake_minutes: bake.unwrap_or(Some(0))?,
        canary_percent: canary.map(|(_, v)| v).transpose_opt()?,
        step_percent: step.map(|(_, v)| v).transpose_opt()?,
    })
}

/// `Option<Option<T>>` where the inner `None` means "invalid": `Some(None)` → fail.
trait TransposeOpt<T> {
    fn transpose_opt(self) -> Option<Option<T>>;
}

impl<T> TransposeOpt<T> for Option<Option<T>> {
    fn transpose_opt(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        }
    }
}

fn autoscaling(r: &mut Reader<'_>, n: &Node<'_>, desired: Option<u32>) -> Option<Autoscaling> {
    let f = r.mapping(n, &["min", "max", "cpu_percent"])?;
    let min = r
        .require(&f, "min")
        .and_then(|n| r.int(n, 0, 5000).map(|v| v as u32));
    let max = r
        .require(&f, "max")
        .and_then(|n| r.int(n, 1, 5000).map(|v| v as u32));
    let cpu = f
        .get("cpu_percent")
        .map(|n| r.int(n, 1, 100).map(|v| v as u32))
        .unwrap_or(Some(70));
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            r.error(f.span, format!("autoscaling min {lo} is above max {hi}"));
            return None;
        }
        if let Some(d) = desired.filter(|d| !(lo..=hi).contains(d)) {
            r.error(
                f.span,
                format!("desired_count {d} is outside autoscaling min {lo} .. max {hi}"),
            );
            return None;
        }
    }
    Some(Autoscaling {
        min: min?,
        max: max?,
        cpu_percent: cpu?,
    })
}
