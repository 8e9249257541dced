//! The per-route authorisation matrix: every route refuses the callers it must (anonymous →
//! 401, wrong role or an agent → 403) and lets the right ones through.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{raw, start_server};
use shadowai_api::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anon,
    Viewer,
    Analyst,
    Admin,
    Approver,
    Agent,
    RevokedAgent,
    RevokedPerson,
    Garbage,
}

const EVERYONE: &[Who] = &[Who::Viewer, Who::Analyst, Who::Admin, Who::Approver];

struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    allowed: &'static [Who],
}

fn routes() -> Vec<Route> {
    use Who::*;
    let r = |method, path, body, allowed| Route {
        method,
        path,
        body,
        allowed,
    };
    vec![
        r(
            "POST",
            "/api/v1/ingest",
            Some(r#"{"batch_id":"b1","findings":[]}"#),
            &[Agent],
        ),
        r(
            "POST",
            "/api/v1/heartbeat",
            Some(r#"{"agent_version":"0.1.0","mode":"monitor"}"#),
            &[Agent],
        ),
        r("GET", "/api/v1/bundle", None, &[Agent]),
        // ---- naming: discovery (issue 17) ----
        r(
            "POST",
            "/api/v1/discovery/report",
            Some(r#"{"candidates":[]}"#),
            &[Agent],
        ),
        r("GET", "/api/v1/discovery", None, EVERYONE),
        r(
            "GET",
            "/api/v1/discovery/draft?name=none.example",
            None,
            EVERYONE,
        ),
        r("GET", "/api/v1/discovery/proposals", None, EVERYONE),
        r(
            "POST",
            "/api/v1/discovery/proposals",
            Some("{}"),
            &[Analyst, Admin],
        ),
        r(
            "GET",
            "/api/v1/discovery/proposals/999999/impact",
            None,
            EVERYONE,
        ),
        r(
            "POST",
            "/api/v1/discovery/proposals/999999/approve",
            Some("{}"),
            &[Approver],
        ),
        r(
            "POST",
            "/api/v1/discovery/proposals/999999/reject",
            Some("{}"),
            &[Approver],
        ),
        r("GET", "/api/v1/whoami", None, EVERYONE),
        r("GET", "/api/v1/findings", None, EVERYONE),
        r("GET", "/api/v1/reports/services", None, EVERYONE),
        r("GET", "/api/v1/reports/trend", None, EVERYONE),
        r("GET", "/api/v1/reports/groups?by=user", None, EVERYONE),
        r("GET", "/api/v1/reports/uploaders?by=host", None, EVERYONE),
        r("GET", "/api/v1/reports/facets", None, EVERYONE),
        r(
            "GET",
            "/api/v1/risk?services=openai-chatgpt",
            None,
            EVERYONE,
        ),
        r("GET", "/api/v1/alerts", None, EVERYONE),
        r("GET", "/api/v1/alerts/outbox", None, EVERYONE),
        r(
            "GET",
            "/api/v1/exports/findings.csv",
            None,
            &[Analyst, Admin, Approver],
        ),
        r(
            "GET",
            "/api/v1/exports/findings.ocsf.json",
            None,
            &[Analyst, Admin, Approver],
        ),
        r("GET", "/api/v1/agents", None, EVERYONE),
        r(
            "POST",
            "/api/v1/agents/agt_doesnotexist/revoke",
            Some("{}"),
            &[Admin],
        ),
        r("GET", "/api/v1/proposals", None, EVERYONE),
        r(
            "POST",
            "/api/v1/proposals",
            Some(
                r#"{"service_id":"deepseek","verdict":"tolerated","scope":{"kind":"fleet"},"reason":"x"}"#,
            ),
            &[Analyst, Admin],
        ),
        r(
            "POST",
            "/api/v1/proposals/999999/approve",
            Some("{}"),
            &[Approver],
        ),
        r(
            "POST",
            "/api/v1/proposals/999999/reject",
            Some("{}"),
            &[Approver],
        ),
        r("GET", "/api/v1/policy", None, EVERYONE),
        r(
            "GET",
            "/api/v1/policy/document?mode=enforce",
            None,
            EVERYONE,
        ),
        r("GET", "/api/v1/catalogue", None, EVERYONE),
        r(
            "POST",
            "/api/v1/policy/compose",
            Some(r#"{"mode":"monitor","valid_days":1}"#),
            &[Admin],
        ),
        r("GET", "/api/v1/proposals/999999/impact", None, EVERYONE),
        r("GET", "/api/v1/rollouts/999999/agents", None, EVERYONE),
        r("GET", "/api/v1/bundles/9.9.9/file", None, EVERYONE),
        r("GET", "/api/v1/bundles", None, EVERYONE),
        r(
            "POST",
            "/api/v1/bundles?version=1.0.0",
            Some("not a bundle"),
            &[Admin],
        ),
        r("GET", "/api/v1/rollouts", None, EVERYONE),
        r(
            "POST",
            "/api/v1/rollouts",
            Some(r#"{"bundle_version":"9.9.9","canary_group":"canary"}"#),
            &[Admin],
        ),
        r(
            "POST",
            "/api/v1/rollouts/999999/advance",
            Some("{}"),
            &[Admin],
        ),
        r(
            "POST",
            "/api/v1/rollouts/999999/rollback",
            Some("{}"),
            &[Admin],
        ),
        r(
            "POST",
            "/api/v1/rollouts/999999/rollback/compose",
            Some(r#"{"valid_days":1}"#),
            &[Admin],
        ),
        r(
            "POST",
            "/api/v1/agents/agt_doesnotexist/rotate-token",
            Some("{}"),
            &[Admin],
        ),
        r(
            "POST",
            "/api/v1/agents/agt_doesnotexist/release",
            Some("{}"),
            &[Admin],
        ),
        r("GET", "/api/v1/enrollment-keys", None, &[Admin]),
        r(
            "POST",
            "/api/v1/enrollment-keys",
            Some(r#"{"ttl_s":0}"#),
            &[Admin],
        ),
        r(
            "POST",
            "/api/v1/enrollment-keys/999999/revoke",
            Some("{}"),
            &[Admin],
        ),
        r("GET", "/api/v1/audit", None, &[Admin, Approver]),
        r("GET", "/api/v1/audit/export", None, &[Admin, Approver]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_the_callers_it_must() {
    let srv = start_server(false, |_| {}).await;
    let (_, agent) = srv.enroll("host-1", None).await;
    let (revoked_id, revoked_agent) = srv.enroll("host-2", None).await;
    srv.client(Some(&srv.admin))
        .revoke_agent(&revoked_id, Some("test"))
        .await
        .unwrap();
    let revoked_person = srv.person("mallory", Role::Admin);
    let tokens = srv.state.store.list_tokens().unwrap();
    let mallory = tokens.iter().find(|t| t.name == "mallory").unwrap();
    srv.state.store.revoke_token("test", mallory.id, 2).unwrap();

    let callers: Vec<(Who, Option<String>)> = vec![
        (Who::Anon, None),
        (Who::Viewer, Some(srv.person("vera", Role::Viewer))),
        (Who::Analyst, Some(srv.person("ana", Role::Analyst))),
        (Who::Admin, Some(srv.person("adam", Role::Admin))),
        (Who::Approver, Some(srv.person("appy", Role::Approver))),
        (Who::Agent, Some(agent)),
        (Who::RevokedAgent, Some(revoked_agent)),
        (Who::RevokedPerson, Some(revoked_person)),
        (Who::Garbage, Some("sau_0000".to_owned())),
    ];
    let http = raw();
    let before_audit = srv.state.store.audit_entries(0, 10_000).unwrap().len();
    let mut checked = 0;
    for route in routes() {
        for (who, token) in &callers {
            let url = format!("{}{}", srv.url, route.path);
            let mut rb = match route.method {
                "GET" => http.get(&url),
                _ => http.post(&url),
            };
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            if let Some(b) = route.body {
                let ct = if route.path.starts_with("/api/v1/bundles") {
                    "application/octet-stream"
                } else {
                    "application/json"
                };
                rb = rb.header("content-type", ct).body(b);
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let ctx = format!("{who:?} {} {} → {status} {body}", route.method, route.path);
            match who {
                Who::Anon | Who::RevokedAgent | Who::RevokedPerson | Who::Garbage => {
                    assert_eq!(status, 401, "{ctx}");
                    assert_eq!(body["error"]["code"], "unauthenticated", "{ctx}");
                }
                w if route.allowed.contains(w) => {
                    assert!(status != 401 && status != 403 && status < 500, "{ctx}");
                }
                _ => {
                    assert_eq!(status, 403, "{ctx}");
                    assert_eq!(body["error"]["code"], "forbidden", "{ctx}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * callers.len());
    // Calls refused for their role wrote nothing to the audit log; the two allowed proposals
    // did (the analyst's waits for a second person: `proposal.create`; the admin's applies at
    // once), and so did the allowed but malformed bundle upload (refused attempts are audited).
    let after = srv.state.store.audit_entries(0, 10_000).unwrap();
    let new: Vec<&str> = after[before_audit..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        new,
        vec!["proposal.create", "proposal.apply", "bundle.refused"],
        "{new:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_routes_and_enrollment_secret() {
    let srv = start_server(false, |_| {}).await;
    let http = raw();
    for path in ["/healthz", "/metrics", "/"] {
        let r = http.get(format!("{}{path}", srv.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let index = http.get(format!("{}/", srv.url)).send().await.unwrap();
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.headers().contains_key("content-security-policy"));
    let missing = http
        .get(format!("{}/ui/../Cargo.toml", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad = http
        .post(format!("{}/api/v1/enroll", srv.url))
        .json(&serde_json::json!({"secret": "sae_wrong", "host_id": "h", "hostname": "h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(srv.state.store.list_agents().unwrap().is_empty());
    // The enrollment secret is not an API token.
    let r = http
        .get(format!("{}/api/v1/findings", srv.url))
        .bearer_auth(&srv.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
