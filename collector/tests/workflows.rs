//! SOC queries and exports, approvals with the two-person rule, signed bundles in rollout
//! rings with ETags and rollback, and the audit log export (intact and tampered) — all over
//! HTTP through `shadowai_api::client::Client`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{finding, start_server};
use shadowai_api::audit::{AuditFailure, verify};
use shadowai_api::client::BundleFetch;
use shadowai_api::{
    AgentMode, FindingQuery, Heartbeat, IngestBatch, PolicyScope, ProposalRequest, ProposalStatus,
    Role, RolloutRequest, RolloutStage, Verdict,
};
use shadowai_rules::bundle;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_763_769_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soc_search_reports_and_exports() {
    let srv = start_server(false, |_| {}).await;
    let (_, ta) = srv.enroll("host-a", None).await;
    let (_, tb) = srv.enroll("host-b", None).await;
    let mut fa = Vec::new();
    for i in 0..30 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        fa.push(finding(
            &format!("a{i}"),
            "host-a",
            "chatgpt",
            Verdict::Unsanctioned,
            user,
            T0 + (i % 3) * DAY,
        ));
    }
    let mut hostile = finding(
        "b0",
        "host-b",
        "deepseek",
        Verdict::Blocked,
        "=HYPERLINK(\"x\")",
        T0,
    );
    hostile.process.exe = "/opt/a,b/\"q\"".into();
    let fb = vec![
        hostile,
        finding(
            "b1",
            "host-b",
            "deepseek",
            Verdict::Blocked,
            "carol",
            T0 + DAY,
        ),
    ];
    srv.client(Some(&ta))
        .ingest(&IngestBatch {
            batch_id: "1".into(),
            findings: fa,
        })
        .await
        .unwrap();
    srv.client(Some(&tb))
        .ingest(&IngestBatch {
            batch_id: "1".into(),
            findings: fb,
        })
        .await
        .unwrap();

    let viewer = srv.client(Some(&srv.person("vera", Role::Viewer)));
    // paginate everything, 7 at a time, newest first, no duplicates or gaps
    let mut seen = Vec::new();
    let mut q = FindingQuery {
        limit: Some(7),
        ..Default::default()
    };
    loop {
        let page = viewer.findings(&q).await.unwrap();
        seen.extend(page.items.iter().map(|f| f.id.clone()));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 32);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 32);
    assert_eq!(&seen[..2], &["b1", "b0"]);

    let only = |q: FindingQuery| {
        let v = viewer.clone();
        async move {
            v.findings(&FindingQuery {
                limit: Some(1000),
                ..q
            })
            .await
            .unwrap()
            .items
            .len()
        }
    };
    assert_eq!(
        only(FindingQuery {
            verdict: Some(Verdict::Blocked),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        only(FindingQuery {
            user: Some("alice".into()),
            host: Some("host-a".into()),
            ..Default::default()
        })
        .await,
        15
    );
    assert_eq!(
        only(FindingQuery {
            from_ms: Some(T0 + DAY),
            to_ms: Some(T0 + 2 * DAY),
            ..Default::default()
        })
        .await,
        11
    );
    assert_eq!(
        only(FindingQuery {
            service: Some("nothing".into()),
            ..Default::default()
        })
        .await,
        0
    );

    let rep = viewer
        .services_report(&FindingQuery::default())
        .await
        .unwrap();
    let chat = rep.iter().find(|r| r.service_id == "chatgpt").unwrap();
    assert_eq!(
        (chat.hosts, chat.users, chat.findings, chat.events),
        (1, 2, 30, 150)
    );
    let ds = rep.iter().find(|r| r.service_id == "deepseek").unwrap();
    assert_eq!((ds.verdict, ds.hosts, ds.users), (Verdict::Blocked, 1, 2));
    let trend = viewer
        .trend(&FindingQuery {
            service: Some("chatgpt".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let days: Vec<(&str, u64)> = trend.iter().map(|p| (p.day.as_str(), p.events)).collect();
    assert_eq!(
        days,
        vec![("2025-11-22", 50), ("2025-11-23", 50), ("2025-11-24", 50)]
    );

    // exports: analysts may, viewers may not
    assert_eq!(
        viewer
            .export_csv(&FindingQuery::default())
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    let analyst = srv.client(Some(&srv.person("ana", Role::Analyst)));
    let csv = analyst
        .export_csv(&FindingQuery {
            service: Some("deepseek".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("id,host_id,hostname,"));
    let b0 = lines.iter().find(|l| l.starts_with("b0,")).unwrap();
    assert!(
        b0.contains("\"'=HYPERLINK(\"\"x\"\")\""),
        "formula defused and quoted: {b0}"
    );
    assert!(b0.contains("\"/opt/a,b/\"\"q\"\"\""), "{b0}");
    let ocsf = analyst
        .export_ocsf(&FindingQuery {
            verdict: Some(Verdict::Blocked),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ocsf.len(), 2);
    for o in &ocsf {
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["type_uid"], 200401);
        assert_eq!(o["disposition"], "Blocked");
        assert_eq!(o["device"]["uid"], "host-b");
    }
    let agents = viewer.agents().await.unwrap();
    assert_eq!(agents.len(), 2);
}

fn signed_bundle(version: &str, key: &ed25519_dalek::SigningKey, block: Option<&str>) -> Vec<u8> {
    let mut policy = shadowai_rules::Policy::default();
    if let Some(svc) = block {
        policy.rules.push(
            serde_json::from_value(
                serde_json::json!({"id": "block", "verdict": "blocked", "services": [svc]}),
            )
            .unwrap(),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = shadowai_rules::BundleBody {
        format: bundle::FORMAT.to_owned(),
        version: version.to_owned(),
        issued_at: now - 10,
        expires_at: now + 86_400,
        min_agent_version: "0.1.0".to_owned(),
        catalogue: common::catalogue().clone(),
        policy,
    };
    bundle::sign_body(&body, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_bundles_rollouts_and_audit_on_sqlite() {
    approvals_bundles_rollouts_and_audit(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_bundles_rollouts_and_audit_on_postgres() {
    let pg = common::PgServer::start();
    let conn = pg.create_db("workflows");
    approvals_bundles_rollouts_and_audit(Some(conn)).await;
}

async fn approvals_bundles_rollouts_and_audit(postgres: Option<String>) {
    let key = bundle::generate_key().unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let pubkey = keydir.path().join("bundle.pub");
    bundle::write_verifying_key(&pubkey, &key.verifying_key()).unwrap();
    let srv = start_server(false, |c| {
        c.bundle_public_key = Some(pubkey.clone());
        if let Some(url) = postgres {
            c.database = shadowai_collector::config::Database::Postgres {
                url,
                pool: 2,
                ca: None,
            };
        }
    })
    .await;

    let alice = srv.client(Some(&srv.person("alice", Role::Admin)));
    let alice_appr = srv.client(Some(&srv.person("alice", Role::Approver)));
    let bob = srv.client(Some(&srv.person("bob", Role::Approver)));

    // A fleet-wide block is only a proposal; its proposer cannot approve it, even with an
    // approver token of their own.
    let req = ProposalRequest {
        service_id: "deepseek".into(),
        verdict: Verdict::Blocked,
        scope: PolicyScope::Fleet,
        reason: "data residency".into(),
    };
    let p = alice.propose(&req).await.unwrap();
    assert_eq!(p.status, ProposalStatus::Pending);
    let err = alice_appr.approve(p.id, Some("mine")).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("different person"), "{err}");

    // A bundle that blocks it is refused until approved…
    let b1 = signed_bundle("1.0.0", &key, Some("deepseek"));
    let err = alice
        .upload_bundle("1.0.0", None, b1.clone())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // …and a bundle signed by another key, or tampered, is refused outright.
    let other = bundle::generate_key().unwrap();
    assert_eq!(
        alice
            .upload_bundle("1.0.0", None, signed_bundle("1.0.0", &other, None))
            .await
            .unwrap_err()
            .status(),
        Some(400)
    );
    let mut tampered = signed_bundle("1.0.0", &key, None);
    let pos = tampered.windows(5).position(|w| w == b"1.0.0").unwrap();
    tampered[pos] = b'9';
    assert_eq!(
        alice
            .upload_bundle("9.0.0", None, tampered)
            .await
            .unwrap_err()
            .status(),
        Some(400)
    );

    let ok = bob.approve(p.id, Some("agreed")).await.unwrap();
    assert_eq!(
        (ok.status, ok.decided_by.as_deref()),
        (ProposalStatus::Approved, Some("bob"))
    );
    assert_eq!(
        bob.approve(p.id, None).await.unwrap_err().status(),
        Some(409)
    );
    let pol = alice.policy().await.unwrap();
    assert_eq!(pol.len(), 1);
    let info = alice
        .upload_bundle("1.0.0", Some("first"), b1.clone())
        .await
        .unwrap();
    assert_eq!(info.size, b1.len() as u64);
    assert_eq!(
        alice
            .upload_bundle("1.0.0", None, b1.clone())
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    let b2 = signed_bundle("1.1.0", &key, Some("deepseek"));
    alice
        .upload_bundle("1.1.0", None, b2.clone())
        .await
        .unwrap();
    assert_eq!(alice.bundles().await.unwrap().len(), 2);

    // Rings: canary group first, then a percentage, then everyone; ETags; rollback.
    let (_, canary) = srv.enroll("host-c", Some("canary")).await;
    let (_, plain) = srv.enroll("host-p", None).await;
    let canary = srv.client(Some(&canary));
    let plain = srv.client(Some(&plain));
    assert_eq!(
        canary.fetch_bundle(None).await.unwrap(),
        BundleFetch::NoBundle
    );
    let r1 = alice
        .start_rollout(&RolloutRequest {
            bundle_version: "1.0.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    assert_eq!(r1.stage, RolloutStage::Canary);
    let BundleFetch::Bundle {
        bytes,
        etag,
        version,
    } = canary.fetch_bundle(None).await.unwrap()
    else {
        panic!("canary gets the bundle")
    };
    assert_eq!(
        (bytes.as_slice(), version.as_str()),
        (b1.as_slice(), "1.0.0")
    );
    assert_eq!(
        canary.fetch_bundle(Some(&etag)).await.unwrap(),
        BundleFetch::NotModified
    );
    assert_eq!(
        plain.fetch_bundle(None).await.unwrap(),
        BundleFetch::NoBundle
    );
    let hb = Heartbeat {
        agent_version: "0.1.0".into(),
        bundle_version: None,
        mode: AgentMode::Monitor,
        lost_events: 0,
        group: None,
        bundle_error: None,
        pipeline: None,
    };
    assert_eq!(
        canary
            .heartbeat(&hb)
            .await
            .unwrap()
            .desired_bundle_version
            .as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        plain.heartbeat(&hb).await.unwrap().desired_bundle_version,
        None
    );
    assert_eq!(
        alice
            .start_rollout(&RolloutRequest {
                bundle_version: "1.1.0".into(),
                canary_group: "canary".into()
            })
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    let r1 = alice.advance_rollout(r1.id, 50).await.unwrap();
    assert_eq!((r1.stage, r1.percent), (RolloutStage::Percent, 50));
    let r1 = alice.advance_rollout(r1.id, 100).await.unwrap();
    assert_eq!(r1.stage, RolloutStage::All);
    assert!(matches!(
        plain.fetch_bundle(None).await.unwrap(),
        BundleFetch::Bundle { .. }
    ));

    let r2 = alice
        .start_rollout(&RolloutRequest {
            bundle_version: "1.1.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    assert_eq!(r2.previous_version.as_deref(), Some("1.0.0"));
    let BundleFetch::Bundle {
        etag: e2,
        version: v2,
        ..
    } = canary.fetch_bundle(Some(&etag)).await.unwrap()
    else {
        panic!("new bundle for canary")
    };
    assert_eq!(v2, "1.1.0");
    let BundleFetch::Bundle { version: pv, .. } = plain.fetch_bundle(None).await.unwrap() else {
        panic!()
    };
    assert_eq!(pv, "1.0.0");
    // one-command rollback: canaries go back to the stable bundle
    let back = alice
        .rollback_rollout(r2.id, Some("breaks builds"))
        .await
        .unwrap();
    assert_eq!(back.stage, RolloutStage::RolledBack);
    let BundleFetch::Bundle { version: after, .. } = canary.fetch_bundle(Some(&e2)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(after, "1.0.0");

    // Revocation, then the audit log: complete, verifiable offline, and tamper-evident.
    let agents = alice.agents().await.unwrap();
    let victim = agents.iter().find(|a| a.host_id == "host-p").unwrap();
    alice
        .revoke_agent(&victim.agent_id, Some("decommissioned"))
        .await
        .unwrap();
    assert_eq!(
        plain.fetch_bundle(None).await.unwrap_err().status(),
        Some(401)
    );

    let log = alice.audit_export().await.unwrap();
    verify(&log).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "proposal.create",
        "proposal.approve",
        "bundle.upload",
        "rollout.create",
        "rollout.advance",
        "rollout.rollback",
        "agent.revoke",
        "agent.enroll",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let approve = log.iter().find(|e| e.action == "proposal.approve").unwrap();
    assert_eq!(approve.actor, "bob");
    assert_eq!(approve.details["proposed_by"], "alice");
    let page = bob.audit(2, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );

    // Tampering with any entry of the exported file is caught at that entry.
    let text = serde_json::to_string(&log).unwrap();
    let mut forged: Vec<shadowai_api::audit::AuditEntry> = serde_json::from_str(&text).unwrap();
    let k = forged
        .iter()
        .position(|e| e.action == "proposal.approve")
        .unwrap();
    forged[k].actor = "alice".into();
    let err = verify(&forged).unwrap_err();
    assert_eq!(err.index, k);
    assert!(matches!(err.reason, AuditFailure::Hash { .. }));
    let mut cut: Vec<_> =
        serde_json::from_str::<Vec<shadowai_api::audit::AuditEntry>>(&text).unwrap();
    cut.remove(k);
    assert_eq!(verify(&cut).unwrap_err().index, k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_self_generated_certificate() {
    let srv = start_server(true, |_| {}).await;
    assert!(srv.url.starts_with("https://localhost:"));
    let c = srv.client(Some(&srv.admin));
    assert_eq!(c.whoami().await.unwrap().role, Role::Admin);
    // Without the collector's certificate as a root, the connection is refused.
    let untrusting = shadowai_api::client::Client::builder(&srv.url)
        .build()
        .unwrap();
    let err = untrusting.healthz().await.unwrap_err();
    assert!(
        matches!(err, shadowai_api::client::ClientError::Transport { .. }),
        "{err}"
    );
    // Plain HTTP to the TLS port does not get an answer from the API.
    let plain = srv.url.replace("https://localhost", "http://127.0.0.1");
    let r = common::raw().get(format!("{plain}/healthz")).send().await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let mut cfg = shadowai_collector::config::Config::minimal(
        "0.0.0.0:8443".parse().unwrap(),
        "/tmp/x".into(),
    );
    cfg.insecure_http = true;
    let err = cfg.validate("test").unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[test]
fn the_readme_config_example_is_valid() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("README has a toml example") + "```toml\n".len();
    let len = readme[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("collector.toml");
    std::fs::write(&p, &readme[start..start + len]).unwrap();
    let cfg = shadowai_collector::config::Config::load(&p).unwrap();
    assert!(matches!(
        cfg.database,
        shadowai_collector::config::Database::Postgres { .. }
    ));
    assert_eq!(cfg.siem.forwarders.len(), 1);
}
