//! `databases` and `uses`: database subnets whose route table has no default route, the subnet
//! group over them, an RDS PostgreSQL instance as the file says (private, encrypted, the
//! password RDS's own), its security group admitting exactly the services that use it, those
//! services' task definitions carrying the address and the secret's keys, the execution role
//! reading exactly that secret, and destroy leaving nothing.

use serde_json::Value;

use crate::faults::{Faults, start_proxy};
use crate::harness::Ctx;

const DATABASES: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.70.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.70.0.0/24, 10.70.1.0/24]
  private_subnets: [10.70.10.0/24, 10.70.11.0/24]
  database_subnets: [10.70.20.0/24, 10.70.21.0/24]
  nat: none
cluster: {}
databases:
  main: {storage_gb: 30, backup_retention_days: 3}
services:
  web:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    uses: [main]
  worker:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
";

/// The RDS instance of that identifier, if there is one.
fn db_instance(ctx: &Ctx, identifier: &str) -> Option<aws_sdk_rds::types::DbInstance> {
    ctx.rt.block_on(async {
        ctx.aws
            .rds()
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send()
            .await
            .ok()?
            .db_instances()
            .first()
            .cloned()
    })
}

fn state(ctx: &Ctx) -> Value {
    serde_json::from_slice(&ctx.state_bytes()).unwrap()
}

fn physical<'a>(state: &'a Value, id: &str) -> &'a str {
    state["resources"][id]["physical_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} is not in state"))
}

#[test]
fn a_database_is_private_encrypted_reached_only_by_its_users_and_its_password_never_seen() {
    let ctx = Ctx::new("db");
    ctx.write_env(DATABASES);
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.success();
    for id in [
        "subnet.database.us-east-1a",
        "route-table.database",
        "db-subnet-group",
        "security-group.database.main",
        "database.main",
    ] {
        assert!(plan.stdout.contains(id), "{id} missing:\n{}", plan.stdout);
    }
    // Applied through the recording proxy: infra itself never asks Secrets Manager for anything.
    let (proxy, wire) = start_proxy(Faults::default());
    let (code, text) = ctx.infra_with(
        &[("AWS_ENDPOINT_URL", &proxy)],
        &["apply", "{env}", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");
    let asked: Vec<String> = wire
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(what, _)| what.to_ascii_lowercase())
        .collect();
    assert!(
        asked.iter().any(|w| w.contains("createdbinstance")),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|w| w.contains("secretsmanager")),
        "{asked:?}"
    );
    let st = state(&ctx);

    // The database subnets' route table: the VPC's local route and nothing else.
    let rt = physical(&st, "route-table.database").to_string();
    let db_subnets = [
        physical(&st, "subnet.database.us-east-1a").to_string(),
        physical(&st, "subnet.database.us-east-1b").to_string(),
    ];
    let table = ctx.rt.block_on(async {
        ctx.ec2
            .describe_route_tables()
            .route_table_ids(&rt)
            .send()
            .await
            .unwrap()
            .route_tables()[0]
            .clone()
    });
    let destinations: Vec<&str> = table
        .routes()
        .iter()
        .filter_map(|r| r.destination_cidr_block())
        .collect();
    assert_eq!(destinations, ["10.70.0.0/16"], "{:?}", table.routes());
    let mut associated: Vec<String> = table
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id().map(str::to_string))
        .collect();
    associated.sort();
    let mut expected = db_subnets.to_vec();
    expected.sort();
    assert_eq!(associated, expected);

    // The instance as the file says, in the subnet group over the database subnets.
    let db = db_instance(&ctx, &format!("{}-main", ctx.env)).expect("the instance exists");
    assert_eq!(db.engine(), Some("postgres"));
    assert_eq!(db.allocated_storage(), Some(30));
    assert_eq!(db.backup_retention_period(), Some(3));
    assert_eq!(db.db_name(), Some("main"));
    assert_eq!(db.publicly_accessible(), Some(false));
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(db.multi_az(), Some(false), "not protected: single zone");
    assert_eq!(db.deletion_protection(), Some(false));
    let secret = db
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .expect("RDS manages the password")
        .to_string();
    let group = db.db_subnet_group().unwrap();
    let mut group_subnets: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    group_subnets.sort();
    assert_eq!(group_subnets, expected);

    // Its group admits PostgreSQL from the service that uses it, and nothing else.
    let db_group = physical(&st, "security-group.database.main").to_string();
    let web_group = physical(&st, "security-group.service.web").to_string();
    let sg = ctx.rt.block_on(async {
        ctx.ec2
            .describe_security_groups()
            .group_ids(&db_group)
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .clone()
    });
    let rules: Vec<(Option<i32>, Vec<String>, usize)> = sg
        .ip_permissions()
        .iter()
        .map(|p| {
            (
                p.from_port(),
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
                p.ip_ranges().len(),
            )
        })
        .collect();
    assert_eq!(rules, [(Some(5432), vec![web_group], 0)]);

    // The service that uses it gets its address and the secret's keys; the other one nothing.
    let task = |family: &str| {
        let arn = physical(&st, &format!("task-definition.{family}")).to_string();
        ctx.rt.block_on(async {
            ctx.ecs()
                .describe_task_definition()
                .task_definition(arn)
                .send()
                .await
                .unwrap()
                .task_definition
                .unwrap()
                .container_definitions()[0]
                .clone()
        })
    };
    let web = task("web");
    let env: Vec<(String, String)> = web
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_string(),
                kv.value().unwrap().to_string(),
            )
        })
        .collect();
    let address = db.endpoint().and_then(|e| e.address()).unwrap().to_string();
    assert_eq!(
        env,
        [
            ("DB_HOST".to_string(), address),
            ("DB_NAME".to_string(), "main".to_string()),
            ("DB_PORT".to_string(), "5432".to_string()),
        ]
    );
    let secrets: Vec<(String, String)> = web
        .secrets()
        .iter()
        .map(|s| (s.name().to_string(), s.value_from().to_string()))
        .collect();
    assert_eq!(
        secrets,
        [
            ("DB_PASSWORD".to_string(), format!("{secret}:password::")),
            ("DB_USER".to_string(), format!("{secret}:username::")),
        ]
    );
    let worker = task("worker");
    assert!(worker.environment().is_empty() && worker.secrets().is_empty());

    // The execution role may read exactly that secret.
    let policy: Value = serde_json::from_str(&percent_decode(
        ctx.rt
            .block_on(async {
                ctx.aws
                    .iam
                    .get_role_policy()
                    .role_name(
                        physical(&st, "role.task-execution")
                            .rsplit('/')
                            .next()
                            .unwrap(),
                    )
                    .policy_name("infra-task-execution")
                    .send()
                    .await
            })
            .map(|o| o.policy_document().to_string())
            .unwrap_or_default(),
    ))
    .unwrap_or(Value::Null);
    let reads: Vec<&Value> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Action"] == "secretsmanager:GetSecretValue")
        .collect();
    assert_eq!(reads.len(), 1, "{policy}");
    assert_eq!(reads[0]["Resource"], serde_json::json!([secret]));

    // No password anywhere infra writes: state and plan hold the secret's ARN, nothing else.
    let text = String::from_utf8(ctx.state_bytes()).unwrap();
    assert!(!text.to_ascii_lowercase().contains("masteruserpassword"));
    ctx.assert_converged();

    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    assert!(
        db_instance(&ctx, &format!("{}-main", ctx.env)).is_none(),
        "the instance is gone"
    );
    let groups = ctx.rt.block_on(async {
        ctx.aws
            .rds()
            .describe_db_subnet_groups()
            .db_subnet_group_name(format!("{}-db", ctx.env))
            .send()
            .await
    });
    assert!(groups.is_err(), "the subnet group is gone");
}

