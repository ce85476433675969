//! The starter environment file `infra init` writes: commented, valid, and a complete small
//! platform (network, load balancer, one service) to change from there. Pure.

/// A starter file for `env` in `region` across `zones` zones (1 to 6).
/// The GitHub Actions workflow `infra init --ci` writes for `env`: plan on pull requests, apply
/// the reviewed plan on merge, with a pinned release of this version of infra.
pub fn workflow(env: &str) -> String {
    include_str!("../../templates/github-workflow.yml")
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{env}}", env)
}

/// The schema file `infra init` writes beside the environment files, for editors.
pub const SCHEMA_FILE: &str = "environment.schema.json";

/// A starter file. `ci`: the state lives in S3 (a CI runner keeps nothing between runs), in the
/// bucket `INFRA_STATE_BUCKET` names (the workflow passes it), else `<env>-infra-state`.
pub fn starter(env: &str, region: &str, zones: usize, ci: bool) -> String {
    let state = if ci {
        format!(
            "  # Where infra keeps what it created: S3, locked and versioned (created on first apply).\n  # CI passes the bucket in INFRA_STATE_BUCKET; without it, `{env}-infra-state`.\n  s3: {{bucket: \"${{INFRA_STATE_BUCKET:-{env}-infra-state}}\", key: {env}.json}}"
        )
    } else {
        format!(
            "  # Where infra keeps what it created. Local is for trying it out (no cross-machine locking);\n  # for a team, use S3 (created with versioning and encryption on first apply):\n  #   s3: {{bucket: my-infra-state, key: {env}.json}}\n  local: .infra/{env}.json"
        )
    };
    let zones = zones.clamp(1, 6);
    let names: Vec<String> = (0..zones)
        .map(|i| format!("{region}{}", char::from(b'a' + i as u8)))
        .collect();
    let list = |f: &dyn Fn(usize) -> String| (0..zones).map(f).collect::<Vec<_>>().join(", ");
    format!(
        r#"# yaml-language-server: $schema={SCHEMA_FILE}
# The {env} environment: `infra validate`, `infra plan {env}`, `infra apply {env}`.
environment: {env}          # must match the file name
region: {region}
tags: {{team: platform}}     # added to every resource infra creates

state:
{state}

network:
  cidr: 10.0.0.0/16
  availability_zones: [{zones_list}]
  public_subnets: [{public}]      # one per zone, in zone order
  private_subnets: [{private}]    # one per zone: the services run here
  nat: single                   # none | single | per_az (one per zone: survives a zone's loss)

load_balancer:
  http_port: 80
  # https: {{port: 443, certificate_arn: "arn:aws:acm:{region}:ACCOUNT:certificate/ID"}}
  # domain: {{name: app.example.com, zone: example.com}}   # a name in a public Route 53 zone: infra requests its certificate and serves HTTPS
  ingress_cidrs: [0.0.0.0/0]

# repositories:                 # ECR repositories, keyed by name (images `web:TAG` use them)
#   web: {{scan_on_push: true, immutable_tags: true, keep_last: 30}}

# alarms:                       # CloudWatch alarms to an SNS topic (these addresses), and a dashboard
#   notify: [ops@example.com]

services:
  web:
    image: public.ecr.aws/docker/library/nginx:1.27
    cpu: 256                    # Fargate sizes: 256/512, 512/1024, 1024/2048, …
    memory: 512
    port: 80
    desired_count: 2
    health_check_path: /
    # autoscaling: {{min: 2, max: 6, cpu_percent: 60}}
"#,
        zones_list = names.join(", "),
        public = list(&|i| format!("10.0.{i}.0/24")),
        private = list(&|i| format!("10.0.{}.0/24", 10 + i)),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_starter_file_is_valid_for_any_zone_count() {
        for zones in 1..=6 {
            let text = super::starter("stage", "eu-west-1", zones, zones == 2);
            let env = crate::config::parse(Path::new("stage.yaml"), &text, &|_| None)
                .unwrap_or_else(|e| panic!("{zones} zones: {e:?}"));
            assert_eq!(
                env.network.managed().unwrap().availability_zones.len(),
                zones
            );
            assert_eq!(env.services.len(), 1);
        }
    }

    #[test]
    fn its_commented_sections_are_valid_when_uncommented() {
        let text = super::starter("stage", "eu-west-1", 2, false);
        let uncommented: String = text
            .lines()
            .map(|l| {
                for section in ["# repositories:", "#   web:", "# alarms:", "#   notify:"] {
                    if l.starts_with(section) {
                        return l[2..].to_string();
                    }
                }
                l.replace("    # autoscaling:", "    autoscaling:")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let env = crate::config::parse(Path::new("stage.yaml"), &uncommented, &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}\n{uncommented}"));
        assert_eq!(
            env.alarms.map(|a| a.notify),
            Some(vec!["ops@example.com".to_string()])
        );
        assert!(env.repositories.contains_key("web"));
        assert!(env.services["web"].autoscaling.is_some());
    }
}
