//! Host identity over HTTP: a host id is bound to its host key, so holding the enrollment
//! secret does not let anyone take a host over; re-enrollment, token rotation, revocation,
//! release; enrollment keys that expire, run out and rotate at once; heartbeat groups.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{finding, host_key, raw, start_server};
use shadowai_api::{
    AgentMode, EnrollRequest, EnrollmentKeyRequest, Heartbeat, IngestBatch, ReenrollRequest,
    Verdict,
};

const T0: i64 = 1_763_769_600_000;

fn enroll_req(secret: &str, host: &str, key: &str) -> EnrollRequest {
    EnrollRequest {
        secret: secret.to_owned(),
        host_id: host.to_owned(),
        hostname: format!("{host}.example"),
        group: None,
        agent_version: "0.1.0".to_owned(),
        host_key: key.to_owned(),
    }
}

fn heartbeat(group: Option<&str>) -> Heartbeat {
    Heartbeat {
        agent_version: "0.1.0".into(),
        bundle_version: None,
        mode: AgentMode::Monitor,
        lost_events: 0,
        group: group.map(str::to_owned),
        bundle_error: None,
        pipeline: None,
    }
}

fn one_finding(host: &str, id: &str) -> IngestBatch {
    IngestBatch {
        batch_id: format!("b-{id}"),
        findings: vec![finding(
            id,
            host,
            "chatgpt",
            Verdict::Unsanctioned,
            "alice",
            T0,
        )],
    }
}

/// The audit log (off the runtime: the PostgreSQL client blocks).
fn audit(srv: &common::TestServer) -> Vec<shadowai_api::audit::AuditEntry> {
    common::off_runtime(|| srv.state.store.audit_entries(0, 10_000)).unwrap()
}

/// A server on SQLite, or on a throwaway PostgreSQL when `pg` is given.
async fn server(pg: Option<&common::PgServer>, db: &str) -> common::TestServer {
    let url = pg.map(|p| p.create_db(db));
    start_server(false, |c| {
        if let Some(url) = url {
            c.database = shadowai_collector::config::Database::Postgres {
                url,
                pool: 2,
                ca: None,
            };
        }
    })
    .await
}

