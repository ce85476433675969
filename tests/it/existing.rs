//! A network someone else owns: a VPC built by hand (untagged by infra, with its own gateway, NAT
//! and routes), the environment placed inside it, and destroy leaving it exactly as it was.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::harness::Ctx;

/// Ids of the hand-built network.
struct HandBuilt {
    vpc: String,
    public: Vec<String>,
    private: Vec<String>,
}

fn tagged(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("owner").value("network-team").build())
        .build()
}

/// A VPC as a network team would build it: two public subnets routed to an internet gateway, two
/// private ones routed to a NAT gateway.
fn build(ctx: &Ctx) -> HandBuilt {
    ctx.rt.block_on(async {
        let ec2 = &ctx.ec2;
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.77.0.0/16")
            .tag_specifications(tagged(ResourceType::Vpc, "shared"))
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_string();
        let igw = ec2
            .create_internet_gateway()
            .send()
            .await
            .unwrap()
            .internet_gateway()
            .unwrap()
            .internet_gateway_id()
            .unwrap()
            .to_string();
        ec2.attach_internet_gateway()
            .vpc_id(&vpc)
            .internet_gateway_id(&igw)
            .send()
            .await
            .unwrap();
        let mut subnets = Vec::new();
        for (cidr, zone) in [
            ("10.77.0.0/24", "us-east-1a"),
            ("10.77.1.0/24", "us-east-1b"),
            ("10.77.10.0/24", "us-east-1a"),
            ("10.77.11.0/24", "us-east-1b"),
        ] {
            let id = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(cidr)
                .availability_zone(zone)
                .tag_specifications(tagged(ResourceType::Subnet, cidr))
                .send()
                .await
                .unwrap()
                .subnet()
                .unwrap()
                .subnet_id()
                .unwrap()
                .to_string();
            subnets.push(id);
        }
        let eip = ec2
            .allocate_address()
            .send()
            .await
            .unwrap()
            .allocation_id()
            .unwrap()
            .to_string();
        let nat = ec2
            .create_nat_gateway()
            .subnet_id(&subnets[0])
            .allocation_id(eip)
            .send()
            .await
            .unwrap()
            .nat_gateway()
            .unwrap()
            .nat_gateway_id()
            .unwrap()
            .to_string();
        for (subnets, gateway) in [(&subnets[..2], &igw), (&subnets[2..], &nat)] {
            let table = ec2
                .create_route_table()
                .vpc_id(&vpc)
                .send()
                .await
                .unwrap()
                .route_table()
                .unwrap()
                .route_table_id()
                .unwrap()
                .to_string();
            let route = ec2
                .create_route()
                .route_table_id(&table)
                .destination_cidr_block("0.0.0.0/0");
            let route = if gateway.starts_with("igw-") {
                route.gateway_id(gateway)
            } else {
                route.nat_gateway_id(gateway)
            };
            route.send().await.unwrap();
            for s in subnets {
                ec2.associate_route_table()
                    .route_table_id(&table)
                    .subnet_id(s)
                    .send()
                    .await
                    .unwrap();
            }
        }
        HandBuilt {
            vpc,
            public: subnets[..2].to_vec(),
            private: subnets[2..].to_vec(),
        }
    })
}

