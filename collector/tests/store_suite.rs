//! One store test suite, run against SQLite and against a throwaway PostgreSQL server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{PgServer, finding};
use shadowai_api::audit::verify;
use shadowai_api::{
    AgentMode, BundleInfo, FindingQuery, Heartbeat, IngestBatch, PolicyScope, ProposalRequest,
    ProposalStatus, Role, RolloutStage, Verdict,
};
use shadowai_collector::store::{
    EnrollAttempt, EnrollOutcome, NewEnrollmentKey, Store, StoreError, desired_version,
};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_763_769_600_000; // 2025-11-22T00:00:00Z

/// Enrolls `host` (host key `key-<host>`) the way `POST /api/v1/enroll` does; the agent's
/// token hash is `token`.
fn enroll_as(
    s: &dyn Store,
    agent: &str,
    host: &str,
    group: Option<&str>,
    token: &str,
) -> EnrollOutcome {
    s.seed_enrollment_key(
        &NewEnrollmentKey {
            key_hash: "suite-secret".into(),
            note: "suite".into(),
            expires_ms: None,
            max_uses: None,
        },
        T0,
    )
    .unwrap();
    s.enroll_host(
        &EnrollAttempt {
            secret_hash: "suite-secret".into(),
            host_id: host.into(),
            hostname: format!("{host}.example"),
            group: group.map(Into::into),
            agent_version: "0.1.0".into(),
            key_sha256: format!("key-{host}"),
            new_agent_id: agent.into(),
            token_hash: token.into(),
            max_hosts: 1000,
            peer: "127.0.0.1".into(),
        },
        T0,
    )
    .unwrap()
}

fn enroll(s: &dyn Store, agent: &str, host: &str, group: Option<&str>) {
    let out = enroll_as(s, agent, host, group, &format!("hash-{agent}"));
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
}

