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
    image: public.ecr.aws/docker/library/busybox:1.36
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
  ingress_cidrs: [203.0.113.0/24, \"2001:db8::/32\"]
repositories: {web: {}}
services:
  web:
    image: public.ecr.aws/docker/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 3333
  worker:
    image: public.ecr.aws/docker/library/busybox:1.36
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

pub(crate) const SERVICES: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.30.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.30.0.0/24, 10.30.1.0/24]
  private_subnets: [10.30.10.0/24, 10.30.11.0/24]
  nat: single
repositories: {web: {}}
services:
  web:
    image: web:${IMAGE_TAG:-v1}
    cpu: 256
    memory: 512
    desired_count: 3
    environment: {NODE_ENV: production}
    secrets: {DB_PASSWORD: \"arn:aws:secretsmanager:us-east-1:123456789012:secret:db\"}
    deployment: {min_healthy_percent: 50, max_percent: 200, circuit_breaker: rollback}
";

/// Pushes a (tiny, valid) image manifest to ECR and returns its digest.
pub(crate) fn push_image(ctx: &Ctx, tag: &str) -> String {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": format!("sha256:{:064x}", tag.len())},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654, "digest": format!("sha256:{:064x}", tag.len() + 100)}]
    });
    let out = ctx
        .rt
        .block_on(
            ctx.ecr()
                .put_image()
                .repository_name(format!("{}/web", ctx.env))
                .image_tag(tag)
                .image_manifest(manifest.to_string())
                .send(),
        )
        .unwrap();
    out.image()
        .unwrap()
        .image_id()
        .unwrap()
        .image_digest()
        .unwrap()
        .to_string()
}

