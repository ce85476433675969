//! What an environment costs a month: a price table shipped with the tool (dated, its source
//! named), and lines priced from a set of resources — the file's desired graph, or what state
//! recorded — so a plan can say what it changes. Pure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::Usage;
use crate::model::Kind;

/// When the table was compiled, and from where. `table_is_fresh` fails once it is older than
/// `MAX_AGE_DAYS`, so it gets checked against AWS's pages again.
pub const PRICES_DATE: &str = "2026-12-03";
pub const PRICES_SOURCE: &str = "AWS's published on-demand prices (aws.amazon.com/vpc/pricing, /elasticloadbalancing/pricing, /fargate/pricing, /cloudwatch/pricing, /ecr/pricing, /rds/postgresql/pricing, /ec2/pricing), Linux, per region";
pub const MAX_AGE_DAYS: i64 = 365;

/// A month, as AWS prices it.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What each repository is assumed to store (images are not priced by the file).
pub const ECR_GB_PER_REPOSITORY: f64 = 1.0;

/// Prices in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub nat_hour: f64,
    pub nat_gb: f64,
    pub alb_hour: f64,
    pub alb_lcu_hour: f64,
    pub fargate_vcpu_hour: f64,
    pub fargate_gb_hour: f64,
    pub fargate_arm_vcpu_hour: f64,
    pub fargate_arm_gb_hour: f64,
    /// A public IPv4 address (an Elastic IP, each of the load balancer's zones).
    pub ipv4_hour: f64,
    pub logs_ingest_gb: f64,
    pub logs_storage_gb_month: f64,
    pub ecr_gb_month: f64,
    /// A standard-resolution alarm, per metric it reads (metric math alarms read several).
    pub alarm_metric_month: f64,
    /// A dashboard (the first three of an account cost nothing; not counted here).
    pub dashboard_month: f64,
    /// RDS PostgreSQL single-AZ on-demand, per instance class (Multi-AZ costs twice).
    pub rds_hour: &'static [(&'static str, f64)],
    /// RDS general-purpose storage, per GB-month (Multi-AZ: twice).
    pub rds_storage_gb_month: f64,
    /// EC2 Linux on-demand, per instance type (the bastion).
    pub ec2_hour: &'static [(&'static str, f64)],
}

/// The price of `class` in `table`, if the table has it.
fn priced(table: &[(&str, f64)], class: &str) -> Option<f64> {
    table.iter().find(|(c, _)| *c == class).map(|(_, p)| *p)
}

const US: Prices = Prices {
    nat_hour: 0.045,
    nat_gb: 0.045,
    alb_hour: 0.0225,
    alb_lcu_hour: 0.008,
    fargate_vcpu_hour: 0.04048,
    fargate_gb_hour: 0.004445,
    fargate_arm_vcpu_hour: 0.03238,
    fargate_arm_gb_hour: 0.00356,
    ipv4_hour: 0.005,
    logs_ingest_gb: 0.50,
    logs_storage_gb_month: 0.03,
    ecr_gb_month: 0.10,
    alarm_metric_month: 0.10,
    dashboard_month: 3.00,
    rds_hour: &[
        ("db.t4g.micro", 0.016),
        ("db.t4g.small", 0.032),
        ("db.t4g.medium", 0.065),
        ("db.t4g.large", 0.129),
        ("db.t3.micro", 0.018),
        ("db.t3.small", 0.036),
        ("db.t3.medium", 0.072),
        ("db.m6g.large", 0.159),
        ("db.m7g.large", 0.168),
        ("db.r6g.large", 0.225),
    ],
    rds_storage_gb_month: 0.115,
    ec2_hour: &[
        ("t3.nano", 0.0052),
        ("t3.micro", 0.0104),
        ("t3.small", 0.0208),
        ("t4g.nano", 0.0042),
        ("t4g.micro", 0.0084),
        ("t4g.small", 0.0168),
    ],
};

const IRELAND: Prices = Prices {
    nat_hour: 0.048,
    nat_gb: 0.048,
    alb_hour: 0.0252,
    alb_lcu_hour: 0.008,
    logs_ingest_gb: 0.57,
    rds_hour: &[
        ("db.t4g.micro", 0.018),
        ("db.t4g.small", 0.035),
        ("db.t4g.medium", 0.071),
        ("db.t3.micro", 0.019),
        ("db.t3.small", 0.038),
        ("db.t3.medium", 0.076),
    ],
    rds_storage_gb_month: 0.127,
    ec2_hour: &[
        ("t3.nano", 0.0057),
        ("t3.micro", 0.0114),
        ("t3.small", 0.0228),
        ("t4g.nano", 0.0046),
        ("t4g.micro", 0.0092),
        ("t4g.small", 0.0184),
    ],
    ..US
};

