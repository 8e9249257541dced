//! The web UI in a real headless Chromium against a real collector.
//!
//! Starts `shadowai-collector serve` on a loopback port with a temporary data dir, creates two
//! people (an admin and an approver) with the collector's own `token create`, enrolls two agents
//! and posts heartbeats and findings through the real ingest API, then runs
//! `tests/ui/ui.test.mjs` (playwright-core driving Debian's /usr/bin/chromium), which logs in,
//! clicks through overview → service detail → a proposal → the catalogue browser (every
//! service, filter, "propose a verdict") → host drill-down → findings filters → CSV export →
//! the proposal's impact and its approval by the second person → audit log → fleet, and saves
//! screenshots.
//!
//! Needs: `cargo build --bins` (the collector binary), `.ci/deps/collector-ui.sh` (chromium and
//! tests/ui/node_modules).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shadowai_api::client::Client;
use shadowai_api::wire::{AgentMode, EnrollRequest, Heartbeat, IngestBatch, PipelineHealth};
use shadowai_api::{Action, Evidence, Finding, Layer, ProcessRef, Verdict};
use shadowai_tests::browser::{Run, chromium, run_script};

const ADMIN: &str = "alice";
const APPROVER: &str = "bob";
const CONTAINER: &str = "c0ffee0123456789abcdef";

