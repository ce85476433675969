//! Faults on every AWS call, from a loopback proxy in front of the emulator. Refused calls: about
//! one in five answered with the service's own throttling error and one in twenty with a 500,
//! instead of being passed on. Lost answers: calls carried out by the emulator whose answer is
//! replaced by a 500 or a dropped connection — the case where a blind retry of a create makes a
//! twin. Either way apply must converge, with nothing created twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::harness::{Ctx, TWO_ZONES, endpoint};
use crate::network::World;

/// What the proxy did, for the test to check it really injected faults.
#[derive(Default)]
pub(crate) struct Counts {
    passed: AtomicUsize,
    throttled: AtomicUsize,
    failed: AtomicUsize,
    lost: AtomicUsize,
    /// The operations of `Faults::lose_first` whose answer was already lost.
    lost_first: std::sync::Mutex<Vec<&'static str>>,
    /// The IAM actions refused by `Faults::allow`, in order.
    pub(crate) denied: std::sync::Mutex<Vec<String>>,
    /// When each request arrived, and what it was (`what`).
    pub(crate) arrivals: std::sync::Mutex<Vec<(std::time::Instant, String)>>,
    /// Every request's `what` and body, in arrival order: what the emulator accepts but does
    /// not return is checked here, on the wire.
    pub(crate) bodies: std::sync::Mutex<Vec<(String, String)>>,
}

impl Counts {
    /// The bodies of the requests whose `what` contains `operation` (case-insensitive).
    pub(crate) fn sent(&self, operation: &str) -> Vec<String> {
        let op = operation.to_ascii_lowercase();
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(what, _)| what.to_ascii_lowercase().contains(&op))
            .map(|(_, body)| body.clone())
            .collect()
    }
}

/// Percentages of calls that get each fault.
#[derive(Clone, Copy, Default)]
pub(crate) struct Faults {
    pub(crate) throttle: u64,
    pub(crate) fail: u64,
    pub(crate) lose_answer: u64,
    /// Besides the percentages: the answer of the first request of each of these operations
    /// (matched against `what`, case-insensitively) is lost after the call was carried out.
    pub(crate) lose_first: &'static [&'static str],
    /// When set, only these IAM actions are allowed: anything else is refused as AWS refuses
    /// it (`AccessDenied` in the protocol's own form), never reaching the emulator.
    pub(crate) allow: Option<&'static std::collections::BTreeSet<String>>,
}

pub(crate) struct Request {
    head: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Kept as sent (chunk framing included): the emulator reads it the same way.
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            body.extend_from_slice(size.as_bytes());
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            if n == 0 {
                break;
            }
        }
    }
    Some(Request { head, body })
}

/// A request in a few words: its query action, its JSON target, or method and path (S3).
fn what(req: &Request) -> String {
    let body = String::from_utf8_lossy(&req.body);
    if let Some(action) = body.split('&').find(|p| p.starts_with("Action=")) {
        return action.to_string();
    }
    let head = req.head.to_ascii_lowercase();
    if let Some(target) = head.lines().find(|l| l.starts_with("x-amz-target:")) {
        return target.to_string();
    }
    req.head.lines().next().unwrap_or_default().to_string()
}