/// IAM returns policy documents URL-encoded.
fn percent_decode(s: String) -> String {
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

const BASTION: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.71.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.71.0.0/24, 10.71.1.0/24]
  private_subnets: [10.71.10.0/24, 10.71.11.0/24]
  database_subnets: [10.71.20.0/24, 10.71.21.0/24]
  nat: none
databases:
  main: {}
bastion: ACCESS
";

/// The bastion's security group: (port, CIDRs, groups) of each inbound rule.
fn inbound(ctx: &Ctx, group: &str) -> Vec<(Option<i32>, Vec<String>, Vec<String>)> {
    ctx.rt.block_on(async {
        ctx.ec2
            .describe_security_groups()
            .group_ids(group)
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .ip_permissions()
            .iter()
            .map(|p| {
                (
                    p.from_port(),
                    p.ip_ranges()
                        .iter()
                        .filter_map(|r| r.cidr_ip().map(str::to_string))
                        .collect(),
                    p.user_id_group_pairs()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                )
            })
            .collect()
    })
}

#[test]
fn a_bastion_opens_no_port_with_session_manager_and_only_ssh_from_the_file_with_ssh() {
    let ctx = Ctx::new("bn");
    ctx.write_env(&BASTION.replace("ACCESS", "{}"));
    ctx.apply();
    let st = state(&ctx);
    let instance = physical(&st, "bastion").to_string();
    let bastion_group = physical(&st, "security-group.bastion").to_string();
    let public_a = physical(&st, "subnet.public.us-east-1a").to_string();

    // In a public subnet, on the latest Amazon Linux 2023, with the Session Manager profile.
    let ami = ctx.rt.block_on(async {
        ctx.aws
            .ssm()
            .get_parameter()
            .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
            .send()
            .await
            .unwrap()
            .parameter
            .unwrap()
            .value
            .unwrap()
    });
    let found = ctx.rt.block_on(async {
        ctx.ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .unwrap()
            .reservations()[0]
            .instances()[0]
            .clone()
    });
    assert_eq!(found.subnet_id(), Some(public_a.as_str()));
    assert_eq!(found.image_id(), Some(ami.as_str()));
    assert!(found.key_name().is_none());
    let profile = found.iam_instance_profile().and_then(|p| p.arn()).unwrap();
    assert!(profile.ends_with(&format!("infra-{}-us-east-1-bastion", ctx.env)));
    let role = format!("infra-{}-us-east-1-bastion", ctx.env);
    let attached = ctx.rt.block_on(async {
        ctx.aws
            .iam
            .list_attached_role_policies()
            .role_name(&role)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        attached,
        ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    );
    // Session Manager: no inbound port at all; the database admits the bastion.
    assert!(inbound(&ctx, &bastion_group).is_empty());
    let db_group = physical(&st, "security-group.database.main").to_string();
    assert_eq!(
        inbound(&ctx, &db_group),
        [(Some(5432), vec![], vec![bastion_group.clone()])]
    );
    let out = ctx.infra(&["output", "{env}", "bastion"]);
    out.success();
    assert_eq!(
        out.stdout.trim(),
        format!("aws ssm start-session --region us-east-1 --target {instance}")
    );
    let tunnels = ctx.infra(&["output", "{env}", "database_tunnels", "--json"]);
    tunnels.success();
    assert!(
        tunnels
            .stdout
            .contains("AWS-StartPortForwardingSessionToRemoteHost"),
        "{}",
        tunnels.stdout
    );
    ctx.assert_converged();

    // SSH: port 22 from the file's block only, with the key pair; the instance is replaced.
    ctx.rt.block_on(async {
        ctx.ec2
            .create_key_pair()
            .key_name(&ctx.env)
            .send()
            .await
            .unwrap();
    });
    ctx.write_env(&BASTION.replace(
        "ACCESS",
        &format!(
            "{{access: ssh, ssh_cidrs: [203.0.113.0/24], key_name: {}}}",
            ctx.env
        ),
    ));
    ctx.apply();
    assert_eq!(
        inbound(&ctx, &bastion_group),
        [(Some(22), vec!["203.0.113.0/24".to_string()], vec![])]
    );
    let st = state(&ctx);
    let replaced = physical(&st, "bastion").to_string();
    assert_ne!(replaced, instance);
    let out = ctx.infra(&["output", "{env}", "bastion"]);
    assert!(
        out.stdout
            .starts_with(&format!("ssh -i {}.pem ec2-user@", ctx.env)),
        "{}",
        out.stdout
    );
    ctx.assert_converged();
    // A bastion moves to a newer image only when asked.
    let asked = ctx.infra(&[
        "plan",
        "{env}",
        "--replace",
        "bastion",
        "--detailed-exitcode",
    ]);
    asked.code(2);
    assert!(
        asked.stdout.contains("replaced as --replace asks"),
        "{}",
        asked.stdout
    );
    ctx.infra(&["plan", "{env}", "--replace", "nothing-of-that-name"])
        .code(1);

    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    let left = ctx.rt.block_on(async {
        ctx.ec2
            .describe_instances()
            .instance_ids(&replaced)
            .send()
            .await
            .unwrap()
            .reservations()[0]
            .instances()[0]
            .state()
            .and_then(|s| s.name())
            .cloned()
    });
    assert_eq!(
        left,
        Some(aws_sdk_ec2::types::InstanceStateName::Terminated)
    );
}

#[test]
fn a_protected_database_changes_in_place_refuses_to_go_and_leaves_a_final_snapshot() {
    let ctx = Ctx::new("dp");
    let text = DATABASES
        .replace("region: us-east-1\n", "region: us-east-1\nprotect: true\n")
        .replace("10.70.", "10.72.");
    ctx.write_env(&text);
    ctx.apply();
    let identifier = format!("{}-main", ctx.env);
    let db = |ctx: &Ctx| db_instance(ctx, &identifier).expect("the instance exists");
    let first = db(&ctx);
    assert_eq!(
        first.multi_az(),
        Some(true),
        "protected: a standby by default"
    );
    assert_eq!(first.deletion_protection(), Some(true));

    // More storage is a change RDS makes in place: an update, the same instance.
    ctx.write_env(&text.replace("storage_gb: 30", "storage_gb: 40"));
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.success();
    assert!(
        plan.stdout.contains("~ database.main") && !plan.stdout.contains("-/+ database.main"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    let second = db(&ctx);
    assert_eq!(second.allocated_storage(), Some(40));
    assert_eq!(second.db_instance_arn(), first.db_instance_arn());
    ctx.assert_converged();

    // Destroy refuses without the flag, and leaves a final snapshot with it.
    let refused = ctx.infra(&["destroy", "{env}", "--auto-approve"]);
    refused.code(1);
    assert!(
        refused.stderr.contains("database.main"),
        "{}",
        refused.stderr
    );
    ctx.infra(&[
        "destroy",
        "{env}",
        "--auto-approve",
        "--allow-destroy-protected",
    ])
    .success();
    let snapshots = ctx.rt.block_on(async {
        ctx.aws
            .rds()
            .describe_db_snapshots()
            .db_instance_identifier(&identifier)
            .send()
            .await
            .unwrap()
            .db_snapshots()
            .iter()
            .filter_map(|s| s.db_snapshot_identifier().map(str::to_string))
            .collect::<Vec<_>>()
    });
    assert!(
        snapshots
            .iter()
            .any(|s| s.starts_with(&format!("{identifier}-final-"))),
        "{snapshots:?}"
    );
}
