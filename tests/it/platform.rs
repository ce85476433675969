//! The platform around the network: ECR repositories, the ECS cluster and service log groups,
//! each checked from the AWS side, converged, changed in place, and destroyed.

use crate::harness::Ctx;

const PLATFORM: &str = "environment: {env}
region: us-east-1
tags: {team: platform}
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a]
  public_subnets: [10.0.0.0/24]
  private_subnets: [10.0.10.0/24]
  nat: none
repositories:
  web: {}
  worker: {scan_on_push: false, immutable_tags: false, keep_last: 5}
cluster: {container_insights: false}
services:
  worker:
    image: worker:1.0
    cpu: 256
    memory: 512
";

#[test]
fn repositories_cluster_and_log_groups() {
    let ctx = Ctx::new("plat");
    ctx.write_env(PLATFORM);
    ctx.apply();
    ctx.rt.block_on(async {
        let repos = ctx.ecr().describe_repositories().send().await.unwrap();
        let find = |name: String| {
            repos
                .repositories()
                .iter()
                .find(|r| r.repository_name() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no repository {name}"))
                .clone()
        };
        let web = find(format!("{}/web", ctx.env));
        assert!(web.image_scanning_configuration().unwrap().scan_on_push());
        assert_eq!(web.image_tag_mutability().unwrap().as_str(), "IMMUTABLE");
        let worker = find(format!("{}/worker", ctx.env));
        assert!(
            !worker
                .image_scanning_configuration()
                .unwrap()
                .scan_on_push()
        );
        assert_eq!(worker.image_tag_mutability().unwrap().as_str(), "MUTABLE");
        let policy = ctx
            .ecr()
            .get_lifecycle_policy()
            .repository_name(format!("{}/worker", ctx.env))
            .send()
            .await
            .unwrap();
        let policy: serde_json::Value =
            serde_json::from_str(policy.lifecycle_policy_text().unwrap()).unwrap();
        assert_eq!(policy["rules"][0]["selection"]["countNumber"], 5);
        assert_eq!(
            policy["rules"][0]["selection"]["countType"],
            "imageCountMoreThan"
        );

        let clusters = ctx
            .ecs()
            .describe_clusters()
            .clusters(&ctx.env)
            .include(aws_sdk_ecs::types::ClusterField::Settings)
            .send()
            .await
            .unwrap();
        let cluster = &clusters.clusters()[0];
        assert_eq!(cluster.status(), Some("ACTIVE"));
        let insights = cluster
            .settings()
            .iter()
            .find(|s| s.name().map(|n| n.as_str()) == Some("containerInsights"));
        assert_eq!(insights.and_then(|s| s.value()), Some("disabled"));

        let groups = ctx
            .logs()
            .describe_log_groups()
            .log_group_name_prefix(format!("/ecs/{}/", ctx.env))
            .send()
            .await
            .unwrap();
        let names: Vec<(&str, Option<i32>)> = groups
            .log_groups()
            .iter()
            .map(|g| (g.log_group_name().unwrap(), g.retention_in_days()))
            .collect();
        let expected = format!("/ecs/{}/worker", ctx.env);
        assert_eq!(names, [(expected.as_str(), Some(30))]);
    });
    let urls = ctx.infra(&["output", "{env}", "repository_urls", "--json"]);
    let urls: serde_json::Value = serde_json::from_str(&urls.success().stdout).unwrap();
    assert!(
        urls["web"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}/web", ctx.env)),
        "{urls}"
    );
    ctx.assert_converged();

    // One setting changed: exactly one in-place update.
    ctx.write_env(&PLATFORM.replace("keep_last: 5", "keep_last: 9"));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("~ repository.worker"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    ctx.assert_converged();

    // The first deploy's way in: only the repositories (and what they need: nothing).
    let targeted = Ctx::new("tgt");
    targeted.write_env(PLATFORM);
    let run = targeted.infra(&["apply", "{env}", "--auto-approve", "--target", "repository"]);
    assert!(
        run.success().stdout.contains("Apply complete: 2 created"),
        "{}",
        run.stdout
    );

    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    ctx.rt.block_on(async {
        let repos = ctx.ecr().describe_repositories().send().await.unwrap();
        let prefix = format!("{}/", ctx.env);
        assert!(
            !repos
                .repositories()
                .iter()
                .any(|r| r.repository_name().unwrap().starts_with(&prefix))
        );
        let clusters = ctx
            .ecs()
            .describe_clusters()
            .clusters(&ctx.env)
            .send()
            .await
            .unwrap();
        assert!(
            clusters
                .clusters()
                .iter()
                .all(|c| c.status() != Some("ACTIVE"))
        );
        let groups = ctx
            .logs()
            .describe_log_groups()
            .log_group_name_prefix(format!("/ecs/{}/", ctx.env))
            .send()
            .await
            .unwrap();
        assert!(groups.log_groups().is_empty());
    });
}

const WITH_LB: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.20.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.20.0.0/24, 10.20.1.0/24]
  private_subnets: [10.20.10.0/24, 10.20.11.0/24]
  nat: single
load_balancer:
  https: {port: 443, certificate_arn: \"arn:aws:acm:us-east-1:123456789012:certificate/abc\"}
  ingress_cidrs: [203.0.113.0/24, \"2001:db8::/32\"]
repositories: {web: {}}
services:
  web:
    image: web:1
    cpu: 256
    memory: 512
    port: 3333
  worker:
    image: web:1
    cpu: 256
    memory: 512
";

/// A group's rules as (direction, protocol, ports, source) tuples, sources named by group name.
fn rules(ctx: &Ctx) -> std::collections::BTreeMap<String, Vec<String>> {
    ctx.rt.block_on(async {
        let groups = ctx
            .ec2
            .describe_security_groups()
            .filters(ctx.env_filter())
            .send()
            .await
            .unwrap();
        let name_of = |id: &str| {
            groups
                .security_groups()
                .iter()
                .find(|g| g.group_id() == Some(id))
                .and_then(|g| g.group_name())
                .unwrap_or(id)
                .to_string()
        };
        let mut out = std::collections::BTreeMap::new();
        for g in groups.security_groups() {
            let mut lines = Vec::new();
            for (dir, perms) in [
                ("in", g.ip_permissions()),
                ("out", g.ip_permissions_egress()),
            ] {
                for p in perms {
                    let ports = format!(
                        "{}:{:?}-{:?}",
                        p.ip_protocol().unwrap(),
                        p.from_port(),
                        p.to_port()
                    );
                    for r in p.ip_ranges() {
                        lines.push(format!("{dir} {ports} {}", r.cidr_ip().unwrap()));
                    }
                    for r in p.ipv6_ranges() {
                        lines.push(format!("{dir} {ports} {}", r.cidr_ipv6().unwrap()));
                    }
                    for u in p.user_id_group_pairs() {
                        lines.push(format!(
                            "{dir} {ports} group {}",
                            name_of(u.group_id().unwrap())
                        ));
                    }
                }
            }
            let mut lines: Vec<String> = lines.iter().map(|l| l.replace(&ctx.env, "ENV")).collect();
            lines.sort();
            out.insert(g.group_name().unwrap().replace(&ctx.env, "ENV"), lines);
        }
        out
    })
}

#[test]
fn security_groups_let_tasks_take_traffic_only_from_the_load_balancer() {
    let ctx = Ctx::new("sg");
    ctx.write_env(WITH_LB);
    ctx.apply();
    let got = rules(&ctx);
    let expected: std::collections::BTreeMap<String, Vec<String>> = [
        (
            "ENV-alb",
            vec![
                "in tcp:Some(443)-Some(443) 2001:db8::/32",
                "in tcp:Some(443)-Some(443) 203.0.113.0/24",
                "in tcp:Some(80)-Some(80) 2001:db8::/32",
                "in tcp:Some(80)-Some(80) 203.0.113.0/24",
                "out tcp:Some(3333)-Some(3333) 10.20.0.0/16",
            ],
        ),
        (
            "ENV-service-web",
            vec![
                "in tcp:Some(3333)-Some(3333) group ENV-alb",
                "out -1:None-None 0.0.0.0/0",
            ],
        ),
        ("ENV-service-worker", vec!["out -1:None-None 0.0.0.0/0"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(got, expected);
    ctx.assert_converged();

    // A rule added out of band is drift, and is revoked.
    ctx.rt.block_on(async {
        let groups = ctx
            .ec2
            .describe_security_groups()
            .filters(ctx.env_filter())
            .send()
            .await
            .unwrap();
        let web = groups
            .security_groups()
            .iter()
            .find(|g| g.group_name().unwrap().ends_with("-service-web"))
            .unwrap();
        ctx.ec2
            .authorize_security_group_ingress()
            .group_id(web.group_id().unwrap())
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        aws_sdk_ec2::types::IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("changed outside infra: ingress"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    assert_eq!(rules(&ctx), expected);
    ctx.assert_converged();
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    assert!(rules(&ctx).is_empty());
}