#[test]
fn services_run_the_pinned_image_with_least_privilege() {
    let ctx = Ctx::new("svc");
    ctx.write_env(SERVICES);
    // Before the repository exists the image cannot be pinned: the plan says what to do.
    let early = ctx.infra(&["plan", "{env}"]);
    early.code(1);
    assert!(
        early.stderr.contains("--target repository"),
        "{}",
        early.stderr
    );
    ctx.infra(&["apply", "{env}", "--auto-approve", "--target", "repository"])
        .success();
    let missing = ctx.infra(&["plan", "{env}"]);
    missing.code(1);
    assert!(
        missing.stderr.contains("no image tagged `v1`"),
        "{}",
        missing.stderr
    );

    let v1 = push_image(&ctx, "v1");
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains(&format!("/{}/web@{v1}", ctx.env)),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("infra:image: \"web:v1\""),
        "{}",
        plan.stdout
    );
    ctx.apply();
    ctx.assert_converged();

    let cluster = ctx.env.clone();
    let (td, service) = ctx.rt.block_on(async {
        let services = ctx
            .ecs()
            .describe_services()
            .cluster(&cluster)
            .services("web")
            .send()
            .await
            .unwrap();
        let service = services.services()[0].clone();
        let td = ctx
            .ecs()
            .describe_task_definition()
            .task_definition(service.task_definition().unwrap())
            .send()
            .await
            .unwrap();
        (td.task_definition().unwrap().clone(), service)
    });
    assert_eq!(service.desired_count(), 3);
    assert_eq!(service.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let vpc = service
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("DISABLED"));
    assert_eq!(vpc.subnets().len(), 2);
    let private: Vec<String> = ctx.rt.block_on(async {
        let subnets = ctx
            .ec2
            .describe_subnets()
            .filters(ctx.env_filter())
            .send()
            .await
            .unwrap();
        subnets
            .subnets()
            .iter()
            .filter(|s| s.map_public_ip_on_launch() != Some(true))
            .map(|s| s.subnet_id().unwrap().to_string())
            .collect()
    });
    for s in vpc.subnets() {
        assert!(private.contains(s), "service in a public subnet {s}");
    }
    assert_eq!((td.cpu(), td.memory()), (Some("256"), Some("512")));
    assert_eq!(td.family(), Some(format!("{}-web", ctx.env).as_str()));
    let c = &td.container_definitions()[0];
    assert_eq!(
        c.image(),
        Some(format!("{}@{v1}", c.image().unwrap().split('@').next().unwrap()).as_str())
    );
    assert!(
        c.image()
            .unwrap()
            .ends_with(&format!("/{}/web@{v1}", ctx.env))
    );
    assert_eq!(
        c.secrets()[0].value_from(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"
    );
    let log = c.log_configuration().unwrap().options().unwrap();
    assert_eq!(log["awslogs-group"], format!("/ecs/{}/web", ctx.env));
    // The execution role can read exactly the referenced secret, and only this environment's
    // repositories and log groups.
    let role = td
        .execution_role_arn()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let policy = ctx.rt.block_on(async {
        let out = ctx
            .aws
            .iam
            .get_role_policy()
            .role_name(&role)
            .policy_name("infra-task-execution")
            .send()
            .await
            .unwrap();
        let text = percent_encoding::percent_decode_str(out.policy_document())
            .decode_utf8_lossy()
            .into_owned();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    });
    let statements = policy["Statement"].as_array().unwrap();
    let resources: Vec<String> = statements
        .iter()
        .map(|s| s["Resource"].to_string())
        .collect();
    assert!(
        resources
            .iter()
            .any(|r| r.contains(&format!("repository/{}/*", ctx.env))),
        "{resources:?}"
    );
    assert!(
        resources
            .iter()
            .any(|r| r.contains(&format!("log-group:/ecs/{}/*", ctx.env))),
        "{resources:?}"
    );
    assert!(
        resources.iter().any(|r| r.contains("secret:db")),
        "{resources:?}"
    );

    // A different desired count: exactly one in-place change.
    ctx.write_env(&SERVICES.replace("desired_count: 3", "desired_count: 5"));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("~ service.web"), "{}", plan.stdout);
    ctx.apply();
    ctx.assert_converged();

    // A new image tag: a new revision, the service moved to it, the old one deregistered.
    let v2 = push_image(&ctx, "v2-new");
    let plan = ctx
        .command(&["plan", &ctx.env])
        .env("IMAGE_TAG", "v2-new")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("-/+ task-definition.web"), "{text}");
    assert!(text.contains("~ service.web"), "{text}");
    assert!(
        text.contains("Plan: 1 to add, 1 to change, 1 to destroy."),
        "{text}"
    );
    let run = ctx
        .command(&["apply", &ctx.env, "--auto-approve", "--no-wait"])
        .env("IMAGE_TAG", "v2-new")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let active = ctx.active_revisions("web");
    // The replaced revision stays ACTIVE for `infra rollback`, marked as kept.
    assert_eq!(active.len(), 2, "{active:?}");
    let kept = ctx.rt.block_on(async {
        ctx.ecs()
            .list_tags_for_resource()
            .resource_arn(&active[0])
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .any(|t| t.key() == Some("infra:previous"))
    });
    assert!(kept, "{active:?}");
    let converged = ctx
        .command(&["plan", &ctx.env, "--detailed-exitcode"])
        .env("IMAGE_TAG", "v2-new")
        .output()
        .unwrap();
    assert_eq!(
        converged.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&converged.stdout)
    );
    let services = ctx
        .rt
        .block_on(
            ctx.ecs()
                .describe_services()
                .cluster(&cluster)
                .services("web")
                .send(),
        )
        .unwrap();
    let td_now = services.services()[0]
        .task_definition()
        .unwrap()
        .to_string();
    let image_now = ctx
        .rt
        .block_on(
            ctx.ecs()
                .describe_task_definition()
                .task_definition(&td_now)
                .send(),
        )
        .unwrap();
    assert!(
        image_now.task_definition().unwrap().container_definitions()[0]
            .image()
            .unwrap()
            .ends_with(&v2)
    );

    let destroyed = ctx
        .command(&["destroy", &ctx.env, "--auto-approve"])
        .env("IMAGE_TAG", "v2-new")
        .output()
        .unwrap();
    assert!(
        destroyed.status.success(),
        "{}",
        String::from_utf8_lossy(&destroyed.stderr)
    );
    ctx.rt.block_on(async {
        let services = ctx
            .ecs()
            .describe_services()
            .cluster(&cluster)
            .services("web")
            .send()
            .await;
        let active = services
            .map(|s| {
                s.services()
                    .iter()
                    .filter(|s| s.status() == Some("ACTIVE"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(active, 0);
        assert!(
            ctx.aws
                .iam
                .get_role()
                .role_name(&role)
                .send()
                .await
                .is_err()
        );
    });
}

const ROUTED: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.40.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.40.0.0/24, 10.40.1.0/24]
  private_subnets: [10.40.10.0/24, 10.40.11.0/24]
  nat: per_az
load_balancer: {idle_timeout_seconds: 120}
repositories: {web: {}, api: {keep_last: 10}}
services:
  web:
    image: web:v1
    cpu: 256
    memory: 512
    port: 3333
    health_check_path: /health
  api:
    image: public.ecr.aws/docker/library/nginx:1.27
    cpu: 512
    memory: 1024
    port: 4000
    path_patterns: [\"/api/*\"]
    health_check_path: /api/health
";

#[test]
fn load_balancer_routes_paths_to_services() {
    let ctx = Ctx::new("alb");
    ctx.write_env(ROUTED);
    ctx.infra(&["apply", "{env}", "--auto-approve", "--target", "repository"])
        .success();
    push_image(&ctx, "v1");
    ctx.apply();
    ctx.assert_converged();
    let cluster = ctx.env.clone();
    ctx.rt.block_on(async {
        let elb = &ctx.aws.elbv2;
        let lb = elb
            .describe_load_balancers()
            .names(&ctx.env)
            .send()
            .await
            .unwrap();
        let lb = &lb.load_balancers()[0];
        assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
        let subnets = ctx
            .ec2
            .describe_subnets()
            .filters(ctx.env_filter())
            .send()
            .await
            .unwrap();
        let tier = |id: &str| {
            let s = subnets
                .subnets()
                .iter()
                .find(|s| s.subnet_id() == Some(id))
                .unwrap();
            s.tags()
                .iter()
                .find(|t| t.key() == Some("infra:id"))
                .unwrap()
                .value()
                .unwrap()
                .to_string()
        };
        let mut lb_subnets: Vec<String> = lb
            .availability_zones()
            .iter()
            .map(|z| tier(z.subnet_id().unwrap()))
            .collect();
        lb_subnets.sort();
        assert_eq!(
            lb_subnets,
            ["subnet.public.us-east-1a", "subnet.public.us-east-1b"]
        );
        let groups = ctx
            .ec2
            .describe_security_groups()
            .filters(ctx.env_filter())
            .send()
            .await
            .unwrap();
        let group_name = |id: &str| {
            groups
                .security_groups()
                .iter()
                .find(|g| g.group_id() == Some(id))
                .unwrap()
                .group_name()
                .unwrap()
                .replace(&ctx.env, "ENV")
        };
        assert_eq!(
            lb.security_groups()
                .iter()
                .map(|g| group_name(g))
                .collect::<Vec<_>>(),
            ["ENV-alb"]
        );
        let attrs = elb
            .describe_load_balancer_attributes()
            .load_balancer_arn(lb.load_balancer_arn().unwrap())
            .send()
            .await
            .unwrap();
        let idle = attrs
            .attributes()
            .iter()
            .find(|a| a.key() == Some("idle_timeout.timeout_seconds"))
            .unwrap();
        assert_eq!(idle.value(), Some("120"));

        let tgs = elb
            .describe_target_groups()
            .names(format!("{}-web", ctx.env))
            .names(format!("{}-api", ctx.env))
            .send()
            .await
            .unwrap();
        let tg = |svc: &str| {
            tgs.target_groups()
                .iter()
                .find(|t| t.target_group_name() == Some(format!("{}-{svc}", ctx.env).as_str()))
                .unwrap()
                .clone()
        };
        let (web_tg, api_tg) = (tg("web"), tg("api"));
        assert_eq!(
            (
                web_tg.port(),
                web_tg.target_type().map(|t| t.as_str()),
                web_tg.health_check_path()
            ),
            (Some(3333), Some("ip"), Some("/health"))
        );
        assert_eq!(
            (api_tg.port(), api_tg.health_check_path()),
            (Some(4000), Some("/api/health"))
        );

        let listeners = elb
            .describe_listeners()
            .load_balancer_arn(lb.load_balancer_arn().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(listeners.listeners().len(), 1);
        let http = &listeners.listeners()[0];
        assert_eq!(http.port(), Some(80));
        assert_eq!(
            http.default_actions()[0].target_group_arn(),
            web_tg.target_group_arn()
        );
        let rules = elb
            .describe_rules()
            .listener_arn(http.listener_arn().unwrap())
            .send()
            .await
            .unwrap();
        let rule = rules
            .rules()
            .iter()
            .find(|r| r.is_default() != Some(true))
            .unwrap();
        assert_eq!(rule.priority(), Some("10"));
        assert_eq!(
            rule.actions()[0].target_group_arn(),
            api_tg.target_group_arn()
        );
        let paths: Vec<&String> = rule
            .conditions()
            .iter()
            .flat_map(|c| {
                c.path_pattern_config()
                    .map(|p| p.values())
                    .unwrap_or(c.values())
            })
            .collect();
        assert_eq!(paths, ["/api/*"]);

        let services = ctx
            .ecs()
            .describe_services()
            .cluster(&cluster)
            .services("web")
            .services("api")
            .send()
            .await
            .unwrap();
        for (svc, tg, port) in [("web", &web_tg, 3333), ("api", &api_tg, 4000)] {
            let s = services
                .services()
                .iter()
                .find(|s| s.service_name() == Some(svc))
                .unwrap();
            let lb = &s.load_balancers()[0];
            assert_eq!(
                (
                    lb.target_group_arn(),
                    lb.container_name(),
                    lb.container_port()
                ),
                (tg.target_group_arn(), Some(svc), Some(port))
            );
            let vpc = s
                .network_configuration()
                .unwrap()
                .awsvpc_configuration()
                .unwrap();
            assert_eq!(
                vpc.security_groups()
                    .iter()
                    .map(|g| group_name(g))
                    .collect::<Vec<_>>(),
                [format!("ENV-service-{svc}")]
            );
            let mut tiers: Vec<String> = vpc.subnets().iter().map(|s| tier(s)).collect();
            tiers.sort();
            assert_eq!(
                tiers,
                ["subnet.private.us-east-1a", "subnet.private.us-east-1b"]
            );
        }
    });
    let dns = ctx.infra(&["output", "{env}", "load_balancer_dns"]);
    let dns = dns.success().stdout.trim().to_string();
    assert!(!dns.is_empty());
    let url = ctx.infra(&["output", "{env}", "url"]);
    assert_eq!(url.success().stdout.trim(), format!("http://{dns}"));

    // One service's cpu changes: one new revision (and the service moved to it), nothing else.
    ctx.write_env(&ROUTED.replace("cpu: 512\n    memory: 1024", "cpu: 1024\n    memory: 2048"));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("Plan: 1 to add, 1 to change, 1 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("-/+ task-definition.api"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    ctx.assert_converged();

    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    ctx.rt.block_on(async {
        assert!(
            ctx.aws
                .elbv2
                .describe_load_balancers()
                .names(&ctx.env)
                .send()
                .await
                .is_err()
        );
        assert!(
            ctx.aws
                .elbv2
                .describe_target_groups()
                .names(format!("{}-web", ctx.env))
                .send()
                .await
                .is_err()
        );
    });
    assert!(
        ctx.infra(&["state", "list", "{env}"])
            .success()
            .stdout
            .is_empty()
    );
}

/// An autoscaled service: its scalable target and a policy per metric, checked from the AWS side;
/// the count autoscaling sets is not drift; without `autoscaling` the file owns the count again.
#[test]
fn autoscaled_services_get_a_target_and_policies_and_keep_their_scaled_count() {
    use aws_sdk_applicationautoscaling::types::ServiceNamespace;
    let ctx = Ctx::new("scale");
    let scaled = WITH_LB.replace(
        "    port: 3333\n",
        "    port: 3333\n    desired_count: 2\n    autoscaling: {min: 2, max: 6, cpu_percent: 50, requests_per_target: 300}\n",
    );
    ctx.write_env(&scaled);
    ctx.apply();
    let resource = format!("service/{}/web", ctx.env);
    let (targets, policies) = ctx.rt.block_on(async {
        let targets = ctx
            .aws
            .autoscaling()
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_ids(&resource)
            .send()
            .await
            .unwrap();
        let policies = ctx
            .aws
            .autoscaling()
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&resource)
            .send()
            .await
            .unwrap();
        (targets, policies)
    });
    let t = &targets.scalable_targets()[0];
    assert_eq!((t.min_capacity(), t.max_capacity()), (2, 6));
    let mut got: Vec<(String, f64, Option<String>)> = policies
        .scaling_policies()
        .iter()
        .map(|p| {
            let c = p.target_tracking_scaling_policy_configuration().unwrap();
            let spec = c.predefined_metric_specification().unwrap();
            (
                p.policy_name().to_string(),
                c.target_value(),
                spec.resource_label().map(str::to_string),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, format!("infra-{}-web-cpu", ctx.env));
    assert_eq!((got[0].1, got[0].2.as_deref()), (50.0, None));
    assert_eq!(got[1].0, format!("infra-{}-web-requests", ctx.env));
    assert_eq!(got[1].1, 300.0);
    let label = got[1].2.clone().unwrap();
    assert!(
        label.starts_with(&format!("app/{}/", ctx.env))
            && label.contains(&format!("/targetgroup/{}-web/", ctx.env)),
        "{label}"
    );
    ctx.assert_converged();

    // Autoscaling moves the count: that is not a change to undo.
    let set_count = |n: i32| {
        ctx.rt
            .block_on(
                ctx.ecs()
                    .update_service()
                    .cluster(&ctx.env)
                    .service("web")
                    .desired_count(n)
                    .send(),
            )
            .unwrap();
    };
    set_count(5);
    ctx.assert_converged();

    // Without autoscaling, the target and policies go and the file owns the count again.
    ctx.write_env(&WITH_LB.replace("    port: 3333\n", "    port: 3333\n    desired_count: 2\n"));
    let plan = ctx.infra(&["plan", "{env}"]);
    let text = &plan.success().stdout;
    for id in [
        "scalable-target.web",
        "scaling-policy.web.cpu",
        "scaling-policy.web.requests",
    ] {
        assert!(
            text.contains(&format!("- {id}")),
            "{id} not deleted:\n{text}"
        );
    }
    assert!(text.contains("desired_count"), "{text}");
    ctx.apply();
    let (targets, count) = ctx.rt.block_on(async {
        let targets = ctx
            .aws
            .autoscaling()
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_ids(&resource)
            .send()
            .await
            .unwrap();
        let services = ctx
            .ecs()
            .describe_services()
            .cluster(&ctx.env)
            .services("web")
            .send()
            .await
            .unwrap();
        (targets, services.services()[0].desired_count())
    });
    assert!(targets.scalable_targets().is_empty());
    assert_eq!(count, 2);
    ctx.assert_converged();
}

/// Gives an image scan findings, as ECR would after a scan (moto's configuration API, then a
/// scan started so the image has one).
fn set_findings(ctx: &Ctx, digest: &str, critical: i32) {
    let started = ctx.rt.block_on(
        ctx.ecr()
            .start_image_scan()
            .repository_name(format!("{}/web", ctx.env))
            .image_id(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_digest(digest)
                    .build(),
            )
            .send(),
    );
    // One scan a day per image: a second start finds the first.
    if let Err(e) = started {
        let e = e.into_service_error();
        assert!(e.is_limit_exceeded_exception(), "{e:?}");
    }
    let body = serde_json::json!({
        "region": "us-east-1",
        "results": [{
            "registryId": "123456789012",
            "repositoryName": format!("{}/web", ctx.env),
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": "COMPLETE", "description": "done"},
            "imageScanFindings": {
                "findingSeverityCounts": {"CRITICAL": critical, "HIGH": 1},
                "findings": [
                    {"name": "CVE-2026-0001", "severity": "CRITICAL", "attributes": [{"key": "package_name", "value": "openssl"}]},
                    {"name": "CVE-2026-0002", "severity": "HIGH", "attributes": [{"key": "package_name", "value": "zlib"}]}
                ]
            }
        }]
    })
    .to_string();
    let endpoint = crate::harness::endpoint();
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /moto-api/static/ecr/scan-finding-results HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 20"), "{answer}");
}

/// The image gate: an image the plan newly pins is judged by its scan. Not scanned: a warning.
/// CRITICAL findings: the plan stops, naming the image, the counts and the worst findings, unless
/// `--allow-vulnerable`; `--block-severity high` stops at HIGH too.
#[test]
fn a_critically_vulnerable_image_stops_the_plan_unless_allowed() {
    let ctx = Ctx::new("gate");
    ctx.write_env(SERVICES);
    ctx.infra(&["apply", "{env}", "--auto-approve", "--target", "repository"])
        .success();
    let digest = push_image(&ctx, "v1");
    let unscanned = ctx.infra(&["plan", "{env}"]);
    assert!(
        unscanned
            .success()
            .stdout
            .contains("warning[image-not-scanned] environments/"),
        "{}",
        unscanned.stdout
    );

    set_findings(&ctx, &digest, 2);
    let blocked = ctx.infra(&["plan", "{env}"]);
    blocked.code(1);
    assert!(
        blocked.stderr.contains(&format!(
            "{}/web@{digest} has 2 CRITICAL finding(s) at or above CRITICAL",
            ctx.env
        )) && blocked.stderr.contains("CVE-2026-0001 CRITICAL in openssl")
            && blocked.stderr.contains("--allow-vulnerable"),
        "{}",
        blocked.stderr
    );
    let allowed = ctx.infra(&["plan", "{env}", "--allow-vulnerable"]);
    assert!(
        allowed
            .success()
            .stdout
            .contains("let through by --allow-vulnerable"),
        "{}",
        allowed.stdout
    );

    // Another image with only a HIGH finding passes the default gate, not `--block-severity high`.
    let v22 = push_image(&ctx, "v22");
    set_findings(&ctx, &v22, 0);
    let plan_v22 = |extra: &[&str]| {
        let mut args = vec!["plan", ctx.env.as_str()];
        args.extend_from_slice(extra);
        ctx.command(&args).env("IMAGE_TAG", "v22").output().unwrap()
    };
    assert_eq!(plan_v22(&[]).status.code(), Some(0));
    let high = plan_v22(&["--block-severity", "high"]);
    assert_eq!(high.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&high.stderr).contains("has 1 HIGH finding(s) at or above HIGH")
    );

    // Applied with the gate let through; the pinned image is not judged again.
    ctx.infra(&[
        "apply",
        "{env}",
        "--auto-approve",
        "--no-wait",
        "--allow-vulnerable",
    ])
    .success();
    ctx.assert_converged();
}
