//! `network`: the VPC, its zones, public and private subnets, and the NAT mode.

use super::*;

pub(super) fn network(r: &mut Reader<'_>, n: &Node<'_>, region: Option<&str>) -> Option<Network> {
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
