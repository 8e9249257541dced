//! Load under attack: `cargo bench -p shadowai-collector --bench load`.
//!
//! Starts the real `shadowai-collector` binary (SQLite, plain HTTP on loopback), enrolls
//! `LOAD_AGENTS` simulated agents (each from its own 127.0.1.x address, as a fleet behind no
//! NAT), warms up for half a phase, then measures two phases of `LOAD_SECS` each:
//! 1. quiet: the agents upload 50-finding batches back to back; a viewer polls a findings
//!    page and the services report;
//! 2. attack: the same, plus hostile clients at once — slowloris connections, gzip+JSON
//!    bombs from a stolen agent token, enrollment spam with a wrong secret, host-takeover
//!    attempts with the real secret, and two analysts exporting everything in a loop.
//!
//! Prints ingest throughput and viewer / ingest latency (p50, p99) for both phases, the peak
//! RSS of the collector, and what the attackers got back. Figures go to BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a failed unwrap is a failed run"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shadowai_api::{
    Action, EnrollRequest, EnrollResponse, Evidence, Finding, IngestBatch, ProcessRef, Verdict,
};

const SECRET: &str = "sae_load-bench-enrollment-secret";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn finding(id: String, host: &str, n: u64) -> Finding {
    Finding {
        layer: None,
        policy_version: None,
        bytes_out: None,
        bytes_in: None,
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id,
        host_id: host.to_owned(),
        hostname: host.to_owned(),
        window_start_ms: 1_763_769_600_000 + (n as i64 % 30) * 86_400_000,
        window_end_ms: 1_763_769_610_000 + (n as i64 % 30) * 86_400_000,
        service_id: format!("svc{}", n % 25),
        service_name: "Service".to_owned(),
        vendor: "Vendor".to_owned(),
        category: "chat_assistant".to_owned(),
        risk_score: 60,
        verdict: Verdict::Unsanctioned,
        action: Action::Allowed,
        rule: "catalogue".to_owned(),
        process: ProcessRef {
            exe: format!("/usr/bin/app{}", n % 17),
            name: "app".to_owned(),
            exe_sha256: None,
            container_id: None,
            systemd_unit: None,
        },
        user: format!("user{}", n % 97),
        uid: 1000,
        count: 3,
        first_seen_ms: 1_763_769_600_000,
        last_seen_ms: 1_763_769_600_500,
        evidence: Evidence {
            dns_names: vec!["api.example.ai".to_owned()],
            sni: vec!["api.example.ai".to_owned()],
            ips: vec!["192.0.2.1".to_owned()],
            ports: vec![443],
            protocols: vec!["tls".to_owned()],
        },
    }
}