/// The IAM action a request needs: the service from its signature's scope, the operation from
/// its query action, JSON target, CBOR path or (S3) method, path and query.
pub(crate) fn iam_action(req: &Request) -> Option<String> {
    let auth = req.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization").then_some(v)
    })?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    let service = scope.split('/').nth(3)?;
    let prefix = match service {
        "monitoring" => "cloudwatch",
        "tagging" => "tag",
        other => other,
    };
    let body = String::from_utf8_lossy(&req.body);
    let request_line = req.head.lines().next()?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let op = if let Some(a) = body.split('&').find_map(|p| p.strip_prefix("Action=")) {
        a.to_string()
    } else if let Some(t) = req.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-amz-target")
            .then(|| v.trim().to_string())
    }) {
        t.rsplit('.').next()?.to_string()
    } else if let Some(op) = target.split("/operation/").nth(1) {
        op.to_string()
    } else if prefix == "route53" {
        // Route 53's REST paths: /2013-04-01/hostedzonesbyname, /hostedzone/ID/rrset[/].
        let path = target
            .split('?')
            .next()
            .unwrap_or(target)
            .trim_end_matches('/');
        match (method, path) {
            ("GET", p) if p.ends_with("/hostedzonesbyname") => "ListHostedZonesByName",
            ("GET", p) if p.ends_with("/rrset") => "ListResourceRecordSets",
            ("POST", p) if p.ends_with("/rrset") => "ChangeResourceRecordSets",
            ("POST", p) if p.ends_with("/hostedzone") => "CreateHostedZone",
            _ => return Some(format!("route53:{method} {target}")),
        }
        .to_string()
    } else if prefix == "s3" {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let object = path.trim_matches('/').contains('/');
        let has = |q: &str| {
            query
                .split('&')
                .any(|p| p == q || p.starts_with(&format!("{q}=")))
        };
        match (method, object) {
            ("GET", true) if has("versionId") => "GetObjectVersion",
            ("GET" | "HEAD", true) => "GetObject",
            ("PUT", true) => "PutObject",
            ("DELETE", true) => "DeleteObject",
            ("GET", false) if has("versions") => "ListBucketVersions",
            ("GET", false) if has("encryption") => "GetEncryptionConfiguration",
            ("GET", false) if has("publicAccessBlock") => "GetBucketPublicAccessBlock",
            ("GET", false) if has("versioning") => "GetBucketVersioning",
            ("GET" | "HEAD", false) => "ListBucket",
            ("PUT", false) if has("versioning") => "PutBucketVersioning",
            ("PUT", false) if has("encryption") => "PutEncryptionConfiguration",
            ("PUT", false) if has("publicAccessBlock") => "PutBucketPublicAccessBlock",
            ("PUT", false) => "CreateBucket",
            _ => return Some(format!("s3:{method} {target}")),
        }
        .to_string()
    } else {
        return None;
    };
    Some(format!("{prefix}:{op}"))
}

/// CBOR text: major type 3 with its length.
fn cbor_text(out: &mut Vec<u8>, s: &str) {
    match s.len() {
        n if n < 24 => out.push(0x60 + n as u8),
        n if n < 256 => out.extend([0x78, n as u8]),
        n => out.extend([0x79, (n >> 8) as u8, n as u8]),
    }
    out.extend(s.as_bytes());
}

/// What AWS answers a request its caller may not make, in the request's protocol.
fn access_denied(req: &Request, action: &str) -> Vec<u8> {
    let message =
        format!("User: arn:aws:iam::123456789012:user/test is not authorized to perform: {action}");
    let head = req.head.to_ascii_lowercase();
    let body = String::from_utf8_lossy(&req.body);
    let (status, content_type, text): (u16, &str, Vec<u8>) = if head
        .contains("smithy-protocol: rpc-v2-cbor")
    {
        let mut b = vec![0xa2];
        cbor_text(&mut b, "__type");
        cbor_text(&mut b, "AccessDenied");
        cbor_text(&mut b, "message");
        cbor_text(&mut b, &message);
        (400, "application/cbor", b)
    } else if head.contains("x-amz-target:") {
        (
            400,
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"AccessDeniedException","message":"{message}"}}"#).into_bytes(),
        )
    } else if body.contains("Action=") && body.contains("Version=2016-11-15") {
        (403, "text/xml", format!("<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>{message}</Message></Error></Errors><RequestID>denied</RequestID></Response>").into_bytes())
    } else if body.contains("Action=") {
        (403, "text/xml", format!("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>denied</RequestId></ErrorResponse>").into_bytes())
    } else {
        (
            403,
            "application/xml",
            format!("<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>")
                .into_bytes(),
        )
    };
    let extra = if content_type == "application/cbor" {
        "smithy-protocol: rpc-v2-cbor\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} Denied\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nx-amzn-RequestId: denied\r\nConnection: close\r\n\r\n",
        text.len()
    )
    .into_bytes();
    out.extend(text);
    out
}

