//! SIEM forwarding from the ingest path: a webhook on loopback receives the new findings as
//! OCSF, an unreachable one is counted as failing in /metrics, and ingest never waits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::{finding, raw, start_server};
use shadowai_api::{IngestBatch, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_findings_reach_the_webhook_and_failures_are_counted() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let hook = Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let v: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                sink.lock().unwrap().extend(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    let dead_port = common::free_port();

    // Through the real config file format.
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("collector.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "{data}"
insecure_http = true

[[siem.forwarder]]
kind = "webhook"
name = "soc"
url = "http://{hook_addr}/hook"
[siem.forwarder.delivery]
batch_max_wait_ms = 20

[[siem.forwarder]]
kind = "webhook"
name = "down"
url = "http://127.0.0.1:{dead_port}/hook"
[siem.forwarder.delivery]
batch_max_wait_ms = 20
max_attempts = 2
initial_backoff_ms = 10
max_backoff_ms = 20
timeout_ms = 500
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let loaded = shadowai_collector::config::Config::load(&cfg_path).unwrap();
    assert_eq!(loaded.siem.forwarders.len(), 2);
    let srv = start_server(false, |c| c.siem = loaded.siem.clone()).await;

    let (_, tok) = srv.enroll("host-s", None).await;
    let agent = srv.client(Some(&tok));
    let batch = IngestBatch {
        batch_id: "s1".into(),
        findings: (0..5)
            .map(|i| {
                finding(
                    &format!("s{i}"),
                    "host-s",
                    "deepseek",
                    Verdict::Blocked,
                    "eve",
                    1_763_769_600_000,
                )
            })
            .collect(),
    };
    let ack = agent.ingest(&batch).await.unwrap();
    assert_eq!(ack.accepted, 5);
    // A replayed batch is not forwarded again.
    assert!(agent.ingest(&batch).await.unwrap().replayed);

    let http = raw();
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = http
            .get(format!("{}/metrics", srv.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let findings = received
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o["class_uid"] == 2004)
            .count();
        // The webhook has an event before the forwarder counts it (the count follows the
        // response): wait for the count too, not only for the arrivals.
        let counted = metrics
            .lines()
            .find_map(|l| l.strip_prefix("shadowai_collector_siem_events_forwarded_total "))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if findings >= 6
            && counted >= 6
            && !metrics.contains("shadowai_collector_siem_forward_failures_total 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The audit chain head (class 1008) is forwarded too (soc, issue 10): sent at start.
    let (got, heads): (Vec<_>, Vec<_>) = received
        .lock()
        .unwrap()
        .clone()
        .into_iter()
        .partition(|o| o["class_uid"] == 2004);
    assert!(heads.iter().all(|o| o["class_uid"] == 1008), "{heads:?}");
    assert_eq!(
        got.len(),
        6,
        "each new finding and the one alert forwarded once: {got:?}"
    );
    assert!(
        got.iter()
            .all(|o| o["class_uid"] == 2004 && o["device"]["uid"] == "host-s")
    );
    // The first blocked use of deepseek in the fleet raised one first-use alert (issue 15).
    let alerts: Vec<_> = got
        .iter()
        .filter(|o| o["finding_info"]["types"][0] == "shadow_ai_first_use")
        .collect();
    assert_eq!(alerts.len(), 1, "{got:?}");
    assert_eq!(
        alerts[0]["unmapped"]["shadowai"]["reasons"],
        serde_json::json!(["new_in_fleet", "new_host", "new_user"])
    );
    assert!(
        alerts[0]["unmapped"]["shadowai"]["link"]
            .as_str()
            .unwrap()
            .starts_with("#/findings?service=deepseek")
    );
    // The six, plus the audit heads sent by the time of the scrape (never more than arrived).
    let forwarded: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shadowai_collector_siem_events_forwarded_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (6..=6 + heads.len()).contains(&forwarded),
        "{forwarded} forwarded, {} heads: {metrics}",
        heads.len()
    );
    assert!(
        !metrics.contains("shadowai_collector_siem_forward_failures_total 0"),
        "failures are counted: {metrics}"
    );
}

#[test]
fn bad_siem_config_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "data_dir = \"/tmp/x\"\n[[siem.forwarder]]\nkind = \"webhook\"\nname = \"x\"\nurl = \"http://127.0.0.1:1/\"\nbogus = 1\n").unwrap();
    let err = shadowai_collector::config::Config::load(&p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.toml"), "{err}");
    std::fs::write(
        &p,
        "data_dir = \"/tmp/x\"\nlisten = \"0.0.0.0:1\"\ninsecure_http = true\n",
    )
    .unwrap();
    let err = shadowai_collector::config::Config::load(&p)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("insecure_http") && err.contains("loopback"),
        "{err}"
    );
}