fn code(e: &shadowai_api::client::ClientError) -> String {
    match e {
        shadowai_api::client::ClientError::Status { code, .. } => code.clone(),
        other => format!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_is_refused_and_the_real_agent_keeps_working_on_sqlite() {
    takeover_is_refused(server(None, "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_is_refused_and_the_real_agent_keeps_working_on_postgres() {
    let pg = common::PgServer::start();
    takeover_is_refused(server(Some(&pg), "takeover").await).await;
}

async fn takeover_is_refused(srv: common::TestServer) {
    let anon = srv.client(None);
    let admin = srv.client(Some(&srv.admin));
    let (agent_id, tok) = srv.enroll("host-a", None).await;
    let real = srv.client(Some(&tok));
    real.ingest(&one_finding("host-a", "f1")).await.unwrap();

    // The attacker holds the fleet-wide secret but not host-a's key.
    let evil_key = "ee".repeat(32);
    let before_audit = audit(&srv).len();
    for _ in 0..5 {
        let e = anon
            .enroll(&enroll_req(&srv.secret, "host-a", &evil_key))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(409), "{e}");
        assert_eq!(code(&e), "host_identity_conflict", "{e}");
    }
    // Then the attempts with that key are rate-limited per (host id, key)...
    for _ in 0..15 {
        let e = anon
            .enroll(&enroll_req(&srv.secret, "host-a", &evil_key))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(429), "{e}");
    }
    // ...and through reenroll, without the secret, with another key: refused too.
    let e = anon
        .reenroll(&ReenrollRequest {
            host_id: "host-a".into(),
            host_key: "dd".repeat(32),
            agent_version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), code(&e).as_str()),
        (Some(409), "host_identity_conflict")
    );

    // The real agent is untouched.
    real.heartbeat(&heartbeat(None)).await.unwrap();
    let ack = real.ingest(&one_finding("host-a", "f2")).await.unwrap();
    assert_eq!(ack.accepted, 1);
    assert_eq!(srv.count(), 2);

    // Admins see "host seen twice"; the audit log has one entry (not 6) naming the key.
    let agents = admin.agents().await.unwrap();
    assert_eq!(agents.len(), 1, "a refused claim adds no agent row");
    assert_eq!(agents[0].agent_id, agent_id);
    assert_eq!(agents[0].identity_conflicts, 6);
    assert!(agents[0].last_identity_conflict_ms.is_some());
    let audit = audit(&srv);
    let conflicts: Vec<_> = audit[before_audit..]
        .iter()
        .filter(|e| e.action == "agent.identity_conflict")
        .collect();
    assert_eq!(conflicts.len(), 1, "{:?}", &audit[before_audit..]);
    assert_eq!(conflicts[0].target, "host:host-a");
    assert_eq!(
        conflicts[0].details["presented_key_sha256"],
        shadowai_collector::server::auth::hash_secret(&evil_key)
    );
    assert_eq!(conflicts[0].details["peer"], "127.0.0.1");
    assert_eq!(audit.len() - before_audit, 1, "nothing else was written");
    let metrics = raw()
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shadowai_collector_host_identity_conflicts_total 6"),
        "{metrics}"
    );

    // The same host with its own key gets a new token for the same agent; the old one dies.
    let again = anon
        .enroll(&enroll_req(&srv.secret, "host-a", &host_key("host-a")))
        .await
        .unwrap();
    assert_eq!(again.agent_id, agent_id);
    assert_eq!(
        real.heartbeat(&heartbeat(None)).await.unwrap_err().status(),
        Some(401)
    );
    srv.client(Some(&again.token))
        .heartbeat(&heartbeat(None))
        .await
        .unwrap();

    // A malformed key is refused with its name.
    let e = anon
        .enroll(&enroll_req(&srv.secret, "host-b", "not-hex"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("host_key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_rotate_revoke_and_release_on_sqlite() {
    reenroll_rotate_revoke_and_release(server(None, "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_rotate_revoke_and_release_on_postgres() {
    let pg = common::PgServer::start();
    reenroll_rotate_revoke_and_release(server(Some(&pg), "reenroll").await).await;
}

async fn reenroll_rotate_revoke_and_release(srv: common::TestServer) {
    let anon = srv.client(None);
    let admin_token = srv.person("adam", shadowai_api::Role::Admin);
    let admin = srv.client(Some(&admin_token));
    let (agent_id, tok) = srv.enroll("host-r", None).await;
    let reenroll = |key: String| {
        let anon = anon.clone();
        async move {
            anon.reenroll(&ReenrollRequest {
                host_id: "host-r".into(),
                host_key: key,
                agent_version: "0.1.1".into(),
            })
            .await
        }
    };

    // Rotation kills only the token; the host proves its key and gets a new one.
    admin
        .rotate_agent_token(&agent_id, Some("token leaked"))
        .await
        .unwrap();
    let e = srv
        .client(Some(&tok))
        .heartbeat(&heartbeat(None))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    let r = reenroll(host_key("host-r")).await.unwrap();
    assert_eq!(r.agent_id, agent_id);
    srv.client(Some(&r.token))
        .heartbeat(&heartbeat(None))
        .await
        .unwrap();

    // Unknown host: 404 (the agent falls back to the enrollment secret).
    let e = anon
        .reenroll(&ReenrollRequest {
            host_id: "never-seen".into(),
            host_key: host_key("never-seen"),
            agent_version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");

    // Revoked: tokens dead, reenroll and enroll refused with agent_revoked.
    admin.revoke_agent(&agent_id, Some("stolen")).await.unwrap();
    let e = srv
        .client(Some(&r.token))
        .heartbeat(&heartbeat(None))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    let e = reenroll(host_key("host-r")).await.unwrap_err();
    assert_eq!(
        (e.status(), code(&e).as_str()),
        (Some(403), "agent_revoked")
    );
    let e = anon
        .enroll(&enroll_req(&srv.secret, "host-r", &host_key("host-r")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), code(&e).as_str()),
        (Some(403), "agent_revoked")
    );
    let e = admin.rotate_agent_token(&agent_id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");

    // Release: the host may enroll anew, even with a new key (reinstalled machine).
    admin
        .release_agent(&agent_id, Some("reinstalled"))
        .await
        .unwrap();
    let fresh = anon
        .enroll(&enroll_req(&srv.secret, "host-r", &"ab".repeat(32)))
        .await
        .unwrap();
    assert_ne!(fresh.agent_id, agent_id);
    srv.client(Some(&fresh.token))
        .heartbeat(&heartbeat(None))
        .await
        .unwrap();

    // Every admin step is audited with the person who did it.
    let audit = audit(&srv);
    for action in ["agent.rotate_token", "agent.revoke", "agent.release"] {
        let e = audit
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} in the audit log"));
        assert_eq!(e.actor, "adam", "{action}");
    }
    assert!(audit.iter().any(|e| e.action == "agent.reenroll"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_keys_expire_run_out_and_rotate_at_once() {
    let srv = start_server(false, |c| {
        c.enrollment_secret = Some("config-secret-0123456789".into());
    })
    .await;
    let anon = srv.client(None);
    let admin = srv.client(Some(&srv.admin));
    let enroll = |secret: String, host: &'static str| {
        let anon = anon.clone();
        async move {
            anon.enroll(&enroll_req(&secret, host, &host_key(host)))
                .await
        }
    };
    // The config secret seeded the first key.
    enroll("config-secret-0123456789".into(), "h1")
        .await
        .unwrap();

    // Single use.
    let once = admin
        .create_enrollment_key(&EnrollmentKeyRequest {
            note: "one host".into(),
            ttl_s: None,
            max_uses: Some(1),
        })
        .await
        .unwrap();
    enroll(once.secret.clone(), "h2").await.unwrap();
    let e = enroll(once.secret.clone(), "h3").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    // The host it was used for comes back with its host key, no secret needed.
    anon.reenroll(&ReenrollRequest {
        host_id: "h2".into(),
        host_key: host_key("h2"),
        agent_version: String::new(),
    })
    .await
    .unwrap();

    // Time-limited.
    let short = admin
        .create_enrollment_key(&EnrollmentKeyRequest {
            note: "short".into(),
            ttl_s: Some(1),
            max_uses: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let e = enroll(short.secret.clone(), "h4").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");

    // Revoked at once.
    let k = admin
        .create_enrollment_key(&EnrollmentKeyRequest::default())
        .await
        .unwrap();
    admin.revoke_enrollment_key(k.key.id).await.unwrap();
    let e = enroll(k.secret.clone(), "h5").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    let keys = admin.enrollment_keys().await.unwrap();
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().find(|x| x.id == k.key.id).unwrap().revoked);
    assert_eq!(keys.iter().find(|x| x.id == once.key.id).unwrap().uses, 1);

    // Rotation replaces every key at once, and the config value does not come back on restart.
    let store = srv.state.store.clone();
    let new = common::off_runtime(|| {
        shadowai_collector::app::rotate_enrollment_secret(&*store, "ops").unwrap()
    });
    let e = enroll("config-secret-0123456789".into(), "h6")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    let mut cfg = shadowai_collector::config::Config::minimal(
        "127.0.0.1:0".parse().unwrap(),
        srv.dir.path().join("data"),
    );
    cfg.enrollment_secret = Some("config-secret-0123456789".into());
    let first = common::off_runtime(|| shadowai_collector::app::bootstrap(&*store, &cfg).unwrap());
    assert!(first.enrollment_secret.is_none());
    let e = enroll("config-secret-0123456789".into(), "h6")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    enroll(new, "h6").await.unwrap();
    let audit = audit(&srv);
    let rot = audit
        .iter()
        .find(|e| e.action == "enrollment.rotate")
        .unwrap();
    assert_eq!(rot.actor, "cli:ops");
    assert_eq!(rot.details["revoked_keys"], 3, "{rot:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_spam_is_bounded_and_heartbeats_cannot_set_the_group() {
    let srv = start_server(false, |c| {
        c.limits.max_hosts = 5;
        c.limits.enroll_rate_per_sec = 0.1;
        c.limits.enroll_rate_burst = 11.0;
    })
    .await;
    let anon = srv.client(None);
    let (_, tok) = srv.enroll("h0", None).await;
    for i in 1..5 {
        srv.enroll(&format!("h{i}"), None).await;
    }
    let before_audit = audit(&srv).len();
    // The sixth host is refused: the agents table does not grow past max_hosts.
    let e = anon
        .enroll(&enroll_req(&srv.secret, "h5", &host_key("h5")))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("max_hosts"), "{e}");
    // Wrong secrets: 401, nothing written.
    for _ in 0..5 {
        let e = anon
            .enroll(&enroll_req("sae_wrong", "h9", &host_key("h9")))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(401));
    }
    // The per-IP enrollment bucket (burst 11) is empty now: 429 before the body is read.
    let r = raw()
        .post(format!("{}/api/v1/enroll", srv.url))
        .header("content-type", "application/json")
        .body("{ not even json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        common::off_runtime(|| srv.state.store.list_agents())
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        audit(&srv).len(),
        before_audit,
        "refused enrollments write no audit entries"
    );

    // A heartbeat naming a group does not move the agent into it.
    let agent = srv.client(Some(&tok));
    agent.heartbeat(&heartbeat(Some("canary"))).await.unwrap();
    agent.heartbeat(&heartbeat(Some("canary"))).await.unwrap();
    let a = srv
        .state
        .store
        .list_agents()
        .unwrap()
        .into_iter()
        .find(|a| a.host_id == "h0")
        .unwrap();
    assert_eq!(a.group, None);
    let metrics = raw()
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shadowai_collector_heartbeat_group_ignored_total 2"),
        "{metrics}"
    );
}