/// The throttling error each protocol family answers with.
fn throttle(req: &Request) -> Vec<u8> {
    let body = String::from_utf8_lossy(&req.body);
    let (status, content_type, text) = if req.head.to_ascii_lowercase().contains("x-amz-target:") {
        (
            400,
            "application/x-amz-json-1.1",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
        )
    } else if body.contains("Action=") && body.contains("Version=2016-11-15") {
        (503, "text/xml", "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault</RequestID></Response>".to_string())
    } else if body.contains("Action=") {
        (400, "text/xml", "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>".to_string())
    } else {
        (503, "application/xml", "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_string())
    };
    let reason = if status == 503 {
        "Service Unavailable"
    } else {
        "Bad Request"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: fault\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

fn forward(upstream: &str, req: &Request) -> Vec<u8> {
    let head = req
        .head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let mut up = TcpStream::connect(upstream).unwrap();
    up.write_all(head.trim_end().as_bytes()).unwrap();
    up.write_all(b"\r\nConnection: close\r\n\r\n").unwrap();
    up.write_all(&req.body).unwrap();
    let mut response = Vec::new();
    up.read_to_end(&mut response).unwrap();
    response
}

const SERVER_ERROR: &[u8] =
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn serve(client: TcpStream, upstream: String, faults: Faults, roll: &AtomicU64, counts: &Counts) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    counts
        .arrivals
        .lock()
        .unwrap()
        .push((std::time::Instant::now(), what(&req)));
    counts
        .bodies
        .lock()
        .unwrap()
        .push((what(&req), String::from_utf8_lossy(&req.body).into_owned()));
    // A deterministic sequence: the same faults on every run.
    let n = roll
        .fetch_add(1, Ordering::SeqCst)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let dice = (n >> 33) % 100;
    let described = what(&req).to_ascii_lowercase();
    let first_of = faults.lose_first.iter().copied().find(|op| {
        described.contains(&op.to_ascii_lowercase())
            && !counts.lost_first.lock().unwrap().contains(op)
    });
    let refused = faults.allow.and_then(|allowed| {
        let action = iam_action(&req).unwrap_or_else(|| format!("unknown: {}", what(&req)));
        (!allowed.contains(&action)).then_some(action)
    });
    let reply = if let Some(action) = refused {
        counts.denied.lock().unwrap().push(action.clone());
        access_denied(&req, &action)
    } else if let Some(op) = first_of {
        counts.lost_first.lock().unwrap().push(op);
        counts.lost.fetch_add(1, Ordering::SeqCst);
        let _ = forward(&upstream, &req);
        SERVER_ERROR.to_vec()
    } else if dice < faults.throttle {
        counts.throttled.fetch_add(1, Ordering::SeqCst);
        throttle(&req)
    } else if dice < faults.throttle + faults.fail {
        counts.failed.fetch_add(1, Ordering::SeqCst);
        SERVER_ERROR.to_vec()
    } else if dice < faults.throttle + faults.fail + faults.lose_answer
        // A retry with the same client token gets the first call's result from AWS; the
        // emulator ignores client tokens, so such calls (CreateRouteTable, CreateNatGateway)
        // would show a twin AWS never makes. They are left out of this fault.
        && !String::from_utf8_lossy(&req.body).contains("ClientToken=")
    {
        // Carried out, and the answer never arrives: half a 500, half a dropped connection.
        let _ = forward(&upstream, &req);
        if counts.lost.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            SERVER_ERROR.to_vec()
        } else {
            Vec::new()
        }
    } else {
        counts.passed.fetch_add(1, Ordering::SeqCst);
        forward(&upstream, &req)
    };
    let _ = client.write_all(&reply);
}

/// Starts the proxy; returns its URL and its counters.
pub(crate) fn start_proxy(faults: Faults) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = endpoint().trim_start_matches("http://").to_string();
    let counts = Arc::new(Counts::default());
    let roll = Arc::new(AtomicU64::new(7));
    let c = counts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (upstream, roll, c) = (upstream.clone(), roll.clone(), c.clone());
            std::thread::spawn(move || serve(stream, upstream, faults, &roll, &c));
        }
    });
    (url, counts)
}