struct Collector {
    child: Child,
    url: String,
    admin: String,
    cfg: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(bin: &str, cfg: &std::path::Path, role: &str, name: &str) -> String {
    let out = Command::new(bin)
        .args([
            "token", "create", "--role", role, "--name", name, "--config",
        ])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

async fn start() -> Collector {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ninsecure_http = true\n\
             enrollment_secret = \"{SECRET}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_shadowai-collector");
    let admin = token(bin, &cfg, "admin", "bench-admin");
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("SHADOWAI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Collector {
        child,
        url: format!("http://127.0.0.1:{port}"),
        admin,
        cfg,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{}/healthz", c.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("collector did not start");
}

fn raw_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[derive(Default)]
struct Stats {
    ingest_lat: Mutex<Vec<Duration>>,
    viewer_lat: Mutex<Vec<Duration>>,
    findings: AtomicU64,
    ingest_errors: AtomicU64,
    hostile: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn hostile(&self, what: &str) {
        *self
            .hostile
            .lock()
            .unwrap()
            .entry(what.to_owned())
            .or_default() += 1;
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// One agent: 50-finding batches back to back, over HTTP from its own address.
async fn agent(
    url: String,
    ip: String,
    host: String,
    token: String,
    st: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let http = raw_from(&ip);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let findings: Vec<_> = (0..50)
            .map(|i| finding(format!("{host}-{n}-{i}"), &host, n * 50 + i))
            .collect();
        let batch = IngestBatch {
            batch_id: format!("{host}-b{n}"),
            findings,
        };
        let json = serde_json::to_vec(&batch).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&json).unwrap();
        let body = enc.finish().unwrap();
        let t = Instant::now();
        let r = http
            .post(format!("{url}/api/v1/ingest"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {
                st.ingest_lat.lock().unwrap().push(t.elapsed());
                st.findings.fetch_add(50, Ordering::Relaxed);
            }
            _ => {
                st.ingest_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        n += 1;
    }
}

async fn viewer(url: String, token: String, st: Arc<Stats>, stop: Arc<AtomicBool>) {
    let http = raw_from("127.0.3.1");
    while !stop.load(Ordering::Relaxed) {
        for path in ["/api/v1/findings?limit=100", "/api/v1/reports/services"] {
            let t = Instant::now();
            let r = http
                .get(format!("{url}{path}"))
                .bearer_auth(&token)
                .send()
                .await;
            if let Ok(r) = r
                && r.status() == 200
                && r.bytes().await.is_ok()
            {
                st.viewer_lat.lock().unwrap().push(t.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bomb() -> Vec<u8> {
    let mut j = b"{\"batch_id\":\"bomb\",\"findings\":[{\"evidence\":{\"ports\":[".to_vec();
    j.extend(std::iter::repeat_n(b"0,".as_slice(), 20 << 20).flatten());
    j.extend_from_slice(b"0]}}]}");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&j).unwrap();
    e.finish().unwrap()
}

/// Every hostile client at once until `stop`.
fn attack(
    c: &Collector,
    stolen: String,
    analyst: String,
    st: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let url = c.url.clone();
    // Slowloris: 300 connections trickling header bytes, reconnecting when cut.
    for i in 0..300 {
        let (url, st, stop) = (url.clone(), st.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
            let src: IpAddr = format!("127.0.2.{}", 1 + i % 4).parse().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind((src, 0).into()).unwrap();
                let Ok(mut s) = sock.connect(addr).await else {
                    st.hostile("slowloris connect refused");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let _ = s.write_all(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n").await;
                let mut buf = [0u8; 64];
                loop {
                    tokio::select! {
                        r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { st.hostile("slowloris cut"); break; },
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if s.write_all(b"X: y\r\n").await.is_err() { st.hostile("slowloris cut"); break; }
                            if stop.load(Ordering::Relaxed) { break; }
                        }
                    }
                }
            }
        }));
    }
    // Six gzip+JSON bomb streams with a stolen agent token.
    let body = bomb();
    for _ in 0..6 {
        let (url, st, stop, body, tok) = (
            url.clone(),
            st.clone(),
            stop.clone(),
            body.clone(),
            stolen.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = raw_from("127.0.2.10");
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/api/v1/ingest"))
                    .bearer_auth(&tok)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body.clone())
                    .send()
                    .await;
                st.hostile(&format!(
                    "bomb → {}",
                    r.map(|r| r.status().as_u16()).unwrap_or(0)
                ));
            }
        }));
    }
    // Enrollment spam (wrong secret) and takeover attempts (right secret, wrong key).
    for (i, secret) in [("sae_wrong-secret", "spam"), (SECRET, "takeover")]
        .iter()
        .map(|(s, w)| (*w, *s))
    {
        let (url, st, stop) = (url.clone(), st.clone(), stop.clone());
        let secret = secret.to_owned();
        let what = i.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = raw_from("127.0.2.20");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Spam: unknown hosts; takeover: the enrolled hosts' ids with a foreign key.
                let body = serde_json::json!({"secret": secret, "host_id": format!("bench-host-{}", 1 + n % 50),
                    "hostname": "x", "host_key": "ee".repeat(32)});
                let r = http.post(format!("{url}/api/v1/enroll")).json(&body).send().await;
                st.hostile(&format!("{what} → {}", r.map(|r| r.status().as_u16()).unwrap_or(0)));
                n += 1;
            }
        }));
    }
    // Two analysts exporting everything, back to back.
    for i in 0..2 {
        let (url, st, stop, tok) = (url.clone(), st.clone(), stop.clone(), analyst.clone());
        tasks.push(tokio::spawn(async move {
            let http = raw_from(&format!("127.0.2.{}", 30 + i));
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .get(format!(
                        "{url}/api/v1/exports/findings.ocsf.json?limit=100000"
                    ))
                    .bearer_auth(&tok)
                    .send()
                    .await;
                let code = match r {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                st.hostile(&format!("export → {code}"));
                if code == 429 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    tasks
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn phase(
    c: &Collector,
    agents: &[(String, String, String)],
    viewer_tok: &str,
    hostile: Option<(String, String)>,
    secs: u64,
) -> (Arc<Stats>, u64) {
    let st = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (ip, host, tok) in agents {
        tasks.push(tokio::spawn(agent(
            c.url.clone(),
            ip.clone(),
            host.clone(),
            tok.clone(),
            st.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(viewer(
        c.url.clone(),
        viewer_tok.to_owned(),
        st.clone(),
        stop.clone(),
    )));
    if let Some((stolen, analyst)) = hostile {
        tasks.extend(attack(c, stolen, analyst, &st, &stop));
    }
    let pid = c.child.id();
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    (st, peak)
}

fn report(name: &str, st: &Stats, secs: u64, peak: u64) {
    let mut il = st.ingest_lat.lock().unwrap().clone();
    let mut vl = st.viewer_lat.lock().unwrap().clone();
    println!(
        "{name:>7}: ingest {:>8.0} findings/s ({} batches, {} errors), ingest p50 {:>7.1?} p99 {:>7.1?}; \
         viewer p50 {:>7.1?} p99 {:>7.1?} ({} requests); collector peak RSS {} MiB",
        st.findings.load(Ordering::Relaxed) as f64 / secs as f64,
        il.len(),
        st.ingest_errors.load(Ordering::Relaxed),
        pct(&mut il, 0.5),
        pct(&mut il, 0.99),
        pct(&mut vl, 0.5),
        pct(&mut vl, 0.99),
        vl.len(),
        peak / 1024
    );
    for (k, v) in st.hostile.lock().unwrap().iter() {
        println!("         {k}: {v}");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n_agents = env_num("LOAD_AGENTS", 100);
        let secs = env_num("LOAD_SECS", 10);
        let c = start().await;
        let mut agents = Vec::new();
        for i in 0..n_agents {
            let host = format!("bench-host-{i}");
            // Each agent enrolls and uploads from its own address (no NAT in front).
            let ip = format!("127.0.1.{}", 1 + i % 250);
            let req = EnrollRequest {
                secret: SECRET.into(),
                host_id: host.clone(),
                hostname: host.clone(),
                group: None,
                agent_version: "bench".into(),
                host_key: format!("{:064x}", i + 1),
            };
            let r: EnrollResponse = raw_from(&ip)
                .post(format!("{}/api/v1/enroll", c.url))
                .json(&req)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            agents.push((ip, host, r.token));
        }
        let bin = env!("CARGO_BIN_EXE_shadowai-collector");
        let viewer_tok = token(bin, &c.cfg, "viewer", "bench-viewer");
        let analyst = token(bin, &c.cfg, "analyst", "bench-analyst");
        let stolen = agents[0].2.clone();
        let _ = &c.admin;
        println!("load: {n_agents} agents, {secs} s per phase, 50 findings per batch (gzip)");
        // Warm-up (connections, caches), not reported.
        phase(&c, &agents[1..], &viewer_tok, None, secs.div_ceil(2)).await;
        let (quiet, qpeak) = phase(&c, &agents[1..], &viewer_tok, None, secs).await;
        report("quiet", &quiet, secs, qpeak);
        let (loud, lpeak) =
            phase(&c, &agents[1..], &viewer_tok, Some((stolen, analyst)), secs).await;
        report("attack", &loud, secs, lpeak);
    });
}
