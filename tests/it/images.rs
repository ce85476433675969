//! The pipeline owns the image: `image: web` (no tag) keeps what the service runs unless
//! `--image web=TAG` says otherwise, and `infra deploy` ships a tag by reading and touching only
//! the services that use it.

use crate::faults::{Faults, start_proxy};
use crate::harness::Ctx;
use crate::platform::push_image;

const OWNED: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.42.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.42.0.0/24, 10.42.1.0/24]
  private_subnets: [10.42.10.0/24, 10.42.11.0/24]
  nat: single
repositories: {web: {}}
cluster: {}
services:
  web:
    image: web
    cpu: 256
    memory: MEMORY
  worker:
    image: web
    cpu: 256
    memory: 512
  proxy:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
";

fn env_file(memory: u32) -> String {
    OWNED.replace("MEMORY", &memory.to_string())
}

/// The image each service's task definition runs now.
fn running_images(ctx: &Ctx) -> Vec<(String, String)> {
    ctx.rt.block_on(async {
        let services = ctx
            .ecs()
            .describe_services()
            .cluster(&ctx.env)
            .services("web")
            .services("worker")
            .send()
            .await
            .unwrap();
        let mut out = Vec::new();
        for s in services.services() {
            let td = ctx
                .ecs()
                .describe_task_definition()
                .task_definition(s.task_definition().unwrap())
                .send()
                .await
                .unwrap();
            let image = td.task_definition().unwrap().container_definitions()[0]
                .image()
                .unwrap()
                .to_string();
            out.push((s.service_name().unwrap().to_string(), image));
        }
        out.sort();
        out
    })
}

#[test]
fn the_pipeline_owns_the_tag_and_deploy_touches_only_its_services() {
    let ctx = Ctx::new("own");
    ctx.write_env(&env_file(512));
    // Creating the repository needs no image: the services' task definitions are not part of it.
    ctx.infra(&["apply", "{env}", "--auto-approve", "--target", "repository"])
        .success();
    let d1 = push_image(&ctx, "t1");
    let d2 = push_image(&ctx, "tt2");

    // Nothing runs yet and the file gives no tag: the plan says how to give one.
    let first = ctx.infra(&["plan", "{env}"]);
    first.code(1);
    assert!(
        first.stderr.contains("service `web` does not run yet")
            && first.stderr.contains("--image web=TAG"),
        "{}",
        first.stderr
    );
    // A key no service leaves untagged, and a malformed flag: refused before any AWS call.
    let (proxy, wire) = start_proxy(Faults::default());
    let through = |args: &[&str]| ctx.infra_with(&[("AWS_ENDPOINT_URL", &proxy)], args);
    let (code, text) = through(&["deploy", "{env}", "--image", "proxy=t1"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no service of"), "{text}");
    let (code, text) = through(&["plan", "{env}", "--image", "web"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("is not KEY=TAG"), "{text}");
    assert!(wire.sent("").is_empty(), "{:?}", wire.sent(""));

    // The first apply gives the tag; afterwards a plan without it keeps what runs.
    ctx.infra(&[
        "apply",
        "{env}",
        "--auto-approve",
        "--no-wait",
        "--image",
        "web=t1",
    ])
    .success();
    let repo = format!("{}/web", ctx.env);
    assert!(
        running_images(&ctx)
            .iter()
            .all(|(_, image)| image.ends_with(&format!("{repo}@{d1}"))),
        "{:?}",
        running_images(&ctx)
    );
    let kept = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    kept.success();
    assert!(kept.stdout.contains("No changes."), "{}", kept.stdout);
    assert!(
        kept.stdout
            .contains(&format!("web: image kept as deployed: web@{d1} (tag t1)")),
        "{}",
        kept.stdout
    );

    // deploy: only the services using the key, through ECS, ECR, tags and state; nothing of
    // EC2 or the load balancer is read.
    let before = wire.sent("").len();
    let state_before = ctx.state_bytes();
    let (code, text) = through(&["deploy", "{env}", "--image", "web=missing"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("no image tagged `missing` in repository"),
        "{text}"
    );
    assert_eq!(
        ctx.state_bytes(),
        state_before,
        "a refused deploy wrote state"
    );
    let (code, text) = through(&["deploy", "{env}", "--image", "web=tt2", "--no-wait"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Deploying web:tt2 to web, worker of"),
        "{text}"
    );
    let calls: Vec<String> = wire.bodies.lock().unwrap()[before..]
        .iter()
        .map(|(what, _)| what.clone())
        .collect();
    assert!(
        !calls
            .iter()
            .any(|w| w.contains("Version=2016-11-15") || w.contains("Version=2015-12-01")),
        "deploy called EC2 or ELB: {calls:#?}"
    );
    assert!(calls.len() <= 40, "{} calls: {calls:#?}", calls.len());
    assert!(
        running_images(&ctx)
            .iter()
            .all(|(_, image)| image.ends_with(&format!("{repo}@{d2}"))),
        "{:?}",
        running_images(&ctx)
    );
    let kept = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    kept.success();
    assert!(
        kept.stdout.contains(&format!(
            "worker: image kept as deployed: web@{d2} (tag tt2)"
        )),
        "{}",
        kept.stdout
    );

    // People own the rest of the file: a memory change plans with the deployed image kept.
    ctx.write_env(&env_file(1024));
    let plan = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    plan.code(2);
    assert!(
        plan.stdout.contains("-/+ task-definition.web")
            && plan.stdout.contains("memory = \"512\" → \"1024\"")
            && plan
                .stdout
                .contains(&format!("web: image kept as deployed: web@{d2} (tag tt2)"))
            && !plan.stdout.contains(&d1),
        "{}",
        plan.stdout
    );
    // A deploy of that service takes the file's change along and says so.
    let (code, text) = through(&[
        "deploy",
        "{env}",
        "--image",
        "web=t1",
        "--service",
        "web",
        "--no-wait",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Also applied, as the file now says: task-definition.web.memory"),
        "{text}"
    );
    assert_eq!(
        running_images(&ctx),
        [
            (
                "web".to_string(),
                format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo}@{d1}")
            ),
            (
                "worker".to_string(),
                format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo}@{d2}")
            ),
        ]
    );
    ctx.assert_converged();

    // Rolling back a service whose image the pipeline owns: the file and the service agree at
    // once, and the plan keeps the image it returned to.
    ctx.infra(&["rollback", "{env}", "worker", "--auto-approve", "--no-wait"])
        .success();
    let kept = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    kept.success();
    assert!(
        kept.stdout.contains(&format!(
            "worker: image kept as deployed: web@{d1} (tag t1)"
        )),
        "{}",
        kept.stdout
    );
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
}
