//! `databases`: RDS PostgreSQL instances in the database subnets, and the services that use them.

use super::*;

pub(super) fn databases(
    r: &mut Reader<'_>,
    n: &Node<'_>,
    protect: bool,
) -> Option<BTreeMap<String, Database>> {
    let f = r.open_mapping(n)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, span, node) in f.iter() {
        let valid = (1..=30).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            r.error(
                span,
                format!("database `{name}` must be 1-30 of a-z and 0-9, starting with a letter (it names the PostgreSQL database)"),
            );
            ok = false;
            continue;
        }
        match database(r, node, protect) {
            Some(d) => {
                out.insert(name.to_string(), d);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn database(r: &mut Reader<'_>, n: &Node<'_>, protect: bool) -> Option<Database> {
    let f = r.mapping(n, &keys(schema::DATABASE))?;
    let version = match f.get("version") {
        None => Some("16".to_string()),
        Some(v) => r.scalar_string(v).and_then(|text| {
            let major: Option<u32> = text.parse().ok();
            if major.is_some_and(|m| (13..=17).contains(&m)) {
                Some(text)
            } else {
                r.error(
                    v.span,
                    format!(
                        "PostgreSQL version `{text}` is not a major version RDS offers (13 to 17)"
                    ),
                );
                None
            }
        }),
    };
    let instance_class = match f.get("instance_class") {
        None => Some("db.t4g.micro".to_string()),
        Some(v) => r.string(v).and_then(|c| {
            let ok = c.strip_prefix("db.").is_some_and(|rest| {
                rest.split('.').count() == 2
                    && rest
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.')
            });
            if ok {
                Some(c)
            } else {
                r.error(
                    v.span,
                    format!("`{c}` is not an RDS instance class (they look like db.t4g.micro)"),
                );
                None
            }
        }),
    };
    let storage_gb = f
        .get("storage_gb")
        .map(|v| r.int(v, 20, 65536).map(|g| g as u32))
        .unwrap_or(Some(20));
    let multi_az = f
        .get("multi_az")
        .map(|v| r.boolean(v))
        .unwrap_or(Some(protect));
    let backup_retention_days = f
        .get("backup_retention_days")
        .map(|v| r.int(v, 1, 35).map(|d| d as u32))
        .unwrap_or(Some(7));
    Some(Database {
        version: version?,
        instance_class: instance_class?,
        storage_gb: storage_gb?,
        multi_az: multi_az?,
        backup_retention_days: backup_retention_days?,
    })
}

/// What databases need of the network: subnets in two zones at least (RDS places a subnet
/// group only across two).
pub(super) fn check_subnets(r: &mut Reader<'_>, at: Span, network: &Network) {
    let (count, what) = match network {
        Network::Managed(m) => (m.database_subnets.len(), "network.database_subnets"),
        Network::Existing(e) => (
            e.database_subnet_ids.len(),
            "network.existing.database_subnet_ids",
        ),
    };
    if count < 2 {
        r.error_hint(
            at,
            format!("databases need database subnets in two zones at least; `{what}` has {count}"),
            format!("add `{what}` with one per zone (a database is never placed in the public or the services' subnets)"),
        );
    }
}

/// Every name a service's `uses` lists is a database of the file. (What is malformed about the
/// services themselves was said when they were read: it is not said again here.)
pub(super) fn check_uses(
    r: &mut Reader<'_>,
    services: &Node<'_>,
    databases: &BTreeMap<String, Database>,
) {
    let quiet = r.errors.len();
    let mut used: Vec<(String, String, Span)> = Vec::new();
    if let Some(f) = r.open_mapping(services) {
        for (service, _, node) in f.iter() {
            let list = r.open_mapping(node).and_then(|s| s.get("uses"));
            for item in list.and_then(|l| r.sequence(l)).unwrap_or_default() {
                if let Some(db) = r.string(item) {
                    used.push((service.to_string(), db, item.span));
                }
            }
        }
    }
    r.errors.truncate(quiet);
    let known: Vec<&str> = databases.keys().map(String::as_str).collect();
    for (service, db, span) in used {
        if !databases.contains_key(&db) {
            r.error_hint(
                span,
                format!(
                    "service `{service}` uses database `{db}`, which `databases` does not have"
                ),
                if known.is_empty() {
                    "add it under `databases`".to_string()
                } else {
                    format!("databases are: {}", known.join(", "))
                },
            );
        }
    }
}

/// `bastion: {instance_type, access, ssh_cidrs, key_name}`.
pub(super) fn bastion(r: &mut Reader<'_>, n: &Node<'_>, protect: bool) -> Option<Bastion> {
    let f = r.mapping(n, &keys(schema::BASTION))?;
    let instance_type = match f.get("instance_type") {
        None => Some("t3.micro".to_string()),
        Some(v) => r.string(v).and_then(|t| {
            let ok = t.split_once('.').is_some_and(|(family, size)| {
                !family.is_empty()
                    && !size.is_empty()
                    && t.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                    })
            });
            if ok {
                Some(t)
            } else {
                r.error(
                    v.span,
                    format!("`{t}` is not an EC2 instance type (they look like t3.micro)"),
                );
                None
            }
        }),
    };
    let ssh = match f.get("access") {
        None => Some(false),
        Some(v) => r.choice(v, &[("ssm", false), ("ssh", true)]),
    };
    let access = match ssh? {
        false => {
            for key in ["ssh_cidrs", "key_name"] {
                if let Some(v) = f.get(key) {
                    r.error(
                        v.span,
                        format!("`{key}` is for `access: ssh`; Session Manager opens no port and needs no key"),
                    );
                    return None;
                }
            }
            Some(BastionAccess::Ssm)
        }
        true => {
            let cidrs = r.require(&f, "ssh_cidrs").and_then(|list| {
                let items = r.sequence(list)?;
                if items.is_empty() {
                    r.error(
                        list.span,
                        "`ssh_cidrs` is empty: nobody could reach the bastion",
                    );
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match r.string(item).map(|t| (t.parse::<IpNet>(), t)) {
                        Some((Ok(net), _)) if protect && net.prefix_len() == 0 => {
                            r.error_hint(
                                item.span,
                                format!("{net} opens SSH to the whole internet, in a protected environment"),
                                "list the blocks operators connect from, or use `access: ssm`",
                            );
                            ok = false;
                        }
                        Some((Ok(net), _)) => out.push(net),
                        Some((Err(_), t)) => {
                            r.error(item.span, format!("`{t}` is not a CIDR block"));
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            });
            let key_name = r.require(&f, "key_name").and_then(|k| r.string(k));
            Some(BastionAccess::Ssh {
                cidrs: cidrs?,
                key_name: key_name?,
            })
        }
    };
    Some(Bastion {
        instance_type: instance_type?,
        access: access?,
    })
}