/// The table: regions with their prices.
pub const TABLE: &[(&str, Prices)] = &[
    ("us-east-1", US),
    ("us-east-2", US),
    ("us-west-2", US),
    ("eu-west-1", IRELAND),
];

pub fn prices(region: &str) -> Option<&'static Prices> {
    TABLE.iter().find(|(r, _)| *r == region).map(|(_, p)| p)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Network,
    LoadBalancing,
    Compute,
    StorageAndLogs,
    Monitoring,
    Databases,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Network => "network",
            Group::LoadBalancing => "load balancing",
            Group::Compute => "compute",
            Group::StorageAndLogs => "storage/logs",
            Group::Monitoring => "monitoring",
            Group::Databases => "databases",
        }
    }
}

/// One priced line: a month's cost, a range when autoscaling decides (`max`), and the usage
/// assumption it rests on, if any.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Line {
    pub group: Group,
    pub resource: String,
    pub monthly: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
}

impl Line {
    fn new(group: Group, resource: impl Into<String>, monthly: f64) -> Line {
        Line {
            group,
            resource: resource.into(),
            monthly,
            monthly_max: None,
            usage: None,
        }
    }
}

/// Lines and totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Estimate {
    pub lines: Vec<Line>,
    pub monthly_total: f64,
    /// The total with every autoscaled service at its maximum (when that differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_total_max: Option<f64>,
}

/// A resource as the estimate sees it: its kind and attributes, known by its logical id and (once
/// it exists) its physical id, so references of either form join.
pub struct Priced<'a> {
    pub id: &'a str,
    pub physical_id: Option<&'a str>,
    pub kind: Kind,
    pub attrs: &'a Value,
}

