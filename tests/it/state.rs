//! State safety against the emulator: the lock, saved plans, the local backend, and the refusal
//! to apply without confirmation.

use std::sync::Arc;
use std::time::Duration;

use infra::aws::s3_backend::S3Backend;
use infra::state::{Backend, LockInfo};

use crate::harness::{Ctx, REGION, TWO_ZONES, endpoint};

fn backend(ctx: &Ctx) -> Arc<dyn Backend> {
    let aws = ctx
        .rt
        .block_on(infra::aws::connect_emulator(REGION, &ctx.env, &endpoint()));
    Arc::new(S3Backend::new(
        &aws,
        &ctx.bucket,
        &format!("{}.json", ctx.env),
        None,
    ))
}

#[test]
fn a_held_lock_stops_a_second_apply_and_names_its_holder() {
    let ctx = Ctx::new("lock");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    let backend = backend(&ctx);
    let mut holder = LockInfo::new("apply", Duration::from_secs(600));
    holder.who = "ana@ci-runner-7".into();
    ctx.rt.block_on(backend.lock(&holder)).unwrap();

    ctx.write_env(&TWO_ZONES.replace("team: platform", "team: web"));
    let second = ctx.infra(&["apply", "{env}", "--auto-approve"]);
    second.code(1);
    assert!(second.stderr.contains("is locked"), "{}", second.stderr);
    assert!(
        second.stderr.contains("ana@ci-runner-7"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("`apply`"), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("infra state unlock {} {}", ctx.env, holder.id)),
        "{}",
        second.stderr
    );

    // The lock id from the message breaks the lock; then the apply goes through.
    ctx.infra(&["state", "unlock", "{env}", &holder.id])
        .success();
    ctx.infra(&["state", "unlock", "{env}", &holder.id]).code(1);
    ctx.apply();
    ctx.assert_converged();
    // The apply released its own lock.
    assert!(ctx.rt.block_on(backend.lock_info()).unwrap().is_none());
}

#[test]
fn an_expired_lock_is_taken_over_with_a_message() {
    let ctx = Ctx::new("lease");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    let backend = backend(&ctx);
    let mut dead = LockInfo::new("destroy", Duration::from_secs(0));
    dead.who = "gone@laptop".into();
    ctx.rt.block_on(backend.lock(&dead)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    ctx.write_env(&TWO_ZONES.replace("team: platform", "team: web"));
    let run = ctx.apply();
    assert!(
        run.stderr.contains("took over an expired lock"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("gone@laptop"), "{}", run.stderr);
    ctx.assert_converged();
}

#[test]
fn a_saved_plan_runs_as_saved_and_a_stale_one_is_refused() {
    let ctx = Ctx::new("saved");
    ctx.write_env(TWO_ZONES);
    ctx.infra(&["plan", "{env}", "--out", "first.plan"])
        .success();
    // Saved plans run without a prompt: they were reviewed when saved.
    let run = ctx.infra(&["apply", "--plan", "first.plan"]);
    run.success();
    assert!(run.stdout.contains("11 created"), "{}", run.stdout);
    ctx.assert_converged();

    ctx.write_env(&TWO_ZONES.replace("nat: single", "nat: per_az"));
    ctx.infra(&["plan", "{env}", "--out", "stale.plan"])
        .success();
    ctx.infra(&["plan", "{env}", "--out", "fresh.plan"])
        .success();
    ctx.infra(&["apply", "--plan", "fresh.plan"]).success();
    let stale = ctx.infra(&["apply", "--plan", "stale.plan"]);
    stale.code(1);
    assert!(
        stale
            .stderr
            .contains("the state moved since this plan was made"),
        "{}",
        stale.stderr
    );
    assert!(
        stale.stderr.contains("hint: make a new plan"),
        "{}",
        stale.stderr
    );
    ctx.assert_converged();
}

#[test]
fn plan_json_and_saved_plan_agree() {
    let ctx = Ctx::new("json");
    ctx.write_env(TWO_ZONES);
    let run = ctx.infra(&["plan", "{env}", "--json", "--out", "p.json"]);
    let shown: serde_json::Value = serde_json::from_str(&run.success().stdout).unwrap();
    assert_eq!(shown["summary"]["add"], 11);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ctx.path("p.json")).unwrap()).unwrap();
    assert_eq!(shown["changes"], saved["changes"]);
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let ctx = Ctx::new("tty");
    ctx.write_env(TWO_ZONES);
    for verb in ["apply", "destroy"] {
        let run = ctx.infra(&[verb, "{env}"]);
        run.code(1);
        assert!(run.stderr.contains("no terminal"), "{}", run.stderr);
        assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    }
    // Nothing was created, not even the state bucket.
    let head = ctx
        .rt
        .block_on(ctx.s3.head_bucket().bucket(&ctx.bucket).send());
    assert!(head.is_err());
}

