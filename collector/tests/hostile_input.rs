//! Request-level hostility against the real collector binary: authorisation before parsing,
//! numeric bounds that keep reports from overflowing, a reused batch id with other content,
//! unknown fields inside findings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::binary::{Binary, SECRET};
use common::{finding, host_key};
use shadowai_api::{EnrollRequest, FindingQuery, IngestBatch, Role, Verdict};

const T0: i64 = 1_763_769_600_000;

async fn agent(srv: &Binary, host: &str) -> shadowai_api::client::Client {
    let r = srv
        .client(None)
        .enroll(&EnrollRequest {
            secret: SECRET.into(),
            host_id: host.into(),
            hostname: host.into(),
            group: None,
            agent_version: "0.1.0".into(),
            host_key: host_key(host),
        })
        .await
        .unwrap();
    srv.client(Some(&r.token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_is_checked_before_the_body_is_parsed() {
    let srv = Binary::start("", None).await;
    let viewer = srv.person(Role::Viewer);
    let agent_client = agent(&srv, "h1").await;
    // No connection reuse: the server answers these refusals without reading the body and
    // then closes the connection, which a pooled client could pick for the next request.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let garbage = "{ this is not json".to_owned();
    // (token, method, path, body) → 403 / 401, never 400.
    let cases: Vec<(Option<&str>, &str, u16)> = vec![
        (Some(&viewer), "/api/v1/proposals", 403),
        (Some(&viewer), "/api/v1/rollouts", 403),
        (Some(&viewer), "/api/v1/agents/agt_x/revoke", 403),
        (Some(&viewer), "/api/v1/enrollment-keys", 403),
        (Some(&viewer), "/api/v1/ingest", 403),
        (Some(&viewer), "/api/v1/proposals/1/approve", 403),
        (None, "/api/v1/ingest", 401),
        (None, "/api/v1/proposals", 401),
        (Some("saa_garbage"), "/api/v1/heartbeat", 401),
    ];
    for (tok, path, want) in cases {
        let mut rb = http
            .post(format!("{}{path}", srv.url))
            .header("content-type", "application/json")
            .body(garbage.clone());
        if let Some(t) = tok {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    // An agent token on an admin route with a gzip body: refused before inflating anything.
    let r = http
        .post(format!("{}/api/v1/bundles", srv.url))
        .bearer_auth(&viewer)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Bad query parameters from a caller without export rights: 403, not 400.
    let r = http
        .get(format!(
            "{}/api/v1/exports/findings.csv?limit=oops&nope=1",
            srv.url
        ))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(agent_client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_bounded_and_reports_cannot_overflow() {
    let srv = Binary::start("", None).await;
    let a = agent(&srv, "h1").await;
    let admin = srv.client(Some(&srv.admin));
    let mut f = finding("f1", "h1", "chatgpt", Verdict::Unsanctioned, "alice", T0);
    f.count = i64::MAX as u64;
    let e = a
        .ingest(&IngestBatch {
            batch_id: "b1".into(),
            findings: vec![f.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("findings[0].count"), "{e}");
    let mut late = finding("f9", "h1", "chatgpt", Verdict::Unsanctioned, "alice", T0);
    late.window_end_ms = i64::MAX;
    let e = a
        .ingest(&IngestBatch {
            batch_id: "b9".into(),
            findings: vec![late],
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("window_end_ms"), "{e}");
    // Byte counts: a value past i64 (or past the per-finding bound) is refused, naming it.
    for (dir, v) in [("bytes_out", u64::MAX), ("bytes_in", (1 << 40) + 1)] {
        let mut f = finding("fb", "h1", "chatgpt", Verdict::Unsanctioned, "alice", T0);
        if dir == "bytes_out" {
            f.bytes_out = Some(v);
        } else {
            f.bytes_in = Some(v);
        }
        let e = a
            .ingest(&IngestBatch {
                batch_id: format!("b-{dir}"),
                findings: vec![f],
            })
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains(&format!("findings[0].{dir}")), "{e}");
    }
    // The largest accepted count, many times over: the reports add up without overflow.
    let max = u32::MAX as u64;
    let fs: Vec<_> = (0..1000)
        .map(|i| {
            let mut f = finding(
                &format!("m{i}"),
                "h1",
                "chatgpt",
                Verdict::Unsanctioned,
                "alice",
                T0 + i,
            );
            f.count = max;
            f.bytes_out = Some(1 << 40);
            f.bytes_in = Some(1 << 40);
            f
        })
        .collect();
    a.ingest(&IngestBatch {
        batch_id: "b2".into(),
        findings: fs,
    })
    .await
    .unwrap();
    let report = admin
        .services_report(&FindingQuery::default())
        .await
        .unwrap();
    assert_eq!(report[0].events, 1000 * max);
    assert_eq!(
        (report[0].bytes_out, report[0].bytes_in),
        (1000 << 40, 1000 << 40)
    );
    let trend = admin.trend(&FindingQuery::default()).await.unwrap();
    assert_eq!(trend.iter().map(|t| t.events).sum::<u64>(), 1000 * max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_batch_id_with_other_content_is_refused() {
    let srv = Binary::start("", None).await;
    let a = agent(&srv, "h1").await;
    let b = IngestBatch {
        batch_id: "b1".into(),
        findings: vec![finding(
            "f1",
            "h1",
            "chatgpt",
            Verdict::Unsanctioned,
            "alice",
            T0,
        )],
    };
    a.ingest(&b).await.unwrap();
    assert!(
        a.ingest(&b).await.unwrap().replayed,
        "the same content is a replay"
    );
    let mut other = b.clone();
    other.findings[0].id = "f2".into();
    let e = a.ingest(&other).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("b1"), "{e}");
    let page = srv
        .client(Some(&srv.admin))
        .findings(&FindingQuery::default())
        .await
        .unwrap();
    assert_eq!(
        page.items.len(),
        1,
        "nothing of the refused batch was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_inside_findings_are_refused() {
    let srv = Binary::start("", None).await;
    let a = agent(&srv, "h1").await;
    drop(a);
    let r = srv
        .client(None)
        .reenroll(&shadowai_api::ReenrollRequest {
            host_id: "h1".into(),
            host_key: host_key("h1"),
            agent_version: String::new(),
        })
        .await
        .unwrap();
    let f = serde_json::to_value(finding(
        "f1",
        "h1",
        "chatgpt",
        Verdict::Unsanctioned,
        "alice",
        T0,
    ))
    .unwrap();
    let http = reqwest::Client::new();
    for (path, what) in [
        ("", "prompt"),
        ("process", "cmdline"),
        ("evidence", "payload"),
    ] {
        let mut f = f.clone();
        let target = if path.is_empty() {
            &mut f
        } else {
            &mut f[path]
        };
        target[what] = serde_json::json!("secret text");
        let body = serde_json::json!({"batch_id": format!("b-{what}"), "findings": [f]});
        let resp = http
            .post(format!("{}/api/v1/ingest", srv.url))
            .bearer_auth(&r.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(&format!("unknown field `{what}`")), "{text}");
    }
}
