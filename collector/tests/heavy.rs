//! Heavy and amplifying requests against the real collector binary: compressed bodies that
//! inflate into huge JSON, and big exports running while agents ingest. Memory (the
//! process's RSS, sampled from /proc) and other users' latency must stay bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::binary::{Binary, SECRET};
use common::{finding, host_key};
use shadowai_api::{EnrollRequest, FindingQuery, IngestBatch, Role, Verdict};

const T0: i64 = 1_763_769_600_000;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
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

/// Samples the collector's RSS every 20 ms until stopped; returns the peak (KiB).
fn rss_sampler(srv: &Binary) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let path = format!("/proc/{}/status", srv.pid());
    let s2 = stop.clone();
    let h = tokio::spawn(async move {
        let mut peak = 0;
        while !s2.load(Ordering::Relaxed) {
            let status = std::fs::read_to_string(&path).unwrap_or_default();
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    (stop, h)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Bodies of a few KB that inflate to tens of MB of JSON.
fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    // 40 MiB of zeros in one list: over the inflate cap → 413 (and the list cap → 400 earlier).
    let mut ports = b"{\"batch_id\":\"bomb1\",\"findings\":[{\"evidence\":{\"ports\":[".to_vec();
    ports.extend(std::iter::repeat_n(b"0,".as_slice(), 20 << 20).flatten());
    ports.extend_from_slice(b"0]}}]}");
    // Millions of tiny findings objects: the findings cap stops the parse.
    let mut many = b"{\"batch_id\":\"bomb2\",\"findings\":[".to_vec();
    let f =
        serde_json::to_vec(&finding("x", "h-bomb", "s", Verdict::Unsanctioned, "u", T0)).unwrap();
    for _ in 0..30_000 {
        many.extend_from_slice(&f);
        many.push(b',');
    }
    many.extend_from_slice(&f);
    many.extend_from_slice(b"]}");
    vec![("ports", gzip(&ports)), ("findings", gzip(&many))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_json_bombs_are_bounded_and_do_not_stall_other_users() {
    let srv = Binary::start("", None).await;
    let token = enroll(&srv, "h-bomb").await;
    let viewer = srv.client(Some(&srv.person(Role::Viewer)));
    let baseline_rss = srv.rss_kib();
    let mut quiet = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        viewer.findings(&FindingQuery::default()).await.unwrap();
        quiet.push(t.elapsed());
    }
    let bombs = bombs();
    for (name, b) in &bombs {
        eprintln!("bomb {name}: {} bytes gzip", b.len());
    }
    let (stop, peak) = rss_sampler(&srv);
    let running = Arc::new(AtomicBool::new(true));
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut attackers = Vec::new();
    // Six streams from one agent token, as in the report that motivated this.
    for i in 0..6 {
        let (url, token, running, statuses) = (
            srv.url.clone(),
            token.clone(),
            running.clone(),
            statuses.clone(),
        );
        let body = bombs[i % bombs.len()].1.clone();
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while running.load(Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/api/v1/ingest"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                statuses.lock().unwrap().push(r.status().as_u16());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut loud = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        viewer.findings(&FindingQuery::default()).await.unwrap();
        loud.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.store(false, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let statuses = statuses.lock().unwrap().clone();
    let (q, l) = (median(&mut quiet), median(&mut loud));
    eprintln!(
        "bombs: {} requests ({:?}…), viewer median {q:?} quiet → {l:?} under attack (max {:?}), \
         RSS {baseline_rss} KiB → peak {peak} KiB",
        statuses.len(),
        &statuses[..statuses.len().min(8)],
        loud.iter().max().unwrap()
    );
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| [400, 413, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(l < Duration::from_millis(500), "viewer median {l:?}");
    assert!(
        peak < baseline_rss + 400 * 1024,
        "RSS grew from {baseline_rss} KiB to {peak} KiB"
    );
    assert_eq!(
        srv.client(Some(&srv.admin))
            .findings(&FindingQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_exports_stream_in_bounded_memory_while_ingest_stays_fast() {
    let srv = Binary::start("exports_per_min = 2.0", None).await;
    let token = enroll(&srv, "h-load").await;
    let agent = srv.client(Some(&token));
    const N: usize = 10_000;
    for b in 0..N / 2000 {
        let findings = (0..2000)
            .map(|i| {
                let n = b * 2000 + i;
                finding(
                    &format!("f{n}"),
                    "h-load",
                    &format!("svc{}", n % 40),
                    Verdict::Unsanctioned,
                    &format!("user{}", n % 300),
                    T0 + n as i64,
                )
            })
            .collect();
        agent
            .ingest(&IngestBatch {
                batch_id: format!("seed-{b}"),
                findings,
            })
            .await
            .unwrap();
    }
    let analyst = srv.client(Some(&srv.person(Role::Analyst)));
    let q = FindingQuery {
        limit: Some(100_000),
        ..Default::default()
    };
    let baseline_rss = srv.rss_kib();
    let (stop, peak) = rss_sampler(&srv);
    // One OCSF and one CSV export of everything, at once.
    let exports: Vec<_> = (0..2)
        .map(|i| {
            let (a, q) = (analyst.clone(), q.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let n = if i == 0 {
                    a.export_ocsf(&q).await.unwrap().len()
                } else {
                    a.export_csv(&q).await.unwrap().lines().count() - 1
                };
                (n, t.elapsed())
            })
        })
        .collect();
    // Ingest while the exports run: small batches, latency of each.
    let mut lat = Vec::new();
    let done = Arc::new(AtomicU64::new(0));
    for i in 0..40 {
        let findings = (0..10)
            .map(|j| {
                finding(
                    &format!("live-{i}-{j}"),
                    "h-load",
                    "svc-live",
                    Verdict::Unsanctioned,
                    "alice",
                    T0,
                )
            })
            .collect();
        let t = Instant::now();
        agent
            .ingest(&IngestBatch {
                batch_id: format!("live-{i}"),
                findings,
            })
            .await
            .unwrap();
        lat.push(t.elapsed());
        done.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut rows = Vec::new();
    for e in exports {
        rows.push(e.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let worst = *lat.iter().max().unwrap();
    let med = median(&mut lat);
    eprintln!(
        "exports: {rows:?} while 40 ingests: median {med:?}, max {worst:?}; RSS {baseline_rss} KiB → peak {peak} KiB"
    );
    for (n, _) in &rows {
        assert!(*n >= N, "an export returned {n} findings");
    }
    assert!(worst < Duration::from_secs(2), "ingest took {worst:?}");
    assert!(
        peak < baseline_rss + 200 * 1024,
        "RSS grew from {baseline_rss} KiB to {peak} KiB"
    );
    // Exports are rate-limited per person: 2 a minute (burst 2), both used just now.
    let e = analyst
        .export_csv(&FindingQuery {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(429), "{e}");
    // Another person is not affected.
    let other = srv.client(Some(&srv.person(Role::Admin)));
    other
        .export_csv(&FindingQuery {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
}
