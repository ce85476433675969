//! Reading each section of the environment file into the typed model, with every check that can be
//! made offline. Cross-field checks live next to the fields they relate, so each error points at the
//! value that is wrong. This file reads the top level, `state` and the helpers every section
//! shares; each other section has its own file.

use std::collections::{BTreeMap, HashMap};

use ipnet::{IpNet, Ipv4Net};
use saphyr_parser::Span;

use super::schema::{self, keys};
use super::yaml::{Node, Reader};
use super::*;

mod databases;
mod load_balancer;
mod network;
mod platform;
mod services;

use load_balancer::load_balancer;
use network::network;
use platform::{cluster, repositories};
#[cfg(test)]
pub use services::fargate_memory_ok;
use services::services;

pub(super) fn environment(r: &mut Reader<'_>, doc: &Node<'_>, stem: &str) -> Option<Environment> {
    let top = r.mapping(doc, &keys(schema::TOP))?;

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
    let usage = match top.get("usage") {
        Some(n) => usage(r, n),
        None => Some(Usage::default()),
    };
    let alarms = top.get("alarms").map(|n| alarms(r, n));
    let lint_accept = top
        .get("lint")
        .map(|n| lint(r, n))
        .unwrap_or_else(|| Some(BTreeMap::new()));
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
                top.get("alarms").is_some(),
                region.as_deref(),
            )
        })
        .unwrap_or_else(|| Some(BTreeMap::new()));

    let databases = match top.get("databases") {
        Some(n) => {
            let dbs = databases::databases(r, n, protect.unwrap_or(false));
            if let (Some(d), Some(net)) = (&dbs, &network)
                && !d.is_empty()
            {
                databases::check_subnets(r, n.span, net);
            }
            dbs
        }
        None => Some(BTreeMap::new()),
    };
    if let (Some(dbs), Some(sn)) = (&databases, top.get("services")) {
        databases::check_uses(r, sn, dbs);
    }

    let bastion = match top.get("bastion") {
        Some(n) => {
            let b = databases::bastion(r, n, protect.unwrap_or(false)).map(Some);
            if let Some(Network::Existing(e)) = &network
                && e.public_subnet_ids.is_empty()
            {
                r.error_hint(
                    n.span,
                    "a bastion goes in a public subnet, and `network.existing` names none",
                    "add `public_subnet_ids`, or remove `bastion`",
                );
            }
            b
        }
        None => Some(None),
    };

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
        databases: databases?,
        bastion: bastion?,
        lint_accept: lint_accept?,
        usage: usage?,
        alarms: match alarms {
            Some(a) => Some(a?),
            None => None,
        },
        source: Source::default(),
    })
}

/// `usage: {nat_gb_per_month, alb_lcu, log_gb_per_month}`, each defaulted.
fn usage(r: &mut Reader<'_>, n: &Node<'_>) -> Option<Usage> {
    let f = r.mapping(n, &keys(schema::USAGE))?;
    let d = Usage::default();
    let mut num = |key: &str, default: f64, max: f64| match f.get(key) {
        Some(v) => r.number(v, 0.0, max),
        None => Some(default),
    };
    let nat = num("nat_gb_per_month", d.nat_gb_per_month, 1_000_000.0);
    let lcu = num("alb_lcu", d.alb_lcu, 100_000.0);
    let logs = num("log_gb_per_month", d.log_gb_per_month, 1_000_000.0);
    Some(Usage {
        nat_gb_per_month: nat?,
        alb_lcu: lcu?,
        log_gb_per_month: logs?,
    })
}