/// Everything of the VPC as text: the VPC, its subnets, route tables (routes, associations),
/// gateways and addresses, with their tags.
fn snapshot(ctx: &Ctx, vpc: &str) -> String {
    ctx.rt.block_on(async {
        let ec2 = &ctx.ec2;
        let by_vpc = || {
            Filter::builder()
                .name("vpc-id")
                .values(vpc.to_string())
                .build()
        };
        let vpcs = ec2.describe_vpcs().vpc_ids(vpc).send().await.unwrap();
        let subnets = ec2
            .describe_subnets()
            .filters(by_vpc())
            .send()
            .await
            .unwrap();
        let tables = ec2
            .describe_route_tables()
            .filters(by_vpc())
            .send()
            .await
            .unwrap();
        let nats = ec2
            .describe_nat_gateways()
            .filter(by_vpc())
            .send()
            .await
            .unwrap();
        let igws = ec2
            .describe_internet_gateways()
            .filters(
                Filter::builder()
                    .name("attachment.vpc-id")
                    .values(vpc)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let mut subnets: Vec<String> = subnets
            .subnets()
            .iter()
            .map(|s| {
                format!(
                    "{:?} {:?} {:?} {:?}",
                    s.subnet_id(),
                    s.cidr_block(),
                    s.map_public_ip_on_launch(),
                    s.tags()
                )
            })
            .collect();
        subnets.sort();
        let mut tables: Vec<String> = tables
            .route_tables()
            .iter()
            .map(|t| {
                let routes: Vec<String> = t
                    .routes()
                    .iter()
                    .map(|r| {
                        format!(
                            "{:?}->{:?}{:?}",
                            r.destination_cidr_block(),
                            r.gateway_id(),
                            r.nat_gateway_id()
                        )
                    })
                    .collect();
                let mut assoc: Vec<String> = t
                    .associations()
                    .iter()
                    .map(|a| format!("{:?}{:?}", a.subnet_id(), a.main()))
                    .collect();
                assoc.sort();
                format!(
                    "{:?} {routes:?} {assoc:?} {:?}",
                    t.route_table_id(),
                    t.tags()
                )
            })
            .collect();
        tables.sort();
        format!(
            "vpc {:?}\nsubnets {subnets:#?}\ntables {tables:#?}\nnats {:?}\nigws {:?}",
            vpcs.vpcs()
                .iter()
                .map(|v| (v.cidr_block(), v.tags()))
                .collect::<Vec<_>>(),
            nats.nat_gateways()
                .iter()
                .map(|n| (n.nat_gateway_id(), n.subnet_id(), n.tags()))
                .collect::<Vec<_>>(),
            igws.internet_gateways()
                .iter()
                .map(|i| (i.internet_gateway_id(), i.tags()))
                .collect::<Vec<_>>(),
        )
    })
}

fn file(net: &HandBuilt, extra: &str) -> String {
    format!(
        "environment: {{env}}
region: us-east-1
state: {{s3: {{bucket: {{bucket}}}}}}
network:
{extra}  existing:
    vpc_id: {}
    public_subnet_ids: [{}]
    private_subnet_ids: [{}]
load_balancer: {{}}
services:
  web:
    image: public.ecr.aws/docker/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8080
",
        net.vpc,
        net.public.join(", "),
        net.private.join(", ")
    )
}

#[test]
fn an_environment_inside_a_network_someone_else_owns_leaves_it_as_it_was() {
    let ctx = Ctx::new("shared");
    let net = build(&ctx);
    let before = snapshot(&ctx, &net.vpc);

    // The file cannot both name a network and describe one.
    ctx.write_env(&file(&net, "  cidr: 10.0.0.0/16\n"));
    let invalid = ctx.infra(&["validate", "{env}"]);
    invalid.code(1);
    assert!(
        invalid.stderr.contains(".yaml:5:3")
            && invalid
                .stderr
                .contains("`cidr` cannot be given with `existing`"),
        "{}",
        invalid.stderr
    );

    // A subnet of another VPC stops the plan, naming it.
    let stray = ctx.rt.block_on(async {
        let other = ctx
            .ec2
            .create_vpc()
            .cidr_block("10.78.0.0/16")
            .send()
            .await
            .unwrap();
        let other = other.vpc().unwrap().vpc_id().unwrap();
        ctx.ec2
            .create_subnet()
            .vpc_id(other)
            .cidr_block("10.78.0.0/24")
            .availability_zone("us-east-1a")
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string()
    });
    let wrong = HandBuilt {
        vpc: net.vpc.clone(),
        public: net.public.clone(),
        private: vec![net.private[0].clone(), stray.clone()],
    };
    ctx.write_env(&file(&wrong, ""));
    let refused = ctx.infra(&["plan", "{env}"]);
    refused.code(1);
    assert!(
        refused.stderr.contains(&format!(
            "network.existing.private_subnet_ids: subnet {stray} is in vpc-"
        )),
        "{}",
        refused.stderr
    );

    ctx.write_env(&file(&net, ""));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        !plan.success().stdout.contains("+ vpc")
            && !plan.stdout.contains("+ subnet")
            && !plan.stdout.contains("+ nat")
            && !plan.stdout.contains("+ route-table"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    ctx.assert_converged();

    ctx.rt.block_on(async {
        let lb = ctx
            .aws
            .elbv2
            .describe_load_balancers()
            .names(&ctx.env)
            .send()
            .await
            .unwrap();
        let lb = &lb.load_balancers()[0];
        assert_eq!(lb.vpc_id(), Some(net.vpc.as_str()));
        let mut lb_subnets: Vec<&str> = lb
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id())
            .collect();
        lb_subnets.sort();
        let mut public: Vec<&str> = net.public.iter().map(String::as_str).collect();
        public.sort();
        assert_eq!(lb_subnets, public);
        let services = ctx
            .ecs()
            .describe_services()
            .cluster(&ctx.env)
            .services("web")
            .send()
            .await
            .unwrap();
        let vpc = services.services()[0]
            .network_configuration()
            .unwrap()
            .awsvpc_configuration()
            .unwrap();
        let mut task_subnets = vpc.subnets().to_vec();
        task_subnets.sort();
        let mut private = net.private.clone();
        private.sort();
        assert_eq!(task_subnets, private);
        // The load balancer reaches the tasks inside the VPC's own CIDR, read from AWS.
        let groups = ctx
            .ec2
            .describe_security_groups()
            .group_ids(lb.security_groups()[0].clone())
            .send()
            .await
            .unwrap();
        let egress = groups.security_groups()[0].ip_permissions_egress();
        assert_eq!(egress[0].ip_ranges()[0].cidr_ip(), Some("10.77.0.0/16"));
    });
    // Nothing of the network was created, tagged or changed.
    assert_eq!(snapshot(&ctx, &net.vpc), before);

    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    assert_eq!(snapshot(&ctx, &net.vpc), before);
}

/// Names the plan would create that someone else's resources already hold stop the plan before
/// any write, each with the `infra import` that adopts it.
#[test]
fn names_already_taken_stop_the_plan_with_the_import_that_adopts_them() {
    use infra::naming;
    let ctx = Ctx::new("taken");
    let net = build(&ctx);
    let env = ctx.env.clone();
    let (cluster, group, role, tg, sg) = ctx.rt.block_on(async {
        let aws = &ctx.aws;
        let cluster = aws
            .ecs
            .create_cluster()
            .cluster_name(&env)
            .send()
            .await
            .unwrap()
            .cluster()
            .unwrap()
            .cluster_arn()
            .unwrap()
            .to_string();
        let group = naming::log_group(&env, "web");
        aws.logs
            .create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .unwrap();
        let role = aws
            .iam
            .create_role()
            .role_name(naming::execution_role(&env, "us-east-1"))
            .assume_role_policy_document("{}")
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .arn()
            .to_string();
        let tg = aws
            .elbv2
            .create_target_group()
            .name(naming::target_group(&env, "web"))
            .port(8080)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
            .vpc_id(&net.vpc)
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string();
        let sg = ctx
            .ec2
            .create_security_group()
            .group_name(naming::alb_security_group(&env))
            .description("hand-made")
            .vpc_id(&net.vpc)
            .send()
            .await
            .unwrap()
            .group_id()
            .unwrap()
            .to_string();
        (cluster, group, role, tg, sg)
    });
    ctx.write_env(&file(&net, ""));
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.code(1);
    for (id, physical) in [
        ("cluster", &cluster),
        ("log-group.web", &group),
        ("role.task-execution", &role),
        ("target-group.web", &tg),
        ("security-group.alb", &sg),
    ] {
        assert!(
            plan.stderr
                .contains(&format!("adopt it: infra import {env} {id} {physical}")),
            "{id}: {}",
            plan.stderr
        );
    }
    assert!(
        plan.stderr
            .contains("5 names this plan would create already exist"),
        "{}",
        plan.stderr
    );
    // Each printed command does what it says; then the plan goes on, with nothing left in the way.
    for line in plan.stderr.lines() {
        if let Some(cmd) = line.trim().strip_prefix("adopt it: infra ") {
            let mut args: Vec<&str> = cmd.split(' ').collect();
            args.push("--auto-approve");
            ctx.infra(&args).success();
        }
    }
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains(&format!("security-group.alb  {sg}")),
        "{}",
        plan.stdout
    );
}
