//! Faults on every AWS call: a loopback proxy in front of the emulator answers about one call in
//! five with the service's own throttling error and one in twenty with a 500, instead of passing
//! it on. Apply must still converge, with nothing created twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::harness::{Ctx, TWO_ZONES, endpoint};
use crate::network::World;

/// What the proxy did, for the test to check it really injected faults.
#[derive(Default)]
struct Counts {
    passed: AtomicUsize,
    throttled: AtomicUsize,
    failed: AtomicUsize,
}

struct Request {
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

fn serve(client: TcpStream, upstream: String, roll: &AtomicU64, counts: &Counts) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    // A deterministic sequence: the same faults on every run.
    let n = roll
        .fetch_add(1, Ordering::SeqCst)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let dice = (n >> 33) % 100;
    let reply = if dice < 20 {
        counts.throttled.fetch_add(1, Ordering::SeqCst);
        throttle(&req)
    } else if dice < 25 {
        counts.failed.fetch_add(1, Ordering::SeqCst);
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    } else {
        counts.passed.fetch_add(1, Ordering::SeqCst);
        let head = req
            .head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let mut up = TcpStream::connect(&upstream).unwrap();
        up.write_all(head.trim_end().as_bytes()).unwrap();
        up.write_all(b"\r\nConnection: close\r\n\r\n").unwrap();
        up.write_all(&req.body).unwrap();
        let mut response = Vec::new();
        up.read_to_end(&mut response).unwrap();
        response
    };
    let _ = client.write_all(&reply);
}

/// Starts the proxy; returns its URL and its counters.
fn start_proxy() -> (String, Arc<Counts>) {
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
            std::thread::spawn(move || serve(stream, upstream, &roll, &c));
        }
    });
    (url, counts)
}

#[test]
fn throttling_and_server_errors_on_every_call_still_converge() {
    let ctx = Ctx::new("fault");
    ctx.write_env(&format!("{TWO_ZONES}repositories: {{web: {{}}}}\n"));
    let (proxy, counts) = start_proxy();
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