fn suite(s: &dyn Store) {
    s.health().unwrap();

    // settings
    assert!(s.set_setting_if_absent("k", "v1").unwrap());
    assert!(!s.set_setting_if_absent("k", "v2").unwrap());
    assert_eq!(s.get_setting("k").unwrap().as_deref(), Some("v1"));
    assert_eq!(s.get_setting("missing").unwrap(), None);

    // tokens
    let t = s
        .create_token("system", "alice", Role::Admin, "h-alice", T0)
        .unwrap();
    assert_eq!(
        t.created_by, "system",
        "the creator is recorded with the token"
    );
    let listed = s.list_tokens().unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|x| x.id == t.id)
            .map(|x| x.created_by.as_str()),
        Some("system")
    );
    assert_eq!(
        s.token_by_hash("h-alice").unwrap().unwrap().role,
        Role::Admin
    );
    assert!(s.token_by_hash("nope").unwrap().is_none());
    let r = s.revoke_token("system", t.id, T0 + 1).unwrap();
    assert!(r.revoked);
    assert!(s.token_by_hash("h-alice").unwrap().unwrap().revoked);
    assert!(matches!(
        s.revoke_token("system", 999, T0),
        Err(StoreError::NotFound { .. })
    ));

    // agents
    enroll(s, "agt-a2", "host-a", Some("canary"));
    enroll(s, "agt-b", "host-b", None);
    enroll(s, "agt-c", "host-c", None);
    assert!(
        !s.agent_by_token_hash("hash-agt-a2")
            .unwrap()
            .unwrap()
            .revoked
    );
    // re-enrollment with the same host key: same agent, the old token is dead
    let again = enroll_as(s, "agt-new", "host-a", Some("canary"), "hash-agt-a2-b");
    assert_eq!(
        again,
        EnrollOutcome::Enrolled {
            agent_id: "agt-a2".into(),
            rebound: true
        }
    );
    assert!(s.agent_by_token_hash("hash-agt-a2").unwrap().is_none());
    assert!(
        !s.agent_by_token_hash("hash-agt-a2-b")
            .unwrap()
            .unwrap()
            .revoked
    );
    s.revoke_agent("alice", "agt-c", None, T0).unwrap();
    let hb = Heartbeat {
        agent_version: "0.1.1".into(),
        bundle_version: Some("1.0.0".into()),
        mode: AgentMode::Enforce,
        lost_events: 42,
        group: None,
        bundle_error: None,
        pipeline: Some(shadowai_api::PipelineHealth {
            spool_dropped_batches: 3,
            spool_dropped_bytes: 12_345,
            spool_lost_findings: 7,
            quarantined_batches: 2,
            identity: shadowai_api::IdentityState::Reenrolling,
            reenrollments: 1,
            hooks_missing: vec!["skb_egress".into(), "skb_ingress".into()],
        }),
    };
    s.record_heartbeat("agt-a2", &hb, T0 + 5).unwrap();
    let agents = s.list_agents().unwrap();
    let a2 = agents.iter().find(|a| a.agent_id == "agt-a2").unwrap();
    assert_eq!(a2.lost_events, 42);
    assert_eq!(
        a2.pipeline, hb.pipeline,
        "the agent's pipeline health is kept"
    );
    let b = agents.iter().find(|a| a.agent_id == "agt-b").unwrap();
    assert_eq!(b.pipeline, None, "no heartbeat yet");
    assert_eq!(a2.mode, Some(AgentMode::Enforce));
    assert_eq!(a2.last_seen_ms, Some(T0 + 5));
    assert_eq!(a2.group.as_deref(), Some("canary"));

    // ingest: atomic, idempotent by batch id and finding id
    let f1 = finding(
        "f1",
        "host-a",
        "chatgpt",
        Verdict::Unsanctioned,
        "alice",
        T0,
    );
    let f2 = finding(
        "f2",
        "host-a",
        "claude",
        Verdict::Sanctioned,
        "bob",
        T0 + DAY,
    );
    let b1 = IngestBatch {
        batch_id: "b1".into(),
        findings: vec![f1.clone(), f2.clone()],
    };
    let ack = s.ingest("agt-a2", &b1, T0 + 10).unwrap();
    assert_eq!((ack.accepted, ack.duplicates, ack.replayed), (2, 0, false));
    let again = s.ingest("agt-a2", &b1, T0 + 11).unwrap();
    assert_eq!(
        (again.accepted, again.duplicates, again.replayed),
        (2, 0, true)
    );
    let f3 = finding(
        "f3",
        "host-a",
        "chatgpt",
        Verdict::Unsanctioned,
        "carol",
        T0 + DAY,
    );
    let b2 = IngestBatch {
        batch_id: "b2".into(),
        findings: vec![f1.clone(), f3.clone(), f3.clone()],
    };
    let ack2 = s.ingest("agt-a2", &b2, T0 + 12).unwrap();
    assert_eq!((ack2.accepted, ack2.duplicates), (1, 2));
    assert_eq!(s.count_findings().unwrap(), 3);
    // another host's data from this agent: refused, nothing stored (not even the batch id)
    let evil = IngestBatch {
        batch_id: "b3".into(),
        findings: vec![
            finding("f9", "host-a", "x", Verdict::Blocked, "a", T0),
            finding("f10", "host-b", "x", Verdict::Blocked, "a", T0),
        ],
    };
    assert!(matches!(
        s.ingest("agt-a2", &evil, T0),
        Err(StoreError::InvalidState { .. })
    ));
    assert_eq!(s.count_findings().unwrap(), 3);
    let ok_b3 = IngestBatch {
        batch_id: "b3".into(),
        findings: vec![],
    };
    assert!(!s.ingest("agt-a2", &ok_b3, T0).unwrap().replayed);
    // a revoked agent cannot write
    assert!(matches!(
        s.ingest("agt-c", &b1, T0),
        Err(StoreError::NotFound { .. })
    ));
    // the same batch id from another host is a different batch
    let fb = finding(
        "f1",
        "host-b",
        "chatgpt",
        Verdict::Blocked,
        "dave",
        T0 + 2 * DAY,
    );
    let ackb = s
        .ingest(
            "agt-b",
            &IngestBatch {
                batch_id: "b1".into(),
                findings: vec![fb],
            },
            T0,
        )
        .unwrap();
    assert_eq!((ackb.accepted, ackb.replayed), (1, false));
    assert_eq!(s.count_findings().unwrap(), 4);

    // search: filters and pagination (newest first)
    let all = FindingQuery::default();
    let (items, next) = s.search(&all, 3, None).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].host_id, "host-b");
    let (rest, next2) = s.search(&all, 3, next).unwrap();
    assert_eq!(rest.len(), 1);
    assert!(next2.is_none());
    assert_eq!(items[0], s.search(&all, 1, None).unwrap().0[0]);
    let q = |f: FindingQuery| {
        s.search(&f, 100, None)
            .unwrap()
            .0
            .into_iter()
            .map(|f| f.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        q(FindingQuery {
            service: Some("claude".into()),
            ..Default::default()
        }),
        vec!["f2"]
    );
    assert_eq!(
        q(FindingQuery {
            verdict: Some(Verdict::Blocked),
            ..Default::default()
        }),
        vec!["f1"]
    );
    assert_eq!(
        q(FindingQuery {
            host: Some("host-a.example".into()),
            user: Some("carol".into()),
            ..Default::default()
        }),
        vec!["f3"]
    );
    assert_eq!(
        q(FindingQuery {
            from_ms: Some(T0 + DAY),
            to_ms: Some(T0 + 2 * DAY),
            ..Default::default()
        }),
        vec!["f3", "f2"]
    );
    assert_eq!(
        q(FindingQuery {
            process: Some("python3".into()),
            container: Some("c0ffee".into()),
            category: Some("chat".into()),
            ..Default::default()
        })
        .len(),
        4
    );
    assert!(
        q(FindingQuery {
            container: Some("other".into()),
            ..Default::default()
        })
        .is_empty()
    );
    let stored = s
        .search(
            &FindingQuery {
                service: Some("claude".into()),
                ..Default::default()
            },
            1,
            None,
        )
        .unwrap()
        .0;
    assert_eq!(stored[0], f2, "a stored finding comes back unchanged");

    // reports
    let rep = s.services_report(&all).unwrap();
    let chat_un = rep
        .iter()
        .find(|r| r.service_id == "chatgpt" && r.verdict == Verdict::Unsanctioned)
        .unwrap();
    assert_eq!(
        (
            chat_un.hosts,
            chat_un.users,
            chat_un.processes,
            chat_un.findings,
            chat_un.events
        ),
        (1, 2, 1, 2, 10)
    );
    assert_eq!(chat_un.first_seen_ms, T0 + 1);
    assert_eq!(rep.len(), 3);
    let trend = s
        .trend(&FindingQuery {
            service: Some("chatgpt".into()),
            ..Default::default()
        })
        .unwrap();
    let days: Vec<(&str, Verdict, u64)> = trend
        .iter()
        .map(|p| (p.day.as_str(), p.verdict, p.events))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2025-11-22", Verdict::Unsanctioned, 5),
            ("2025-11-23", Verdict::Unsanctioned, 5),
            ("2025-11-24", Verdict::Blocked, 5)
        ]
    );

    // proposals: self-approval refused, a second person decides once
    let req = ProposalRequest {
        service_id: "deepseek".into(),
        verdict: Verdict::Blocked,
        scope: PolicyScope::Fleet,
        reason: "residency".into(),
    };
    let p = s.create_proposal("alice", &req, true, T0).unwrap();
    assert_eq!(p.status, ProposalStatus::Pending);
    assert!(s.policy().unwrap().is_empty());
    assert!(matches!(
        s.decide_proposal("alice", p.id, true, None, T0),
        Err(StoreError::SelfApproval { .. })
    ));
    let ok = s
        .decide_proposal("bob", p.id, true, Some("ok"), T0 + 1)
        .unwrap();
    assert_eq!(
        (ok.status, ok.decided_by.as_deref()),
        (ProposalStatus::Approved, Some("bob"))
    );
    assert!(matches!(
        s.decide_proposal("carol", p.id, false, None, T0),
        Err(StoreError::InvalidState { .. })
    ));
    assert!(matches!(
        s.decide_proposal("carol", 12345, false, None, T0),
        Err(StoreError::NotFound { .. })
    ));
    let grp = ProposalRequest {
        service_id: "deepseek".into(),
        verdict: Verdict::Tolerated,
        scope: PolicyScope::Group {
            group: "research".into(),
        },
        reason: String::new(),
    };
    let applied = s.create_proposal("alice", &grp, false, T0 + 2).unwrap();
    assert_eq!(applied.status, ProposalStatus::Applied);
    let pol = s.policy().unwrap();
    assert_eq!(pol.len(), 2);
    assert_eq!(
        pol.iter()
            .find(|e| e.scope == PolicyScope::Fleet)
            .unwrap()
            .verdict,
        Verdict::Blocked
    );
    assert_eq!(
        s.list_proposals(Some(ProposalStatus::Pending))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(s.list_proposals(None).unwrap().len(), 2);

    // bundles and rollouts in rings
    let info = |v: &str| BundleInfo {
        version: v.into(),
        sha256: "00".repeat(32),
        size: 3,
        uploaded_by: "alice".into(),
        uploaded_ms: T0,
        note: String::new(),
    };
    s.put_bundle("alice", &info("1.0.0"), b"one").unwrap();
    s.put_bundle("alice", &info("1.1.0"), b"two").unwrap();
    assert!(matches!(
        s.put_bundle("alice", &info("1.0.0"), b"x"),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.bundle("1.1.0").unwrap().unwrap().1, b"two");
    assert!(s.bundle("9.9.9").unwrap().is_none());
    assert_eq!(s.list_bundles().unwrap().len(), 2);
    assert!(matches!(
        s.create_rollout("alice", "9.9.9", "canary", T0),
        Err(StoreError::NotFound { .. })
    ));
    let r1 = s.create_rollout("alice", "1.0.0", "canary", T0).unwrap();
    assert!(matches!(
        s.create_rollout("alice", "1.1.0", "canary", T0),
        Err(StoreError::InvalidState { .. })
    ));
    s.update_rollout("alice", r1.id, RolloutStage::All, 100, None, T0)
        .unwrap();
    let r2 = s.create_rollout("alice", "1.1.0", "canary", T0).unwrap();
    assert_eq!(r2.previous_version.as_deref(), Some("1.0.0"));
    let ro = s.list_rollouts().unwrap();
    assert_eq!(
        desired_version(&ro, "agt-a2", Some("canary")).as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        desired_version(&ro, "agt-b", None).as_deref(),
        Some("1.0.0")
    );
    let r2b = s
        .update_rollout("alice", r2.id, RolloutStage::Percent, 100 - 1, None, T0)
        .unwrap();
    assert_eq!((r2b.stage, r2b.percent), (RolloutStage::Percent, 99));
    assert!(matches!(
        s.update_rollout("alice", r2.id, RolloutStage::Percent, 50, None, T0),
        Err(StoreError::InvalidState { .. })
    ));
    assert!(matches!(
        s.update_rollout("alice", r1.id, RolloutStage::RolledBack, 0, None, T0),
        Err(StoreError::InvalidState { .. })
    ));
    let back = s
        .update_rollout("alice", r2.id, RolloutStage::RolledBack, 0, Some("bad"), T0)
        .unwrap();
    assert_eq!(back.stage, RolloutStage::RolledBack);
    let ro = s.list_rollouts().unwrap();
    assert_eq!(
        desired_version(&ro, "agt-a2", Some("canary")).as_deref(),
        Some("1.0.0")
    );

    // agent revocation
    let rev = s.revoke_agent("alice", "agt-b", Some("gone"), T0).unwrap();
    assert!(rev.revoked);
    assert!(matches!(
        s.revoke_agent("alice", "agt-b", None, T0),
        Err(StoreError::InvalidState { .. })
    ));
    assert!(matches!(
        s.revoke_agent("alice", "nope", None, T0),
        Err(StoreError::NotFound { .. })
    ));

    // the audit chain covers every admin action above and verifies
    let log = s.audit_entries(0, 1000).unwrap();
    verify(&log).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "token.create",
        "token.revoke",
        "agent.enroll",
        "proposal.create",
        "proposal.approve",
        "proposal.apply",
        "bundle.upload",
        "rollout.create",
        "rollout.advance",
        "rollout.rollback",
        "agent.revoke",
    ] {
        assert!(actions.contains(&a), "audit log lacks {a}: {actions:?}");
    }
    // refused actions left no audit entries (self-approval, conflicts)
    assert_eq!(
        actions.iter().filter(|a| **a == "proposal.approve").count(),
        1
    );
    let page = s.audit_entries(3, 2).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    let appended = s
        .append_audit(
            "system",
            "collector.bootstrap",
            "collector",
            serde_json::json!({}),
            T0,
        )
        .unwrap();
    assert_eq!(appended.seq, log.len() as i64 + 1);
    verify(&s.audit_entries(0, 10_000).unwrap()).unwrap();
}