/// `alarms: {notify, alb_5xx_percent, target_response_ms, cpu_percent, memory_percent,
/// nat_errors}`, thresholds defaulted; every address checked and listed once.
fn alarms(r: &mut Reader<'_>, n: &Node<'_>) -> Option<Alarms> {
    let f = r.mapping(n, &keys(schema::ALARMS))?;
    let mut notify = Vec::new();
    let mut ok = true;
    if let Some(list) = f.get("notify") {
        for item in r.sequence(list)? {
            let Some(address) = r.string(item) else {
                ok = false;
                continue;
            };
            if !email_like(&address) {
                r.error(
                    item.span,
                    format!("`{address}` is not an email address (like ops@example.com)"),
                );
                ok = false;
            } else if notify.contains(&address) {
                r.error(item.span, format!("`{address}` is listed twice"));
                ok = false;
            } else {
                notify.push(address);
            }
        }
    }
    let mut num = |key: &str, default: f64, min: f64, max: f64| match f.get(key) {
        Some(v) => r.number(v, min, max),
        None => Some(default),
    };
    let five = num("alb_5xx_percent", Alarms::DEFAULT_5XX_PERCENT, 0.1, 100.0);
    let cpu = num("cpu_percent", Alarms::DEFAULT_CPU_PERCENT, 1.0, 100.0);
    let memory = num("memory_percent", Alarms::DEFAULT_MEMORY_PERCENT, 1.0, 100.0);
    let mut int = |key: &str, default: u32, min: i64, max: i64| match f.get(key) {
        Some(v) => r.int(v, min, max).map(|v| v as u32),
        None => Some(default),
    };
    let latency = int(
        "target_response_ms",
        Alarms::DEFAULT_RESPONSE_MS,
        1,
        600_000,
    );
    let nat = int("nat_errors", Alarms::DEFAULT_NAT_ERRORS, 0, 1_000_000_000);
    ok.then_some(())?;
    Some(Alarms {
        notify,
        alb_5xx_percent: five?,
        target_response_ms: latency?,
        cpu_percent: cpu?,
        memory_percent: memory?,
        nat_errors: nat?,
    })
}

/// `local@domain.tld`, without spaces: what SNS takes as an email endpoint.
fn email_like(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
}

/// `lint: {accept: {RULE_ID: "reason"}}`: findings the file accepts, each with its reason.
fn lint(r: &mut Reader<'_>, n: &Node<'_>) -> Option<BTreeMap<String, String>> {
    let f = r.mapping(n, &keys(schema::LINT))?;
    let mut out = BTreeMap::new();
    let Some(accept) = f.get("accept") else {
        return Some(out);
    };
    let entries = r.open_mapping(accept)?;
    let mut ok = true;
    for (rule, span, value) in entries.iter() {
        if !crate::lint::RULES.iter().any(|r| r.id == rule) {
            let known: Vec<&str> = crate::lint::RULES.iter().map(|r| r.id).collect();
            r.error_hint(
                span,
                format!("unknown lint rule `{rule}`"),
                format!("rules: {}", known.join(", ")),
            );
            ok = false;
            continue;
        }
        match r.string(value) {
            Some(reason) if !reason.trim().is_empty() => {
                out.insert(rule.to_string(), reason);
            }
            Some(_) => {
                r.error(value.span, "say why the finding is accepted");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
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
    let f = r.mapping(n, &keys(schema::STATE))?;
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
            let f = r.mapping(s3, &keys(schema::S3))?;
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
            let kms_key_id = match f.get("kms_key_id") {
                None => Some(None),
                Some(k) => r.string(k).and_then(|id| {
                    // A key ARN, an alias ARN, `alias/NAME`, or a key id.
                    let ok = (id.starts_with("arn:") && id.contains(":kms:"))
                        || id.starts_with("alias/")
                        || (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
                    if !ok {
                        r.error(
                            k.span,
                            format!("`{id}` is not a KMS key (a key or alias ARN, `alias/NAME`, or a key id)"),
                        );
                        return None;
                    }
                    Some(Some(id))
                }),
            };
            Some(StateConfig::S3 {
                bucket: bucket?,
                key,
                kms_key_id: kms_key_id?,
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

fn port(r: &mut Reader<'_>, n: &Node<'_>) -> Option<u16> {
    r.int(n, 1, 65535).map(|p| p as u16)
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
