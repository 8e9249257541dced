//! Webhook and Splunk HEC forwarders against a real HTTP receiver on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{HttpReceiver, finding, pki, wait_for};
use serde_json::Value;
use shadowai_api::Verdict;
use shadowai_api::ocsf::finding_to_ocsf;
use shadowai_siem::{
    DeliveryConfig, Forwarder, ForwarderConfig, HecConfig, Secret, Siem, SiemConfig, TlsConfig,
    WebhookConfig,
};

fn fast(batch: usize, attempts: u32) -> DeliveryConfig {
    DeliveryConfig {
        batch_max_events: batch,
        batch_max_wait_ms: 50,
        queue_capacity: 1000,
        max_attempts: attempts,
        initial_backoff_ms: 10,
        max_backoff_ms: 40,
        timeout_ms: 5_000,
    }
}

fn webhook(url: String, delivery: DeliveryConfig) -> WebhookConfig {
    WebhookConfig {
        name: "soc-webhook".into(),
        url,
        headers: BTreeMap::from([(
            "Authorization".to_owned(),
            Secret("Bearer hook-token".into()),
        )]),
        tls: TlsConfig::default(),
        delivery,
        verdicts: Vec::new(),
    }
}

fn hec(url: String, delivery: DeliveryConfig) -> HecConfig {
    HecConfig {
        name: "splunk".into(),
        url,
        token: Secret("11111111-2222-3333-4444-555555555555".into()),
        index: Some("shadowai".into()),
        source: "shadowai".into(),
        sourcetype: "ocsf:detection_finding".into(),
        tls: TlsConfig::default(),
        delivery,
        verdicts: Vec::new(),
    }
}

#[tokio::test]
async fn webhook_posts_one_ocsf_array_per_batch() {
    let rx = HttpReceiver::start(None).await;
    let cfg = ForwarderConfig::Webhook(webhook(
        format!("http://{}/ingest/ocsf", rx.addr),
        fast(3, 3),
    ));
    let fwd = Forwarder::start(&cfg).unwrap();
    let findings: Vec<_> = (0..3)
        .map(|i| finding(&format!("f-{i}"), Verdict::Unsanctioned))
        .collect();
    for f in &findings {
        assert!(fwd.forward(f));
    }
    let s = wait_for(&fwd, "one batch", |s| s.batches_sent == 1).await;
    assert_eq!((s.events_sent, s.send_failures, s.events_failed), (3, 0, 0));

    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        1,
        "three findings, batch size three: one request"
    );
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/ingest/ocsf")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer hook-token"));
    assert!(
        r.header("user-agent")
            .unwrap()
            .starts_with("shadowai-collector/")
    );
    // Byte for byte: the body is exactly the JSON array of the OCSF mapping.
    let expected = Value::Array(findings.iter().map(finding_to_ocsf).collect()).to_string();
    assert_eq!(String::from_utf8(r.body.clone()).unwrap(), expected);
    let parsed: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(parsed[2]["class_uid"], 2004);
    assert_eq!(parsed[2]["metadata"]["uid"], "f-2");
}

#[tokio::test]
async fn hec_sends_splunk_events_with_token_and_index() {
    let rx = HttpReceiver::start(None).await;
    let cfg = ForwarderConfig::SplunkHec(hec(format!("http://{}", rx.addr), fast(2, 3)));
    let fwd = Forwarder::start(&cfg).unwrap();
    fwd.forward(&finding("f-1", Verdict::Blocked));
    fwd.forward(&finding("f-2", Verdict::Tolerated));
    wait_for(&fwd, "HEC batch", |s| s.events_sent == 2).await;

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/services/collector/event");
    assert_eq!(
        r.header("authorization"),
        Some("Splunk 11111111-2222-3333-4444-555555555555")
    );
    let body = String::from_utf8(r.body.clone()).unwrap();
    let lines: Vec<&str> = body.split('\n').collect();
    assert_eq!(lines.len(), 2, "one event object per line: {body}");
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    // The exact HEC envelope: keys, time in seconds with millisecond precision.
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["event", "host", "index", "source", "sourcetype", "time"]
    );
    assert!(
        lines[0].contains(r#""time":1763825770.123"#),
        "{}",
        lines[0]
    );
    assert_eq!(first["host"], "host-a");
    assert_eq!(first["index"], "shadowai");
    assert_eq!(first["sourcetype"], "ocsf:detection_finding");
    assert_eq!(
        first["event"],
        finding_to_ocsf(&finding("f-1", Verdict::Blocked))
    );
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["event"]["metadata"]["uid"], "f-2");
}