/// The monthly estimate of `resources` at `prices`, with `usage` for what the file cannot say.
pub fn estimate(resources: &[Priced<'_>], prices: &Prices, usage: &Usage) -> Estimate {
    // Resources by logical and by physical id, and scalable targets by the service they scale.
    let mut index: BTreeMap<&str, &Priced<'_>> = BTreeMap::new();
    let mut scaled: BTreeMap<&str, &Priced<'_>> = BTreeMap::new();
    for r in resources {
        index.insert(r.id, r);
        if let Some(p) = r.physical_id {
            index.insert(p, r);
        }
        if r.kind == Kind::ScalableTarget
            && let Some(service) = r.attrs["resource_id"]
                .as_str()
                .and_then(|id| id.rsplit('/').next())
        {
            scaled.insert(service, r);
        }
    }
    let by_ref = |v: &Value| -> Option<&Priced<'_>> {
        match v {
            Value::Object(m) => index.get(m.get("ref")?.as_str()?).copied(),
            Value::String(s) => index.get(s.as_str()).copied(),
            _ => None,
        }
    };
    let month = HOURS_PER_MONTH;
    let mut lines = Vec::new();
    let mut nats = 0;
    let mut logs = 0;
    for r in resources {
        match r.kind {
            Kind::NatGateway => {
                nats += 1;
                lines.push(Line::new(Group::Network, r.id, prices.nat_hour * month));
            }
            Kind::ElasticIp => {
                lines.push(Line::new(Group::Network, r.id, prices.ipv4_hour * month));
            }
            Kind::InternetGateway => lines.push(Line::new(Group::Network, r.id, 0.0)),
            Kind::LoadBalancer => {
                lines.push(Line::new(
                    Group::LoadBalancing,
                    r.id,
                    prices.alb_hour * month,
                ));
                let zones = r.attrs["subnets"].as_array().map_or(0, Vec::len);
                lines.push(Line {
                    usage: Some(format!("{zones} zones")),
                    ..Line::new(
                        Group::LoadBalancing,
                        format!("{} public IPv4", r.id),
                        zones as f64 * prices.ipv4_hour * month,
                    )
                });
                lines.push(Line {
                    usage: Some(format!("{} LCU", usage.alb_lcu)),
                    ..Line::new(
                        Group::LoadBalancing,
                        format!("{} capacity units", r.id),
                        usage.alb_lcu * prices.alb_lcu_hour * month,
                    )
                });
            }
            Kind::Service => {
                let Some(td) = by_ref(&r.attrs["task_definition"]) else {
                    continue;
                };
                let number = |k: &str| {
                    td.attrs[k]
                        .as_str()
                        .and_then(|s| s.parse::<f64>().ok())
                        .or_else(|| td.attrs[k].as_f64())
                        .unwrap_or_default()
                };
                let per_task = (number("cpu") / 1024.0 * prices.fargate_vcpu_hour
                    + number("memory") / 1024.0 * prices.fargate_gb_hour)
                    * month;
                let name = r.attrs["name"].as_str().unwrap_or_default();
                let line = match (scaled.get(name), r.attrs["desired_count"].as_u64()) {
                    (Some(t), _) => {
                        let min = t.attrs["min_capacity"].as_f64().unwrap_or_default();
                        let max = t.attrs["max_capacity"].as_f64().unwrap_or_default();
                        Line {
                            monthly_max: Some(max * per_task),
                            ..Line::new(Group::Compute, r.id, min * per_task)
                        }
                    }
                    (None, count) => {
                        Line::new(Group::Compute, r.id, count.unwrap_or(0) as f64 * per_task)
                    }
                };
                lines.push(line);
            }
            Kind::LogGroup => logs += 1,
            Kind::Alarm => {
                let metrics = r.attrs["queries"].as_array().map_or(0, |q| {
                    q.iter().filter(|q| q.get("metric").is_some()).count()
                });
                lines.push(Line {
                    usage: (metrics > 1).then(|| format!("{metrics} metrics")),
                    ..Line::new(
                        Group::Monitoring,
                        r.id,
                        metrics as f64 * prices.alarm_metric_month,
                    )
                });
            }
            Kind::Dashboard => {
                lines.push(Line::new(Group::Monitoring, r.id, prices.dashboard_month))
            }
            Kind::Database => {
                let class = r.attrs["instance_class"].as_str().unwrap_or_default();
                let copies = if r.attrs["multi_az"] == Value::Bool(true) {
                    2.0
                } else {
                    1.0
                };
                let storage = r.attrs["allocated_storage"].as_f64().unwrap_or(0.0);
                let az = if copies > 1.0 {
                    "Multi-AZ"
                } else {
                    "single-AZ"
                };
                lines.push(match priced(prices.rds_hour, class) {
                    Some(hour) => Line {
                        usage: Some(format!("{class}, {az}")),
                        ..Line::new(Group::Databases, r.id, copies * hour * month)
                    },
                    None => Line {
                        usage: Some(format!("{class}: not in the price table, not counted")),
                        ..Line::new(Group::Databases, r.id, 0.0)
                    },
                });
                lines.push(Line {
                    usage: Some(format!("{storage} GB, {az}")),
                    ..Line::new(
                        Group::Databases,
                        format!("{} storage", r.id),
                        copies * storage * prices.rds_storage_gb_month,
                    )
                });
            }
            Kind::Instance => {
                let t = r.attrs["instance_type"].as_str().unwrap_or_default();
                lines.push(match priced(prices.ec2_hour, t) {
                    Some(hour) => Line {
                        usage: Some(format!("{t} and its public IPv4 address")),
                        ..Line::new(Group::Compute, r.id, (hour + prices.ipv4_hour) * month)
                    },
                    None => Line {
                        usage: Some(format!(
                            "{t}: not in the price table, its IPv4 address only"
                        )),
                        ..Line::new(Group::Compute, r.id, prices.ipv4_hour * month)
                    },
                });
            }
            Kind::Repository => lines.push(Line {
                usage: Some(format!("{ECR_GB_PER_REPOSITORY} GB stored")),
                ..Line::new(
                    Group::StorageAndLogs,
                    r.id,
                    ECR_GB_PER_REPOSITORY * prices.ecr_gb_month,
                )
            }),
            _ => {}
        }
    }
    if nats > 0 {
        lines.push(Line {
            usage: Some(format!("{} GB/month", usage.nat_gb_per_month)),
            ..Line::new(
                Group::Network,
                "NAT data processed",
                usage.nat_gb_per_month * prices.nat_gb,
            )
        });
    }
    if logs > 0 {
        // Kept 30 days: about one month's volume is stored at any time.
        lines.push(Line {
            usage: Some(format!("{} GB/month", usage.log_gb_per_month)),
            ..Line::new(
                Group::StorageAndLogs,
                "logs ingested and stored",
                usage.log_gb_per_month * (prices.logs_ingest_gb + prices.logs_storage_gb_month),
            )
        });
    }
    lines.sort_by(|a, b| (a.group, &a.resource).cmp(&(b.group, &b.resource)));
    let total: f64 = lines.iter().map(|l| l.monthly).sum();
    let total_max: f64 = lines
        .iter()
        .map(|l| l.monthly_max.unwrap_or(l.monthly))
        .sum();
    Estimate {
        lines,
        monthly_total: total,
        monthly_total_max: (total_max - total > 0.005).then_some(total_max),
    }
}

