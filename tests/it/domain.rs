//! `load_balancer.domain`: the certificate requested and issued through DNS validation records
//! in the zone, HTTPS on it, alias records to the load balancer; drift on an alias repaired; a
//! record someone else owns refused and left as it is; aliases changed without a moment
//! without a certificate; destroy leaving the zone's other records. The emulator issues a
//! certificate `MOTO_ACM_VALIDATION_WAIT` seconds after the request (the harness sets 1).

use std::collections::BTreeMap;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::faults::{Faults, start_proxy};
use crate::harness::Ctx;

const DOMAIN: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.60.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.60.0.0/24, 10.60.1.0/24]
  private_subnets: [10.60.10.0/24, 10.60.11.0/24]
  nat: none
load_balancer:
  domain: {name: app.{zone}, zone: {zone}, aliases: [ALIASES]}
cluster: {}
services:
  web:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8080
";

fn env_file(ctx: &Ctx, zone: &str, aliases: &[&str]) -> String {
    let aliases: Vec<String> = aliases.iter().map(|a| format!("{a}.{zone}")).collect();
    let text = DOMAIN
        .replace("{zone}", zone)
        .replace("ALIASES", &aliases.join(", "));
    ctx.write_env(&text);
    text
}

fn upsert(ctx: &Ctx, zone_id: &str, name: &str, value: &str) {
    ctx.rt.block_on(async {
        let set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .ttl(60)
            .resource_records(ResourceRecord::builder().value(value).build().unwrap())
            .build()
            .unwrap();
        ctx.aws
            .route53()
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(
                ChangeBatch::builder()
                    .changes(
                        Change::builder()
                            .action(ChangeAction::Upsert)
                            .resource_record_set(set)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
}

/// The zone's records (SOA and NS aside): `NAME TYPE` → the alias target or the values.
fn records(ctx: &Ctx, zone_id: &str) -> BTreeMap<String, String> {
    ctx.rt.block_on(async {
        ctx.aws
            .route53()
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .send()
            .await
            .unwrap()
            .resource_record_sets()
            .iter()
            .filter(|s| !matches!(s.r#type(), RrType::Soa | RrType::Ns))
            .map(|s| {
                let value = match s.alias_target() {
                    Some(a) => format!("alias {}", a.dns_name().trim_end_matches('.')),
                    None => s
                        .resource_records()
                        .iter()
                        .map(|r| r.value().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                (format!("{} {}", s.name(), s.r#type().as_str()), value)
            })
            .collect()
    })
}

/// This environment's certificates: ARN → (status, names).
pub(crate) fn certificates(ctx: &Ctx) -> BTreeMap<String, (String, Vec<String>)> {
    ctx.rt.block_on(async {
        let listed = ctx.aws.acm().list_certificates().send().await.unwrap();
        let mut out = BTreeMap::new();
        for summary in listed.certificate_summary_list() {
            let arn = summary.certificate_arn().unwrap();
            let tags = ctx
                .aws
                .acm()
                .list_tags_for_certificate()
                .certificate_arn(arn)
                .send()
                .await
                .unwrap();
            let ours = tags
                .tags()
                .iter()
                .any(|t| t.key() == "infra:environment" && t.value() == Some(ctx.env.as_str()));
            if !ours {
                continue;
            }
            let c = ctx
                .aws
                .acm()
                .describe_certificate()
                .certificate_arn(arn)
                .send()
                .await
                .unwrap()
                .certificate
                .unwrap();
            let mut names = c.subject_alternative_names().to_vec();
            names.sort();
            out.insert(
                arn.to_string(),
                (c.status().unwrap().as_str().to_string(), names),
            );
        }
        out
    })
}

/// The load balancer's DNS name and its listeners: port → (protocol, certificate).
fn listeners(ctx: &Ctx) -> (String, BTreeMap<i32, (String, Option<String>)>) {
    ctx.rt.block_on(async {
        let lb = ctx
            .aws
            .elbv2
            .describe_load_balancers()
            .names(&ctx.env)
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .clone();
        let listeners = ctx
            .aws
            .elbv2
            .describe_listeners()
            .load_balancer_arn(lb.load_balancer_arn().unwrap())
            .send()
            .await
            .unwrap();
        let by_port = listeners
            .listeners()
            .iter()
            .map(|l| {
                (
                    l.port().unwrap(),
                    (
                        l.protocol().unwrap().as_str().to_string(),
                        l.certificates()
                            .first()
                            .and_then(|c| c.certificate_arn())
                            .map(str::to_string),
                    ),
                )
            })
            .collect();
        (lb.dns_name().unwrap().to_lowercase(), by_port)
    })
}

#[test]
fn a_domain_gets_its_certificate_https_and_records_and_leaves_the_zone_as_it_found_it() {
    let ctx = Ctx::new("dn");
    let (zone_id, zone) = ctx.hosted_zone();
    // Someone else's record in the same zone: never touched.
    upsert(&ctx, &zone_id, &format!("other.{zone}"), "192.0.2.7");
    env_file(&ctx, &zone, &["www"]);

    let plan = ctx.infra(&["plan", "{env}"]);
    plan.success();
    for id in [
        "certificate".to_string(),
        format!("dns-record.validation.app.{zone}"),
        format!("dns-record.validation.www.{zone}"),
        format!("dns-record.app.{zone}"),
        format!("dns-record.www.{zone}"),
        "listener.https".to_string(),
    ] {
        assert!(plan.stdout.contains(&id), "{id} missing:\n{}", plan.stdout);
    }
    ctx.apply();

    // One certificate, issued, for the name and its alias.
    let certs = certificates(&ctx);
    assert_eq!(certs.len(), 1, "{certs:?}");
    let (cert_arn, (status, names)) = certs.iter().next().unwrap();
    assert_eq!(status, "ISSUED");
    assert_eq!(names, &[format!("app.{zone}"), format!("www.{zone}")]);

    // HTTPS on the certificate; HTTP redirects.
    let (lb_dns, by_port) = listeners(&ctx);
    assert_eq!(by_port[&443], ("HTTPS".into(), Some(cert_arn.clone())));
    assert_eq!(by_port[&80].0, "HTTP");

    // The validation records and an alias per name to the load balancer, beside the other one.
    let found = records(&ctx, &zone_id);
    assert_eq!(found[&format!("other.{zone}. A")], "192.0.2.7");
    for name in ["app", "www"] {
        assert_eq!(
            found[&format!("{name}.{zone}. A")],
            format!("alias {lb_dns}")
        );
    }
    let validation: Vec<&String> = found.keys().filter(|k| k.ends_with(" CNAME")).collect();
    assert_eq!(validation.len(), 2, "{found:?}");
    ctx.assert_converged();

    // The plan says where the certificate stands.
    let plan = ctx.infra(&["plan", "{env}"]);
    let note = format!("certificate app.{zone}: ISSUED, expires ");
    assert!(
        plan.stdout.contains(&note) || plan.stderr.contains(&note),
        "{}{}",
        plan.stdout,
        plan.stderr
    );

    let url = ctx.infra(&["output", "{env}", "url"]);
    url.success();
    assert_eq!(url.stdout.trim(), format!("https://app.{zone}"));

    // An alias changed by hand is drift, shown and repaired.
    upsert(&ctx, &zone_id, &format!("app.{zone}"), "192.0.2.99");
    let drift = ctx.infra(&["plan", "{env}", "--detailed-exitcode"]);
    drift.code(2);
    assert!(
        drift.stdout.contains(&format!("dns-record.app.{zone}")),
        "{}",
        drift.stdout
    );
    ctx.apply();
    assert_eq!(
        records(&ctx, &zone_id)[&format!("app.{zone}. A")],
        format!("alias {lb_dns}")
    );
    ctx.assert_converged();

    // New aliases: a new certificate, issued and on the listener before the old one goes.
    env_file(&ctx, &zone, &["api"]);
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.success();
    assert!(plan.stdout.contains("certificate"), "{}", plan.stdout);
    let (proxy, wire) = start_proxy(Faults::default());
    let (code, text) = ctx.infra_with(
        &[("AWS_ENDPOINT_URL", &proxy)],
        &["apply", "{env}", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");
    let certs = certificates(&ctx);
    assert_eq!(certs.len(), 1, "the old certificate is gone: {certs:?}");
    let (new_arn, (status, names)) = certs.iter().next().unwrap();
    assert_ne!(new_arn, cert_arn);
    assert_eq!(status, "ISSUED");
    assert_eq!(names, &[format!("api.{zone}"), format!("app.{zone}")]);
    assert_eq!(listeners(&ctx).1[&443].1.as_deref(), Some(new_arn.as_str()));
    // On the wire: the new certificate requested, the listener moved to it, and only then
    // the old one deleted: HTTPS always had an issued certificate.
    let order: Vec<String> = wire
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(what, _)| what.to_ascii_lowercase())
        .filter(|w| {
            w.contains("requestcertificate")
                || w.contains("modifylistener")
                || w.contains("deletecertificate")
        })
        .map(|w| w.rsplit(['.', '=']).next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        order,
        ["requestcertificate", "modifylistener", "deletecertificate"],
        "{order:?}"
    );
    let found = records(&ctx, &zone_id);
    assert!(found.contains_key(&format!("api.{zone}. A")), "{found:?}");
    assert!(!found.contains_key(&format!("www.{zone}. A")), "{found:?}");
    ctx.assert_converged();

    // Destroy: our records and certificate gone, the zone and its other record stay.
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    let left = records(&ctx, &zone_id);
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        [&format!("other.{zone}. A")],
        "{left:?}"
    );
    assert!(certificates(&ctx).is_empty());
}

#[test]
fn a_record_someone_else_owns_is_refused_and_left_alone() {
    let ctx = Ctx::new("df");
    let (zone_id, zone) = ctx.hosted_zone();
    upsert(&ctx, &zone_id, &format!("app.{zone}"), "192.0.2.1");
    env_file(&ctx, &zone, &[]);
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.code(1);
    assert!(
        plan.stderr.contains(&format!("app.{zone}")),
        "{}",
        plan.stderr
    );
    let apply = ctx.infra(&["apply", "{env}", "--auto-approve", "--no-wait"]);
    apply.code(1);
    assert_eq!(
        records(&ctx, &zone_id)[&format!("app.{zone}. A")],
        "192.0.2.1"
    );
    // A zone that does not exist is a plan error that says how to make one.
    let text = env_file(&ctx, &format!("missing-{zone}"), &[]);
    assert!(text.contains("missing-"));
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.code(1);
    assert!(
        plan.stderr.contains("create-hosted-zone"),
        "{}",
        plan.stderr
    );
}
