//! `network`: the VPC, its zones, public and private subnets, and the NAT mode; or `existing`,
//! a VPC and subnets someone else owns.

use super::*;
use crate::config::yaml::Fields;

/// What a network infra builds is made of; none of it goes with `existing`.
const MANAGED: [&str; 6] = [
    "cidr",
    "availability_zones",
    "public_subnets",
    "private_subnets",
    "database_subnets",
    "nat",
];

pub(super) fn network(r: &mut Reader<'_>, n: &Node<'_>, region: Option<&str>) -> Option<Network> {
    let f = r.mapping(n, &keys(schema::NETWORK))?;
    if let Some(e) = f.get("existing") {
        let mut ok = true;
        for (key, span, _) in f.iter() {
            if MANAGED.contains(&key) {
                r.error_hint(
                    span,
                    format!("`{key}` cannot be given with `existing`: infra does not build or change a network someone else owns"),
                    "remove it; the VPC's CIDR and the subnets' zones are read from AWS at plan time",
                );
                ok = false;
            }
        }
        let existing = existing(r, e);
        return ok.then_some(Network::Existing(existing?));
    }
    managed(r, &f, region).map(Network::Managed)
}

/// `existing: {vpc_id, public_subnet_ids, private_subnet_ids, database_subnet_ids}`.
fn existing(r: &mut Reader<'_>, n: &Node<'_>) -> Option<ExistingNetwork> {
    let f = r.mapping(n, &keys(schema::EXISTING))?;
    let vpc_id = r.require(&f, "vpc_id").and_then(|v| {
        let id = r.string(v)?;
        aws_id(&id, "vpc-").then_some(id.clone()).or_else(|| {
            r.error(
                v.span,
                format!("`{id}` is not a VPC id (they look like vpc-0abc1234)"),
            );
            None
        })
    });
    let mut seen: Vec<String> = Vec::new();
    let mut ids = |r: &mut Reader<'_>, key: &str, required: bool| -> Option<Vec<String>> {
        let node = match f.get(key) {
            Some(node) => node,
            None if required => {
                r.require(&f, key);
                return None;
            }
            None => return Some(Vec::new()),
        };
        let items = r.sequence(node)?;
        if required && items.is_empty() {
            r.error(node.span, format!("`{key}` needs at least one subnet id"));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(id) = r.string(item) else {
                ok = false;
                continue;
            };
            if !aws_id(&id, "subnet-") {
                r.error(
                    item.span,
                    format!("`{id}` is not a subnet id (they look like subnet-0abc1234)"),
                );
                ok = false;
            } else if seen.contains(&id) {
                r.error(item.span, format!("subnet `{id}` is listed twice"));
                ok = false;
            } else {
                seen.push(id.clone());
                out.push(id);
            }
        }
        ok.then_some(out)
    };
    let public_subnet_ids = ids(r, "public_subnet_ids", false);
    let private_subnet_ids = ids(r, "private_subnet_ids", true);
    let database_subnet_ids = ids(r, "database_subnet_ids", false);
    Some(ExistingNetwork {
        vpc_id: vpc_id?,
        public_subnet_ids: public_subnet_ids?,
        private_subnet_ids: private_subnet_ids?,
        database_subnet_ids: database_subnet_ids?,
    })
}

/// Whether `id` looks like an EC2 id with this prefix: 8 or 17 hex digits.
fn aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

fn managed(r: &mut Reader<'_>, f: &Fields<'_>, region: Option<&str>) -> Option<ManagedNetwork> {
    let vpc = r.require(f, "cidr").and_then(|c| {
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
    let zones_node = r.require(f, "availability_zones");
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
        let node = match f.get(key) {
            // Database subnets are for databases: none, unless the file has some.
            None if key == "database_subnets" => return Some(Vec::new()),
            _ => r.require(f, key)?,
        };
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
            seen.push((net, key.trim_end_matches("_subnets")));
            out.push(net);
        }
        (ok && (!zones_ok || items.len() == zones.len())).then_some(out)
    };
    let public_subnets = subnets(r, "public_subnets");
    let private_subnets = subnets(r, "private_subnets");
    let database_subnets = subnets(r, "database_subnets");

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
    Some(ManagedNetwork {
        cidr: vpc?,
        availability_zones: zones_ok.then_some(zones)?,
        public_subnets: public_subnets?,
        private_subnets: private_subnets?,
        database_subnets: database_subnets?,
        nat: nat?,
    })
}
