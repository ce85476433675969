//! `infra policy`: each command runs behind a proxy that allows exactly the actions the policy
//! printed for it (refusing anything else as AWS does, in each protocol's form), so a
//! declaration that misses an action its adapter calls fails here. The proxy checks actions;
//! `Resource` and `Condition` scoping is AWS's to enforce and is checked on the documents
//! (`policy::tests`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::faults::{Counts, Faults, start_proxy};
use crate::harness::Ctx;

const EVERYTHING: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.60.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.60.0.0/24, 10.60.1.0/24]
  private_subnets: [10.60.10.0/24, 10.60.11.0/24]
  database_subnets: [10.60.20.0/24, 10.60.21.0/24]
  nat: single
load_balancer:
  domain: {name: app.{env}.example.com, zone: {env}.example.com}
repositories: {web: {}}
cluster: {}
alarms: {notify: [ops@example.com]}
databases: {main: {}}
bastion: {}
services:
  web:
    image: web
    cpu: 256
    memory: 512
    port: 8080
    deployment: {strategy: blue_green, rollback_alarms: true, test_port: 8443}
  api:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8081
    path_patterns: [\"/api/*\"]
    autoscaling: {min: 1, max: 3, cpu_percent: 60, requests_per_target: 500}
    uses: [main]
";

/// Every action the policy `infra policy ENV --for WHAT --split` prints allows.
fn allowed(ctx: &Ctx, what: &str) -> &'static BTreeSet<String> {
    let run = ctx.infra(&["policy", "{env}", "--for", what, "--split"]);
    run.success();
    let docs: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let actions: BTreeSet<String> = docs
        .iter()
        .flat_map(|d| d["Statement"].as_array().unwrap().clone())
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    Box::leak(Box::new(actions))
}

fn behind(ctx: &Ctx, what: &str) -> (String, std::sync::Arc<Counts>) {
    start_proxy(Faults {
        allow: Some(allowed(ctx, what)),
        ..Faults::default()
    })
}

/// `infra ARGS` through the proxy: exit code and output.
fn through(ctx: &Ctx, proxy: &str, args: &[&str]) -> (i32, String) {
    ctx.infra_with(&[("AWS_ENDPOINT_URL", proxy)], args)
}

#[test]
fn each_command_runs_with_exactly_the_policy_printed_for_it() {
    let ctx = Ctx::new("po");
    ctx.write_env(EVERYTHING);
    let no_refusal = |counts: &Counts| {
        let denied = counts.denied.lock().unwrap();
        assert!(denied.is_empty(), "refused: {denied:?}");
    };

    // The domain's zone exists before infra looks for it.
    ctx.hosted_zone();

    // The first deploy's repository, with the apply policy; CI pushes the first image.
    let (apply_proxy, apply_counts) = behind(&ctx, "apply");
    let (code, text) = through(
        &ctx,
        &apply_proxy,
        &["apply", "{env}", "--target", "repository", "--auto-approve"],
    );
    assert_eq!(code, 0, "{text}");
    crate::platform::push_image(&ctx, "v1");

    // The plan policy plans and is refused an apply at once.
    let (proxy, counts) = behind(&ctx, "plan");
    let (code, text) = through(
        &ctx,
        &proxy,
        &["plan", "{env}", "--detailed-exitcode", "--image", "web=v1"],
    );
    assert_eq!(code, 2, "{text}");
    no_refusal(&counts);
    let started = std::time::Instant::now();
    let (code, text) = through(
        &ctx,
        &proxy,
        &["apply", "{env}", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 1, "{text}");
    let denied = counts.denied.lock().unwrap().clone();
    assert_eq!(
        denied.len(),
        1,
        "refused more than once (retried?): {denied:?}"
    );
    assert!(
        text.contains(&format!("may not call `{}`", denied[0]))
            && text.contains(&format!("infra policy {} --for apply", ctx.env)),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    // The apply policy applies everything, re-plans "No changes." and changes in place.
    let (proxy, counts) = (apply_proxy, apply_counts);
    let (code, text) = through(
        &ctx,
        &proxy,
        &[
            "apply",
            "{env}",
            "--auto-approve",
            "--no-wait",
            "--image",
            "web=v1",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = through(&ctx, &proxy, &["plan", "{env}", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{text}");
    ctx.write_env(
        &EVERYTHING
            .replace(
                "alarms: {notify: [ops@example.com]}",
                "alarms: {notify: [sre@example.com], cpu_percent: 70}",
            )
            .replace("max: 3", "max: 4"),
    );
    let (code, text) = through(
        &ctx,
        &proxy,
        &["apply", "{env}", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = through(&ctx, &proxy, &["status", "{env}"]);
    assert!(code == 0 || code == 3, "{text}");
    no_refusal(&counts);
    ctx.assert_converged();

    // The deploy policy rolls out a new image, and nothing else.
    crate::platform::push_image(&ctx, "v2");
    let (proxy, counts) = behind(&ctx, "deploy");
    let (code, text) = through(
        &ctx,
        &proxy,
        &["deploy", "{env}", "--image", "web=v2", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");
    no_refusal(&counts);
    ctx.assert_converged();

    // The destroy policy destroys it all.
    let (proxy, counts) = behind(&ctx, "destroy");
    let (code, text) = through(&ctx, &proxy, &["destroy", "{env}", "--auto-approve"]);
    assert_eq!(code, 0, "{text}");
    no_refusal(&counts);
    let (code, text) = through(&ctx, &proxy, &["state", "list", "{env}"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains("service.web") && !text.contains("vpc"),
        "{text}"
    );
}