#[test]
fn pending_policy_proposals_are_bounded_against_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let s = shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap();
    let req = ProposalRequest {
        service_id: "deepseek".into(),
        verdict: Verdict::Blocked,
        scope: PolicyScope::Fleet,
        reason: "flood".into(),
    };
    let bound = shadowai_api::discovery::MAX_PENDING_PROPOSALS;
    for i in 0..bound {
        s.create_proposal("mallory", &req, true, T0 + i as i64)
            .unwrap();
    }
    assert!(matches!(
        s.create_proposal("mallory", &req, true, T0),
        Err(StoreError::InvalidState { .. })
    ));
    let pending = s.list_proposals(Some(ProposalStatus::Pending)).unwrap();
    assert_eq!(pending.len(), bound, "nothing past the bound is stored");
    // What needs no second person is not held up by the waiting ones.
    let tolerate = ProposalRequest {
        verdict: Verdict::Tolerated,
        ..req
    };
    let p = s.create_proposal("alice", &tolerate, false, T0).unwrap();
    assert_eq!(p.status, ProposalStatus::Applied);
}

#[test]
fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = shadowai_collector::store::sqlite::open(&path).unwrap();
    suite(&s);
    drop(s);
    // reopening runs no migration twice and keeps everything
    let s = shadowai_collector::store::sqlite::open(&path).unwrap();
    assert_eq!(s.count_findings().unwrap(), 4);
    // the database refuses to change or delete audit entries
    let c = rusqlite::Connection::open(&path).unwrap();
    let e = c
        .execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    assert!(c.execute("DELETE FROM audit", []).is_err());
}

