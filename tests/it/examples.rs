//! The example environment as users see it: `environments/stage.yaml` planned, applied, planned
//! again and destroyed against the emulator, each output an insta snapshot with ids, ARNs,
//! digests, names and times replaced by placeholders. Progress lines arrive in completion order,
//! which parallel steps make vary: the snapshots keep them sorted.

use std::sync::OnceLock;

use crate::harness::Ctx;
use crate::platform::push_image;

fn placeholders() -> &'static [(regex::Regex, &'static str)] {
    static R: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    R.get_or_init(|| {
        [
            (r"sha256:[0-9a-f]{64}", "sha256:[digest]"),
            (
                r"\b(sg|vpc|subnet|igw|nat|rtb|eipalloc|rtbassoc)-[0-9a-f]{8,17}\b",
                "$1-[id]",
            ),
            // Load balancer, target group, listener and rule ARNs end in 16-hex-digit ids.
            (r"/[0-9a-f]{16}\b", "/[id]"),
            (
                r"-\d+\.us-east-1\.elb\.amazonaws\.com",
                "-[n].us-east-1.elb.amazonaws.com",
            ),
            (r"(?m)^\d\d:\d\d:\d\d ", "[hh:mm:ss] "),
            (r"\[\d+\.\d+s\]", "[time]"),
            (r"\d+\.\ds", "[s]"),
        ]
        .into_iter()
        .map(|(p, w)| (regex::Regex::new(p).unwrap(), w))
        .collect()
    })
}

fn shown(ctx: &Ctx, text: &str) -> String {
    let mut out = ctx.redact(text).replace(&ctx.bucket, "[bucket]");
    for (re, with) in placeholders() {
        out = re.replace_all(&out, *with).into_owned();
    }
    // Stamped progress lines (parallel steps finish in any order) sorted, in place.
    let lines: Vec<&str> = out.lines().collect();
    let mut sorted = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in lines {
        if line.starts_with("[hh:mm:ss] ") {
            run.push(line);
            continue;
        }
        run.sort_unstable();
        sorted.append(&mut run);
        sorted.push(line);
    }
    run.sort_unstable();
    sorted.append(&mut run);
    sorted.join("\n") + "\n"
}

#[test]
fn the_stage_example_planned_applied_and_destroyed() {
    let ctx = Ctx::new("example");
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/stage.yaml"),
    )
    .unwrap()
    .replace("environment: stage", "environment: {env}")
    .replace("name: stage", "name: {env}")
    .replace(
        "bucket: acme-infra-state, key: stage.json",
        "bucket: {bucket}",
    );
    ctx.write_env(&file);
    ctx.infra(&["apply", "{env}", "--target", "repository", "--auto-approve"])
        .success();
    push_image(&ctx, "v1");
    let run = |args: &[&str]| {
        let out = ctx.command(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let env = ctx.env.clone();
    let (code, plan) = run(&["plan", &env, "--image", "web=v1"]);
    assert_eq!(code, Some(0), "{plan}");
    insta::assert_snapshot!("stage-plan", shown(&ctx, &plan));
    let (code, applied) = run(&[
        "apply",
        &env,
        "--auto-approve",
        "--no-wait",
        "--image",
        "web=v1",
    ]);
    assert_eq!(code, Some(0), "{applied}");
    insta::assert_snapshot!("stage-apply", shown(&ctx, &applied));
    let (code, again) = run(&["plan", &env, "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{again}");
    insta::assert_snapshot!("stage-converged", shown(&ctx, &again));
    let (code, destroyed) = run(&["destroy", &env, "--auto-approve"]);
    assert_eq!(code, Some(0), "{destroyed}");
    insta::assert_snapshot!("stage-destroy", shown(&ctx, &destroyed));
}

/// `infra cost` and `infra lint` of the example environments as users see them (offline).
#[test]
fn the_examples_cost_and_lint() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
            .args(args)
            .arg("--dir")
            .arg(root.join("environments"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    insta::assert_snapshot!("cost-stage-prod", run(&["cost", "stage", "prod"]));
    insta::assert_snapshot!("lint-examples", run(&["lint"]));
}