#[test]
fn local_state_backend() {
    let ctx = Ctx::new("local");
    ctx.write_env(&TWO_ZONES.replace("s3: {bucket: {bucket}}", "local: .infra/{env}.json"));
    ctx.apply();
    let text = std::fs::read_to_string(ctx.path(&format!(".infra/{}.json", ctx.env))).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["resources"].as_object().unwrap().len(), 11);
    // Written as steps completed (the first at once, the last at the end), each write bumping
    // the serial: at most one per step (11).
    let serial = doc["serial"].as_u64().unwrap();
    assert!((2..=11).contains(&serial), "serial {serial}");
    assert!(!ctx.path(&format!(".infra/{}.json.lock", ctx.env)).exists());
    ctx.assert_converged();
}

#[test]
fn state_in_s3_is_versioned_encrypted_and_private() {
    let ctx = Ctx::new("bucket");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    ctx.rt.block_on(async {
        // (moto answers GetBucketVersioning with an XML root the SDK rejects; the object
        // versions counted below show versioning is on.)
        let e = ctx
            .s3
            .get_bucket_encryption()
            .bucket(&ctx.bucket)
            .send()
            .await
            .unwrap();
        assert!(e.server_side_encryption_configuration().is_some());
        let p = ctx
            .s3
            .get_public_access_block()
            .bucket(&ctx.bucket)
            .send()
            .await
            .unwrap();
        let c = p.public_access_block_configuration().unwrap();
        assert_eq!(
            (
                c.block_public_acls(),
                c.ignore_public_acls(),
                c.block_public_policy(),
                c.restrict_public_buckets()
            ),
            (Some(true), Some(true), Some(true), Some(true))
        );
        // State was written as steps completed, not only at the end (the first completion at
        // once, then at most once a second, then the last), and the bucket kept a version per
        // write: at most one per step (11).
        let versions = ctx
            .s3
            .list_object_versions()
            .bucket(&ctx.bucket)
            .prefix(format!("{}.json", ctx.env))
            .send()
            .await
            .unwrap();
        let n = versions
            .versions()
            .iter()
            .filter(|v| v.key() == Some(&format!("{}.json", ctx.env)))
            .count();
        assert!((2..=11).contains(&n), "{n} versions for 11 steps");
    });
    ctx.assert_converged();
}

