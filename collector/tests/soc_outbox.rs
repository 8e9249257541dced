//! soc (issues 15, 13, 10): durable alerts, per-host alert caps, identity conflicts and the
//! audit chain head reaching the SIEM and the webhook.
//!
//! - a webhook that is down when an alert is raised: the real collector binary is killed and
//!   restarted, the webhook comes up, and the alert arrives exactly once;
//! - a hostile agent posting thousands of first uses raises at most its hourly cap of alerts and
//!   one `alerts_suppressed` notice, while another host's first use still alerts;
//! - a refused takeover of a bound host id reaches a SIEM forwarder (OCSF) and the webhook, once
//!   per host per hour however often it is tried;
//! - the audit chain head reaches the SIEM at start and after a change, and it verifies against
//!   the exported log (a truncated log fails against it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use common::{finding, free_port, host_key, raw, start_server};
use shadowai_api::{EnrollRequest, IngestBatch, OutboxItem, Role, Verdict};

type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A receiver on `addr` that records (idempotency key, JSON body) and answers 200.
async fn receiver(listener: tokio::net::TcpListener) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app = Router::new().route(
        "/{*path}",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let v: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    sink.lock().unwrap().push((key, v));
                    "ok"
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    seen
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const SECRET: &str = "sae_soc-outbox-test-enrollment-secret";

/// The real collector binary on `port` with `data` and a config whose `[alerts]` table is
/// `alerts`; killed on drop.
struct Collector {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Collector {
    async fn start(dir: &Path, port: u16, alerts: &str) -> Collector {
        let cfg = dir.join("collector.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ninsecure_http = true\n\
                 enrollment_secret = \"{SECRET}\"\ncatalogue = \"{}\"\n[alerts]\n{alerts}\n",
                dir.join("data").display(),
                common::catalogue_dir().display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("collector-{}.log", now_ms()));
        let child = Command::new(env!("CARGO_BIN_EXE_shadowai-collector"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("SHADOWAI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let c = Collector {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        let url = c.url.clone();
        wait_for("the collector's /healthz", 60, async || {
            http.get(format!("{url}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
        c
    }

    fn admin(dir: &Path) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_shadowai-collector"))
            .args([
                "token", "create", "--role", "admin", "--name", "ops", "--config",
            ])
            .arg(dir.join("collector.toml"))
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

    fn client(&self, token: Option<&str>) -> shadowai_api::client::Client {
        let mut b = shadowai_api::client::Client::builder(&self.url);
        if let Some(t) = token {
            b = b.token(t);
        }
        b.build().unwrap()
    }

    /// SIGKILL: no shutdown path runs, as in a crash or an OOM kill.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_for_a_down_webhook_survives_a_restart_and_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    // The webhook's port: nothing listens on it until the collector has restarted.
    let hook_port = free_port();
    let alerts = format!(
        "[alerts.webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\
         initial_backoff_ms = 200\nmax_backoff_ms = 1000\nmax_attempts = 1000\ntimeout_ms = 2000\n"
    );
    let port = free_port();
    // `token create` initialises the database (first start) before the server runs.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("collector.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ninsecure_http = true\n\
             enrollment_secret = \"{SECRET}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let admin = Collector::admin(dir.path());
    let first = Collector::start(dir.path(), port, &alerts).await;
    let enrolled = first
        .client(None)
        .enroll(&EnrollRequest {
            secret: SECRET.into(),
            host_id: "web-01".into(),
            hostname: "web-01".into(),
            group: None,
            agent_version: "0.1.0".into(),
            host_key: host_key("web-01"),
        })
        .await
        .unwrap();
    let t = now_ms() - 60_000;
    first
        .client(Some(&enrolled.token))
        .ingest(&IngestBatch {
            batch_id: "b1".into(),
            findings: vec![finding(
                "f1",
                "web-01",
                "deepseek",
                Verdict::Unsanctioned,
                "alice",
                t,
            )],
        })
        .await
        .unwrap();
    // The alert is in the outbox, pending, with failed attempts against the dead port.
    let viewer = first.client(Some(&admin));
    let entry = wait_for("two failed attempts in the outbox", 30, async || {
        let page = viewer.outbox(None, 10).await.unwrap();
        page.items
            .into_iter()
            .find(|e| e.attempts >= 2)
            .filter(|e| e.state == shadowai_api::DeliveryState::Pending)
    })
    .await;
    assert!(
        entry.last_error.as_deref().is_some_and(|e| !e.is_empty()),
        "{entry:?}"
    );
    let OutboxItem::Alert(alert) = &entry.item else {
        panic!("expected the first-use alert: {entry:?}")
    };
    assert_eq!(alert.service_id, "deepseek");
    let log = first.kill();
    assert!(!log.contains("panicked"), "{log}");

    // The webhook comes up (on the port the config names), then the collector restarts.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", hook_port))
        .await
        .unwrap();
    let seen = receiver(listener).await;
    let second = Collector::start(dir.path(), port, &alerts).await;
    let got = wait_for(
        "the alert at the webhook after the restart",
        30,
        async || {
            let s = seen.lock().unwrap().clone();
            (!s.is_empty()).then_some(s)
        },
    )
    .await;
    assert_eq!(got[0].1["kind"], "shadowai.first_use_alert", "{got:?}");
    assert_eq!(got[0].1["alert"]["service_id"], "deepseek");
    assert_eq!(got[0].0, format!("shadowai-alert-{}", alert.id));
    let viewer = second.client(Some(&admin));
    let entry = wait_for("the row settled as delivered", 10, async || {
        let page = viewer.outbox(None, 10).await.unwrap();
        (page.delivered == 1).then(|| page.items[0].clone())
    })
    .await;
    assert_eq!(entry.state, shadowai_api::DeliveryState::Delivered);
    assert!(entry.attempts >= 3, "{entry:?}");
    // Exactly once: nothing else arrives, the outbox holds nothing pending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
    let page = viewer.outbox(None, 10).await.unwrap();
    assert_eq!((page.pending, page.delivered, page.failed), (0, 1, 0));
    let m = raw()
        .get(format!("{}/metrics", second.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("shadowai_collector_alerts_sent_total 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_cannot_flood_the_soc_with_alerts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = receiver(listener).await;
    let srv = start_server(false, move |c| {
        c.alerts.per_batch = 10;
        c.alerts.per_host_per_hour = 25;
        c.alerts.webhook = Some(toml::from_str(&format!("url = {hook:?}")).unwrap());
    })
    .await;
    let viewer = srv.client(Some(&srv.person("vera", Role::Viewer)));
    let (_, tok) = srv.enroll("evil", None).await;
    let evil = srv.client(Some(&tok));
    let t = now_ms() - 60_000;
    // 8 batches × 100 findings: every one a brand-new (service, user) pair.
    for b in 0..8 {
        let findings = (0..100)
            .map(|i| {
                finding(
                    &format!("f{b}-{i}"),
                    "evil",
                    &format!("svc-{}", i % 7),
                    Verdict::Unsanctioned,
                    &format!("junk-{b}-{i}"),
                    t,
                )
            })
            .collect();
        evil.ingest(&IngestBatch {
            batch_id: format!("b{b}"),
            findings,
        })
        .await
        .unwrap();
    }
    // An honest host's first use still alerts: budgets are per host.
    let (_, tok) = srv.enroll("honest", None).await;
    srv.client(Some(&tok))
        .ingest(&IngestBatch {
            batch_id: "h1".into(),
            findings: vec![finding("h", "honest", "svc-0", Verdict::Blocked, "bob", t)],
        })
        .await
        .unwrap();
    let mut alerts = Vec::new();
    let mut before = None;
    loop {
        let page = viewer.alerts(before, 1000).await.unwrap();
        alerts.extend(page.items);
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let from_evil = alerts.iter().filter(|a| a.host_id == "evil").count();
    assert_eq!(from_evil, 25, "the hourly cap");
    assert_eq!(alerts.iter().filter(|a| a.host_id == "honest").count(), 1);
    let outbox = viewer.outbox(None, 1000).await.unwrap();
    let notices: Vec<_> = outbox
        .items
        .iter()
        .filter_map(|e| match &e.item {
            OutboxItem::Notice(n) => Some(n),
            OutboxItem::Alert(_) => None,
        })
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "one summary per host per hour: {notices:?}"
    );
    assert_eq!(notices[0].kind, shadowai_api::NoticeKind::AlertsSuppressed);
    assert_eq!(notices[0].host_id, "evil");
    assert!(notices[0].summary.contains("25 per hour"), "{notices:?}");
    // Everything raised reaches the webhook once: 25 + 1 alerts and the notice.
    let got = wait_for("27 deliveries", 30, async || {
        let s = seen.lock().unwrap().clone();
        (s.len() >= 27).then_some(s)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().len(), 27);
    let keys: std::collections::BTreeSet<_> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 27, "no delivery twice");
    assert_eq!(
        got.iter()
            .filter(|(_, v)| v["kind"] == "shadowai.alerts_suppressed")
            .count(),
        1
    );
    let m = raw()
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // 800 findings, each a new (service, user) pair: 25 raised, the rest suppressed.
    let suppressed: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("shadowai_collector_alerts_suppressed_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(suppressed, 800 - 25, "{m}");
    assert!(
        m.contains("shadowai_collector_notices_raised_total 1"),
        "{m}"
    );
}

/// A SIEM webhook forwarder pointed at `seen`'s receiver, flushing fast.
fn siem_to(addr: std::net::SocketAddr) -> shadowai_siem::SiemConfig {
    toml::from_str(&format!(
        "[[forwarder]]\nkind = \"webhook\"\nname = \"soc\"\nurl = \"http://{addr}/siem\"\n\
         [forwarder.delivery]\nbatch_max_wait_ms = 20\n"
    ))
    .unwrap()
}

/// Every OCSF object the SIEM receiver got (its bodies are arrays).
fn ocsf_events(seen: &Seen) -> Vec<serde_json::Value> {
    seen.lock()
        .unwrap()
        .iter()
        .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_identity_conflict_reaches_the_siem_and_the_webhook_once_an_hour() {
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let siem_addr = l1.local_addr().unwrap();
    let siem = receiver(l1).await;
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", l2.local_addr().unwrap());
    let webhook = receiver(l2).await;
    let srv = start_server(false, move |c| {
        c.siem = siem_to(siem_addr);
        c.alerts.webhook = Some(toml::from_str(&format!("url = {hook:?}")).unwrap());
    })
    .await;
    srv.enroll("db-01", None).await;
    // Someone with the enrollment secret claims db-01 with another host key: once, and (after
    // the notice is out) twice more. Each refusal raises its notice off the request, so claims
    // sent back to back race for the hour's one notice and its count may be any of them; the
    // first claim alone makes the count exact.
    let claim = async |i: usize| {
        let e = srv
            .client(None)
            .enroll(&EnrollRequest {
                secret: srv.secret.clone(),
                host_id: "db-01".into(),
                hostname: "db-01.example".into(),
                group: None,
                agent_version: "0.1.0".into(),
                host_key: host_key(&format!("thief-{i}")),
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bound to another host key"), "{e}");
    };
    claim(0).await;
    let conflict = wait_for("the conflict at the SIEM", 30, async || {
        ocsf_events(&siem).into_iter().find(|o| {
            o["finding_info"]["types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == "host_identity_conflict"))
        })
    })
    .await;
    assert_eq!(conflict["class_uid"], 2004);
    assert_eq!(conflict["is_alert"], true);
    assert_eq!(conflict["device"]["uid"], "db-01");
    assert_eq!(conflict["unmapped"]["shadowai"]["via"], "enroll");
    assert!(
        conflict["unmapped"]["shadowai"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1")),
        "{conflict}"
    );
    let posted = wait_for("the conflict at the webhook", 30, async || {
        let s = webhook.lock().unwrap().clone();
        s.into_iter()
            .find(|(_, v)| v["kind"] == "shadowai.host_identity_conflict")
    })
    .await;
    assert_eq!(posted.1["notice"]["host_id"], "db-01");
    assert_eq!(posted.1["notice"]["count"], 1);
    claim(1).await;
    claim(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conflicts = ocsf_events(&siem)
        .iter()
        .filter(|o| o["unmapped"]["shadowai"]["kind"] == "host_identity_conflict")
        .count();
    assert_eq!(conflicts, 1, "one notice per host per hour");
    assert_eq!(webhook.lock().unwrap().len(), 1);
    // The real agent still works and its host stays bound.
    let viewer = srv.client(Some(&srv.person("vera", Role::Viewer)));
    let page = viewer.outbox(None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(matches!(&page.items[0].item, OutboxItem::Notice(n) if n.host_id == "db-01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_head_reaches_the_siem_at_start_and_on_every_change() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let siem = receiver(l).await;
    let srv = start_server(false, move |c| {
        c.siem = siem_to(addr);
        c.alerts.audit_head_poll_ms = 100;
    })
    .await;
    let heads = |reason: &'static str| {
        let siem = siem.clone();
        async move || -> Option<serde_json::Value> {
            ocsf_events(&siem).into_iter().find(|o| {
                o["class_uid"] == 1008
                    && o["unmapped"]["shadowai"]["audit_head"]["reason"] == reason
            })
        }
    };
    let start = wait_for("the head sent at start", 30, heads("start")).await;
    assert_eq!(start["activity_id"], 99);
    let seq0 = start["unmapped"]["shadowai"]["audit_head"]["seq"]
        .as_i64()
        .unwrap();
    // An audited change: a new enrollment key.
    let admin = srv.client(Some(&srv.admin));
    admin
        .create_enrollment_key(&shadowai_api::EnrollmentKeyRequest {
            note: "audit head test".into(),
            ttl_s: None,
            max_uses: Some(1),
        })
        .await
        .unwrap();
    let changed = wait_for("the changed head", 30, heads("changed")).await;
    let h = &changed["unmapped"]["shadowai"]["audit_head"];
    let seq = h["seq"].as_i64().unwrap();
    assert!(seq > seq0, "{changed}");
    // The head the SIEM holds verifies the exported log; a truncated log fails against it.
    let expect: shadowai_api::audit::Checkpoint =
        h["expect_head"].as_str().unwrap().parse().unwrap();
    let entries = admin.audit_export().await.unwrap();
    shadowai_api::audit::verify(&entries).unwrap();
    shadowai_api::audit::check_checkpoint(&entries, &expect).unwrap();
    let cut = &entries[..usize::try_from(expect.seq - 1).unwrap()];
    shadowai_api::audit::verify(cut).unwrap();
    assert!(matches!(
        shadowai_api::audit::check_checkpoint(cut, &expect),
        Err(shadowai_api::audit::CheckpointFailure::Truncated { .. })
    ));
    let m = raw()
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("shadowai_collector_audit_heads_forwarded_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent >= 2, "{m}");
}
