//! Broken environment files through the real binary: each gives `file:line:column` errors and exit
//! 1, never a panic, and never a single byte sent to AWS.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;

use crate::harness::Ctx;

#[test]
fn every_corpus_file_fails_offline_with_a_position() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/invalid");
    let ctx = Ctx::new("bad");
    // A listener standing in for AWS: any connection to it would be an AWS call.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    for file in files {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_string();
        for args in [
            vec!["validate", stem.as_str()],
            vec!["plan", stem.as_str()],
            vec!["apply", stem.as_str(), "--auto-approve"],
        ] {
            let out = ctx
                .command(&[&["--dir", corpus.to_str().unwrap()], args.as_slice()].concat())
                .env("AWS_ENDPOINT_URL", &trap_url)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stem} {args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stem}: {stderr}");
            let position = format!("{stem}.yaml:");
            let located = stderr.lines().any(|l| {
                l.strip_prefix("error: ")
                    .and_then(|l| l.split_once(&position))
                    .and_then(|(_, rest)| rest.split(':').next())
                    .is_some_and(|line| line.parse::<usize>().is_ok())
            });
            assert!(located, "{stem} {args:?}: no file:line:column in\n{stderr}");
        }
        match trap.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{stem}: infra connected to AWS: {other:?}"),
        }
    }
}

#[test]
fn validate_checks_every_file_when_none_is_named() {
    let ctx = Ctx::new("val");
    ctx.write_env(crate::harness::TWO_ZONES);
    std::fs::write(
        ctx.path("environments/broken.yaml"),
        "environment: broken\nregion: mars-1\n",
    )
    .unwrap();
    let run = ctx.infra(&["validate"]);
    run.code(1);
    assert!(
        run.stdout.contains(&format!("{}.yaml: valid", ctx.env)),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("broken.yaml:2:9: `mars-1` is not an AWS region name"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("missing required key `state`"),
        "{}",
        run.stderr
    );
    ctx.infra(&["validate", "{env}"]).success();
    let missing = ctx.infra(&["validate", "nope"]);
    missing.code(1);
    assert!(missing.stderr.contains("nope.yaml"), "{}", missing.stderr);
}

/// `graph`, `completions`, `man` and `schema` are offline: they answer without a byte to AWS.
#[test]
fn graph_completions_and_man_never_call_aws() {
    let ctx = Ctx::new("offline");
    ctx.write_env(crate::harness::TWO_ZONES);
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let run = |args: &[&str]| {
        let out = ctx
            .command(args)
            .env("AWS_ENDPOINT_URL", &trap_url)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mermaid = run(&["graph", &ctx.env]);
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(mermaid.contains("[\"route-table.public<br/><small>route-table</small>\"]"));
    let dot = run(&["graph", &ctx.env, "--format", "dot"]);
    assert!(
        dot.contains("\"vpc\" -> \"subnet.public.us-east-1a\";"),
        "{dot}"
    );
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = run(&["completions", shell]);
        assert!(
            script.contains("COMPLETE") && script.contains("infra"),
            "{shell}: {script}"
        );
    }
    assert!(run(&["man"]).contains(".TH infra 1"));
    assert!(run(&["schema"]).contains("https://json-schema.org/draft/2020-12/schema"));
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("infra connected to AWS: {other:?}"),
    }
}

/// The completion script bash sources completes commands and environment names (from `--dir`
/// when the line gives one), calling the binary back as the user types.
#[test]
fn bash_completes_commands_and_environment_names() {
    let ctx = Ctx::new("complete");
    ctx.write_env(crate::harness::TWO_ZONES);
    std::fs::create_dir_all(ctx.path("elsewhere")).unwrap();
    std::fs::write(ctx.path("elsewhere/qa.yaml"), "").unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_infra"));
    let complete = |line: &str| {
        let script = format!(
            "source <(infra completions bash)\nCOMP_WORDS=({line})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\nCOMP_TYPE=9\n_clap_complete_infra infra \"${{COMP_WORDS[$COMP_CWORD]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(ctx.path(""))
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commands = complete("infra pl");
    assert_eq!(commands.trim(), "plan", "{commands}");
    let envs = complete("infra plan ''");
    assert!(envs.lines().any(|l| l == ctx.env), "{envs}");
    let elsewhere = complete("infra --dir elsewhere destroy ''");
    assert!(elsewhere.lines().any(|l| l == "qa"), "{elsewhere}");
    assert!(!elsewhere.lines().any(|l| l == ctx.env), "{elsewhere}");
}

/// `infra lint` through the binary: offline, exit 1 on findings at or above `--deny`, SARIF for
/// code scanning; a plan shows the file's findings before its last line and never fails on them.
#[test]
fn lint_exits_on_what_it_denies_and_plans_show_findings() {
    let ctx = Ctx::new("lint");
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/lint");
    for name in ["insecure", "fixed", "accepted"] {
        std::fs::copy(
            corpus.join(format!("{name}.yaml")),
            ctx.path(&format!("environments/{name}.yaml")),
        )
        .unwrap();
    }
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let offline = |args: &[&str]| {
        ctx.command(args)
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://{}", trap.local_addr().unwrap()),
            )
            .output()
            .unwrap()
    };
    let insecure = offline(&["lint", "insecure"]);
    assert_eq!(insecure.status.code(), Some(1));
    let text = String::from_utf8_lossy(&insecure.stdout);
    assert!(
        text.contains("error[secret-in-environment] environments/insecure.yaml:26:"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(
        offline(&["lint", "fixed", "--deny", "warning"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        offline(&["lint", "accepted", "--deny", "warning"])
            .status
            .code(),
        Some(0)
    );
    let sarif = offline(&["lint", "insecure", "--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 11);
    let json = offline(&["lint", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["findings"].as_array().unwrap().len(), 12);
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("lint connected to AWS: {other:?}"),
    }

    let plan = ctx.infra(&["plan", "accepted"]);
    plan.success();
    let accepted = plan
        .stdout
        .find("accepted[ecr-mutable-tags] environments/accepted.yaml:11:");
    let last = plan.stdout.find("Plan: ");
    assert!(accepted.is_some() && accepted < last, "{}", plan.stdout);
}