/// The estimate of an environment's file (offline).
pub fn of_file(env: &crate::config::Environment) -> Option<Estimate> {
    let prices = prices(&env.region)?;
    let desired = crate::desired::expand(env);
    let resources: Vec<Priced<'_>> = desired
        .resources
        .values()
        .map(|r| Priced {
            id: &r.id,
            physical_id: None,
            kind: r.kind,
            attrs: &r.attrs,
        })
        .collect();
    Some(estimate(&resources, prices, &env.usage))
}

/// Before → after of a plan: the lines that differ (by resource), and both totals.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Delta {
    pub before: Estimate,
    pub after: Estimate,
    pub changed: Vec<(String, Option<f64>, Option<f64>)>,
}

pub fn delta(before: Estimate, after: Estimate) -> Delta {
    let index = |e: &Estimate| -> BTreeMap<String, f64> {
        e.lines
            .iter()
            .map(|l| (l.resource.clone(), l.monthly_max.unwrap_or(l.monthly)))
            .collect()
    };
    let (b, a) = (index(&before), index(&after));
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    let changed = names
        .into_iter()
        .filter_map(|n| {
            let (x, y) = (b.get(n).copied(), a.get(n).copied());
            let same = matches!((x, y), (Some(x), Some(y)) if (x - y).abs() < 0.005);
            (!same).then(|| (n.clone(), x, y))
        })
        .collect();
    Delta {
        before,
        after,
        changed,
    }
}

/// The estimate of what state recorded (before a plan) and of the desired graph (after it).
pub fn of_plan(
    env: &crate::config::Environment,
    state: &crate::state::StateDoc,
    desired: &crate::desired::Desired,
) -> Option<Delta> {
    let prices = prices(&env.region)?;
    let before: Vec<Priced<'_>> = state
        .resources
        .iter()
        .map(|(id, r)| Priced {
            id,
            physical_id: Some(&r.physical_id),
            kind: r.kind,
            attrs: &r.attributes,
        })
        .collect();
    let after: Vec<Priced<'_>> = desired
        .resources
        .values()
        .map(|r| Priced {
            id: &r.id,
            physical_id: state.physical_id(&r.id),
            kind: r.kind,
            attrs: &r.attrs,
        })
        .collect();
    Some(delta(
        estimate(&before, prices, &env.usage),
        estimate(&after, prices, &env.usage),
    ))
}

