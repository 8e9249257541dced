//! Issue 15 over HTTP: group-by, uploaders, pickers, trend buckets, risk breakdowns, CSV and
//! OCSF carrying every new finding field, bad parameters explained, and first-use alerts
//! delivered to a real webhook listener on loopback (one retry after a 503, de-duplicated,
//! counted in /metrics).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{finding, raw, start_server};
use shadowai_api::{
    Action, Bucket, Confidence, Finding, FindingQuery, GroupBy, IngestBatch, Layer, NameSource,
    Naming, Role, Verdict,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook receiver: records every request body; answers 503 to the first request, then 200.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

async fn read_request(s: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, buf[head_end..head_end + len].to_vec()))
}

async fn hook() -> Hook {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", l.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let seen = bodies.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            n += 1;
            let status = if n == 1 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if let Some((head, body)) = read_request(&mut s).await {
                let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                if n > 1 {
                    seen.lock().unwrap().push((head, v));
                }
            }
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    Hook { url, bodies }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rich(id: &str, host: &str, service: &str, verdict: Verdict, user: &str, t: i64) -> Finding {
    let mut f = finding(id, host, service, verdict, user, t);
    f.bytes_out = Some(123_456);
    f.bytes_in = Some(7_890);
    f.policy_version = Some("2.1.0".into());
    f.rule = format!("policy:{service}");
    f.naming = Some(Naming {
        source: NameSource::Sni,
        confidence: Confidence::High,
    });
    if verdict == Verdict::Unsanctioned {
        f.action = Action::WouldBlock;
        f.layer = Some(Layer::Sni);
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_exports_and_alerts_over_http() {
    let hook = hook().await;
    let hook_url = hook.url.clone();
    let srv = start_server(false, move |c| {
        c.alerts.ui_url = Some("https://soc.example/ui".into());
        c.alerts.webhook = Some(
            toml::from_str(&format!(
                "url = {hook_url:?}\ninitial_backoff_ms = 50\nmax_attempts = 3"
            ))
            .unwrap(),
        );
    })
    .await;
    let viewer = srv.client(Some(&srv.person("vera", Role::Viewer)));
    let analyst = srv.client(Some(&srv.person("ann", Role::Analyst)));
    let (_, tok) = srv.enroll("web-01", Some("finance")).await;
    let agent = srv.client(Some(&tok));
    let now = now_ms();
    let t = now - 2 * 3_600_000;
    let batch = |id: &str, findings| IngestBatch {
        batch_id: id.into(),
        findings,
    };
    agent
        .ingest(&batch(
            "b1",
            vec![
                rich(
                    "f1",
                    "web-01",
                    "deepseek",
                    Verdict::Unsanctioned,
                    "alice",
                    t,
                ),
                rich(
                    "f2",
                    "web-01",
                    "openai-chatgpt",
                    Verdict::Sanctioned,
                    "alice",
                    t,
                ),
            ],
        ))
        .await
        .unwrap();
    // The same service by the same user again: no second alert.
    agent
        .ingest(&batch(
            "b2",
            vec![rich(
                "f3",
                "web-01",
                "deepseek",
                Verdict::Unsanctioned,
                "alice",
                t + 60_000,
            )],
        ))
        .await
        .unwrap();

    // ---- the alert reaches the webhook once, after one 503 ----
    let deadline = Instant::now() + Duration::from_secs(20);
    while hook.bodies.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no alert delivered within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = hook.bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one alert, de-duplicated: {got:?}");
    let (head, body) = &got[0];
    assert!(
        head.to_ascii_lowercase()
            .contains("idempotency-key: shadowai-alert-"),
        "{head}"
    );
    assert_eq!(body["kind"], "shadowai.first_use_alert");
    assert_eq!(body["alert"]["service_id"], "deepseek");
    assert_eq!(body["alert"]["verdict"], "unsanctioned");
    assert_eq!(body["alert"]["action"], "would_block");
    assert_eq!(
        body["alert"]["reasons"],
        serde_json::json!(["new_in_fleet", "new_host", "new_user"])
    );
    assert_eq!(
        body["url"],
        "https://soc.example/ui/#/findings?service=deepseek&host=web-01&user=alice"
    );
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("first use in the fleet")
    );
    let page = viewer.alerts(None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let metrics = raw()
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "shadowai_collector_alerts_raised_total 1",
        "shadowai_collector_alerts_sent_total 1",
        "shadowai_collector_alert_send_failures_total 1",
        "shadowai_collector_alerts_failed_total 0",
        "shadowai_collector_alerts_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }

    // ---- group-by, uploaders, pickers, trend buckets ----
    let q = FindingQuery {
        by: Some(GroupBy::User),
        ..Default::default()
    };
    let users = viewer.group_report(&q).await.unwrap();
    assert_eq!(users.items.len(), 1);
    assert_eq!(users.items[0].bytes_out, 3 * 123_456);
    assert_eq!(users.items[0].risky_services, 1);
    let up = viewer
        .uploaders(&FindingQuery {
            by: Some(GroupBy::Group),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(up.items[0].key, "finance");
    assert_eq!(
        up.items[0].bytes_out,
        2 * 123_456,
        "sanctioned bytes left out"
    );
    let facets = viewer.facets(&FindingQuery::default()).await.unwrap();
    assert_eq!(facets.services.len(), 2);
    assert_eq!(facets.groups[0].value, "finance");
    let day = FindingQuery {
        from_ms: Some(now - 86_400_000),
        ..Default::default()
    };
    let hours = viewer.trend(&day).await.unwrap();
    assert!(
        hours.iter().all(|p| p.bucket == Bucket::Hour),
        "≤ 7 days: hours"
    );
    let month = FindingQuery {
        from_ms: Some(now - 30 * 86_400_000),
        ..Default::default()
    };
    let days = viewer.trend(&month).await.unwrap();
    assert!(
        days.iter().all(|p| p.bucket == Bucket::Day),
        "> 7 days: days"
    );

    // ---- risk breakdown from the catalogue ----
    let risk = viewer.risk(&["deepseek", "no-such-service"]).await.unwrap();
    assert_eq!(risk.len(), 1);
    let plan = &risk[0].plans[0];
    let sum: u32 = plan.factors.iter().map(|f| u32::from(f.points)).sum();
    assert_eq!(
        sum,
        u32::from(plan.score),
        "the factors add up to the score"
    );
    assert!(plan.factors.iter().any(|f| f.factor == "jurisdiction"));

    // ---- CSV and OCSF carry the new fields ----
    let csv = analyst.export_csv(&FindingQuery::default()).await.unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row = lines.find(|l| l.starts_with("f1,")).expect("f1 in the CSV");
    let cells: Vec<&str> = row.split(',').collect();
    let col = |name: &str| cells[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(col("rule"), "policy:deepseek");
    assert_eq!(col("policy_version"), "2.1.0");
    assert_eq!(
        (col("verdict"), col("action")),
        ("unsanctioned", "would_block")
    );
    assert_eq!((col("layer"), col("bytes_out")), ("sni", "123456"));
    assert_eq!(
        (col("naming_source"), col("naming_confidence")),
        ("sni", "high")
    );
    let ocsf = analyst.export_ocsf(&FindingQuery::default()).await.unwrap();
    let o = ocsf.iter().find(|o| o["metadata"]["uid"] == "f1").unwrap();
    assert_eq!(o["disposition_id"], 15);
    assert_eq!(o["unmapped"]["shadowai"]["policy_version"], "2.1.0");
    assert_eq!(o["unmapped"]["shadowai"]["bytes_out"], 123_456);

    // ---- bad parameters are explained ----
    let v = srv.person("vic", Role::Viewer);
    for (path, needle) in [
        ("/api/v1/reports/groups", "`by` is required"),
        (
            "/api/v1/reports/groups?by=planet",
            "unknown variant `planet`",
        ),
        ("/api/v1/findings?risk_min=101", "0..=100"),
        (
            "/api/v1/findings?risk_min=80&risk_max=20",
            "risk_min (80) is above risk_max (20)",
        ),
        (
            "/api/v1/reports/trend?bucket=hour",
            "hour buckets need a time range",
        ),
        (
            "/api/v1/reports/uploaders?by=user&verdict=sanctioned",
            "unsanctioned or blocked",
        ),
        ("/api/v1/reports/groups?by=user&offset=99999999", "offset"),
    ] {
        let r = raw()
            .get(format!("{}{path}", srv.url))
            .bearer_auth(&v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path}: {body}");
    }
}

/// A webhook that is down costs bounded retries (counted) and never blocks ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_is_given_up_after_bounded_retries() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/x", l.local_addr().unwrap());
    drop(l);
    let srv = start_server(false, move |c| {
        c.alerts.webhook = Some(
            toml::from_str(&format!(
                "url = {dead:?}\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\nmax_attempts = 2\ntimeout_ms = 500"
            ))
            .unwrap(),
        );
    })
    .await;
    let (_, tok) = srv.enroll("h1", None).await;
    let agent = srv.client(Some(&tok));
    let started = Instant::now();
    agent
        .ingest(&IngestBatch {
            batch_id: "b".into(),
            findings: vec![rich("x", "h1", "deepseek", Verdict::Blocked, "u", now_ms())],
        })
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = raw()
            .get(format!("{}/metrics", srv.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("shadowai_collector_alerts_failed_total 1") {
            assert!(
                m.contains("shadowai_collector_alert_send_failures_total 2"),
                "{m}"
            );
            assert!(m.contains("shadowai_collector_alerts_sent_total 0"), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "not given up within 20 s:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn alert_webhook_config_is_checked() {
    use shadowai_collector::alerts::AlertsConfig;
    for (text, needle) in [
        ("[webhook]\nurl = \"http://siem.example/x\"", "loopback"),
        ("[webhook]\nurl = \"ftp://127.0.0.1/x\"", "scheme"),
        (
            "[webhook]\nurl = \"https://u:p@siem.example/x\"",
            "user info",
        ),
        (
            "[webhook]\nurl = \"https://siem.example/x\"\nmax_attempts = 0",
            "max_attempts",
        ),
        (
            "[webhook]\nurl = \"https://siem.example/x\"\nqueue_capacity = 0",
            "queue_capacity",
        ),
        ("ui_url = \"javascript:alert(1)\"", "ui_url"),
    ] {
        let cfg: AlertsConfig = toml::from_str(text).unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
    let ok: AlertsConfig = toml::from_str(
        "ui_url = \"https://soc.example/ui\"\n[webhook]\nurl = \"https://siem.example/x\"",
    )
    .unwrap();
    ok.validate().unwrap();
    assert!(toml::from_str::<AlertsConfig>("[webhook]\nurl = \"https://x\"\nretries = 3").is_err());
}
