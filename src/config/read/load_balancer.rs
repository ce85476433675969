//! `load_balancer`: listeners, HTTPS, ingress and the checks on the security group it implies.

use super::*;

pub(super) fn load_balancer(r: &mut Reader<'_>, n: &Node<'_>) -> Option<LoadBalancer> {
    let f = r.mapping(n, &keys(schema::LOAD_BALANCER))?;
    let http_port = f.get("http_port").map(|n| port(r, n)).unwrap_or(Some(80));
    let https = match f.get("https") {
        None => Some(None),
        Some(h) => (|| {
            let hf = r.mapping(h, &keys(schema::HTTPS))?;
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
