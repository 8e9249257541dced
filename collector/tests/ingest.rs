//! Ingest over HTTP: idempotency, host scoping, and hostile or malformed requests that must
//! get a clear 4xx JSON error and change nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::io::Write;

use common::{finding, raw, start_server};
use shadowai_api::{IngestBatch, Verdict};

const T0: i64 = 1_763_769_600_000;

/// (content-type, content-encoding, body, expected status, words expected in the message)
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_idempotent_and_scoped_to_the_agents_host() {
    let srv = start_server(false, |_| {}).await;
    let (_, tok) = srv.enroll("host-a", Some("canary")).await;
    let agent = srv.client(Some(&tok));
    let fs: Vec<_> = (0..50)
        .map(|i| {
            finding(
                &format!("f{i}"),
                "host-a",
                "chatgpt",
                Verdict::Unsanctioned,
                "alice",
                T0 + i,
            )
        })
        .collect();
    let batch = IngestBatch {
        batch_id: "b-1".into(),
        findings: fs.clone(),
    };
    let ack = agent.ingest(&batch).await.unwrap(); // gzip-compressed by the client
    assert_eq!((ack.accepted, ack.duplicates, ack.replayed), (50, 0, false));
    let again = agent.ingest(&batch).await.unwrap();
    assert_eq!((again.accepted, again.replayed), (50, true));
    let overlap = IngestBatch {
        batch_id: "b-2".into(),
        findings: fs[40..].to_vec(),
    };
    let ack2 = agent.ingest(&overlap).await.unwrap();
    assert_eq!((ack2.accepted, ack2.duplicates), (0, 10));
    assert_eq!(srv.count(), 50);

    // Another host's data: 403 naming the finding, nothing stored, batch id not burned.
    let mut evil = fs[0].clone();
    evil.id = "evil".into();
    evil.host_id = "host-b".into();
    let bad = IngestBatch {
        batch_id: "b-3".into(),
        findings: vec![fs[0].clone(), evil],
    };
    let err = agent.ingest(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("findings[1].host_id"), "{err}");
    assert_eq!(srv.count(), 50);
    let ok3 = agent
        .ingest(&IngestBatch {
            batch_id: "b-3".into(),
            findings: vec![],
        })
        .await
        .unwrap();
    assert!(!ok3.replayed);

    // Re-enrolling the host revokes the old identity.
    let (_, tok2) = srv.enroll("host-a", None).await;
    assert_eq!(agent.ingest(&batch).await.unwrap_err().status(), Some(401));
    let replay = srv.client(Some(&tok2)).ingest(&batch).await.unwrap();
    assert!(
        replay.replayed,
        "batch ids are per host, so the new identity's retry is recognised"
    );
    let text = srv.client(Some(&srv.admin)).healthz().await.unwrap();
    assert_eq!(text["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_errors_and_change_nothing() {
    let srv = start_server(false, |c| {
        c.limits.body_bytes = 64 * 1024;
        c.limits.inflated_bytes = 256 * 1024;
        c.limits.findings_per_batch = 100;
    })
    .await;
    let (_, tok) = srv.enroll("host-a", None).await;
    let http = raw();
    let url = format!("{}/api/v1/ingest", srv.url);
    let audit_before = srv.state.store.audit_entries(0, 1000).unwrap();
    let good = serde_json::to_vec(&IngestBatch {
        batch_id: "ok".into(),
        findings: vec![finding("f1", "host-a", "s", Verdict::Blocked, "u", T0)],
    })
    .unwrap();

    let mut too_many = IngestBatch {
        batch_id: "many".into(),
        findings: vec![],
    };
    for i in 0..101 {
        too_many.findings.push(finding(
            &format!("m{i}"),
            "host-a",
            "s",
            Verdict::Blocked,
            "u",
            T0,
        ));
    }
    let mut bad_risk = finding("r1", "host-a", "s", Verdict::Blocked, "u", T0);
    bad_risk.risk_score = 200;
    let mut bad_window = finding("w1", "host-a", "s", Verdict::Blocked, "u", T0);
    bad_window.window_end_ms = bad_window.window_start_ms - 1;
    let mut ctl = finding("c1", "host-a", "s", Verdict::Blocked, "u", T0);
    ctl.user = "bob\u{1b}[31m".into();
    let js = |b: &IngestBatch| serde_json::to_vec(b).unwrap();
    let bomb = gzip(&vec![b' '; 4 * 1024 * 1024]);
    assert!(
        bomb.len() < 64 * 1024,
        "the bomb itself fits the body limit"
    );

    // (content-type, content-encoding, body, expected status, expected words in the message)
    let cases: Vec<Case> = vec![
        (
            "application/json",
            None,
            b"{not json".to_vec(),
            400,
            "request body",
        ),
        (
            "application/json",
            None,
            b"{\"batch_id\":\"x\"}".to_vec(),
            400,
            "missing field `findings`",
        ),
        (
            "application/json",
            None,
            b"{\"batch_id\":\"x\",\"findings\":[],\"extra\":1}".to_vec(),
            400,
            "unknown field `extra`",
        ),
        (
            "application/json",
            None,
            b"{\"batch_id\":\"bad id/..\",\"findings\":[]}".to_vec(),
            400,
            "batch_id",
        ),
        ("text/plain", None, good.clone(), 415, "application/json"),
        (
            "application/json",
            Some("br"),
            good.clone(),
            415,
            "Content-Encoding",
        ),
        (
            "application/json",
            Some("gzip"),
            b"not gzip at all".to_vec(),
            400,
            "gzip",
        ),
        ("application/json", Some("gzip"), bomb, 413, "inflates"),
        (
            "application/json",
            None,
            vec![b' '; 65 * 1024],
            413,
            "limit",
        ),
        ("application/json", None, js(&too_many), 413, "at most 100"),
        (
            "application/json",
            None,
            js(&IngestBatch {
                batch_id: "r".into(),
                findings: vec![bad_risk],
            }),
            400,
            "findings[0].risk_score",
        ),
        (
            "application/json",
            None,
            js(&IngestBatch {
                batch_id: "w".into(),
                findings: vec![bad_window],
            }),
            400,
            "window",
        ),
        (
            "application/json",
            None,
            js(&IngestBatch {
                batch_id: "c".into(),
                findings: vec![ctl],
            }),
            400,
            "control characters",
        ),
    ];
    for (ct, enc, body, status, words) in cases {
        let mut rb = http
            .post(&url)
            .bearer_auth(&tok)
            .header("content-type", ct)
            .body(body);
        if let Some(e) = enc {
            rb = rb.header("content-encoding", e);
        }
        let r = rb.send().await.unwrap();
        let got = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(got, status, "{ct} {enc:?}: {v}");
        assert!(msg.contains(words), "expected {words:?} in {msg:?}");
        assert!(v["error"]["code"].is_string());
    }
    assert_eq!(srv.count(), 0, "no hostile request stored anything");
    // Hostile query strings and ids on the SOC/admin side.
    let admin = &srv.admin;
    for (method, path, status) in [
        ("GET", "/api/v1/findings?limit=0", 400),
        ("GET", "/api/v1/findings?limit=abc", 400),
        ("GET", "/api/v1/findings?verdict=evil", 400),
        ("GET", "/api/v1/findings?cursor=-5", 400),
        ("GET", "/api/v1/findings?from_ms=10&to_ms=5", 400),
        ("GET", "/api/v1/findings?service=%00", 400),
        ("GET", "/api/v1/audit?limit=100000", 400),
        ("POST", "/api/v1/rollouts/abc/advance", 400),
        ("POST", "/api/v1/proposals/0/approve", 403),
        ("DELETE", "/api/v1/findings", 405),
        ("GET", "/api/v1/nope", 404),
    ] {
        let rb = match method {
            "GET" => http.get(format!("{}{path}", srv.url)),
            "DELETE" => http.delete(format!("{}{path}", srv.url)),
            _ => http
                .post(format!("{}{path}", srv.url))
                .header("content-type", "application/json")
                .body("{}"),
        };
        let r = rb.bearer_auth(admin).send().await.unwrap();
        let got = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let r = http
        .post(format!("{}/api/v1/proposals", srv.url))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(r#"{"service_id":"a b","verdict":"blocked","scope":{"kind":"fleet"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/api/v1/proposals", srv.url))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(r#"{"service_id":"x","verdict":"blocked","scope":{"kind":"planet"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(srv.state.store.list_proposals(None).unwrap().is_empty());
    assert_eq!(
        srv.state.store.audit_entries(0, 1000).unwrap(),
        audit_before
    );
    // And a good request still works afterwards.
    let r = http
        .post(&url)
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(srv.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let srv = start_server(false, |c| {
        c.limits.rate_per_sec = 0.5;
        c.limits.rate_burst = 3.0;
    })
    .await;
    let http = raw();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http
            .get(format!("{}/api/v1/whoami", srv.url))
            .bearer_auth(&srv.admin)
            .send()
            .await
            .unwrap();
        statuses.push((
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(
        statuses,
        vec![(200, false), (200, false), (200, false), (429, true)]
    );
    // Another caller has its own bucket.
    let other = srv.person("other", shadowai_api::Role::Viewer);
    let r = http
        .get(format!("{}/api/v1/whoami", srv.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = http
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("shadowai_collector_rate_limited_total 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_tokens_does_not_escape_the_per_ip_limit() {
    let srv = start_server(false, |c| {
        c.limits.ip_rate_per_sec = 0.5;
        c.limits.ip_rate_burst = 5.0;
    })
    .await;
    let http = raw();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = http
            .get(format!("{}/api/v1/findings", srv.url))
            .bearer_auth(format!("sau_garbage{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429]);
}