#[tokio::test]
async fn retries_after_receiver_failures_then_delivers_once() {
    let rx = HttpReceiver::start(None).await;
    rx.fail_next(&[503, 500]);
    let cfg = ForwarderConfig::SplunkHec(hec(format!("http://{}", rx.addr), fast(10, 5)));
    let fwd = Forwarder::start(&cfg).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "delivery after two failures", |s| s.batches_sent == 1).await;
    assert_eq!(s.send_failures, 2, "each failed attempt is counted");
    assert_eq!((s.batches_failed, s.events_failed), (0, 0));
    assert!(
        s.last_error.as_deref().unwrap().contains("HTTP 500"),
        "{:?}",
        s.last_error
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter().all(|r| r.body == reqs[0].body),
        "the same batch is re-sent unchanged"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_backoff_cap() {
    let rx = HttpReceiver::start(None).await;
    rx.fail_next_with_retry_after(429, 30);
    let mut delivery = fast(10, 3);
    delivery.initial_backoff_ms = 10;
    delivery.max_backoff_ms = 400;
    let fwd = Forwarder::start(&ForwarderConfig::SplunkHec(hec(
        format!("http://{}", rx.addr),
        delivery,
    )))
    .unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "delivery after 429", |s| s.batches_sent == 1).await;
    assert_eq!(s.send_failures, 1);
    let reqs = rx.requests();
    let waited = reqs[1].at - reqs[0].at;
    // Retry-After (30 s) beats the 10 ms backoff but is capped at max_backoff_ms (400 ms).
    assert!(
        waited >= Duration::from_millis(390),
        "retried after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(20),
        "the cap was not applied: {waited:?}"
    );
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_counts_the_loss() {
    let rx = HttpReceiver::start(None).await;
    rx.fail_next(&[503, 503, 503]);
    let cfg = ForwarderConfig::Webhook(webhook(format!("http://{}/x", rx.addr), fast(10, 3)));
    let fwd = Forwarder::start(&cfg).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    fwd.forward(&finding("f-2", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "batch given up", |s| s.batches_failed == 1).await;
    assert_eq!((s.send_failures, s.events_failed, s.events_sent), (3, 2, 0));
    assert_eq!(rx.requests().len(), 3);
    // The forwarder keeps going: the next batch is delivered.
    fwd.forward(&finding("f-3", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "next batch", |s| s.batches_sent == 1).await;
    assert_eq!(s.events_sent, 1);
}

#[tokio::test]
async fn a_rejected_token_is_not_retried() {
    let rx = HttpReceiver::start(None).await;
    rx.fail_next(&[403]);
    let cfg = ForwarderConfig::SplunkHec(hec(format!("http://{}", rx.addr), fast(10, 5)));
    let fwd = Forwarder::start(&cfg).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "permanent failure", |s| s.batches_failed == 1).await;
    assert_eq!((s.send_failures, s.events_failed), (1, 1));
    assert_eq!(rx.requests().len(), 1);
    assert!(s.last_error.unwrap().contains("403"));
}

#[tokio::test]
async fn unreachable_receiver_is_retried_and_counted() {
    // Bind then drop a listener: the port is (very likely) closed, connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ForwarderConfig::Webhook(webhook(format!("http://127.0.0.1:{port}/x"), fast(10, 2)));
    let fwd = Forwarder::start(&cfg).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "given up", |s| s.batches_failed == 1).await;
    assert_eq!(s.send_failures, 2);
    assert!(s.last_error.unwrap().contains(&format!("127.0.0.1:{port}")));
}

#[tokio::test]
async fn https_webhook_verifies_the_receiver_against_the_ca_file() {
    let pki = pki();
    let rx = HttpReceiver::start(Some(pki.server_config.clone())).await;
    let mut cfg = webhook(
        format!("https://localhost:{}/x", rx.addr.port()),
        fast(1, 2),
    );
    cfg.tls = TlsConfig {
        ca_file: Some(pki.ca_file.clone()),
        public_roots: false,
    };
    let fwd = Forwarder::start(&ForwarderConfig::Webhook(cfg.clone())).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    wait_for(&fwd, "HTTPS delivery", |s| s.events_sent == 1).await;
    assert_eq!(rx.requests().len(), 1);

    // Without the CA the same receiver is untrusted: every attempt fails, nothing arrives.
    cfg.tls = TlsConfig::default();
    let untrusting = Forwarder::start(&ForwarderConfig::Webhook(cfg)).unwrap();
    untrusting.forward(&finding("f-2", Verdict::Unsanctioned));
    let s = wait_for(&untrusting, "TLS failure", |s| s.batches_failed == 1).await;
    assert_eq!(s.send_failures, 2);
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn verdict_filter_queue_limit_and_shutdown_drain() {
    let rx = HttpReceiver::start(None).await;
    let mut cfg = webhook(format!("http://{}/x", rx.addr), fast(100, 3));
    cfg.verdicts = vec![Verdict::Blocked, Verdict::Unsanctioned];
    cfg.delivery.queue_capacity = 100;
    cfg.delivery.batch_max_wait_ms = 60_000; // only the shutdown flushes
    let siem = Siem::start(&SiemConfig {
        forwarders: vec![ForwarderConfig::Webhook(cfg)],
    })
    .unwrap();
    let mut batch = vec![finding("s", Verdict::Sanctioned)];
    batch.extend((0..150).map(|i| finding(&format!("u-{i}"), Verdict::Unsanctioned)));
    siem.forward(&batch);
    let stats = siem.shutdown(Duration::from_secs(10)).await;
    let s = &stats[0];
    assert_eq!(s.events_filtered, 1);
    // The delivery task takes the first finding off the queue at once, so 100 or 101 fit.
    assert!(
        s.events_accepted >= 100 && s.events_accepted <= 101,
        "{s:#?}"
    );
    assert_eq!(s.events_accepted + s.events_dropped_queue_full, 150);
    assert_eq!(
        s.events_sent, s.events_accepted,
        "shutdown drains the queue"
    );
    let received: usize = rx
        .requests()
        .iter()
        .map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap().len())
        .sum();
    assert_eq!(received as u64, s.events_sent);
}
