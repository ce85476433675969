//! `alarms:`: the topic and its subscriptions, every promised alarm with the file's thresholds
//! and the topic as its action, the dashboard, alarm states in `infra status`, the alarms handed
//! to a deployment (checked on the wire: the emulator does not return them), and destroy
//! leaving nothing.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::faults::{Faults, start_proxy};
use crate::harness::Ctx;

const WATCHED: &str = "environment: {env}
region: us-east-1
state: {s3: {bucket: {bucket}}}
network:
  cidr: 10.50.0.0/16
  availability_zones: [us-east-1a, us-east-1b]
  public_subnets: [10.50.0.0/24, 10.50.1.0/24]
  private_subnets: [10.50.10.0/24, 10.50.11.0/24]
  nat: single
load_balancer: {}
cluster: {}
alarms:
  notify: [ops@example.com, oncall@example.com]
  cpu_percent: 75
  target_response_ms: 500
services:
  web:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
    port: 8080
    desired_count: 2
    deployment: {strategy: blue_green, rollback_alarms: true}
  worker:
    image: docker.io/library/nginx:1.27
    cpu: 256
    memory: 512
";

/// The environment's alarms by name.
fn alarms(ctx: &Ctx) -> BTreeMap<String, aws_sdk_cloudwatch::types::MetricAlarm> {
    ctx.rt.block_on(async {
        ctx.aws
            .cloudwatch()
            .describe_alarms()
            .alarm_name_prefix(format!("infra-{}-", ctx.env))
            .send()
            .await
            .unwrap()
            .metric_alarms()
            .iter()
            .map(|a| (a.alarm_name().unwrap().to_string(), a.clone()))
            .collect()
    })
}

/// The topic's ARN (if it exists) and the endpoints of its email subscriptions, sorted.
fn topic(ctx: &Ctx) -> Option<(String, Vec<String>)> {
    ctx.rt.block_on(async {
        let topics = ctx.aws.sns().list_topics().send().await.unwrap();
        let arn = topics
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.ends_with(&format!(":infra-{}-alarms", ctx.env)))?
            .to_string();
        let subs = ctx
            .aws
            .sns()
            .list_subscriptions_by_topic()
            .topic_arn(&arn)
            .send()
            .await
            .unwrap();
        let mut emails: Vec<String> = subs
            .subscriptions()
            .iter()
            .filter(|s| s.protocol() == Some("email"))
            .filter_map(|s| s.endpoint().map(str::to_string))
            .collect();
        emails.sort();
        Some((arn, emails))
    })
}

fn dashboard(ctx: &Ctx) -> Option<Value> {
    ctx.rt.block_on(async {
        let got = ctx
            .aws
            .cloudwatch()
            .get_dashboard()
            .dashboard_name(format!("infra-{}", ctx.env))
            .send()
            .await
            .ok()?;
        serde_json::from_str(got.dashboard_body()?).ok()
    })
}