#[test]
fn postgres_store_passes_the_suite_over_tls() {
    let pg = PgServer::start_tls();
    let conn = pg.create_db("suite");
    let ca = pg.ca.clone().unwrap();
    // The server refuses plain connections; a wrong CA is refused by the client.
    let plain = shadowai_collector::store::postgres::open(&conn, 1, None)
        .err()
        .expect("plain connection must be refused");
    assert!(format!("{plain:?}").contains("pg_hba.conf"), "{plain:?}");
    let other = tempfile::NamedTempFile::new().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(other.path(), ck.cert.pem()).unwrap();
    let wrong = shadowai_collector::store::postgres::open(&conn, 1, Some(other.path()))
        .err()
        .expect("a certificate from another CA must be refused");
    assert!(
        format!("{wrong:?}").contains("InvalidCertificate"),
        "{wrong:?}"
    );
    let s = shadowai_collector::store::postgres::open(&conn, 2, Some(&ca)).unwrap();
    suite(&s);
    drop(s);
    let s = shadowai_collector::store::postgres::open(&conn, 1, Some(&ca)).unwrap();
    assert_eq!(s.count_findings().unwrap(), 4);
    let socket = format!(
        "host={} port={} user=postgres dbname=suite",
        pg.dir.path().display(),
        pg.port
    );
    let mut c = postgres::Client::connect(&socket, postgres::NoTls).unwrap();
    let e = c
        .execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1", &[])
        .unwrap_err();
    assert!(format!("{e:?}").contains("append-only"), "{e:?}");
    assert!(c.execute("DELETE FROM audit", &[]).is_err());
}

