//! ECS-native blue/green, canary and linear deployments: the second target group, the rules ECS
//! reweighs, the test listener and the infrastructure role exist and are wired as AWS needs them;
//! what the emulator accepts but does not return (the deployment configuration and the load
//! balancer's advanced configuration) is checked on the wire, in the CreateService and
//! UpdateService bodies a recording proxy saw.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::faults::{Faults, start_proxy};
use crate::harness::Ctx;

const STRATEGIES: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.40.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.40.0.0/24, 10.40.1.0/24]
  private_subnets: [10.40.10.0/24, 10.40.11.0/24]
  nat: single
load_balancer: {}
cluster: {}
services:
  web:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8080
    deployment: {strategy: WEB_STRATEGY, test_port: 8443}
  api:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8081
    path_patterns: [\"/api/*\"]
    deployment: {strategy: API_STRATEGY}
  jobs:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8082
    path_patterns: [\"/jobs/*\"]
    deployment: {strategy: linear, step_percent: 20, bake_minutes: 10}
";

fn env_file(web: &str, api: &str) -> String {
    let web = match web {
        "rolling" => "rolling}".to_string(),
        other => format!("{other}, test_port: 8443}}"),
    };
    STRATEGIES
        .replace("WEB_STRATEGY, test_port: 8443}", &web)
        .replace("API_STRATEGY", api)
}

/// The body of the ECS request for `service` among `bodies` (JSON), the last one sent.
fn request_for(bodies: &[String], service: &str) -> Value {
    bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .rfind(|v| {
            v["serviceName"].as_str() == Some(service)
                || v["service"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&format!("/{service}")) || s == service)
        })
        .unwrap_or_else(|| panic!("no request for service {service} in {bodies:#?}"))
}

/// Target group names → ARNs of this environment.
fn target_groups(ctx: &Ctx) -> BTreeMap<String, String> {
    ctx.rt.block_on(async {
        let out = ctx.aws.elbv2.describe_target_groups().send().await.unwrap();
        out.target_groups()
            .iter()
            .filter(|t| {
                t.target_group_name()
                    .unwrap_or_default()
                    .starts_with(&format!("{}-", ctx.env))
            })
            .map(|t| {
                (
                    t.target_group_name().unwrap().to_string(),
                    t.target_group_arn().unwrap().to_string(),
                )
            })
            .collect()
    })
}

/// Per listener port: (priority, paths, target groups with their weights) of each rule.
type Rules = BTreeMap<i32, Vec<(String, Vec<String>, Vec<(String, i32)>)>>;

fn rules(ctx: &Ctx) -> Rules {
    ctx.rt.block_on(async {
        let lbs = ctx
            .aws
            .elbv2
            .describe_load_balancers()
            .names(&ctx.env)
            .send()
            .await;
        let Ok(lbs) = lbs else {
            return Rules::new();
        };
        let mut out = Rules::new();
        for lb in lbs.load_balancers() {
            let listeners = ctx
                .aws
                .elbv2
                .describe_listeners()
                .load_balancer_arn(lb.load_balancer_arn().unwrap())
                .send()
                .await
                .unwrap();
            for l in listeners.listeners() {
                let rules = ctx
                    .aws
                    .elbv2
                    .describe_rules()
                    .listener_arn(l.listener_arn().unwrap())
                    .send()
                    .await
                    .unwrap();
                let entry = out.entry(l.port().unwrap()).or_default();
                for r in rules
                    .rules()
                    .iter()
                    .filter(|r| r.is_default() != Some(true))
                {
                    let paths = r
                        .conditions()
                        .iter()
                        .flat_map(|c| {
                            c.path_pattern_config()
                                .map(|p| p.values().to_vec())
                                .unwrap_or_default()
                        })
                        .collect();
                    let action = &r.actions()[0];
                    let groups = match action.forward_config() {
                        Some(f) => f
                            .target_groups()
                            .iter()
                            .map(|t| {
                                (
                                    t.target_group_arn().unwrap().to_string(),
                                    t.weight().unwrap_or(1),
                                )
                            })
                            .collect(),
                        None => action
                            .target_group_arn()
                            .map(|t| vec![(t.to_string(), 1)])
                            .unwrap_or_default(),
                    };
                    entry.push((r.priority().unwrap().to_string(), paths, groups));
                }
            }
        }
        out
    })
}

fn infrastructure_role(ctx: &Ctx) -> Option<(String, Vec<String>)> {
    let name = format!("infra-{}-us-east-1-ecs-infra", ctx.env);
    ctx.rt.block_on(async {
        let role = ctx.aws.iam.get_role().role_name(&name).send().await.ok()?;
        let trust = percent_encoding::percent_decode_str(
            role.role()?
                .assume_role_policy_document()
                .unwrap_or_default(),
        )
        .decode_utf8_lossy()
        .into_owned();
        let attached = ctx
            .aws
            .iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await
            .unwrap();
        Some((
            trust,
            attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect(),
        ))
    })
}

#[test]
fn blue_green_canary_and_linear_are_provisioned_wired_and_switchable() {
    let ctx = Ctx::new("bg");
    ctx.write_env(&env_file(
        "blue_green",
        "canary, canary_percent: 10, step_bake_minutes: 2",
    ));
    let (proxy, wire) = start_proxy(Faults::default());
    let through_proxy = |args: &[&str]| {
        let (code, text) = ctx.infra_with(&[("AWS_ENDPOINT_URL", &proxy)], args);
        assert_eq!(code, 0, "{text}");
        text
    };

    let plan = ctx.infra(&["plan", "{env}"]);
    let plan = plan.success();
    for id in [
        "target-group.web.green",
        "target-group.api.green",
        "target-group.jobs.green",
        "listener.test",
        "listener-rule.web.test",
        "listener-rule.web",
        "role.ecs-infrastructure",
    ] {
        assert!(
            plan.stdout.contains(id),
            "plan lacks {id}:\n{}",
            plan.stdout
        );
    }
    through_proxy(&["apply", "{env}", "--auto-approve", "--no-wait"]);

    // Two target groups per service, named as the contract says.
    let tgs = target_groups(&ctx);
    let env = &ctx.env;
    for svc in ["web", "api", "jobs"] {
        assert!(tgs.contains_key(&format!("{env}-{svc}")), "{tgs:?}");
        assert!(tgs.contains_key(&format!("{env}-{svc}-g")), "{tgs:?}");
    }
    let pair = |svc: &str, blue: i32, green: i32| {
        vec![
            (tgs[&format!("{env}-{svc}")].clone(), blue),
            (tgs[&format!("{env}-{svc}-g")].clone(), green),
        ]
    };
    // Each service's production rule forwards to both groups (all traffic on the first), the
    // service that had the default action gets a catch-all rule after every path rule, and the
    // test listener has its own rule.
    let live = rules(&ctx);
    let production = &live[&80];
    let rule = |paths: &[&str]| {
        production
            .iter()
            .find(|(_, p, _)| p == &paths.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no rule for {paths:?} in {production:?}"))
            .clone()
    };
    assert_eq!(rule(&["/*"]).0, "50000");
    assert_eq!(rule(&["/*"]).2, pair("web", 100, 0));
    assert_eq!(rule(&["/api/*"]).2, pair("api", 100, 0));
    assert_eq!(rule(&["/jobs/*"]).2, pair("jobs", 100, 0));
    let test = &live[&8443];
    assert_eq!(test.len(), 1, "{test:?}");
    assert_eq!(test[0].1, vec!["/*".to_string()]);
    assert_eq!(test[0].2, pair("web", 100, 0));

    // The role ECS shifts traffic with: trusted by ECS, AWS's policy for load balancers.
    let (trust, attached) = infrastructure_role(&ctx).expect("the infrastructure role exists");
    assert!(trust.contains("ecs.amazonaws.com"), "{trust}");
    assert_eq!(
        attached,
        ["arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"]
    );

    // On the wire: the strategies, bake times, percentages and advanced configuration.
    let created = wire.sent("CreateService");
    let web = request_for(&created, "web");
    assert_eq!(web["deploymentController"]["type"], "ECS");
    assert_eq!(web["deploymentConfiguration"]["strategy"], "BLUE_GREEN");
    assert_eq!(web["deploymentConfiguration"]["bakeTimeInMinutes"], 5);
    assert!(
        web["deploymentConfiguration"]["deploymentCircuitBreaker"].is_null(),
        "{web}"
    );
    let adv = &web["loadBalancers"][0]["advancedConfiguration"];
    assert_eq!(
        web["loadBalancers"][0]["targetGroupArn"],
        tgs[&format!("{env}-web")]
    );
    assert_eq!(adv["alternateTargetGroupArn"], tgs[&format!("{env}-web-g")]);
    assert!(
        adv["productionListenerRule"]
            .as_str()
            .is_some_and(|r| r.contains(":listener-rule/")),
        "{adv}"
    );
    assert!(
        adv["testListenerRule"]
            .as_str()
            .is_some_and(|r| r.contains(":listener-rule/") && r != adv["productionListenerRule"]),
        "{adv}"
    );
    assert!(
        adv["roleArn"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("role/infra-{env}-us-east-1-ecs-infra"))),
        "{adv}"
    );
    let api = request_for(&created, "api");
    assert_eq!(api["deploymentConfiguration"]["strategy"], "CANARY");
    assert_eq!(
        api["deploymentConfiguration"]["canaryConfiguration"]["canaryPercent"],
        10.0
    );
    assert_eq!(
        api["deploymentConfiguration"]["canaryConfiguration"]["canaryBakeTimeInMinutes"],
        2
    );
    assert!(
        api["loadBalancers"][0]["advancedConfiguration"]["testListenerRule"].is_null(),
        "{api}"
    );
    let jobs = request_for(&created, "jobs");
    assert_eq!(jobs["deploymentConfiguration"]["strategy"], "LINEAR");
    assert_eq!(jobs["deploymentConfiguration"]["bakeTimeInMinutes"], 10);
    assert_eq!(
        jobs["deploymentConfiguration"]["linearConfiguration"]["stepPercent"],
        20.0
    );
    ctx.assert_converged();

    // Live status: every service with its two target groups' targets; a rollout the emulator
    // never finishes is in progress, which is shown, not degraded.
    let status = ctx.infra(&["status", "{env}", "--json"]);
    status.success();
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["healthy"], true, "{status}");
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "jobs", "web"], "{status}");
    assert_eq!(status["services"][0]["rollout"], "IN_PROGRESS", "{status}");
    assert_eq!(
        status["services"][0]["targets"],
        serde_json::json!({"healthy": 0, "unhealthy": 0})
    );
    // --watch prints the status (stamped with the time read) and keeps reading until stopped.
    let mut watching = ctx
        .command(&["status", &ctx.env, "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(watching.stdout.take().unwrap()));
    let first: Vec<String> = lines
        .by_ref()
        .map(Result::unwrap)
        .take_while(|l| l != "Healthy.")
        .collect();
    assert!(
        first.iter().any(|l| l.contains("web  0/1 running")),
        "{first:#?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        watching.try_wait().unwrap().is_none(),
        "--watch stopped by itself"
    );
    watching.kill().unwrap();
    watching.wait().unwrap();

    // Switching in place: web back to rolling (its green group, catch-all and test rules and
    // the test listener go; the listener's default action is its again), api to blue/green.
    ctx.write_env(&env_file("rolling", "blue_green"));
    through_proxy(&["apply", "{env}", "--auto-approve", "--no-wait"]);
    let updated = wire.sent("UpdateService");
    let web = request_for(&updated, "web");
    assert_eq!(web["deploymentConfiguration"]["strategy"], "ROLLING");
    assert_eq!(
        web["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"],
        true
    );
    assert!(
        web["loadBalancers"][0].is_object()
            && web["loadBalancers"][0]["advancedConfiguration"].is_null(),
        "{web}"
    );
    let api = request_for(&updated, "api");
    assert_eq!(api["deploymentConfiguration"]["strategy"], "BLUE_GREEN");
    assert!(api["deploymentConfiguration"]["canaryConfiguration"].is_null());
    let tgs = target_groups(&ctx);
    assert!(!tgs.contains_key(&format!("{env}-web-g")), "{tgs:?}");
    assert!(tgs.contains_key(&format!("{env}-api-g")), "{tgs:?}");
    let live = rules(&ctx);
    assert!(!live.contains_key(&8443), "{live:?}");
    assert!(
        !live[&80]
            .iter()
            .any(|(_, p, _)| p == &vec!["/*".to_string()]),
        "{live:?}"
    );
    ctx.assert_converged();

    // Everything goes with the environment, the role and its attachment included.
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    assert!(target_groups(&ctx).is_empty());
    assert!(infrastructure_role(&ctx).is_none());
}

const ROLLBACK: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.41.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.41.0.0/24, 10.41.1.0/24]
  private_subnets: [10.41.10.0/24, 10.41.11.0/24]
  nat: single