fn collector_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("shadowai-collector");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` before this test (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// Runs a collector admin command and returns the line of stdout that starts with `prefix`.
fn admin_secret(data: &Path, args: &[&str], prefix: &str) -> String {
    let out = Command::new(collector_bin())
        .args(args)
        .args(["--data", data.to_str().unwrap()])
        .env("SHADOWAI_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{args:?} printed no {prefix}… line: {stdout}"))
        .to_owned()
}

/// The collector process; killed (and its log shown on failure) when dropped.
struct Collector {
    child: Child,
    log: PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(&self.log)
        {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- collector log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A webhook receiver on loopback: answers 200 and keeps every JSON body it was sent.
fn alert_webhook() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            if let Some(b) = body
                && let Ok(v) = serde_json::from_slice(&b)
            {
                seen.lock().unwrap().push(v);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn start_collector(data: &Path, hook: &str) -> (Collector, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = data.join("collector.log");
    let config = data.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[alerts]\nui_url = \"http://127.0.0.1:{port}/ui\"\n[alerts.webhook]\nurl = {hook:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(collector_bin())
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--insecure-http",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // proposals are checked against the collector's catalogue
        .arg("--catalogue")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue"))
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .unwrap();
    (Collector { child, log }, format!("http://127.0.0.1:{port}"))
}

struct Service {
    id: &'static str,
    name: &'static str,
    vendor: &'static str,
    category: &'static str,
    risk: u8,
    verdict: Verdict,
}

const SERVICES: [Service; 4] = [
    Service {
        id: "openai-chatgpt",
        name: "ChatGPT",
        vendor: "OpenAI",
        category: "chat",
        risk: 70,
        verdict: Verdict::Unsanctioned,
    },
    Service {
        id: "deepseek",
        name: "DeepSeek",
        vendor: "DeepSeek",
        category: "chat",
        risk: 90,
        verdict: Verdict::Unsanctioned,
    },
    Service {
        id: "github-copilot",
        name: "GitHub Copilot",
        vendor: "GitHub",
        category: "coding",
        risk: 40,
        verdict: Verdict::Sanctioned,
    },
    Service {
        id: "anthropic-claude",
        name: "Claude",
        vendor: "Anthropic",
        category: "chat",
        risk: 60,
        verdict: Verdict::Tolerated,
    },
];

/// The seeded host whose heartbeat reports hooks that did not attach, and those hooks.
const BLIND: (&str, [&str; 2]) = ("h-db-02", ["skb_egress", "skb_ingress"]);

const HOSTS: [(&str, &str, &str, u64); 2] = [
    ("h-web-01", "web-01", "canary", 0),
    ("h-db-02", "db-02", "prod", 7),
];

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Sanctioned => "sanctioned",
        Verdict::Tolerated => "tolerated",
        Verdict::Unsanctioned => "unsanctioned",
        Verdict::Blocked => "blocked",
    }
}

/// Four days of use on two hosts by two users; db-02 never uses Copilot, bob only every other day.
fn findings_for(host: &(&str, &str, &str, u64), now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    for day in 0..4i64 {
        for (si, s) in SERVICES.iter().enumerate() {
            if host.1 == "db-02" && s.id == "github-copilot" {
                continue;
            }
            for (user, uid, exe, comm, container) in [
                ("alice", 1000, "/usr/bin/python3.11", "python3", None),
                ("bob", 1001, "/usr/bin/curl", "curl", Some(CONTAINER)),
            ] {
                if day % 2 == 1 && user == "bob" {
                    continue;
                }
                // Today's use is spread over the last hours (hour buckets tell them apart).
                let start = now - day * 86_400_000 - 3_600_000 - (si as i64) * 3_600_000;
                let would = s.id == "deepseek";
                out.push(Finding {
                    layer: would.then_some(Layer::Sni),
                    policy_version: Some("1.4.0".into()),
                    // alice uploads 1 MiB per finding, bob 10 KiB
                    bytes_out: Some(if user == "alice" { 1 << 20 } else { 10 << 10 }),
                    bytes_in: Some(4096),
                    naming: None,
                    session: None,
                    flags: Vec::new(),
                    truncated: false,
                    id: format!("{}-{}-{day}-{user}", host.0, s.id),
                    host_id: host.0.into(),
                    hostname: host.1.into(),
                    window_start_ms: start,
                    window_end_ms: start + 60_000,
                    service_id: s.id.into(),
                    service_name: s.name.into(),
                    vendor: s.vendor.into(),
                    category: s.category.into(),
                    risk_score: s.risk,
                    verdict: s.verdict,
                    action: if would {
                        Action::WouldBlock
                    } else {
                        Action::Allowed
                    },
                    rule: format!("catalogue:{}", s.id),
                    process: ProcessRef {
                        exe: exe.into(),
                        name: comm.into(),
                        exe_sha256: Some("ab".repeat(32)),
                        container_id: container.map(str::to_owned),
                        systemd_unit: None,
                    },
                    user: user.into(),
                    uid,
                    count: 3 + day as u64 + si as u64,
                    first_seen_ms: start + 1_000,
                    last_seen_ms: start + 50_000,
                    evidence: Evidence {
                        dns_names: vec![format!("api.{}.example", s.id)],
                        sni: vec![format!("api.{}.example", s.id)],
                        ips: vec!["203.0.113.7".into()],
                        ports: vec![443],
                        protocols: vec!["tls".into()],
                    },
                });
            }
        }
    }
    out
}

#[test]
fn web_ui_click_through_in_headless_chromium() {
    chromium().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let admin_token = admin_secret(
        &data,
        &["token", "create", "--role", "admin", "--name", ADMIN],
        "sau_",
    );
    let approver_token = admin_secret(
        &data,
        &["token", "create", "--role", "approver", "--name", APPROVER],
        "sau_",
    );
    let viewer_token = admin_secret(
        &data,
        &["token", "create", "--role", "viewer", "--name", "vera"],
        "sau_",
    );
    // The rotated secret is written to DATA/enroll.secret (0600), never printed.
    let secret = shadowai_tests::secret_written(&admin_secret(
        &data,
        &["rotate-enrollment-secret"],
        "new enrollment secret written to",
    ))
    .unwrap();
    let (hook_url, hook) = alert_webhook();
    let (_collector, url) = start_collector(&data, &hook_url);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut all: Vec<Finding> = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let anon = Client::builder(&url)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while anon.healthz().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the collector did not answer /healthz within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for host in &HOSTS {
            let enrolled = anon
                .enroll(&EnrollRequest {
                    secret: secret.clone(),
                    host_id: host.0.into(),
                    hostname: host.1.into(),
                    group: Some(host.2.into()),
                    agent_version: "0.1.0".into(),
                    host_key: "ab".repeat(32),
                })
                .await
                .unwrap();
            let agent = anon.with_token(enrolled.token);
            agent
                .heartbeat(&Heartbeat {
                    agent_version: "0.1.0".into(),
                    bundle_version: Some("1.4.0".into()),
                    mode: AgentMode::Monitor,
                    lost_events: host.3,
                    group: None,
                    bundle_error: None,
                    // One host's sensor could not attach its packet hooks: the fleet
                    // view must say it is blind there.
                    pipeline: (host.0 == BLIND.0).then(|| PipelineHealth {
                        hooks_missing: BLIND.1.iter().map(|h| h.to_string()).collect(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
            let findings = findings_for(host, now);
            let ack = agent
                .ingest(&IngestBatch {
                    batch_id: format!("seed-{}", host.0),
                    findings: findings.clone(),
                })
                .await
                .unwrap();
            assert_eq!(ack.accepted as usize, findings.len());
            all.extend(findings);
        }
    });

    // What a person must see, computed from what was seeded.
    let services: Vec<_> = SERVICES
        .iter()
        .map(|s| {
            let of: Vec<&Finding> = all.iter().filter(|f| f.service_id == s.id).collect();
            let hosts: BTreeSet<_> = of.iter().map(|f| &f.host_id).collect();
            let users: BTreeSet<_> = of.iter().map(|f| &f.user).collect();
            json!({"name": s.name, "verdict": verdict_str(s.verdict), "hosts": hosts.len(), "users": users.len()})
        })
        .collect();
    let detail = &SERVICES[1];
    let detail_findings = all.iter().filter(|f| f.service_id == detail.id).count();
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &all {
        *per_host.entry(f.hostname.as_str()).or_default() += 1;
    }
    let filtered = all
        .iter()
        .filter(|f| {
            f.verdict == Verdict::Unsanctioned
                && f.user == "bob"
                && f.process.container_id.as_deref() == Some(CONTAINER)
        })
        .count();
    assert!(filtered > 0 && filtered < all.len() && all.len() <= 100);
    let bob: Vec<&Finding> = all.iter().filter(|f| f.user == "bob").collect();
    let bob_services: BTreeSet<_> = bob.iter().map(|f| (&f.service_id, f.verdict)).collect();
    // The UI's time filter has minute precision: 30 hours ago, floored to the minute.
    let from_ms = (now - 30 * 3_600_000) / 60_000 * 60_000;
    let in_time = all.iter().filter(|f| f.window_end_ms > from_ms).count();
    assert!(in_time > 0 && in_time < all.len());
    // First-use alerts the collector must raise: a finding raises one when its (service, fleet),
    // (service, host) or (service, user) pair is new for an unsanctioned or blocked verdict.
    let mut keys = BTreeSet::new();
    let mut alerts = 0;
    for f in all
        .iter()
        .filter(|f| matches!(f.verdict, Verdict::Unsanctioned | Verdict::Blocked))
    {
        let new = [
            keys.insert(("fleet", String::new(), f.service_id.clone())),
            keys.insert(("host", f.host_id.clone(), f.service_id.clone())),
            keys.insert(("user", f.user.clone(), f.service_id.clone())),
        ];
        if new.iter().any(|n| *n) {
            alerts += 1;
        }
    }
    let would_block: u64 = all
        .iter()
        .filter(|f| f.action == Action::WouldBlock)
        .map(|f| f.count)
        .sum();
    let alice = all.iter().filter(|f| f.user == "alice").count();
    let fixture = json!({
        "admin_token": admin_token, "admin_name": ADMIN,
        "approver_token": approver_token, "approver_name": APPROVER,
        "viewer_token": viewer_token,
        "services": services,
        "detail": {"id": detail.id, "name": detail.name, "findings": detail_findings.min(50), "hosts": ["web-01", "db-02"]},
        "host": {"id": "web-01", "name": "web-01", "findings": per_host["web-01"], "agent_version": "0.1.0"},
        "user": {"name": "bob", "findings": bob.len(), "services": bob_services.len()},
        "time": {"from_ms": from_ms, "expected": in_time},
        "total_findings": all.len(),
        "filter": {"verdict": "unsanctioned", "user": "bob", "container": CONTAINER, "expected": filtered},
        "block_reason": "data residency: no DeepSeek",
        "agents": HOSTS.len(),
        "alerts": alerts,
        "would_block": would_block,
        "partial": {"typed": "LIC", "user": "alice", "expected": alice},
        "groups": HOSTS.iter().map(|h| h.2).collect::<Vec<_>>(),
        "top_uploader": "alice",
        "timezone": "Asia/Kolkata",
        "lost_events": HOSTS.iter().map(|h| h.3).sum::<u64>(),
        "blind": {"host": "db-02", "hooks": BLIND.1},
    });

    let shots = std::env::var("SHADOWAI_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let Run { status, out, err } = run_script(
        "ui.test.mjs",
        &url,
        &fixture,
        &shots,
        &[],
        Duration::from_secs(240),
    )
    .unwrap_or_else(|e| panic!("the browser test: {e:#}"));
    println!("{out}");
    assert!(
        status.success(),
        "browser test failed ({status}):\n{out}\n{err}\nscreenshots in {}",
        shots.display()
    );
    assert!(out.contains(" passed, 0 failed"), "{out}");
    // The same alerts reached the webhook, each with its drill-down link.
    let got = hook.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        alerts,
        "alerts delivered to the webhook: {got:?}"
    );
    for a in &got {
        assert_eq!(a["kind"], "shadowai.first_use_alert");
        let link = a["url"].as_str().unwrap();
        assert!(
            link.starts_with(&format!("{url}/ui/#/findings?service=")),
            "{link}"
        );
        assert!(matches!(
            a["alert"]["verdict"].as_str(),
            Some("unsanctioned" | "blocked")
        ));
    }
    for name in [
        "02-overview",
        "03-service-detail",
        "04-host",
        "05-findings-filtered",
        "05b-user",
        "11-who-users",
        "12-alerts",
        "07-approved",
        "08-audit",
    ] {
        let png = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 10_000,
            "screenshot {} is missing or empty",
            png.display()
        );
    }
}
