//! String caps enforced while a body is parsed, against the real collector binary: an
//! oversized string is refused by its field (the 400 names the field path and the limit)
//! before it is copied — for ingest (plain and gzip), enroll, heartbeat, inventory and
//! proposals — and a stream of gzip bodies that inflate to 30 MB strings leaves the
//! collector's peak memory (VmHWM) where it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::io::Write;

use common::binary::{Binary, SECRET};
use common::{finding, host_key};
use serde_json::{Value, json};
use shadowai_api::{EnrollRequest, IngestBatch, Verdict};

const T0: i64 = 1_763_769_600_000;

/// Peak resident memory of `pid` so far, KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn enroll(srv: &Binary, host: &str) -> String {
    srv.client(None)
        .enroll(&EnrollRequest {
            secret: SECRET.into(),
            host_id: host.into(),
            hostname: host.into(),
            group: None,
            agent_version: "0.1.0".into(),
            host_key: host_key(host),
        })
        .await
        .unwrap()
        .token
}

/// Posts `body` (already encoded) and returns (status, error message).
async fn post(
    srv: &Binary,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> (u16, String) {
    let mut req = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("{}{path}", srv.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

fn batch_with(exe: String) -> Vec<u8> {
    let mut f = finding("f1", "h1", "deepseek", Verdict::Unsanctioned, "u", T0);
    f.process.exe = exe;
    serde_json::to_vec(&IngestBatch {
        batch_id: "b1".into(),
        findings: vec![f],
    })
    .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_string_is_refused_by_its_field_while_parsing() {
    let srv = Binary::start("", None).await;
    let token = enroll(&srv, "h1").await;

    // Ingest: a 1 MB executable path inside the 8 MB body cap.
    let (status, msg) = post(
        &srv,
        "/api/v1/ingest",
        Some(&token),
        batch_with("a".repeat(1 << 20)),
        false,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("findings[0].process.exe") && msg.contains("at most 4096 allowed"),
        "{msg}"
    );
    // One byte under the limit of another field passes the parse; the field check still
    // applies after it (control characters, lengths it measures in its own unit).
    let (status, msg) = post(
        &srv,
        "/api/v1/ingest",
        Some(&token),
        batch_with("/usr/bin/".to_owned() + &"p".repeat(4000)),
        false,
    )
    .await;
    assert_eq!(status, 200, "{msg}");

    // The same through gzip: the string is cut off by the stream guard or the field cap.
    let (status, msg) = post(
        &srv,
        "/api/v1/ingest",
        Some(&token),
        gzip(&batch_with("a".repeat(1 << 20))),
        true,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("findings[0].process.exe"), "{msg}");

    // Enroll (16 KiB body cap): a 10 KB host name.
    let body = json!({
        "secret": SECRET, "host_id": "h2", "hostname": "n".repeat(10_000),
        "agent_version": "0.1.0", "host_key": host_key("h2"),
    });
    let (status, msg) = post(
        &srv,
        "/api/v1/enroll",
        None,
        serde_json::to_vec(&body).unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("hostname") && msg.contains("at most 253 allowed"),
        "{msg}"
    );

    // Heartbeat: a 100 KB agent version.
    let body = json!({"agent_version": "v".repeat(100_000), "mode": "monitor"});
    let (status, msg) = post(
        &srv,
        "/api/v1/heartbeat",
        Some(&token),
        serde_json::to_vec(&body).unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("agent_version") && msg.contains("at most 64 allowed"),
        "{msg}"
    );

    // Inventory: one argv element of 1 MB.
    let body = json!({
        "host_id": "h1", "hostname": "h1", "time_ms": T0,
        "mcp_servers": [{
            "id": "m1", "transport": "stdio", "launcher": "npx", "pinned": false, "pid": 1,
            "argv": ["npx", "x".repeat(1 << 20)],
            "first_seen_ms": T0, "last_seen_ms": T0, "ended": false,
        }],
    });
    let (status, msg) = post(
        &srv,
        "/api/v1/inventory",
        Some(&token),
        serde_json::to_vec(&body).unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("mcp_servers[0].argv[1]") && msg.contains("at most 4096 allowed"),
        "{msg}"
    );

    // Proposals: a 1 MB reason from an admin.
    let body = json!({
        "service_id": "deepseek-api", "verdict": "blocked", "scope": {"kind": "fleet"},
        "reason": "r".repeat(1 << 20),
    });
    let (status, msg) = post(
        &srv,
        "/api/v1/proposals",
        Some(&srv.admin),
        serde_json::to_vec(&body).unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("reason") && msg.contains("at most 1000 allowed"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_strings_that_inflate_to_30_mb_do_not_raise_peak_memory() {
    let srv = Binary::start("", None).await;
    let token = enroll(&srv, "h1").await;
    // Warm up: one ordinary batch, so allocator arenas and the database exist.
    let (status, msg) = post(
        &srv,
        "/api/v1/ingest",
        Some(&token),
        batch_with("/usr/bin/curl".into()),
        false,
    )
    .await;
    assert_eq!(status, 200, "{msg}");
    let before = peak_kib(srv.pid());

    // 30 MB of one string (inflated cap 32 MB) is ~30 KB of gzip. Parsed naively, each body
    // costs the parser's 32 MB scratch buffer plus a 30 MB copy, two at a time.
    let body = gzip(&batch_with("a".repeat(30 << 20)));
    assert!(body.len() < 100_000, "{}", body.len());
    // The same body whose gzip trailer lies: it claims 100 inflated bytes, so the collector
    // inflates it into memory (small bodies are parsed from memory) until it has read more
    // than its in-memory bound.
    let mut lying = body.clone();
    let n = lying.len();
    lying[n - 4..].copy_from_slice(&100u32.to_le_bytes());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let body = if i % 2 == 0 { &body } else { &lying };
        let (srv_url, token, body) = (srv.url.clone(), token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{srv_url}/api/v1/ingest"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("findings[0].process.exe"), "{text}");
    }
    let grown = peak_kib(srv.pid()).saturating_sub(before);
    eprintln!("8 gzip bodies of a 30 MB string: peak RSS grew by {grown} KiB");
    assert!(
        grown < 16 << 10,
        "peak RSS grew by {grown} KiB: the strings were buffered"
    );
}