#[test]
fn throttling_and_server_errors_on_every_call_still_converge() {
    let ctx = Ctx::new("fault");
    ctx.write_env(&format!("{TWO_ZONES}repositories: {{web: {{}}}}\n"));
    let (proxy, counts) = start_proxy(Faults {
        throttle: 20,
        fail: 5,
        lose_answer: 0,
        lose_first: &[],
        allow: None,
    });
    let out = ctx
        .command(&["apply", &ctx.env, "--auto-approve", "--no-wait"])
        .env("AWS_ENDPOINT_URL", &proxy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (throttled, failed) = (
        counts.throttled.load(Ordering::SeqCst),
        counts.failed.load(Ordering::SeqCst),
    );
    assert!(
        throttled >= 5 && failed >= 1,
        "too few faults injected: {throttled} throttled, {failed} failed"
    );
    // Through the faults too: the re-plan sees nothing to do.
    let plan = ctx
        .command(&["plan", &ctx.env, "--detailed-exitcode"])
        .env("AWS_ENDPOINT_URL", &proxy)
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    ctx.assert_converged();
    let w = World::read(&ctx);
    let mut logical: Vec<&String> = w.ids.values().collect();
    let all = logical.len();
    logical.sort();
    logical.dedup();
    assert_eq!((all, logical.len()), (11, 11), "duplicates: {w:#?}");
}

/// Every `infra:id` the environment's tagged EC2 resources, security groups, task definitions
/// and services carry, one entry per live resource.
fn live_ids(ctx: &Ctx) -> Vec<String> {
    let mut ids: Vec<String> = World::read(ctx).ids.into_values().collect();
    ctx.rt.block_on(async {
        let groups = ctx
            .ec2
            .describe_security_groups()
            .filters(ctx.env_filter())
            .send()
            .await
            .unwrap();
        for g in groups.security_groups() {
            let id = g.tags().iter().find(|t| t.key() == Some("infra:id"));
            ids.push(id.and_then(|t| t.value()).unwrap_or("?").to_string());
        }
        let revisions = ctx
            .ecs()
            .list_task_definitions()
            .family_prefix(format!("{}-web", ctx.env))
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .send()
            .await
            .unwrap();
        for _ in revisions.task_definition_arns() {
            ids.push("service.web.task".into());
        }
        let services = ctx
            .ecs()
            .list_services()
            .cluster(&ctx.env)
            .send()
            .await
            .unwrap();
        for _ in services.service_arns() {
            ids.push("service.web".into());
        }
    });
    ids.sort();
    ids
}

#[test]
fn answers_lost_after_the_call_was_carried_out_create_no_twins() {
    let ctx = Ctx::new("lost");
    // Network, repository, log group, role, cluster, task definition and service: every kind
    // of create, the four without client token or unique name among them.
    ctx.write_env(crate::platform::SERVICES);
    let (proxy, counts) = start_proxy(Faults {
        throttle: 0,
        fail: 0,
        lose_answer: 12,
        lose_first: &[],
        allow: None,
    });
    let through_proxy = |args: &[&str]| {
        let out = ctx
            .command(args)
            .env("AWS_ENDPOINT_URL", &proxy)
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("panicked"), "{text}");
        (out.status.code(), text)
    };
    let (code, text) = through_proxy(&[
        "apply",
        &ctx.env,
        "--auto-approve",
        "--target",
        "repository",
    ]);
    assert_eq!(code, Some(0), "{text}");
    crate::platform::push_image(&ctx, "v1");
    let (code, text) = through_proxy(&["apply", &ctx.env, "--auto-approve", "--no-wait"]);
    assert_eq!(code, Some(0), "{text}");
    let lost = counts.lost.load(Ordering::SeqCst);
    assert!(lost >= 5, "too few answers lost: {lost}");

    let (code, text) = through_proxy(&["plan", &ctx.env, "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{text}");
    ctx.assert_converged();
    let ids = live_ids(&ctx);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "a resource was created twice");
    assert!(
        !ids.contains(&"?".to_string()),
        "an untagged resource: {ids:?}"
    );
    // 2 + 2 subnets, VPC, gateway, NAT + its address, 2 route tables, the service's security
    // group, its task definition and the service itself.
    assert_eq!(ids.len(), 14, "{ids:?}");
}

