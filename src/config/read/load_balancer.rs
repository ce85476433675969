//! `load_balancer`: listeners, HTTPS, ingress and the checks on the security group it implies.

use super::*;

pub(super) fn load_balancer(r: &mut Reader<'_>, n: &Node<'_>) -> Option<LoadBalancer> {
    let f = r.mapping(n, &keys(schema::LOAD_BALANCER))?;
    let http_port = f.get("http_port").map(|n| port(r, n)).unwrap_or(Some(80));
    let domain = match f.get("domain") {
        None => Some(None),
        Some(d) => domain(r, d).map(Some),
    };
    let has_domain = f.get("domain").is_some();
    let https = match f.get("https") {
        // A domain gets HTTPS on 443 with the certificate infra requests for it.
        None if has_domain => Some(Some(Https {
            port: 443,
            certificate_arn: None,
        }))
        .filter(|_| http_port != Some(443))
        .or_else(|| {
            let at = f.get("http_port").map(|n| n.span).unwrap_or(f.span);
            r.error(at, "HTTP port 443 is the HTTPS port a domain gets; choose another, or set `https.port`");
            None
        }),
        None => Some(None),
        Some(h) => (|| {
            let hf = r.mapping(h, &keys(schema::HTTPS))?;
            let port = hf.get("port").map(|n| port(r, n)).unwrap_or(Some(443));
            let cert = match hf.get("certificate_arn") {
                None if has_domain => Some(None),
                None => {
                    r.error_hint(
                        hf.span,
                        "`https` needs `certificate_arn`",
                        "give the ARN of an issued ACM certificate, or set `load_balancer.domain` and infra requests and validates one",
                    );
                    None
                }
                Some(c) => (|| {
                    let arn = r.string(c)?;
                    if !(arn.starts_with("arn:") && arn.contains(":certificate/")) {
                        r.error(
                            c.span,
                            format!("`{arn}` is not a certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"),
                        );
                        return None;
                    }
                    Some(Some(arn))
                })(),
            };
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
        domain: domain?,
        ingress_cidrs: ingress_cidrs?,
        idle_timeout_seconds: idle?,
        deletion_protection: deletion_protection?,
    })
}

/// `load_balancer.domain`: every name a valid DNS name inside the zone, none twice.
fn domain(r: &mut Reader<'_>, n: &Node<'_>) -> Option<Domain> {
    let f = r.mapping(n, &keys(schema::DOMAIN))?;
    let zone = r.require(&f, "zone").and_then(|z| dns_name(r, z, false));
    let mut names = Vec::new();
    if let Some(node) = r.require(&f, "name") {
        names.push(node);
    }
    let mut aliases_ok = true;
    if let Some(list) = f.get("aliases") {
        match r.sequence(list) {
            Some(items) => names.extend(items.iter()),
            None => aliases_ok = false,
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut ok = aliases_ok && f.get("name").is_some();
    for node in names {
        let Some(name) = dns_name(r, node, true) else {
            ok = false;
            continue;
        };
        if out.contains(&name) {
            r.error(node.span, format!("{name} is listed twice"));
            ok = false;
            continue;
        }
        if let Some(zone) = &zone
            && !(name == *zone || name.ends_with(&format!(".{zone}")))
        {
            r.error_hint(
                node.span,
                format!("{name} is not inside the zone {zone}"),
                "every name must be the zone itself or end with `.ZONE`; use a zone that holds it",
            );
            ok = false;
            continue;
        }
        out.push(name);
    }
    if !ok {
        return None;
    }
    let mut names = out.into_iter();
    Some(Domain {
        name: names.next()?,
        zone: zone?,
        aliases: names.collect(),
    })
}

/// A DNS name as infra keeps it: lower case, no trailing dot; labels of letters, digits and
/// hyphens (1–63 characters, no hyphen at either end), 253 characters at most, two labels at
/// least. `wildcard`: a leading `*.` label is allowed.
fn dns_name(r: &mut Reader<'_>, n: &Node<'_>, wildcard: bool) -> Option<String> {
    let text = r.string(n)?;
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let body = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => &name,
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() > 253 || body.split('.').count() < 2 || !body.split('.').all(label_ok) {
        r.error(
            n.span,
            format!("`{text}` is not a DNS name (labels of letters, digits and hyphens, like app.example.com)"),
        );
        return None;
    }
    Some(name)
}
