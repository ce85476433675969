//! The network against the emulator: apply from empty and check every wire from the AWS side,
//! drift shown and repaired, NAT mode changes, a three-zone file, destroy leaving nothing, and the
//! number of calls a no-change plan makes.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::VpcAttributeName;

use crate::harness::{Ctx, TWO_ZONES};

/// A route table as seen from AWS: routes (destination → target) and associated subnets.
pub(crate) type Table = (Vec<(String, String)>, Vec<String>);

/// What the environment looks like from the AWS side, with physical ids mapped back to the
/// `infra:id` tags, so assertions read in logical ids.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) ids: BTreeMap<String, String>, // physical → logical
    pub(crate) vpcs: Vec<(String, String)>,   // (id, cidr)
    pub(crate) subnets: BTreeMap<String, (String, String, bool)>, // id → (cidr, zone, public ip)
    pub(crate) igw_vpc: BTreeMap<String, Option<String>>,
    pub(crate) nats: BTreeMap<String, (String, String)>, // id → (subnet, allocation)
    pub(crate) eips: Vec<String>,
    pub(crate) tables: BTreeMap<String, Table>,
}

impl World {
    pub(crate) fn read(ctx: &Ctx) -> World {
        ctx.rt.block_on(async {
            let f = ctx.env_filter();
            let mut w = World::default();
            let tag = |tags: &[aws_sdk_ec2::types::Tag]| {
                tags.iter()
                    .find(|t| t.key() == Some("infra:id"))
                    .and_then(|t| t.value())
                    .unwrap_or("?")
                    .to_string()
            };
            let vpcs = ctx
                .ec2
                .describe_vpcs()
                .filters(f.clone())
                .send()
                .await
                .unwrap();
            for v in vpcs.vpcs() {
                w.ids.insert(v.vpc_id().unwrap().into(), tag(v.tags()));
                w.vpcs
                    .push((v.vpc_id().unwrap().into(), v.cidr_block().unwrap().into()));
            }
            let subnets = ctx
                .ec2
                .describe_subnets()
                .filters(f.clone())
                .send()
                .await
                .unwrap();
            for s in subnets.subnets() {
                w.ids.insert(s.subnet_id().unwrap().into(), tag(s.tags()));
                w.subnets.insert(
                    tag(s.tags()),
                    (
                        s.cidr_block().unwrap().into(),
                        s.availability_zone().unwrap().into(),
                        s.map_public_ip_on_launch().unwrap_or(false),
                    ),
                );
            }
            let igws = ctx
                .ec2
                .describe_internet_gateways()
                .filters(f.clone())
                .send()
                .await
                .unwrap();
            for g in igws.internet_gateways() {
                w.ids
                    .insert(g.internet_gateway_id().unwrap().into(), tag(g.tags()));
                let vpc = g
                    .attachments()
                    .first()
                    .and_then(|a| a.vpc_id())
                    .map(str::to_string);
                w.igw_vpc.insert(tag(g.tags()), vpc);
            }
            let eips = ctx
                .ec2
                .describe_addresses()
                .filters(f.clone())
                .send()
                .await
                .unwrap();
            for a in eips.addresses() {
                w.ids
                    .insert(a.allocation_id().unwrap().into(), tag(a.tags()));
                w.eips.push(tag(a.tags()));
            }
            let nats = ctx
                .ec2
                .describe_nat_gateways()
                .filter(f.clone())
                .send()
                .await
                .unwrap();
            // moto ignores tag filters on DescribeNatGateways: check the tag here too.
            let ours = |tags: &[aws_sdk_ec2::types::Tag]| {
                tags.iter().any(|t| {
                    t.key() == Some("infra:environment") && t.value() == Some(ctx.env.as_str())
                })
            };
            for n in nats.nat_gateways().iter().filter(|n| ours(n.tags())) {
                let state = n
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                if state == "deleted" || state == "deleting" {
                    continue;
                }
                w.ids
                    .insert(n.nat_gateway_id().unwrap().into(), tag(n.tags()));
                let alloc = n
                    .nat_gateway_addresses()
                    .first()
                    .and_then(|a| a.allocation_id())
                    .unwrap_or_default();
                w.nats
                    .insert(tag(n.tags()), (n.subnet_id().unwrap().into(), alloc.into()));
            }
            let tables = ctx
                .ec2
                .describe_route_tables()
                .filters(f)
                .send()
                .await
                .unwrap();
            for t in tables.route_tables() {
                w.ids
                    .insert(t.route_table_id().unwrap().into(), tag(t.tags()));
                let routes = t
                    .routes()
                    .iter()
                    .filter(|r| r.gateway_id() != Some("local"))
                    .map(|r| {
                        let target = r.gateway_id().or(r.nat_gateway_id()).unwrap_or("?");
                        (
                            r.destination_cidr_block().unwrap_or("?").to_string(),
                            target.to_string(),
                        )
                    })
                    .collect();
                let subnets = t
                    .associations()
                    .iter()
                    .filter_map(|a| a.subnet_id())
                    .map(str::to_string)
                    .collect();
                w.tables.insert(tag(t.tags()), (routes, subnets));
            }
            w
        })
    }