/// A saved plan carries the names that ECS lookups need, so `apply --plan` finds by tag what a
/// create whose answer was lost made (cluster, task definition, service, target group) exactly as
/// `apply ENV` does.
#[test]
fn a_saved_plan_applied_through_lost_answers_creates_no_twins() {
    let ctx = Ctx::new("lostplan");
    ctx.write_env(crate::platform::SERVICES);
    ctx.infra(&["apply", "{env}", "--auto-approve", "--target", "repository"])
        .success();
    crate::platform::push_image(&ctx, "v1");
    let plan_file = ctx.path("saved.plan");
    ctx.infra(&["plan", "{env}", "--out", plan_file.to_str().unwrap()])
        .success();
    let (proxy, counts) = start_proxy(Faults {
        throttle: 0,
        fail: 0,
        lose_answer: 0,
        lose_first: &["RegisterTaskDefinition", "CreateService"],
        allow: None,
    });
    let out = ctx
        .command(&["apply", "--plan", plan_file.to_str().unwrap(), "--no-wait"])
        .env("AWS_ENDPOINT_URL", &proxy)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        counts.lost.load(Ordering::SeqCst),
        2,
        "both answers were lost"
    );
    ctx.assert_converged();
    let ids = live_ids(&ctx);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "a resource was created twice");
    assert_eq!(ids.len(), 14, "{ids:?}");
}

#[test]
fn max_rps_caps_the_request_rate_of_the_whole_run() {
    let ctx = Ctx::new("rps");
    ctx.write_env(TWO_ZONES);
    let (proxy, counts) = start_proxy(Faults {
        throttle: 0,
        fail: 0,
        lose_answer: 0,
        lose_first: &[],
        allow: None,
    });
    let out = ctx
        .command(&["apply", &ctx.env, "--auto-approve", "--max-rps", "10"])
        .env("AWS_ENDPOINT_URL", &proxy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut arrivals: Vec<_> = counts
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.0)
        .collect();
    arrivals.sort();
    assert!(arrivals.len() >= 30, "only {} requests", arrivals.len());
    // Slots are 100 ms apart: a one-second window holds at most 11 (both ends), one more for
    // the loopback's jitter.
    let busiest = (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|t| t.duration_since(arrivals[i]) <= std::time::Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 12, "{busiest} requests within one second");
    ctx.assert_converged();
}

/// The creates of the newer kinds that have no unique name: a bastion's RunInstances, a
/// certificate's request and a record's CREATE, each carried out and its answer lost.
#[test]
fn lost_answers_of_instances_certificates_and_records_make_no_twins() {
    let ctx = Ctx::new("lostdn");
    let (_, zone) = ctx.hosted_zone();
    ctx.write_env(&format!(
        "{TWO_ZONES}load_balancer:\n  domain: {{name: app.{zone}, zone: {zone}}}\nbastion: {{}}\n"
    ));
    let (proxy, counts) = start_proxy(Faults {
        lose_first: &[
            "RunInstances",
            "RequestCertificate",
            "post /2013-04-01/hostedzone/",
        ],
        ..Faults::default()
    });
    let (code, text) = ctx.infra_with(
        &[("AWS_ENDPOINT_URL", &proxy)],
        &["apply", "{env}", "--auto-approve", "--no-wait"],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(counts.lost.load(Ordering::SeqCst), 3, "three answers lost");
    ctx.assert_converged();
    let instances = ctx.rt.block_on(async {
        ctx.ec2
            .describe_instances()
            .filters(ctx.env_filter())
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum::<usize>()
    });
    let certificates = crate::domain::certificates(&ctx).len();
    assert_eq!(instances, 1, "one bastion");
    assert_eq!(certificates, 1, "one certificate");
    ctx.infra(&["destroy", "{env}", "--auto-approve"]).success();
}
