//! Durability across `kill -9`: the real collector binary is killed while agents upload;
//! every batch it acknowledged is there after restart, and re-sending everything (as an
//! agent's spool does) never stores a finding twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::finding;
use shadowai_api::client::Client;
use shadowai_api::{EnrollRequest, FindingQuery, IngestBatch, Verdict};

const MAX_BATCHES: usize = 100_000;

struct Collector {
    child: Child,
    url: String,
    lines: Vec<String>,
}

fn spawn(data: &std::path::Path, postgres: Option<&str>, fresh: bool) -> Collector {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowai-collector"));
    cmd.args([
        "serve",
        "--insecure-http",
        "--listen",
        "127.0.0.1:0",
        "--data",
    ])
    .arg(data);
    if let Some(pg) = postgres {
        cmd.args(["--postgres", pg]);
    }
    let mut child = cmd
        .env("SHADOWAI_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // First start: URL, admin token, enrollment secret. A restart: the URL only.
    let mut lines = Vec::new();
    for _ in 0..if fresh { 3 } else { 1 } {
        let mut l = String::new();
        assert!(
            out.read_line(&mut l).unwrap() > 0,
            "collector exited early: {lines:?}"
        );
        lines.push(l.trim().to_owned());
    }
    let url = lines[0]
        .strip_prefix("shadowai-collector: listening on ")
        .expect("URL line first")
        .to_owned();
    // Keep the pipe drained so the child never blocks on stdout.
    std::thread::spawn(move || for _ in out.lines() {});
    Collector { child, url, lines }
}

/// First-start secrets go to 0600 files; stdout names the file ("… written to PATH").
fn secret(lines: &[String], what: &str) -> String {
    let line = lines.iter().find(|l| l.contains(what)).unwrap();
    let path = line.rsplit(' ').next().unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "{path}"
    );
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Agents uploading at once: on SQLite their batches share group commits, so the kill lands
/// while a COMMIT holds several agents' batches.
const AGENTS: usize = 4;

fn host(a: usize) -> String {
    format!("host-k{a}")
}

fn batch(a: usize, n: usize) -> IngestBatch {
    IngestBatch {
        batch_id: format!("batch-{n}"),
        findings: (0..20)
            .map(|i| {
                finding(
                    &format!("f-{a}-{n}-{i}"),
                    &host(a),
                    "chatgpt",
                    Verdict::Unsanctioned,
                    "alice",
                    1_763_769_600_000 + i as i64,
                )
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_batches_survive_kill_9_and_retries_never_duplicate() {
    kill_9_scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_batches_survive_kill_9_and_retries_never_duplicate() {
    let pg = common::PgServer::start();
    let conn = pg.create_db("durability");
    kill_9_scenario(Some(&conn)).await;
}

async fn kill_9_scenario(postgres: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut c = spawn(&data, postgres, true);
    let admin_token = secret(&c.lines, "admin token");
    let enroll_secret = secret(&c.lines, "enrollment secret");
    let anon = Client::builder(&c.url).build().unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if anon.healthz().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "collector came up");
    let mut tokens = Vec::new();
    for a in 0..AGENTS {
        let enrolled = anon
            .enroll(&EnrollRequest {
                secret: enroll_secret.clone(),
                host_id: host(a),
                hostname: host(a),
                group: None,
                agent_version: "0.1.0".into(),
                host_key: format!("{:02x}", 0x4b + a).repeat(32),
            })
            .await
            .unwrap();
        tokens.push(enrolled.token);
    }

    // Every agent uploads in the background; kill -9 the collector in the middle of it.
    let progress = Arc::new(AtomicUsize::new(0));
    let uploaders: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(a, token)| {
            let agent = Client::builder(&c.url)
                .token(token)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..MAX_BATCHES {
                    match agent.ingest(&batch(a, n)).await {
                        Ok(ack) => {
                            assert!(!ack.replayed);
                            acked.push(n);
                            progress.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => break, // the collector is gone
                    }
                }
                acked
            })
        })
        .collect();
    while progress.load(Ordering::SeqCst) < 15 * AGENTS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.child.kill().unwrap(); // SIGKILL, mid-upload
    c.child.wait().unwrap();
    let mut acked = Vec::new();
    for u in uploaders {
        let a = u.await.unwrap();
        assert!(a.len() < MAX_BATCHES, "acked {}", a.len());
        acked.push(a);
    }
    assert!(acked.iter().map(Vec::len).sum::<usize>() >= 15 * AGENTS);

    // Restart on the same data directory.
    let c2 = spawn(&data, postgres, false);
    assert!(
        !c2.lines.iter().any(|l| l.contains("written to")),
        "no new secrets on restart: {:?}",
        c2.lines
    );
    let admin = Client::builder(&c2.url)
        .token(&admin_token)
        .build()
        .unwrap();
    for _ in 0..100 {
        if admin.healthz().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = |admin: Client| async move {
        let mut ids = Vec::new();
        let mut q = FindingQuery {
            limit: Some(1000),
            ..Default::default()
        };
        loop {
            let p = admin.findings(&q).await.unwrap();
            ids.extend(p.items.into_iter().map(|f| f.id));
            match p.next_cursor {
                Some(cur) => q.cursor = Some(cur),
                None => break,
            }
        }
        ids
    };
    let ids = count(admin.clone()).await;
    for (a, acked) in acked.iter().enumerate() {
        for n in acked {
            assert!(
                ids.contains(&format!("f-{a}-{n}-0")) && ids.contains(&format!("f-{a}-{n}-19")),
                "acknowledged batch {n} of agent {a} was lost"
            );
        }
    }
    // The spool re-sends everything not acknowledged, and some that were: no duplicates.
    let mut sent = 0;
    for (a, acked) in acked.iter().enumerate() {
        let agent = Client::builder(&c2.url).token(&tokens[a]).build().unwrap();
        let last = acked.last().copied().unwrap_or(0);
        for n in 0..=(last + 3) {
            let ack = agent.ingest(&batch(a, n)).await.unwrap();
            if acked.contains(&n) {
                assert!(
                    ack.replayed,
                    "batch {n} of agent {a} was acknowledged before, so this is a replay"
                );
            }
            sent += 1;
        }
    }
    let ids = count(admin).await;
    assert_eq!(ids.len(), sent * 20);
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), ids.len(), "no finding stored twice");
    let mut c2 = c2;
    c2.child.kill().unwrap();
    c2.child.wait().unwrap();
}
