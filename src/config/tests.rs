//! Table tests of the parser and snapshots of the exact diagnostics users see for each file of the
//! broken-input corpus in `tests/corpus/invalid`.

use std::path::Path;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_str(name: &str, text: &str) -> Result<Environment, Vec<Diagnostic>> {
    parse(
        Path::new(&format!("environments/{name}.yaml")),
        text,
        &no_env,
    )
}

const MINIMAL: &str = "environment: stage
region: us-east-1
state: {s3: {bucket: acme-infra-state}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24]
";

#[test]
fn minimal_file_gets_every_default() {
    let env = parse_str("stage", MINIMAL).unwrap();
    assert_eq!(env.name, "stage");
    assert_eq!(
        env.state,
        StateConfig::S3 {
            bucket: "acme-infra-state".into(),
            key: "stage.json".into(),
            kms_key_id: None,
        }
    );
    assert_eq!(env.network.managed().unwrap().nat, NatMode::Single);
    assert!(env.load_balancer.is_none());
    assert!(
        env.cluster.is_none(),
        "a network-only environment has no cluster"
    );
    assert!(env.services.is_empty() && env.repositories.is_empty());
}

#[test]
fn the_shipped_environments_are_valid() {
    for name in ["stage", "prod"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("environments/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let env = parse(&path, &text, &no_env).unwrap_or_else(|d| panic!("{name}: {d:#?}"));
        assert_eq!(env.name, name);
    }
}

#[test]
fn full_contract_example_parses_with_its_values() {
    let text = "environment: stage
region: us-east-1
tags: {team: platform, env: stage}
state:
  s3: {bucket: acme-infra-state, key: stage.json}
network:
  cidr: 10.0.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24]
  nat: single
load_balancer:
  http_port: 80
  https: {port: 443, certificate_arn: \"arn:aws:acm:us-east-1:123456789012:certificate/abc\"}
  ingress_cidrs: [0.0.0.0/0]
  idle_timeout_seconds: 60
  deletion_protection: false
repositories:
  web: {scan_on_push: true, immutable_tags: true, keep_last: 30}
cluster:
  name: stage
  container_insights: true
services:
  web:
    image: web:${IMAGE_TAG:-latest}
    cpu: 256
    memory: 512
    port: 3333
    desired_count: 3
    health_check_path: /health
    path_patterns: [\"/*\"]
    environment: {NODE_ENV: production}
    secrets: {DB_PASSWORD: \"arn:aws:secretsmanager:us-east-1:123456789012:secret:db\"}
    deployment:
      strategy: rolling
      min_healthy_percent: 50
      max_percent: 200
      circuit_breaker: rollback
    autoscaling: {min: 3, max: 10, cpu_percent: 60}
";
    let lookup = |v: &str| (v == "IMAGE_TAG").then(|| "3f2a9c1".to_string());
    let env = parse(Path::new("environments/stage.yaml"), text, &lookup).unwrap();
    let web = &env.services["web"];
    assert_eq!(
        web.image,
        Image::Repository {
            key: "web".into(),
            tag: Some("3f2a9c1".into())
        }
    );
    assert_eq!(
        (web.cpu, web.memory, web.port, web.desired_count),
        (256, 512, Some(3333), 3)
    );
    assert_eq!(web.deployment.min_healthy_percent, 50);
    assert_eq!(web.deployment.circuit_breaker, CircuitBreaker::Rollback);
    assert_eq!(
        web.autoscaling
            .as_ref()
            .map(|a| (a.min, a.max, a.cpu_percent)),
        Some((3, 10, Some(60)))
    );
    let lb = env.load_balancer.as_ref().unwrap();
    assert_eq!(lb.https.as_ref().map(|h| h.port), Some(443));
    assert_eq!(env.tags["team"], "platform");
    assert_eq!(env.cluster_name(), Some("stage"));
}

#[test]
fn fargate_sizes() {
    let table = [
        (256, 512, true),
        (256, 2048, true),
        (256, 3072, false),
        (512, 4096, true),
        (1024, 1024, false),
        (2048, 16384, true),
        (4096, 30720, true),
        (8192, 20480, true),
        (8192, 18432, false),
        (300, 512, false),
    ];
    for (cpu, mem, ok) in table {
        assert_eq!(read::fargate_memory_ok(cpu, mem), ok, "{cpu}/{mem}");
    }
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let text = MINIMAL
        .replace("10.0.1.0/24]", "10.9.1.0/24]")
        .replace("us-east-1b]", "us-west-2b]")
        .replace("region: us-east-1\n", "region: us-east-1\ncolour: blue\n");
    let errors = parse_str("stage", &text).unwrap_err();
    let lines: Vec<String> = errors.iter().map(Diagnostic::headline).collect();
    assert_eq!(
        lines,
        [
            "environments/stage.yaml:3:1: unknown key `colour`",
            "environments/stage.yaml:7:36: availability zone `us-west-2b` is not in region `us-east-1` (zones look like us-east-1a)",
            "environments/stage.yaml:8:33: subnet 10.9.1.0/24 is outside the VPC CIDR block 10.0.0.0/16",
        ]
    );
}

/// Each corpus file, with its diagnostics rendered exactly as `infra validate` prints them.
#[test]
fn invalid_corpus() {
    insta::glob!("../../tests/corpus/invalid", "*.yaml", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let shown = Path::new("environments").join(name);
        let errors = parse(&shown, &text, &no_env).expect_err("corpus files are invalid");
        assert!(!errors.is_empty());
        let rendered = FileDiagnostics {
            source: text,
            diagnostics: errors,
        }
        .render();
        insta::assert_snapshot!(rendered);
    });
}

/// `n` services with a port and a path each, behind a load balancer with `cidrs` ingress blocks.
fn with_services(n: usize, cidrs: usize) -> String {
    let mut text = MINIMAL.to_string();
    let blocks: Vec<String> = (0..cidrs)
        .map(|i| format!("10.{}.0.0/16", i % 250))
        .collect();
    text.push_str(&format!(
        "load_balancer:\n  https: {{certificate_arn: \"arn:aws:acm:us-east-1:123456789012:certificate/x\"}}\n  ingress_cidrs: [{}]\nservices:\n",
        blocks.join(", ")
    ));
    for i in 0..n {
        text.push_str(&format!(
            "  s{i}:\n    image: docker.io/library/nginx:1\n    cpu: 256\n    memory: 512\n    port: {}\n    path_patterns: [\"/s{i}/*\"]\n",
            3000 + i
        ));
    }
    text
}

#[test]
fn quotas_that_grow_with_the_file_are_refused_at_the_line_that_crosses_them() {
    assert!(parse_str("stage", &with_services(100, 1)).is_ok());
    let errors = parse_str("stage", &with_services(101, 1)).unwrap_err();
    let messages: Vec<(usize, &str)> = errors
        .iter()
        .map(|d| (d.loc.line, d.message.as_str()))
        .collect();
    // The 101st service's key: after the 12 lines up to `services:`, six lines per service.
    let line = 12 + 100 * 6 + 1;
    assert!(
        messages.contains(&(
            line,
            "the services up to here need 101 of AWS's `Target groups per Application Load Balancer`, whose default quota is 100"
        )),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|(l, m)| *l == line && m.contains("`Rules per Application Load Balancer`")),
        "{messages:?}"
    );
    let errors = parse_str("stage", &with_services(1, 31)).unwrap_err();
    assert!(
        errors[0]
            .message
            .starts_with("62 inbound IPv4 rules on the load balancer's security group"),
        "{errors:?}"
    );
    assert!(parse_str("stage", &with_services(1, 30)).is_ok());
}

// The schema against the reader.
use super::schema::{Field, SCHEMA_PATH, TOP, Ty, json_schema};
use serde_json::Value;

/// Every path of keys the schema describes (`services.*.deployment.strategy`).
fn schema_paths(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
    for f in fields {
        let path = format!("{prefix}{}", f.name);
        out.push(path.clone());
        match &f.ty {
            Ty::Obj(inner) => schema_paths(inner, &format!("{path}."), out),
            Ty::Map(Ty::Obj(inner)) => schema_paths(inner, &format!("{path}.*."), out),
            _ => {}
        }
    }
}

/// Every path of keys a YAML document has, name-keyed maps written as `*`.
fn file_paths(text: &str, out: &mut Vec<String>) {
    use saphyr::LoadableYamlNode;
    let docs = saphyr::MarkedYaml::load_from_str(text).unwrap();
    walk(&docs[0], "", TOP, out);
}

fn walk(
    node: &crate::config::yaml::Node<'_>,
    prefix: &str,
    fields: &[Field],
    out: &mut Vec<String>,
) {
    let saphyr::YamlData::Mapping(m) = &node.data else {
        return;
    };
    for (k, v) in m {
        let k = crate::config::yaml::scalar_text(k).unwrap();
        let path = format!("{prefix}{k}");
        out.push(path.clone());
        match fields.iter().find(|f| f.name == k).map(|f| &f.ty) {
            Some(Ty::Obj(inner)) => walk(v, &format!("{path}."), inner, out),
            Some(Ty::Map(Ty::Obj(inner))) => {
                if let saphyr::YamlData::Mapping(items) = &v.data {
                    for item in items.values() {
                        walk(item, &format!("{path}.*."), inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The fixture that uses every key: the reader accepts it whole, its keys are exactly the
/// schema's (so a key the reader takes is in the schema, and a key in the schema is one the
/// reader takes), and the committed schema file is what `infra schema` prints.
#[test]
fn the_schema_is_exactly_what_the_reader_accepts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/corpus/valid/every-key.yaml")).unwrap();
    let no_env = |_: &str| None;
    let parsed = crate::config::parse(
        std::path::Path::new("environments/every-key.yaml"),
        &text,
        &no_env,
    );
    assert!(parsed.is_ok(), "{:?}", parsed.err());
    let mut in_file = Vec::new();
    // Both forms of `network` cannot live in one file: the existing form is read from the
    // corpus file that uses it.
    file_paths(&text, &mut in_file);
    let existing =
        std::fs::read_to_string(root.join("tests/corpus/valid/existing-network.yaml")).unwrap();
    assert!(
        crate::config::parse(
            std::path::Path::new("environments/existing-network.yaml"),
            &existing,
            &no_env
        )
        .is_ok()
    );
    file_paths(&existing, &mut in_file);
    in_file.sort();
    in_file.dedup();
    let mut in_schema = Vec::new();
    schema_paths(TOP, "", &mut in_schema);
    in_schema.sort();
    assert_eq!(in_file, in_schema);

    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(SCHEMA_PATH)).unwrap()).unwrap();
    assert!(
        committed == json_schema(),
        "{SCHEMA_PATH} is stale: run `infra schema > {SCHEMA_PATH}`"
    );
}