#[test]
fn two_concurrent_applies_one_proceeds_the_other_fails_fast() {
    let ctx = Ctx::new("race");
    ctx.write_env(TWO_ZONES);
    ctx.apply(); // the state bucket and lock object now exist: both runs will contend for the lock
    ctx.write_env(&TWO_ZONES.replace("nat: single", "nat: per_az"));
    let spawn = || {
        ctx.command(&["apply", &ctx.env, "--auto-approve", "--no-wait"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let started = std::time::Instant::now();
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let ok: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    let failed: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!((ok.len(), failed.len()), (1, 1), "exactly one run proceeds");
    let err = String::from_utf8_lossy(&failed[0].stderr);
    // The loser either finds the lock held (named, with its id) or, if it came second, a state
    // that moved under the plan it made while waiting: both refuse before changing anything.
    assert!(
        err.contains("is locked") && err.contains("infra state unlock")
            || err.contains("the state moved"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    ctx.assert_converged();
    let listed = ctx.infra(&["state", "list", "{env}"]);
    assert_eq!(listed.success().stdout.lines().count(), 13);
}

/// `infra state versions --json`, newest first.
fn versions_json(ctx: &Ctx) -> Vec<serde_json::Value> {
    let run = ctx.infra(&["state", "versions", "{env}", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.success().stdout).unwrap();
    v["versions"].as_array().unwrap().clone()
}

/// A state object cut in half never strands the user: every command names the object, its
/// version and both ways out; `state versions` lists the history (the broken one as such);
/// `state restore` of the newest valid one and `state recover --force` each get back to a state
/// that plans "No changes."; nothing is ever deleted from the bucket's history.
#[test]
fn a_broken_state_document_is_never_a_dead_end() {
    let ctx = Ctx::new("broken");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    let key = format!("{}.json", ctx.env);
    let break_it = || {
        let bytes = ctx.state_bytes();
        let half = bytes[..bytes.len() / 2].to_vec();
        ctx.rt
            .block_on(
                ctx.s3
                    .put_object()
                    .bucket(&ctx.bucket)
                    .key(&key)
                    .body(half.into())
                    .send(),
            )
            .unwrap();
    };
    let versions = || versions_json(&ctx);
    let before = versions().len();
    break_it();

    for args in [
        &["plan", "{env}"][..],
        &["apply", "{env}", "--auto-approve"],
        &["state", "list", "{env}"],
        &["state", "recover", "{env}"],
    ] {
        let run = ctx.infra(args);
        run.code(1);
        let err = &run.stderr;
        assert!(
            err.contains("does not parse") && err.contains("(version "),
            "{err}"
        );
        assert!(err.contains("the newest valid one is serial"), "{err}");
        assert!(
            err.contains(&format!("`infra state restore {} ", ctx.env)),
            "{err}"
        );
        assert!(
            err.contains(&format!("hint: `infra state recover {} --force`", ctx.env)),
            "{err}"
        );
    }

    let listed = versions();
    assert_eq!(listed.len(), before + 1);
    assert_eq!(
        listed[0]["valid"], false,
        "newest first, the broken one as such"
    );
    let good = listed.iter().find(|v| v["valid"] == true).unwrap();
    assert_eq!(good["resources"], 11);
    assert!(
        good["written_by"].as_str().is_some_and(|w| w.contains('@')),
        "{good}"
    );
    let id = good["version_id"].as_str().unwrap().to_string();
    let restored = ctx.infra(&["state", "restore", "{env}", &id, "--auto-approve"]);
    assert!(
        restored.success().stdout.contains("Restored version"),
        "{}",
        restored.stdout
    );
    ctx.assert_converged();

    // The other way out: rebuild from tags, keeping the broken document in the history.
    break_it();
    ctx.infra(&["state", "recover", "{env}", "--force"])
        .success();
    ctx.assert_converged();
    let after = versions();
    assert!(after.len() >= before + 4, "{} versions", after.len());
    assert_eq!(
        after.iter().filter(|v| v["valid"] == false).count(),
        2,
        "both broken documents are still in the history"
    );
    let serials: Vec<u64> = after.iter().filter_map(|v| v["serial"].as_u64()).collect();
    assert!(
        serials.windows(2).all(|w| w[0] > w[1]),
        "serials only ever grow: {serials:?}"
    );
}

/// `state pull` and `state push` move state: a local state pulled, the file switched to S3, and
/// pushed there plans "No changes." with its lineage kept and its serial above the old one; a
/// document of another lineage is refused without --force.
#[test]
fn local_state_moves_to_s3_with_pull_and_push() {
    let ctx = Ctx::new("move");
    let local = TWO_ZONES.replace("s3: {bucket: {bucket}}", "local: .infra/{env}.json");
    ctx.write_env(&local);
    ctx.apply();
    let pulled = ctx.infra(&["state", "pull", "{env}"]);
    let doc: serde_json::Value = serde_json::from_str(&pulled.success().stdout).unwrap();
    std::fs::write(ctx.path("pulled.json"), &pulled.stdout).unwrap();

    ctx.write_env(TWO_ZONES);
    let pushed = ctx.infra(&["state", "push", "{env}", "pulled.json", "--auto-approve"]);
    pushed.success();
    let stored: serde_json::Value = serde_json::from_slice(&ctx.state_bytes()).unwrap();
    assert_eq!(stored["lineage"], doc["lineage"]);
    assert!(stored["serial"].as_u64() > doc["serial"].as_u64());
    assert_eq!(stored["resources"], doc["resources"]);
    ctx.assert_converged();

    let mut other = doc.clone();
    other["lineage"] = "another".into();
    std::fs::write(ctx.path("other.json"), other.to_string()).unwrap();
    let refused = ctx.infra(&["state", "push", "{env}", "other.json", "--auto-approve"]);
    refused.code(1);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
}

/// An old copy of the state put back by hand is caught before anything is written.
#[test]
fn an_old_copy_put_back_by_hand_is_caught_before_any_write() {
    let ctx = Ctx::new("backwards");
    ctx.write_env(TWO_ZONES);
    ctx.apply();
    let versions = || versions_json(&ctx);
    let listed = versions();
    let oldest = listed.last().unwrap().clone();
    assert!(oldest["serial"].as_u64() < listed[0]["serial"].as_u64());
    // Put the oldest version's content back, as a hand restore would.
    let old_bytes = ctx.rt.block_on(async {
        let out = ctx
            .s3
            .get_object()
            .bucket(&ctx.bucket)
            .key(format!("{}.json", ctx.env))
            .version_id(oldest["version_id"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    });
    ctx.rt
        .block_on(
            ctx.s3
                .put_object()
                .bucket(&ctx.bucket)
                .key(format!("{}.json", ctx.env))
                .body(old_bytes.into())
                .send(),
        )
        .unwrap();
    let before = versions().len();
    let run = ctx.infra(&["apply", "{env}", "--auto-approve", "--no-wait"]);
    run.code(1);
    assert!(
        run.stderr.contains("is older than the version before it"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("infra state restore"), "{}", run.stderr);
    assert_eq!(versions().len(), before, "nothing was written");
    // Back to the newest good version, and on.
    let newest_good = versions()
        .iter()
        .find(|v| v["serial"] == listed[0]["serial"])
        .unwrap()["version_id"]
        .as_str()
        .unwrap()
        .to_string();
    ctx.infra(&["state", "restore", "{env}", &newest_good, "--auto-approve"])
        .success();
    ctx.assert_converged();
}

/// With `kms_key_id`, the bucket infra creates defaults to that key and every state write names it.
#[test]
fn state_is_encrypted_with_the_named_kms_key() {
    let ctx = Ctx::new("kms");
    let key = "arn:aws:kms:us-east-1:123456789012:key/0f6c1b1e-1111-2222-3333-444455556666";
    ctx.write_env(&TWO_ZONES.replace(
        "s3: {bucket: {bucket}}",
        &format!("s3: {{bucket: {{bucket}}, kms_key_id: \"{key}\"}}"),
    ));
    ctx.apply();
    let (head, default) = ctx.rt.block_on(async {
        let head = ctx
            .s3
            .head_object()
            .bucket(&ctx.bucket)
            .key(format!("{}.json", ctx.env))
            .send()
            .await
            .unwrap();
        let enc = ctx
            .s3
            .get_bucket_encryption()
            .bucket(&ctx.bucket)
            .send()
            .await
            .unwrap();
        (head, enc)
    });
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some(key));
    let rule = &default
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    let by_default = rule.apply_server_side_encryption_by_default().unwrap();
    assert_eq!(by_default.kms_master_key_id(), Some(key));
    ctx.assert_converged();
}

/// `import` takes over an existing resource under a logical id of the file (tagged, recorded, then
/// brought to the file by apply); `state forget` lets it go for good: no longer in state, never
/// deleted, though it keeps its tags.
#[test]
fn import_takes_over_and_forget_lets_go() {
    let ctx = Ctx::new("import");
    let repo = format!("{}/web", ctx.env);
    ctx.rt
        .block_on(
            ctx.aws
                .ecr
                .create_repository()
                .repository_name(&repo)
                .send(),
        )
        .unwrap();
    ctx.write_env(&format!(
        "{TWO_ZONES}repositories: {{web: {{keep_last: 5}}}}\n"
    ));

    // The plan does not try to create what a name conflict would stop halfway: it stops first,
    // and says how to adopt it.
    let conflict = ctx.infra(&["plan", "{env}"]);
    conflict.code(1);
    assert!(
        conflict.stderr.contains(&format!(
            "repository.web: `{repo}` exists ({repo})\n    adopt it: infra import {} repository.web {repo}",
            ctx.env
        )),
        "{}",
        conflict.stderr
    );

    let unknown = ctx.infra(&["import", "{env}", "repository.api", &repo, "--auto-approve"]);
    unknown.code(1);
    assert!(unknown.stderr.contains("infra graph"), "{}", unknown.stderr);
    let missing = ctx.infra(&[
        "import",
        "{env}",
        "repository.web",
        "nope/nope",
        "--auto-approve",
    ]);
    missing.code(1);

    ctx.infra(&["import", "{env}", "repository.web", &repo, "--auto-approve"])
        .success();
    let tags = ctx.rt.block_on(async {
        let arn = ctx
            .aws
            .ecr
            .describe_repositories()
            .repository_names(&repo)
            .send()
            .await
            .unwrap()
            .repositories()[0]
            .repository_arn()
            .unwrap()
            .to_string();
        ctx.aws
            .ecr
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
    });
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == "infra:id" && t.value() == "repository.web")
    );
    let listed = ctx.infra(&["state", "list", "{env}"]);
    assert!(
        listed
            .success()
            .stdout
            .contains(&format!("repository.web\trepository\t{repo}"))
    );
    // The plan brings it to the file (its lifecycle policy), in place.
    let plan = ctx.infra(&["plan", "{env}", "--target", "repository"]);
    assert!(
        plan.success().stdout.contains("~ repository.web"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    ctx.assert_converged();

    // Forget it, then drop it from the file: it is neither deleted nor adopted again.
    ctx.infra(&[
        "state",
        "forget",
        "{env}",
        "repository.web",
        "--auto-approve",
    ])
    .success();
    let listed = ctx.infra(&["state", "list", "{env}"]);
    assert!(!listed.success().stdout.contains("repository.web"));
    ctx.write_env(TWO_ZONES);
    ctx.assert_converged();
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    let still = ctx.rt.block_on(
        ctx.aws
            .ecr
            .describe_repositories()
            .repository_names(&repo)
            .send(),
    );
    assert!(still.is_ok(), "a forgotten repository was deleted");
}

/// `infra init` writes a starter file that validates and plans against AWS without editing; it
/// never overwrites one.
#[test]
fn init_writes_a_starter_that_validates_and_plans() {
    let ctx = Ctx::new("init");
    ctx.infra(&["init", "{env}", "--zones", "3"]).success();
    let text =
        std::fs::read_to_string(ctx.path(&format!("environments/{}.yaml", ctx.env))).unwrap();
    assert!(text.contains("us-east-1c"), "{text}");
    assert!(
        text.starts_with("# yaml-language-server: $schema=environment.schema.json\n"),
        "{text}"
    );
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.path("environments/environment.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema["properties"]["services"]["type"], "object");
    ctx.infra(&["validate", "{env}"]).success();
    let plan = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    plan.code(2);
    assert!(plan.stdout.contains("+ service.web"), "{}", plan.stdout);
    let again = ctx.infra(&["init", "{env}"]);
    again.code(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

/// A state bucket made by hand without versioning or a public access block: a plan that would
/// write into it says so, at the file's `state.s3` line; a bucket infra made says nothing.
#[test]
fn a_plan_that_writes_state_checks_the_bucket_keeps_it_safe() {
    let ctx = Ctx::new("bucket");
    ctx.rt
        .block_on(ctx.s3.create_bucket().bucket(&ctx.bucket).send())
        .unwrap();
    ctx.write_env(TWO_ZONES);
    // Lint never stops a plan: the apply goes on, and writes the first state into that bucket.
    let applied = ctx.apply();
    assert!(
        applied.stdout.contains("public access is not blocked"),
        "{}",
        applied.stdout
    );
    ctx.write_env(&TWO_ZONES.replace("nat: single", "nat: none"));
    let plan = ctx.infra(&["plan", "{env}"]);
    assert!(
        plan.success()
            .stdout
            .contains("error[state-bucket-unprotected] environments/"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("versioning is off")
            && plan.stdout.contains("public access is not blocked"),
        "{}",
        plan.stdout
    );

    let ours = Ctx::new("bucketok");
    ours.write_env(TWO_ZONES);
    ours.apply();
    ours.write_env(&TWO_ZONES.replace("nat: single", "nat: none"));
    let plan = ours.infra(&["plan", "{env}"]);
    assert!(
        !plan.success().stdout.contains("state-bucket-unprotected"),
        "{}",
        plan.stdout
    );
}