    /// A physical id shown as the logical id it carries.
    fn l(&self, physical: &str) -> String {
        self.ids
            .get(physical)
            .cloned()
            .unwrap_or_else(|| format!("untagged {physical}"))
    }

    /// Route table → (routes as dest→logical target, associated subnets as logical ids).
    fn table(&self, id: &str) -> Table {
        let (routes, subnets) = &self.tables[id];
        let routes = routes.iter().map(|(d, t)| (d.clone(), self.l(t))).collect();
        let mut subnets: Vec<String> = subnets.iter().map(|s| self.l(s)).collect();
        subnets.sort();
        (routes, subnets)
    }

    fn is_empty(&self) -> bool {
        self.vpcs.is_empty()
            && self.subnets.is_empty()
            && self.igw_vpc.is_empty()
            && self.nats.is_empty()
            && self.eips.is_empty()
            && self.tables.is_empty()
    }
}

fn route(dest: &str, target: &str) -> (String, String) {
    (dest.to_string(), target.to_string())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn apply_from_empty_builds_exactly_the_network_then_destroy_leaves_nothing() {
    let ctx = Ctx::new("net");
    ctx.write_env(TWO_ZONES);
    let plan = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    plan.code(2);
    assert!(
        plan.stdout.contains("apply will create it"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 11 to add, 0 to change, 0 to destroy.")
    );

    let applied = ctx.apply();
    assert!(
        applied.stdout.contains("Creating state storage"),
        "{}",
        applied.stdout
    );
    assert!(
        applied
            .stdout
            .contains("Apply complete: 11 created, 0 updated, 0 deleted.")
    );
    // Without a terminal (CI logs) each event is a line stamped with the time; the run ends
    // with where its time went.
    let stamped =
        regex::Regex::new(r"(?m)^\d\d:\d\d:\d\d vpc: created \(vpc-[0-9a-f]+\) \[\d+\.\ds\]$")
            .unwrap();
    assert!(stamped.is_match(&applied.stdout), "{}", applied.stdout);
    let took =
        regex::Regex::new(r"(?m)^Took \d+\.\ds \(plan \d+\.\ds, changes \d+\.\ds\)$").unwrap();
    assert!(took.is_match(&applied.stdout), "{}", applied.stdout);

    let w = World::read(&ctx);
    assert_eq!(w.vpcs.len(), 1);
    let vpc = &w.vpcs[0].0;
    assert_eq!(w.vpcs[0].1, "10.0.0.0/16");
    for attr in [
        VpcAttributeName::EnableDnsSupport,
        VpcAttributeName::EnableDnsHostnames,
    ] {
        let out = ctx
            .rt
            .block_on(
                ctx.ec2
                    .describe_vpc_attribute()
                    .vpc_id(vpc)
                    .attribute(attr.clone())
                    .send(),
            )
            .unwrap();
        let on = out
            .enable_dns_support()
            .or(out.enable_dns_hostnames())
            .and_then(|a| a.value());
        assert_eq!(on, Some(true), "{attr:?}");
    }
    let expected_subnets = BTreeMap::from([
        (
            "subnet.private.us-east-1a".to_string(),
            ("10.0.10.0/24".into(), "us-east-1a".into(), false),
        ),
        (
            "subnet.private.us-east-1b".to_string(),
            ("10.0.11.0/24".into(), "us-east-1b".into(), false),
        ),
        (
            "subnet.public.us-east-1a".to_string(),
            ("10.0.0.0/24".into(), "us-east-1a".into(), true),
        ),
        (
            "subnet.public.us-east-1b".to_string(),
            ("10.0.1.0/24".into(), "us-east-1b".into(), true),
        ),
    ]);
    assert_eq!(w.subnets, expected_subnets);
    assert_eq!(w.igw_vpc["internet-gateway"].as_deref(), Some(vpc.as_str()));
    assert_eq!(w.eips, ["elastic-ip.us-east-1a"]);
    let (nat_subnet, nat_eip) = &w.nats["nat.us-east-1a"];
    assert_eq!(w.l(nat_subnet), "subnet.public.us-east-1a");
    assert_eq!(w.l(nat_eip), "elastic-ip.us-east-1a");
    assert_eq!(w.nats.len(), 1);
    assert_eq!(
        w.table("route-table.public"),
        (
            vec![route("0.0.0.0/0", "internet-gateway")],
            strings(&["subnet.public.us-east-1a", "subnet.public.us-east-1b"])
        )
    );
    for zone in ["us-east-1a", "us-east-1b"] {
        assert_eq!(
            w.table(&format!("route-table.private.{zone}")),
            (
                vec![route("0.0.0.0/0", "nat.us-east-1a")],
                vec![format!("subnet.private.{zone}")]
            ),
            "{zone}"
        );
    }
    assert_eq!(w.tables.len(), 3);
    ctx.assert_converged();

    // Outputs and state come from what was recorded.
    let out = ctx.infra(&["output", "{env}", "vpc_id"]);
    assert_eq!(out.success().stdout.trim(), vpc);
    let list = ctx.infra(&["state", "list", "{env}"]);
    assert_eq!(list.success().stdout.lines().count(), 11);

    let destroyed = ctx.infra(&["destroy", "{env}", "--auto-approve"]);
    destroyed.success();
    assert!(
        destroyed
            .stdout
            .contains("Plan: 0 to add, 0 to change, 11 to destroy."),
        "{}",
        destroyed.stdout
    );
    let w = World::read(&ctx);
    assert!(w.is_empty(), "left behind: {w:#?}");
    assert_eq!(ctx.infra(&["state", "list", "{env}"]).success().stdout, "");
    // After destroy the file plans a fresh build again.
    ctx.infra(&["plan", "{env}", "--detailed-exitcode"]).code(2);
}

#[test]
fn drift_outside_infra_is_shown_and_repaired() {
    let ctx = Ctx::new("drift");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    let w = World::read(&ctx);
    let phys = |logical: &str| {
        w.ids
            .iter()
            .find(|(_, l)| *l == logical)
            .map(|(p, _)| p.clone())
            .unwrap()
    };
    ctx.rt.block_on(async {
        // A route deleted, a subnet deleted (after releasing its association), a tag changed.
        ctx.ec2
            .delete_route()
            .route_table_id(phys("route-table.private.us-east-1a"))
            .destination_cidr_block("0.0.0.0/0")
            .send()
            .await
            .unwrap();
        let tables = ctx
            .ec2
            .describe_route_tables()
            .route_table_ids(phys("route-table.private.us-east-1b"))
            .send()
            .await
            .unwrap();
        for a in tables.route_tables()[0].associations() {
            ctx.ec2
                .disassociate_route_table()
                .association_id(a.route_table_association_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        ctx.ec2
            .delete_subnet()
            .subnet_id(phys("subnet.private.us-east-1b"))
            .send()
            .await
            .unwrap();
        ctx.ec2
            .create_tags()
            .resources(phys("vpc"))
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("team")
                    .value("someone-else")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });

    let plan = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    plan.code(2);
    insta::assert_snapshot!(ctx.redact(&plan.stdout));

    ctx.apply();
    let w = World::read(&ctx);
    assert_eq!(
        w.table("route-table.private.us-east-1a").0,
        vec![route("0.0.0.0/0", "nat.us-east-1a")]
    );
    assert_eq!(
        w.table("route-table.private.us-east-1b").1,
        strings(&["subnet.private.us-east-1b"])
    );
    assert_eq!(w.subnets["subnet.private.us-east-1b"].0, "10.0.11.0/24");
    let vpc_tags = ctx
        .rt
        .block_on(ctx.ec2.describe_vpcs().filters(ctx.env_filter()).send())
        .unwrap();
    let team = vpc_tags.vpcs()[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some("team"))
        .and_then(|t| t.value().map(str::to_string));
    assert_eq!(team.as_deref(), Some("platform"));
    ctx.assert_converged();
}

#[test]
fn nat_single_to_per_az_and_back() {
    let ctx = Ctx::new("nat");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    ctx.write_env(&TWO_ZONES.replace("nat: single", "nat: per_az"));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("Plan: 2 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    ctx.apply();
    let w = World::read(&ctx);
    assert_eq!(w.nats.len(), 2);
    for zone in ["us-east-1a", "us-east-1b"] {
        let (subnet, eip) = &w.nats[&format!("nat.{zone}")];
        assert_eq!(w.l(subnet), format!("subnet.public.{zone}"));
        assert_eq!(w.l(eip), format!("elastic-ip.{zone}"));
        assert_eq!(
            w.table(&format!("route-table.private.{zone}")).0,
            vec![route("0.0.0.0/0", &format!("nat.{zone}"))]
        );
    }
    ctx.assert_converged();

    ctx.write_env(TWO_ZONES);
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("Plan: 0 to add, 1 to change, 2 to destroy."),
        "{}",
        plan.stdout
    );
    ctx.apply();
    let w = World::read(&ctx);
    assert_eq!(w.nats.keys().collect::<Vec<_>>(), ["nat.us-east-1a"]);
    assert_eq!(w.eips, ["elastic-ip.us-east-1a"]);
    assert_eq!(
        w.table("route-table.private.us-east-1b").0,
        vec![route("0.0.0.0/0", "nat.us-east-1a")]
    );
    ctx.assert_converged();

    ctx.write_env(&TWO_ZONES.replace("nat: single", "nat: none"));
    ctx.apply();
    let w = World::read(&ctx);
    assert!(w.nats.is_empty() && w.eips.is_empty());
    assert!(w.table("route-table.private.us-east-1a").0.is_empty());
    ctx.assert_converged();
}

/// A file written from the contract alone: three zones, a NAT per zone, other CIDRs.
const THREE_ZONES: &str = "environment: {env}
region: us-east-1
tags: {owner: data-team, cost-center: \"4711\"}
state:
  s3: {bucket: {bucket}, key: envs/{env}/state.json}
network:
  cidr: 172.20.0.0/16
  availability_zones: [us-east-1a, us-east-1b, us-east-1c]
  public_subnets: [172.20.0.0/22, 172.20.4.0/22, 172.20.8.0/22]
  private_subnets: [172.20.64.0/19, 172.20.96.0/19, 172.20.128.0/19]
  nat: per_az
";

#[test]
fn three_zones_with_a_nat_per_zone() {
    let ctx = Ctx::new("az");
    ctx.write_env(THREE_ZONES);
    ctx.apply();
    let w = World::read(&ctx);
    assert_eq!(w.vpcs[0].1, "172.20.0.0/16");
    assert_eq!(w.subnets.len(), 6);
    assert_eq!(w.subnets["subnet.private.us-east-1c"].0, "172.20.128.0/19");
    assert_eq!(w.nats.len(), 3);
    assert_eq!(w.eips.len(), 3);
    for zone in ["us-east-1a", "us-east-1b", "us-east-1c"] {
        assert_eq!(
            w.table(&format!("route-table.private.{zone}")),
            (
                vec![route("0.0.0.0/0", &format!("nat.{zone}"))],
                vec![format!("subnet.private.{zone}")]
            )
        );
    }
    assert_eq!(
        w.table("route-table.public").1,
        strings(&[
            "subnet.public.us-east-1a",
            "subnet.public.us-east-1b",
            "subnet.public.us-east-1c"
        ])
    );
    // The state is where the file says.
    let key = format!("envs/{}/state.json", ctx.env);
    ctx.rt
        .block_on(ctx.s3.head_object().bucket(&ctx.bucket).key(key).send())
        .unwrap();
    ctx.assert_converged();
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    assert!(World::read(&ctx).is_empty());
}

/// Operations a no-change plan makes, by name.
fn plan_calls(ctx: &Ctx) -> BTreeMap<String, usize> {
    let out = ctx
        .command(&["plan", &ctx.env])
        .env("RUST_LOG", "infra::aws::call=debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut calls = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if let Some((_, op)) = line.split_once("aws call: ") {
            *calls.entry(op.to_string()).or_default() += 1;
        }
    }
    calls
}

#[test]
fn a_no_change_plan_makes_the_same_calls_whatever_the_subnet_count() {
    let one = Ctx::new("one");
    one.write_env(
        "environment: {env}\nregion: us-east-1\nstate: {s3: {bucket: {bucket}}}\nnetwork:\n  cidr: 10.0.0.0/16\n  availability_zones: [us-east-1a]\n  public_subnets: [10.0.0.0/24]\n  private_subnets: [10.0.10.0/24]\n",
    );
    one.apply();
    one.assert_converged();
    let three = Ctx::new("three");
    three.write_env(THREE_ZONES);
    three.apply();
    three.assert_converged();
    let small = plan_calls(&one);
    let large = plan_calls(&three);
    assert_eq!(small, large, "calls grew with the subnet count");
    // One call per operation: one describe per kind, nothing per resource. The VPC's two DNS
    // attributes have no batch read (one VPC: two calls), and the load balancer, listener and
    // rule readers each find the load balancer by its name.
    for (op, n) in &small {
        let expected = match op.as_str() {
            "EC2 DescribeVpcAttribute" => 2,
            "Elastic Load Balancing v2 DescribeLoadBalancers" => 3,
            _ => 1,
        };
        assert_eq!(*n, expected, "{op}: {small:#?}");
    }
    assert_eq!(small["EC2 DescribeSubnets"], 1);
}
