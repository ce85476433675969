//! Crash safety: `apply` killed with SIGKILL at several points, then run again, converges to
//! exactly the file — every resource once, none twice, no stuck lock.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::faults::{Faults, start_proxy};
use crate::harness::{Ctx, TWO_ZONES};
use crate::network::World;

/// Starts `apply`, kills it once `after` resources have been recorded (others are in flight),
/// and returns how many it saw.
fn kill_during_apply(ctx: &Ctx, after: usize) -> usize {
    let mut child = ctx
        .command(&["apply", &ctx.env, "--auto-approve", "--no-wait"])
        .env("INFRA_LOCK_LEASE_SECONDS", "2")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains(": created (") {
            seen += 1;
            if seen >= after {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no cleanup, no lock release
    child.wait().unwrap();
    seen
}

#[test]
fn sigkill_at_several_points_then_rerun_converges_without_duplicates() {
    for after in [1, 3, 6, 9] {
        let ctx = Ctx::new(&format!("kill{after}x"));
        ctx.write_env(TWO_ZONES);
        let seen = kill_during_apply(&ctx, after);
        assert_eq!(
            seen, after,
            "the apply ended before {after} resources were created"
        );
        // The dead holder's lease runs out; the next run takes the lock over.
        std::thread::sleep(Duration::from_millis(2500));
        let rerun = ctx.apply();
        assert!(
            rerun.stderr.contains("took over an expired lock"),
            "{}",
            rerun.stderr
        );
        ctx.assert_converged();
        // Every live resource of the environment, by physical id: eleven, each logical id once.
        let w = World::read(&ctx);
        let mut logical: Vec<&String> = w.ids.values().collect();
        logical.sort();
        let unique = {
            let mut u = logical.clone();
            u.dedup();
            u.len()
        };
        assert_eq!(w.ids.len(), 11, "after {after}: {w:#?}");
        assert_eq!(unique, 11, "a twin after {after}: {logical:?}");
        let listed = ctx.infra(&["state", "list", "{env}"]);
        assert_eq!(listed.success().stdout.lines().count(), 11);
    }
}

/// Deletes the state object, as if it were lost.
fn lose_state(ctx: &Ctx) {
    ctx.rt
        .block_on(
            ctx.s3
                .delete_object()
                .bucket(&ctx.bucket)
                .key(format!("{}.json", ctx.env))
                .send(),
        )
        .unwrap();
}

#[test]
fn lost_state_is_recovered_from_tags_without_duplicates() {
    let ctx = Ctx::new("lost");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    let before = World::read(&ctx);
    lose_state(&ctx);

    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("11 resource(s) carry this environment's tags"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 0 to change, 0 to destroy. (11 to adopt"),
        "{}",
        plan.stdout
    );

    let recovered = ctx.infra(&["state", "recover", "{env}"]);
    recovered.success();
    assert_eq!(
        ctx.infra(&["state", "list", "{env}"])
            .success()
            .stdout
            .lines()
            .count(),
        11
    );
    ctx.assert_converged();
    let after = World::read(&ctx);
    assert_eq!(before.ids, after.ids, "recovery changed what exists");
    let again = ctx.infra(&["state", "recover", "{env}"]);
    assert!(
        again.success().stdout.contains("Nothing to recover"),
        "{}",
        again.stdout
    );
}

#[test]
fn protection_survives_the_file() {
    let ctx = Ctx::new("prot");
    ctx.write_env(&TWO_ZONES.replace(
        "tags: {team: platform}",
        "tags: {team: platform}\nprotect: true",
    ));
    ctx.apply();
    let shown = ctx.infra(&["state", "show", "{env}", "vpc"]);
    assert!(
        shown.success().stdout.contains("\"protected\": true"),
        "{}",
        shown.stdout
    );

    // The file stops protecting anything: the state still does.
    ctx.write_env(TWO_ZONES);
    let refused = ctx.infra(&["destroy", "{env}", "--auto-approve"]);
    refused.code(1);
    assert!(
        refused
            .stderr
            .contains("refusing to delete protected resources"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--allow-destroy-protected"),
        "{}",
        refused.stderr
    );
    assert_eq!(World::read(&ctx).ids.len(), 11, "something was deleted");
    // Removing a zone's NAT from the file is refused the same way.
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success().stdout.contains("No changes."),
        "{}",
        plan.stdout
    );
    ctx.write_env(&TWO_ZONES.replace("nat: single", "nat: none"));
    ctx.infra(&["plan", "{env}"]).code(1);

    let destroyed = ctx.infra(&[
        "destroy",
        "{env}",
        "--auto-approve",
        "--allow-destroy-protected",
    ]);
    destroyed.success();
    assert!(
        destroyed.stdout.contains("protected: deletion allowed"),
        "{}",
        destroyed.stdout
    );
    assert!(World::read(&ctx).ids.is_empty());
}

/// Sends `signal` (STOP, CONT) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

#[test]
fn a_holder_paused_past_its_lease_and_overtaken_stops_before_its_next_write() {
    let ctx = Ctx::new("pause");
    ctx.write_env(TWO_ZONES);
    // Paced so it is still working when paused; a short lease so the pause outlasts it; through a
    // proxy that records every request it sends.
    let (proxy, sent) = start_proxy(Faults::default());
    let mut first = ctx
        .command(&[
            "apply",
            &ctx.env,
            "--auto-approve",
            "--no-wait",
            "--max-rps",
            "5",
        ])
        .env("INFRA_LOCK_LEASE_SECONDS", "3")
        .env("AWS_ENDPOINT_URL", &proxy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut created = 0;
    while created < 3 {
        let line = lines.next().expect("the first apply ended early").unwrap();
        created += usize::from(line.contains(": created ("));
    }
    signal(first.id(), "STOP");
    std::thread::sleep(Duration::from_secs(4));
    // Another run finds the lease expired, takes the lock over and finishes the job.
    let second = ctx.apply();
    assert!(
        second.stderr.contains("took over an expired lock"),
        "{}",
        second.stderr
    );
    let state_after_second = ctx.state_bytes();

    let woke = std::time::Instant::now();
    signal(first.id(), "CONT");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{rest:?}\n{stderr}");
    assert!(
        stderr.contains("no longer holds the lock"),
        "{rest:?}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Once awake it asked the state bucket about its lock, and sent nothing else.
    let after: Vec<String> = sent
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t > woke)
        .map(|(_, what)| what.clone())
        .collect();
    assert!(
        after.iter().all(|w| w.contains(&ctx.bucket)),
        "sent after the lock was lost: {after:#?}"
    );
    // Nothing written after it woke: not the state, and no resource (no twin, nothing extra).
    assert_eq!(
        ctx.state_bytes(),
        state_after_second,
        "the paused run wrote state"
    );
    ctx.assert_converged();
    let w = World::read(&ctx);
    let mut logical: Vec<&String> = w.ids.values().collect();
    logical.sort();
    logical.dedup();
    assert_eq!((w.ids.len(), logical.len()), (11, 11), "{w:#?}");
}

/// The worst case for finding what is ours: the state is lost and the file no longer names a
/// service. The plan still finds the service by listing the cluster (services are described by
/// name beside that listing), and destroying it leaves nothing behind.
#[test]
fn a_service_neither_the_file_nor_the_state_names_is_still_found() {
    const TWO_SERVICES: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a]
  public_subnets: [10.0.0.0/24]
  private_subnets: [10.0.10.0/24]
  nat: none
cluster: {container_insights: false}
services:
  web:
    image: public.ecr.aws/docker/library/busybox:1.36
    cpu: 256
    memory: 512
  worker:
    image: public.ecr.aws/docker/library/busybox:1.36
    cpu: 256
    memory: 512
";
    let ctx = Ctx::new("unnamed");
    ctx.write_env(TWO_SERVICES);
    ctx.apply();
    lose_state(&ctx);
    ctx.write_env(&TWO_SERVICES.replace(
        "  worker:\n    image: public.ecr.aws/docker/library/busybox:1.36\n    cpu: 256\n    memory: 512\n",
        "",
    ));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success().stdout.contains("- service.worker"),
        "{}",
        plan.stdout
    );
    ctx.infra(&["state", "recover", "{env}"]).success();
    ctx.apply();
    ctx.assert_converged();
    let left = ctx.rt.block_on(async {
        ctx.ecs()
            .describe_services()
            .cluster(&ctx.env)
            .services("worker")
            .send()
            .await
            .unwrap()
    });
    assert!(
        left.services().iter().all(|s| s.status() != Some("ACTIVE")),
        "{left:?}"
    );
}