repositories: {web: {}}
cluster: {}
services:
  web:
    image: web:${IMAGE_TAG}
    cpu: 256
    memory: 512
";

/// The task definition the service runs, and the family's ACTIVE revisions.
fn revisions(ctx: &Ctx) -> (String, Vec<String>) {
    let services = ctx
        .rt
        .block_on(
            ctx.ecs()
                .describe_services()
                .cluster(&ctx.env)
                .services("web")
                .send(),
        )
        .unwrap();
    let running = services.services()[0]
        .task_definition()
        .unwrap()
        .to_string();
    (running, ctx.active_revisions("web"))
}

fn revision(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap()
}

#[test]
fn rollback_returns_a_service_to_the_revision_its_last_change_replaced() {
    let ctx = Ctx::new("rb");
    ctx.write_env(ROLLBACK);
    let with_tag = |tag: &str, args: &[&str]| ctx.infra_with(&[("IMAGE_TAG", tag)], args);
    let apply = |tag: &str| {
        let (code, text) = with_tag(tag, &["apply", "{env}", "--auto-approve", "--no-wait"]);
        assert_eq!(code, 0, "{text}");
    };
    let converged = |tag: &str| {
        let (code, text) = with_tag(tag, &["plan", "{env}", "--detailed-exitcode"]);
        assert_eq!(code, 0, "{text}");
    };
    let (code, text) = with_tag(
        "t1",
        &["apply", "{env}", "--auto-approve", "--target", "repository"],
    );
    assert_eq!(code, 0, "{text}");
    // Tags of different lengths: the test manifests differ (and so their digests) by length.
    for tag in ["t1", "tt2", "ttt3"] {
        crate::platform::push_image(&ctx, tag);
    }
    apply("t1");
    let (v1, active) = revisions(&ctx);
    assert_eq!(active, std::slice::from_ref(&v1));

    // A change keeps the revision it replaces, outside the plan: still converged.
    apply("tt2");
    let (v2, active) = revisions(&ctx);
    assert_ne!(v1, v2);
    assert_eq!(active, [v1.clone(), v2.clone()]);
    converged("tt2");

    // Nothing in progress (the emulator reports no service deployment): back to v1.
    let (code, text) = with_tag(
        "tt2",
        &["rollback", "{env}", "web", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "task definition {}-web:{} → {}-web:{}",
            ctx.env,
            revision(&v2),
            ctx.env,
            revision(&v1)
        )),
        "{text}"
    );
    assert_eq!(revisions(&ctx).0, v1);
    // Rolled back already: no earlier revision is left to return to.
    let (code, text) = with_tag("tt2", &["rollback", "{env}", "web", "--auto-approve"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("has no earlier revision"), "{text}");

    // The file and the service now disagree, and the plan says why and how to agree.
    let (code, text) = with_tag("tt2", &["plan", "{env}", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("rolled back by `infra rollback` at ")
            && text.contains(&format!("to {}-web:{}", ctx.env, revision(&v1))),
        "{text}"
    );
    assert!(!text.contains("changed outside infra"), "{text}");
    let state: Value = serde_json::from_slice(&ctx.state_bytes()).unwrap();
    assert_eq!(state["rolled_back"]["service.web"]["to"], v1);

    // Apply returns to the file; the next change keeps v2 and lets v1 go.
    apply("tt2");
    assert_eq!(revisions(&ctx).0, v2);
    let state: Value = serde_json::from_slice(&ctx.state_bytes()).unwrap();
    assert!(state.get("rolled_back").is_none(), "{state}");
    converged("tt2");
    apply("ttt3");
    let (v3, active) = revisions(&ctx);
    assert_eq!(active, [v2.clone(), v3.clone()]);
    converged("ttt3");

    let (code, text) = with_tag("ttt3", &["destroy", "{env}", "--auto-approve"]);
    assert_eq!(code, 0, "{text}");
    let left = ctx.active_revisions("web");
    assert!(left.is_empty(), "{left:?}");
    // Deregistered revisions are deleted too: nothing of the family is left to list.
    let tagged = ctx.rt.block_on(async {
        ctx.aws
            .tagging
            .get_resources()
            .resource_type_filters("ecs:task-definition")
            .tag_filters(
                aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                    .key("infra:environment")
                    .values(&ctx.env)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .resource_tag_mapping_list()
            .len()
    });
    assert_eq!(tagged, 0);
}
