//! Connection-level attacks against the real collector binary on loopback: slowloris
//! headers, idle keep-alives and slow bodies are cut off in bounded time, one client IP holds
//! a bounded number of connections, and a legitimate client from another address is served
//! meanwhile — with a descriptor limit low enough that the old global cap would exhaust it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::binary::{Binary, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIMITS: &str = "connections_per_ip = 16\nheader_timeout_s = 2\nbody_grace_s = 1\n\
                      body_min_bytes_per_sec = 1000\nenroll_rate_burst = 1000.0\n";

async fn connect_from(src: &str, url: &str) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0))?;
    sock.connect(addr).await
}

/// Trickles header bytes until the server closes the connection; returns how long it was
/// open.
async fn slowloris(url: String) -> Option<Duration> {
    let Ok(mut s) = connect_from("127.0.0.1", &url).await else {
        return Some(Duration::ZERO);
    };
    // From the handshake on (a full accept queue delays connect() by SYN retries).
    let start = Instant::now();
    if s.write_all(b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\n")
        .await
        .is_err()
    {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(10) {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if s.write_all(b"X-Slow: y\r\n").await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_bounded_in_count_and_time() {
    // 512 descriptors: the cap becomes 384 connections, 16 per client IP.
    let srv = Binary::start(LIMITS, Some(512)).await;
    let attackers: Vec<_> = (0..300)
        .map(|_| tokio::spawn(slowloris(srv.url.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A legitimate client from another address is served during the attack.
    // No pooled connections: the server closes idle ones after header_timeout_s, and a
    // request on a connection it is closing gets a reset (not what this test measures).
    let legit = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let t = Instant::now();
    let r = legit
        .get(format!("{}/healthz", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let legit_latency = t.elapsed();
    assert!(legit_latency < Duration::from_secs(1), "{legit_latency:?}");

    // An idle keep-alive connection is closed after header_timeout_s.
    let mut idle = connect_from("127.0.0.3", &srv.url).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle keep-alive still open after 6 s");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    let mut lived = Vec::new();
    for a in attackers {
        lived.push(
            a.await
                .unwrap()
                .expect("a slowloris connection outlived 10 s"),
        );
    }
    lived.sort();
    let held = lived
        .iter()
        .filter(|d| **d > Duration::from_millis(400))
        .count();
    assert!(
        held <= 16,
        "{held} connections of one IP were held: {lived:?}"
    );
    let longest = *lived.last().unwrap();
    assert!(
        longest < Duration::from_secs(4),
        "header timeout 2 s, longest connection {longest:?}"
    );
    let log = srv.log_text();
    assert!(!log.contains("accept failed"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    let metrics = legit
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shadowai_collector_connections_refused_total"),
        "{metrics}"
    );
    eprintln!(
        "slowloris: 300 connections, {held} held, longest {longest:?}; legit latency {legit_latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_enroll_bodies_are_small() {
    let srv = Binary::start(LIMITS, None).await;
    let mut s = connect_from("127.0.0.1", &srv.url).await.unwrap();
    s.write_all(
        b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 8000\r\n\r\n{\"secret\":\"",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    let reader = async {
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => resp.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    // 50 bytes/s, far below the 1000 bytes/s minimum.
                    if s.write_all(&[b'a'; 10]).await.is_err() { break; }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(8), reader)
        .await
        .expect("the slow body was not cut off within 8 s");
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    // Enrollment bodies are capped far below the general body limit.
    let big = serde_json::json!({
        "secret": SECRET, "host_id": "h", "hostname": "h", "host_key": "ab".repeat(32),
        "agent_version": "x".repeat(20_000),
    });
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/enroll", srv.url))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let metrics = reqwest::get(format!("{}/metrics", srv.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shadowai_collector_slow_request_bodies_total 1"),
        "{metrics}"
    );
}

/// A client that asks for a big export and never reads the answer: once the socket buffers
/// are full the server's write makes no progress, and after the header timeout (2 s here)
/// the connection is cut — the response never completes, however long the client waits
/// before reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_left_unread_is_cut_off() {
    use shadowai_api::wire::EnrollRequest;
    use shadowai_api::{IngestBatch, Verdict};

    let srv = Binary::start(LIMITS, None).await;
    let token = srv
        .client(None)
        .enroll(&EnrollRequest {
            secret: SECRET.into(),
            host_id: "h1".into(),
            hostname: "h1".into(),
            group: None,
            agent_version: "0.1.0".into(),
            host_key: common::host_key("h1"),
        })
        .await
        .unwrap()
        .token;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let agent = srv.client(Some(&token));
    for b in 0..2 {
        let findings = (0..5000)
            .map(|i| {
                let id = format!("f{b}-{i}");
                common::finding(
                    &id,
                    "h1",
                    "deepseek",
                    Verdict::Unsanctioned,
                    "u",
                    now - 60_000,
                )
            })
            .collect();
        agent
            .ingest(&IngestBatch {
                batch_id: format!("b{b}"),
                findings,
            })
            .await
            .unwrap();
    }
    let analyst = srv.person(shadowai_api::Role::Analyst);
    let mut s = connect_from("127.0.0.1", &srv.url).await.unwrap();
    s.write_all(
        format!(
            "GET /api/v1/exports/findings.ocsf.json HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {analyst}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection was still open after {:?}", start.elapsed()),
        }
    }
    let head = String::from_utf8_lossy(&got[..got.len().min(200)]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !got.ends_with(b"\r\n0\r\n\r\n"),
        "the whole export ({} bytes) was delivered: the stalled write was never cut",
        got.len()
    );
    assert!(
        got.len() > 1_000_000,
        "the buffers held {} bytes",
        got.len()
    );
}