/// Days from `date` (YYYY-MM-DD) to `today` (days since the Unix epoch).
pub fn age_days(date: &str, today_days: i64) -> Option<i64> {
    let mut it = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    // Days since the epoch of a civil date (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(today_days - (era * 146_097 + doe - 719_468))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> crate::config::Environment {
        crate::config::parse(
            std::path::Path::new("environments/stage.yaml"),
            text,
            &|_| None,
        )
        .expect("valid")
    }

    fn line(e: &Estimate, resource: &str) -> f64 {
        e.lines
            .iter()
            .find(|l| l.resource == resource)
            .unwrap_or_else(|| panic!("no line {resource}: {e:#?}"))
            .monthly
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.001
    }

    /// The stage example, each line computed by hand from the us-east-1 prices.
    #[test]
    fn databases_and_the_bastion_are_priced() {
        let env = file(
            "environment: stage
region: us-east-1
state: {local: s.json}
protect: true
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24]
  database_subnets: [10.0.20.0/24, 10.0.21.0/24]
  nat: none
databases:
  main: {storage_gb: 50}
  reports: {instance_class: db.x9.huge, multi_az: false}
bastion: {}
",
        );
        let e = of_file(&env).unwrap();
        let line = |r: &str| e.lines.iter().find(|l| l.resource == r).unwrap().clone();
        // Protected: Multi-AZ by default, so the instance and its storage count twice.
        assert!((line("database.main").monthly - 2.0 * 0.016 * 730.0).abs() < 1e-9);
        assert!((line("database.main storage").monthly - 2.0 * 50.0 * 0.115).abs() < 1e-9);
        // A class the table lacks is said, not guessed.
        let unknown = line("database.reports");
        assert_eq!(unknown.monthly, 0.0);
        assert!(unknown.usage.unwrap().contains("not in the price table"));
        assert!((line("bastion").monthly - (0.0104 + 0.005) * 730.0).abs() < 1e-9);
    }

    #[test]
    fn stage_matches_a_hand_computation() {
        let env = file(include_str!("../environments/stage.yaml"));
        let e = of_file(&env).unwrap();
        // One NAT gateway (single) and its address: 0.045 × 730, 0.005 × 730.
        assert!(close(line(&e, "nat.us-east-1a"), 32.85));
        assert!(close(line(&e, "elastic-ip.us-east-1a"), 3.65));
        assert!(close(line(&e, "NAT data processed"), 4.5)); // 100 GB × 0.045
        assert!(close(line(&e, "internet-gateway"), 0.0));
        // The load balancer: 0.0225 × 730; a public IPv4 per zone (2); 1 LCU × 0.008 × 730.
        assert!(close(line(&e, "load-balancer"), 16.425));
        assert!(close(line(&e, "load-balancer public IPv4"), 7.3));
        assert!(close(line(&e, "load-balancer capacity units"), 5.84));
        // web: 3 tasks × (0.25 vCPU × 0.04048 + 0.5 GB × 0.004445) × 730.
        assert!(close(
            line(&e, "service.web"),
            3.0 * (0.25 * 0.04048 + 0.5 * 0.004445) * 730.0
        ));
        // Logs: 5 GB × (0.50 + 0.03); a repository: 1 GB × 0.10.
        assert!(close(line(&e, "logs ingested and stored"), 2.65));
        assert!(close(line(&e, "repository.web"), 0.10));
        let sum: f64 = e.lines.iter().map(|l| l.monthly).sum();
        assert!(close(e.monthly_total, sum));
        assert_eq!(e.monthly_total_max, None);
    }

    /// Prod: a NAT gateway and address per zone (3), and an autoscaled service priced min–max.
    #[test]
    fn prod_pays_per_zone_and_shows_the_autoscaling_range() {
        let env = file(
            &include_str!("../environments/prod.yaml")
                .replace("environment: prod", "environment: stage"),
        );
        let e = of_file(&env).unwrap();
        let nats: Vec<&Line> = e
            .lines
            .iter()
            .filter(|l| l.resource.starts_with("nat."))
            .collect();
        assert_eq!(nats.len(), 3);
        assert!(close(line(&e, "load-balancer public IPv4"), 10.95));
        let web = e
            .lines
            .iter()
            .find(|l| l.resource == "service.web")
            .unwrap();
        let per_task = (0.5 * 0.04048 + 1.0 * 0.004445) * 730.0;
        assert!(close(web.monthly, 6.0 * per_task), "{web:?}");
        assert!(close(web.monthly_max.unwrap(), 24.0 * per_task), "{web:?}");
        assert!(e.monthly_total_max.unwrap() > e.monthly_total);
    }

    #[test]
    fn a_plan_names_the_lines_it_changes() {
        let stage = file(include_str!("../environments/stage.yaml"));
        let mut bigger = stage.clone();
        bigger.services.get_mut("web").unwrap().desired_count = 4;
        let d = delta(of_file(&stage).unwrap(), of_file(&bigger).unwrap());
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].0, "service.web");
        assert!(d.after.monthly_total > d.before.monthly_total);
    }

    /// The table is re-checked against AWS's pages at least once a year.
    #[test]
    fn table_is_fresh() {
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            / 86_400;
        let age = age_days(PRICES_DATE, today).unwrap();
        assert!(
            (0..=MAX_AGE_DAYS).contains(&age),
            "the price table of {PRICES_DATE} is {age} days old: check it against AWS's pages and update it"
        );
        assert_eq!(age_days("1970-01-01", 0), Some(0));
        assert_eq!(age_days("2026-12-03", 20_790), Some(0));
    }
}
