//! A network someone else owns (`network.existing`): read at plan time, never written. Four
//! describes, at once — the VPC, the subnets, the VPC's route tables and its endpoints — and a
//! pure verdict on them: what stops the plan (an id that does not exist, a subnet of another VPC,
//! a load balancer without two zones) and what only warns (subnets that could not reach what
//! they need).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::RouteTable;

use super::ec2::filter;
use super::{Aws, sdk_error};
use crate::config::ExistingNetwork;
use crate::desired::Facts;
use crate::error::AwsError;

/// What AWS says about the named VPC and subnets.
/// The IAM actions reading a network someone else owns calls (`infra policy`).
pub const IAM_READS: &[&str] = &[
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeRouteTables",
    "ec2:DescribeVpcEndpoints",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The VPC's primary CIDR block, if the VPC exists.
    pub vpc_cidr: Option<String>,
    pub subnets: Vec<SubnetFact>,
    pub route_tables: Vec<RouteTableFact>,
    /// Service names of the VPC's endpoints (`com.amazonaws.us-east-1.ecr.dkr`, …).
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubnetFact {
    pub id: String,
    pub vpc_id: String,
    pub zone: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteTableFact {
    pub main: bool,
    pub subnets: Vec<String>,
    /// Where `0.0.0.0/0` goes (`igw-…`, `nat-…`, `tgw-…`, …), if anywhere.
    pub default_target: Option<String>,
}

/// The plan's use of what was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub facts: Facts,
    /// Each stops the plan.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// What tasks in a private subnet without a default route need an endpoint for.
const ENDPOINTS: [(&str, &str); 4] = [
    ("ecr.api", "ECR API"),
    ("ecr.dkr", "ECR images"),
    ("s3", "S3 (image layers)"),
    ("logs", "CloudWatch Logs"),
];

pub async fn observe(aws: &Aws, net: &ExistingNetwork) -> Result<Observed, AwsError> {
    let vpc = std::slice::from_ref(&net.vpc_id);
    let ids: Vec<String> = net
        .public_subnet_ids
        .iter()
        .chain(&net.private_subnet_ids)
        .chain(&net.database_subnet_ids)
        .cloned()
        .collect();
    let (vpcs, subnets, tables, endpoints) = futures::try_join!(
        async {
            aws.ec2
                .describe_vpcs()
                .filters(filter("vpc-id", vpc))
                .send()
                .await
                .map_err(sdk_error("ec2", "DescribeVpcs"))
        },
        async {
            aws.ec2
                .describe_subnets()
                .filters(filter("subnet-id", &ids))
                .send()
                .await
                .map_err(sdk_error("ec2", "DescribeSubnets"))
        },
        async {
            aws.ec2
                .describe_route_tables()
                .filters(filter("vpc-id", vpc))
                .send()
                .await
                .map_err(sdk_error("ec2", "DescribeRouteTables"))
        },
        async {
            aws.ec2
                .describe_vpc_endpoints()
                .filters(filter("vpc-id", vpc))
                .send()
                .await
                .map_err(sdk_error("ec2", "DescribeVpcEndpoints"))
        },
    )?;
    Ok(Observed {
        vpc_cidr: vpcs
            .vpcs()
            .first()
            .and_then(|v| v.cidr_block())
            .map(str::to_string),
        subnets: subnets
            .subnets()
            .iter()
            .map(|s| SubnetFact {
                id: s.subnet_id().unwrap_or_default().to_string(),
                vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                zone: s.availability_zone().unwrap_or_default().to_string(),
            })
            .collect(),
        route_tables: tables.route_tables().iter().map(route_table).collect(),
        endpoints: endpoints
            .vpc_endpoints()
            .iter()
            .filter_map(|e| e.service_name().map(str::to_string))
            .collect(),
    })
}

fn route_table(t: &RouteTable) -> RouteTableFact {
    RouteTableFact {
        main: t.associations().iter().any(|a| a.main() == Some(true)),
        subnets: t
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_string))
            .collect(),
        default_target: t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .and_then(|r| {
                r.gateway_id()
                    .or(r.nat_gateway_id())
                    .or(r.transit_gateway_id())
                    .or(r.network_interface_id())
                    .or(r.instance_id())
                    .or(r.vpc_peering_connection_id())
                    .map(str::to_string)
            }),
    }
}

