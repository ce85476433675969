//! The delivery pipeline's pieces: the example app answers its health check, and every `infra`
//! command the infra workflow runs parses with the real command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::Parser;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// Kills the app when the test ends, whether it passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn example_app_answers_root_and_health() {
    let child = Command::new("python3")
        .arg(root().join("app/server.py"))
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("APP_VERSION", "abc123")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut app = Running(child);
    // Kept open for the whole test: the app logs every request to it.
    let mut log = BufReader::new(app.0.stdout.take().unwrap());
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let health = get(port, "/health");
    let root_page = get(port, "/");
    let missing = get(port, "/nope");
    line.clear();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("GET /health"), "{line}");
    assert_eq!(health, (200, r#"{"status": "ok"}"#.to_string()));
    assert_eq!(
        root_page,
        (
            200,
            r#"{"service": "web", "version": "abc123"}"#.to_string()
        )
    );
    assert_eq!(missing.0, 404);
}

/// `infra …` invocations in a workflow's `run:` scripts, as argument lists.
fn infra_commands(workflow: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in workflow.lines() {
        let line = line.trim().trim_start_matches("run:").trim();
        let Some(rest) = line.strip_prefix("infra ") else {
            continue;
        };
        let rest = rest.split(['|', '>']).next().unwrap();
        let args = rest
            .split_whitespace()
            .map(|a| a.trim_matches('"').replace("$ENVIRONMENT", "stage"))
            .collect();
        out.push(args);
    }
    out
}

/// Every command parses with the real command line.
fn assert_all_parse(commands: &[Vec<String>]) {
    for args in commands {
        let argv = std::iter::once("infra".to_string()).chain(args.iter().cloned());
        if let Err(e) = infra::cli::Cli::try_parse_from(argv) {
            panic!("`infra {}` does not parse: {e}", args.join(" "));
        }
    }
}

#[test]
fn the_infra_workflow_runs_real_commands() {
    let workflow = std::fs::read_to_string(root().join(".github/workflows/infra.yml")).unwrap();
    let commands = infra_commands(&workflow);
    let verbs: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    for expected in ["validate", "lint", "plan", "apply"] {
        assert!(
            verbs.contains(&expected),
            "no `infra {expected}` in the workflow: {verbs:?}"
        );
    }
    assert!(
        commands.iter().any(|c| c.contains(&"--plan".to_string())),
        "prod must apply a saved plan"
    );
    assert_all_parse(&commands);
}

/// `infra init --ci` writes an environment that keeps its state in S3 (the bucket from
/// `INFRA_STATE_BUCKET`) and a workflow whose every `infra` command parses, that installs the
/// release of this very version, and that applies only a saved plan.
#[test]
fn init_ci_writes_a_workflow_of_real_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
        .args(["init", "qa", "--ci"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(dir.path().join("environments/qa.yaml")).unwrap();
    assert!(
        env.contains(r#"s3: {bucket: "${INFRA_STATE_BUCKET:-qa-infra-state}", key: qa.json}"#),
        "{env}"
    );
    let workflow =
        std::fs::read_to_string(dir.path().join(".github/workflows/infra-qa.yml")).unwrap();
    use saphyr::LoadableYamlNode;
    saphyr::Yaml::load_from_str(&workflow).expect("the workflow is YAML");
    assert!(
        workflow.contains(&format!("INFRA_VERSION: v{}", env!("CARGO_PKG_VERSION"))),
        "{workflow}"
    );
    assert!(!workflow.contains("{{env}}") && !workflow.contains("{{version}}"));
    let commands = infra_commands(&workflow);
    let verbs: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(verbs, ["validate", "plan", "apply"], "{workflow}");
    assert_eq!(commands[2], ["apply", "--plan", "qa.plan"]);
    assert_all_parse(&commands);
    // A second run does not overwrite what the first wrote.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
        .args(["init", "qa", "--ci"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
}