/// Two replicas (two stores, separate connection pools) writing to one PostgreSQL database at
/// once keep a single, gapless, verifiable audit chain and never lose or duplicate a finding.
#[test]
fn postgres_replicas_share_one_consistent_store() {
    let pg = PgServer::start();
    let conn = pg.create_db("replicas");
    let a = std::sync::Arc::new(shadowai_collector::store::postgres::open(&conn, 2, None).unwrap());
    let b = std::sync::Arc::new(shadowai_collector::store::postgres::open(&conn, 2, None).unwrap());
    enroll(&*a, "agt-r", "host-r", None);
    let mut threads = Vec::new();
    for (i, s) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        threads.push(std::thread::spawn(move || {
            for n in 0..15 {
                let req = ProposalRequest {
                    service_id: format!("svc-{i}-{n}"),
                    verdict: Verdict::Tolerated,
                    scope: PolicyScope::Fleet,
                    reason: String::new(),
                };
                s.create_proposal(&format!("admin{i}"), &req, false, T0 + n)
                    .unwrap();
                // Every replica retries the same batches: stored once.
                let batch = IngestBatch {
                    batch_id: format!("rb-{n}"),
                    findings: vec![finding(
                        &format!("rf-{n}"),
                        "host-r",
                        "x",
                        Verdict::Blocked,
                        "u",
                        T0,
                    )],
                };
                s.ingest("agt-r", &batch, T0).unwrap();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let log = b.audit_entries(0, 10_000).unwrap();
    verify(&log).unwrap();
    assert_eq!(
        log.iter().filter(|e| e.action == "proposal.apply").count(),
        60
    );
    assert_eq!(a.count_findings().unwrap(), 15);
    assert_eq!(a.list_proposals(None).unwrap().len(), 60);
}