/// Judges what was observed: `load_balancer` says whether the file puts a load balancer in the
/// public subnets (which then need two zones and a route to an internet gateway).
pub fn judge(net: &ExistingNetwork, load_balancer: bool, seen: &Observed) -> Verdict {
    let mut v = Verdict::default();
    let Some(cidr) = &seen.vpc_cidr else {
        v.problems.push(format!(
            "network.existing.vpc_id: VPC {} does not exist in this region (or these credentials cannot see it)",
            net.vpc_id
        ));
        return v;
    };
    v.facts.vpc_cidr = Some(cidr.clone());
    let tiers = [
        ("public_subnet_ids", &net.public_subnet_ids),
        ("private_subnet_ids", &net.private_subnet_ids),
        ("database_subnet_ids", &net.database_subnet_ids),
    ];
    for (key, ids) in tiers {
        for id in ids {
            match seen.subnets.iter().find(|s| &s.id == id) {
                None => v.problems.push(format!(
                    "network.existing.{key}: subnet {id} does not exist in this region"
                )),
                Some(s) if s.vpc_id != net.vpc_id => v.problems.push(format!(
                    "network.existing.{key}: subnet {id} is in {}, not in {}",
                    s.vpc_id, net.vpc_id
                )),
                Some(_) => {}
            }
        }
    }
    if load_balancer {
        let zones: BTreeSet<&str> = net
            .public_subnet_ids
            .iter()
            .filter_map(|id| seen.subnets.iter().find(|s| &s.id == id))
            .map(|s| s.zone.as_str())
            .collect();
        if zones.len() < 2 {
            v.problems.push(format!(
                "network.existing.public_subnet_ids: the load balancer needs public subnets in at least two availability zones (these are in {})",
                if zones.is_empty() {
                    "none".to_string()
                } else {
                    zones.into_iter().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    if !v.problems.is_empty() {
        return v;
    }
    // A subnet without an explicit association uses the VPC's main route table.
    let table_of = |id: &str| {
        seen.route_tables
            .iter()
            .find(|t| t.subnets.iter().any(|s| s == id))
            .or_else(|| seen.route_tables.iter().find(|t| t.main))
    };
    if load_balancer {
        for id in &net.public_subnet_ids {
            let to_igw = table_of(id)
                .and_then(|t| t.default_target.as_deref())
                .is_some_and(|t| t.starts_with("igw-"));
            if !to_igw {
                v.warnings.push(format!(
                    "public subnet {id} has no default route to an internet gateway: the load balancer would not be reachable from the internet"
                ));
            }
        }
    }
    let missing: Vec<&str> = ENDPOINTS
        .iter()
        .filter(|(suffix, _)| {
            !seen
                .endpoints
                .iter()
                .any(|e| e.ends_with(&format!(".{suffix}")))
        })
        .map(|(_, what)| *what)
        .collect();
    for id in &net.private_subnet_ids {
        let routed = table_of(id).is_some_and(|t| t.default_target.is_some());
        if !routed && !missing.is_empty() {
            v.warnings.push(format!(
                "private subnet {id} has no default route and {} has no endpoint for {}: tasks there could not pull images or send logs",
                net.vpc_id,
                missing.join(", ")
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> ExistingNetwork {
        ExistingNetwork {
            vpc_id: "vpc-0000000a".into(),
            public_subnet_ids: vec!["subnet-0000000a".into(), "subnet-0000000b".into()],
            private_subnet_ids: vec!["subnet-0000000c".into()],
            database_subnet_ids: vec![],
        }
    }

    fn subnet(id: &str, vpc: &str, zone: &str) -> SubnetFact {
        SubnetFact {
            id: id.into(),
            vpc_id: vpc.into(),
            zone: zone.into(),
        }
    }

    fn table(main: bool, subnets: &[&str], target: Option<&str>) -> RouteTableFact {
        RouteTableFact {
            main,
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            default_target: target.map(str::to_string),
        }
    }

    /// A VPC with two public subnets routed to an internet gateway and a private one to a NAT.
    fn healthy() -> Observed {
        Observed {
            vpc_cidr: Some("10.9.0.0/16".into()),
            subnets: vec![
                subnet("subnet-0000000a", "vpc-0000000a", "us-east-1a"),
                subnet("subnet-0000000b", "vpc-0000000a", "us-east-1b"),
                subnet("subnet-0000000c", "vpc-0000000a", "us-east-1a"),
            ],
            route_tables: vec![
                table(true, &[], None),
                table(
                    false,
                    &["subnet-0000000a", "subnet-0000000b"],
                    Some("igw-00000001"),
                ),
                table(false, &["subnet-0000000c"], Some("nat-00000001")),
            ],
            endpoints: vec![],
        }
    }

    #[test]
    fn verdicts() {
        type Case = (
            &'static str,
            fn(&mut Observed),
            bool,
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            ("healthy", |_| {}, true, &[], &[]),
            (
                "no vpc",
                |o| o.vpc_cidr = None,
                true,
                &[
                    "network.existing.vpc_id: VPC vpc-0000000a does not exist in this region (or these credentials cannot see it)",
                ],
                &[],
            ),
            (
                "a subnet of another VPC, one missing",
                |o| {
                    o.subnets[2].vpc_id = "vpc-0000000f".into();
                    o.subnets.remove(1);
                },
                true,
                &[
                    "network.existing.public_subnet_ids: subnet subnet-0000000b does not exist in this region",
                    "network.existing.private_subnet_ids: subnet subnet-0000000c is in vpc-0000000f, not in vpc-0000000a",
                    "network.existing.public_subnet_ids: the load balancer needs public subnets in at least two availability zones (these are in us-east-1a)",
                ],
                &[],
            ),
            (
                "one zone is enough without a load balancer",
                |o| o.subnets[1].zone = "us-east-1a".into(),
                false,
                &[],
                &[],
            ),
            (
                "public subnets on the main table without a gateway, private without a route",
                |o| {
                    o.route_tables.remove(2);
                    o.route_tables.remove(1);
                },
                true,
                &[],
                &[
                    "public subnet subnet-0000000a has no default route to an internet gateway: the load balancer would not be reachable from the internet",
                    "public subnet subnet-0000000b has no default route to an internet gateway: the load balancer would not be reachable from the internet",
                    "private subnet subnet-0000000c has no default route and vpc-0000000a has no endpoint for ECR API, ECR images, S3 (image layers), CloudWatch Logs: tasks there could not pull images or send logs",
                ],
            ),
            (
                "endpoints stand in for the private default route",
                |o| {
                    o.route_tables.remove(2);
                    o.endpoints = ["ecr.api", "ecr.dkr", "s3", "logs"]
                        .iter()
                        .map(|s| format!("com.amazonaws.us-east-1.{s}"))
                        .collect();
                },
                true,
                &[],
                &[],
            ),
            (
                "the main table routes what has no association",
                |o| {
                    o.route_tables.remove(2);
                    o.route_tables[0].default_target = Some("tgw-00000001".into());
                },
                true,
                &[],
                &[],
            ),
        ];
        for (name, change, lb, problems, warnings) in cases {
            let mut seen = healthy();
            change(&mut seen);
            let v = judge(&net(), *lb, &seen);
            assert_eq!(v.problems, *problems, "{name}");
            assert_eq!(v.warnings, *warnings, "{name}");
            if problems.is_empty() {
                assert_eq!(v.facts.vpc_cidr.as_deref(), Some("10.9.0.0/16"), "{name}");
            }
        }
    }
}