fn set_state(ctx: &Ctx, alarm: &str, state: aws_sdk_cloudwatch::types::StateValue) {
    ctx.rt.block_on(async {
        ctx.aws
            .cloudwatch()
            .set_alarm_state()
            .alarm_name(alarm)
            .state_value(state)
            .state_reason("Threshold Crossed: set by the test")
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn alarms_notify_the_topic_show_in_status_roll_deployments_back_and_leave_nothing() {
    let ctx = Ctx::new("al");
    ctx.write_env(WATCHED);
    let (proxy, wire) = start_proxy(Faults::default());
    let (code, text) = ctx.infra_with(
        &[("AWS_ENDPOINT_URL", &proxy)],
        &["apply", "{env}", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");

    // The topic, tagged, with the file's subscriptions.
    let (topic_arn, emails) = topic(&ctx).expect("the alarm topic exists");
    assert_eq!(emails, ["oncall@example.com", "ops@example.com"]);

    // Every promised alarm, notifying the topic on ALARM and on OK, with the file's thresholds.
    let found = alarms(&ctx);
    let name = |what: &str| format!("infra-{}-{what}", ctx.env);
    let promised = [
        "alb-5xx",
        "alb-latency",
        "nat-us-east-1a",
        "web-cpu",
        "web-memory",
        "web-running",
        "web-unhealthy",
        "worker-cpu",
        "worker-memory",
        "worker-running",
    ];
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        promised.iter().map(|w| name(w)).collect::<Vec<_>>()
    );
    for (n, a) in &found {
        assert_eq!(a.alarm_actions(), std::slice::from_ref(&topic_arn), "{n}");
        assert_eq!(a.ok_actions(), std::slice::from_ref(&topic_arn), "{n}");
    }
    let threshold = |what: &str| found[&name(what)].threshold().unwrap();
    assert_eq!(threshold("web-cpu"), 75.0);
    assert_eq!(threshold("worker-cpu"), 75.0);
    assert_eq!(threshold("web-memory"), 80.0);
    assert_eq!(threshold("alb-latency"), 0.5);
    assert_eq!(threshold("alb-5xx"), 5.0);
    assert_eq!(threshold("web-running"), 2.0);
    // The unhealthy alarm of a blue/green service watches both target groups of its pair.
    let unhealthy = &found[&name("web-unhealthy")];
    let groups: Vec<&str> = unhealthy
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat()?.metric())
        .flat_map(|m| m.dimensions())
        .filter(|d| d.name() == Some("TargetGroup"))
        .filter_map(|d| d.value())
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(
        groups.iter().all(|g| g.starts_with("targetgroup/")),
        "{groups:?}"
    );

    // The dashboard exists, its graphs name this environment's load balancer and services.
    let body = dashboard(&ctx).expect("the dashboard exists");
    let text = body.to_string();
    for expected in [
        "RequestCount",
        "HealthyHostCount",
        "\"worker\"",
        "NatGatewayId",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(text.contains(&format!("app/{}/", ctx.env)), "{text}");

    // The deployment gets its service's alarms, on the wire (the emulator does not return them).
    let created: Vec<Value> = wire
        .sent("CreateService")
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect();
    let web = created
        .iter()
        .find(|b| b["serviceName"] == "web")
        .expect("CreateService web");
    let sent = &web["deploymentConfiguration"]["alarms"];
    assert_eq!(sent["enable"], true, "{web}");
    assert_eq!(sent["rollback"], true, "{web}");
    assert_eq!(
        sent["alarmNames"],
        serde_json::json!(
            ["web-cpu", "web-memory", "web-running", "web-unhealthy"]
                .iter()
                .map(|w| name(w))
                .collect::<Vec<_>>()
        )
    );
    let worker = created
        .iter()
        .find(|b| b["serviceName"] == "worker")
        .expect("CreateService worker");
    assert_eq!(worker["deploymentConfiguration"]["alarms"]["enable"], false);
    ctx.assert_converged();

    // Status: alarms as CloudWatch holds them; one in ALARM degrades (exit 3) and is named.
    let healthy = ctx.infra(&["status", "{env}", "--json"]);
    healthy.code(0);
    let v: Value = serde_json::from_str(&healthy.stdout).unwrap();
    assert_eq!(v["alarms"].as_array().unwrap().len(), promised.len());
    set_state(
        &ctx,
        &name("web-cpu"),
        aws_sdk_cloudwatch::types::StateValue::Alarm,
    );
    let degraded = ctx.infra(&["status", "{env}"]);
    degraded.code(3);
    assert!(
        degraded
            .stdout
            .contains(&format!("alarm {} is in ALARM", name("web-cpu"))),
        "{}",
        degraded.stdout
    );
    let v: Value = serde_json::from_str(&ctx.infra(&["status", "{env}", "--json"]).stdout).unwrap();
    let cpu = v["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name("web-cpu").as_str())
        .unwrap();
    assert_eq!(cpu["state"], "ALARM");
    assert_eq!(v["healthy"], false);

    // Thresholds and addresses change in place; a console edit of the dashboard is repaired.
    ctx.write_env(
        &WATCHED
            .replace("cpu_percent: 75", "cpu_percent: 60")
            .replace("oncall@example.com", "sre@example.com"),
    );
    ctx.rt.block_on(async {
        ctx.aws
            .cloudwatch()
            .put_dashboard()
            .dashboard_name(format!("infra-{}", ctx.env))
            .dashboard_body(r#"{"widgets": []}"#)
            .send()
            .await
            .unwrap();
    });
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.success();
    for expected in [
        "~ alarm-topic",
        "~ alarm.web.cpu",
        "~ alarm.worker.cpu",
        "~ dashboard",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected}:\n{}",
            plan.stdout
        );
    }
    assert!(!plan.stdout.contains("alarm.web.memory"), "{}", plan.stdout);
    ctx.apply();
    assert_eq!(threshold_of(&ctx, &name("web-cpu")), 60.0);
    assert_eq!(
        topic(&ctx).unwrap().1,
        ["ops@example.com", "sre@example.com"]
    );
    assert!(
        dashboard(&ctx)
            .unwrap()
            .to_string()
            .contains("RequestCount")
    );
    ctx.assert_converged();

    // Destroy leaves no alarm, dashboard or topic.
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
    assert!(alarms(&ctx).is_empty());
    assert!(dashboard(&ctx).is_none());
    assert!(topic(&ctx).is_none());
}

fn threshold_of(ctx: &Ctx, alarm: &str) -> f64 {
    alarms(ctx)[alarm].threshold().unwrap()
}

#[test]
fn without_alarms_nothing_is_watched_and_rollback_alarms_is_refused() {
    let ctx = Ctx::new("na");
    let unwatched = WATCHED.replace(
        "alarms:\n  notify: [ops@example.com, oncall@example.com]\n  cpu_percent: 75\n  target_response_ms: 500\n",
        "",
    );
    ctx.write_env(&unwatched);
    let refused = ctx.infra(&["plan", "{env}"]);
    refused.code(1);
    assert!(
        refused
            .stderr
            .contains("`rollback_alarms` needs the service's alarms"),
        "{}",
        refused.stderr
    );
    ctx.write_env(&unwatched.replace(", rollback_alarms: true", ""));
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.success();
    assert!(!plan.stdout.contains("alarm"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("dashboard"), "{}", plan.stdout);
}

#[test]
fn an_alarm_or_topic_of_the_same_name_made_elsewhere_stops_the_plan_with_its_import() {
    let ctx = Ctx::new("at");
    let env = ctx.env.clone();
    let (alarm, topic_arn) = ctx.rt.block_on(async {
        let alarm = format!("infra-{env}-worker-cpu");
        ctx.aws
            .cloudwatch()
            .put_metric_alarm()
            .alarm_name(&alarm)
            .namespace("AWS/ECS")
            .metric_name("CPUUtilization")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
            .period(60)
            .evaluation_periods(1)
            .threshold(90.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send()
            .await
            .unwrap();
        let topic = ctx
            .aws
            .sns()
            .create_topic()
            .name(format!("infra-{env}-alarms"))
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_string();
        (alarm, topic)
    });
    ctx.write_env(WATCHED);
    let plan = ctx.infra(&["plan", "{env}"]);
    plan.code(1);
    for (id, physical) in [("alarm.worker.cpu", &alarm), ("alarm-topic", &topic_arn)] {
        assert!(
            plan.stderr
                .contains(&format!("adopt it: infra import {env} {id} {physical}")),
            "{id}: {}",
            plan.stderr
        );
    }
    // Neither was touched.
    let (_, emails) = topic(&ctx).unwrap();
    assert!(emails.is_empty(), "{emails:?}");
    assert_eq!(alarms(&ctx)[&alarm].threshold(), Some(90.0));
}
