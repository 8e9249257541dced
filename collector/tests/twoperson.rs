//! The two-person rule over HTTP, against a real collector on SQLite with the repository's
//! catalogue: every bypass of the old rule-pattern check is refused (a block through
//! `[[exceptions]]`, through `jurisdictions` riding along an approved service, by widening a
//! host group, by redefining a service inside the bundle's catalogue, by scoping to a unix
//! group; lifting a block), approver names that differ only in case, spacing, invisible or
//! look-alike characters are one person, proposals are validated against the catalogue, and
//! every refused attempt leaves an audit entry. Also the rest of the flow from approval to
//! the agent: impact before approval, publish, rollout stages, automatic halt.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::start_server;
use shadowai_api::client::Client;
use shadowai_api::{PolicyScope, ProposalRequest, ProposalStatus, Role, Verdict};
use shadowai_rules::bundle;
use shadowai_rules::{BundleBody, Catalogue, Policy};

struct Env {
    srv: common::TestServer,
    key: ed25519_dalek::SigningKey,
    alice: Client,
    bob: Client,
    _keydir: tempfile::TempDir,
}

async fn env() -> Env {
    let key = bundle::generate_key().unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let pubkey = keydir.path().join("bundle.pub");
    bundle::write_verifying_key(&pubkey, &key.verifying_key()).unwrap();
    let srv = start_server(false, |c| c.bundle_public_key = Some(pubkey.clone())).await;
    let alice = srv.client(Some(&srv.person("alice", Role::Admin)));
    let bob = srv.client(Some(&srv.person("bob", Role::Approver)));
    Env {
        srv,
        key,
        alice,
        bob,
        _keydir: keydir,
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn policy(v: serde_json::Value) -> Policy {
    let mut base = serde_json::json!({"mode": "enforce", "default_verdict": "unsanctioned"});
    for (k, x) in v.as_object().unwrap() {
        base[k] = x.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn signed(e: &Env, version: &str, catalogue: &Catalogue, policy: Policy) -> Vec<u8> {
    let body = BundleBody {
        format: bundle::FORMAT.to_owned(),
        version: version.to_owned(),
        issued_at: now_s() - 10,
        expires_at: now_s() + 86_400,
        min_agent_version: "0.1.0".to_owned(),
        catalogue: catalogue.clone(),
        policy,
    };
    bundle::sign_body(&body, &e.key).unwrap()
}

/// Alice proposes, Bob approves.
async fn approved(e: &Env, target: &str, verdict: Verdict, scope: PolicyScope) {
    let p = e
        .alice
        .propose(&ProposalRequest {
            service_id: target.into(),
            verdict,
            scope,
            reason: "tested".into(),
        })
        .await
        .unwrap();
    if p.status == ProposalStatus::Pending {
        e.bob.approve(p.id, Some("ok")).await.unwrap();
    }
}

/// Alice proposes enforcement (`mode:enforce`), Bob approves: from then on bundles in
/// enforce mode may replace monitor ones.
async fn enforce_approved(e: &Env) {
    approved(e, "mode:enforce", Verdict::Blocked, PolicyScope::Fleet).await;
}

/// Rolls `version` out to every agent at once (it becomes the stable bundle).
async fn roll_out_to_all(e: &Env, version: &str) {
    let r = e
        .alice
        .start_rollout(&shadowai_api::RolloutRequest {
            bundle_version: version.into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    e.alice.advance_rollout(r.id, 100).await.unwrap();
}

/// Waits up to `secs` for rollout `id` to be rolled back by the guard; returns the note of
/// the audit entry, which must be the system's.
async fn halted(e: &Env, id: i64, secs: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while e.alice.rollouts().await.unwrap()[0].stage != shadowai_api::RolloutStage::RolledBack {
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout was not halted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = e.alice.audit_export().await.unwrap();
    let halt = log
        .iter()
        .find(|x| x.action == "rollout.rollback" && x.target == format!("rollout:{id}"))
        .unwrap();
    assert_eq!(halt.actor, "system");
    halt.details["note"].as_str().unwrap().to_owned()
}

/// Uploads `policy` as `version`; returns the refusal message (403) if refused.
async fn upload(e: &Env, version: &str, policy: Policy) -> Result<(), String> {
    let b = signed(e, version, common::catalogue(), policy);
    match e.alice.upload_bundle(version, None, b).await {
        Ok(_) => Ok(()),
        Err(err) => {
            assert_eq!(err.status(), Some(403), "{err}");
            Err(err.to_string())
        }
    }
}

fn block_deepseek() -> Policy {
    policy(serde_json::json!({"rules": [
        {"id": "r", "verdict": "blocked", "services": ["deepseek"]}]}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_known_bypass_is_refused_and_audited() {
    let e = env().await;
    enforce_approved(&e).await;
    approved(&e, "deepseek", Verdict::Blocked, PolicyScope::Fleet).await;
    approved(
        &e,
        "openai-api",
        Verdict::Blocked,
        PolicyScope::Group {
            group: "lab".into(),
        },
    )
    .await;

    // 1. a block through [[exceptions]] of a service nobody approved
    let exc = policy(serde_json::json!({"exceptions": [
        {"id": "x", "verdict": "blocked", "services": ["anthropic-claude"], "reason": "r",
         "approver": "bob", "expires_at": now_s() + 3600}]}));
    let m = upload(&e, "1.0.0", exc).await.unwrap_err();
    assert!(m.contains("`anthropic-claude` becomes blocked"), "{m}");

    // 2. jurisdictions riding along an approved service
    let juris = policy(serde_json::json!({"rules": [
        {"id": "r", "verdict": "blocked", "services": ["deepseek"], "jurisdictions": ["FR"]}]}));
    let m = upload(&e, "1.0.0", juris).await.unwrap_err();
    assert!(m.contains("becomes blocked"), "{m}");

    // 3. a host group widened to take in every laptop
    let wide = policy(serde_json::json!({
        "host_groups": {"lab": ["lab", "laptop"]},
        "rules": [{"id": "r", "verdict": "blocked", "services": ["openai-api"], "host_groups": ["lab"]}]}));
    let m = upload(&e, "1.0.0", wide).await.unwrap_err();
    assert!(m.contains("hosts tagged laptop"), "{m}");

    // 4. an approved service redefined inside the bundle's own catalogue
    let mut evil = common::catalogue().clone();
    let i = evil
        .services
        .iter()
        .position(|s| s.id == "deepseek")
        .unwrap();
    evil.services[i].domains.push("example.org".into());
    let b = signed(&e, "1.0.0", &evil, block_deepseek());
    let err = e.alice.upload_bundle("1.0.0", None, b).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().contains("service `deepseek`"), "{err}");

    // 5. a unix group everyone is in, for a service approved only for the lab
    let ug = policy(serde_json::json!({"rules": [
        {"id": "r", "verdict": "blocked", "services": ["openai-api"], "unix_groups": ["users"]}]}));
    let m = upload(&e, "1.0.0", ug).await.unwrap_err();
    assert!(m.contains("unix groups users"), "{m}");

    // What was approved goes through, exactly.
    let honest = policy(serde_json::json!({
        "host_groups": {"lab": ["lab"]},
        "rules": [
            {"id": "d", "verdict": "blocked", "services": ["deepseek"]},
            {"id": "o", "verdict": "blocked", "services": ["openai-api"], "host_groups": ["lab"]}]}));
    upload(&e, "1.0.0", honest).await.unwrap();
    roll_out_to_all(&e, "1.0.0").await;

    // 6. lifting the block needs a second person too: the proposal waits for approval…
    let m = upload(&e, "1.1.0", policy(serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(m.contains("`deepseek` stops being blocked"), "{m}");
    let lift = e
        .alice
        .propose(&ProposalRequest {
            service_id: "deepseek".into(),
            verdict: Verdict::Unsanctioned,
            scope: PolicyScope::Fleet,
            reason: "contract signed".into(),
        })
        .await
        .unwrap();
    assert_eq!(lift.status, ProposalStatus::Pending);
    let m = upload(&e, "1.1.0", policy(serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(m.contains("stops being blocked"), "{m}");
    e.bob.approve(lift.id, None).await.unwrap();
    // …the lab block on openai-api is still in force, so only deepseek may go.
    let m = upload(&e, "1.1.0", policy(serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(m.contains("`openai-api` stops being blocked"), "{m}");
    let keep_lab = policy(serde_json::json!({
        "host_groups": {"lab": ["lab"]},
        "rules": [{"id": "o", "verdict": "blocked", "services": ["openai-api"], "host_groups": ["lab"]}]}));
    upload(&e, "1.1.0", keep_lab).await.unwrap();

    // Every refusal is in the audit log, with its reason, and the chain still verifies.
    let log = e.alice.audit_export().await.unwrap();
    shadowai_api::audit::verify(&log).unwrap();
    let refused: Vec<_> = log
        .iter()
        .filter(|x| x.action == "bundle.refused")
        .collect();
    assert_eq!(refused.len(), 8, "{refused:?}");
    assert!(refused.iter().all(|x| x.actor == "alice"));
    assert!(
        refused[0].details["reason"]
            .as_str()
            .unwrap()
            .contains("anthropic-claude")
    );
    drop(e.srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_under_many_spellings_cannot_approve_their_own_proposal() {
    let e = env().await;
    let p = e
        .alice
        .propose(&ProposalRequest {
            service_id: "kimi".into(),
            verdict: Verdict::Blocked,
            scope: PolicyScope::Fleet,
            reason: "data residency".into(),
        })
        .await
        .unwrap();
    for name in [
        "Alice",
        "alice ",
        "a\u{200b}lice",
        "\u{0430}lice",
        "ＡＬＩＣＥ",
    ] {
        let other = e.srv.client(Some(&e.srv.person(name, Role::Approver)));
        let err = other.approve(p.id, None).await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{name:?}: {err}");
        assert!(err.to_string().contains("different person"), "{err}");
    }
    let log = e.alice.audit_export().await.unwrap();
    let refused = log
        .iter()
        .filter(|x| x.action == "proposal.approve.refused")
        .count();
    assert_eq!(refused, 5);
    // A bundle blocking it is refused while the proposal waits; Bob's approval lets it in.
    let b = policy(serde_json::json!({"rules": [
        {"id": "r", "verdict": "blocked", "services": ["kimi"]}]}));
    assert!(upload(&e, "1.0.0", b.clone()).await.is_err());
    e.bob.approve(p.id, None).await.unwrap();
    enforce_approved(&e).await;
    upload(&e, "1.0.0", b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_proposes_and_every_analyst_decision_waits_for_a_second_person() {
    let e = env().await;
    let ana = e.srv.client(Some(&e.srv.person("ana", Role::Analyst)));
    let propose = |service: &str, verdict| ProposalRequest {
        service_id: service.into(),
        verdict,
        scope: PolicyScope::Fleet,
        reason: "seen in the weekly report".into(),
    };
    // A block, as the demo's analyst does, and a verdict an admin would set at once.
    let block = ana
        .propose(&propose("deepseek", Verdict::Blocked))
        .await
        .unwrap();
    assert_eq!(block.status, ProposalStatus::Pending);
    let tolerate = ana
        .propose(&propose("kimi", Verdict::Tolerated))
        .await
        .unwrap();
    assert_eq!(
        tolerate.status,
        ProposalStatus::Pending,
        "an analyst changes no verdict alone"
    );
    let by_admin = e
        .alice
        .propose(&propose("ai21", Verdict::Tolerated))
        .await
        .unwrap();
    assert_eq!(by_admin.status, ProposalStatus::Applied);
    // The analyst cannot approve, neither their own nor anyone's.
    let err = ana.approve(block.id, None).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // Neither can a viewer propose.
    let viewer = e.srv.client(Some(&e.srv.person("vic", Role::Viewer)));
    let err = viewer
        .propose(&propose("kimi", Verdict::Blocked))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // A second person approves: the block is in force, and the bundle making it passes.
    let done = e.bob.approve(block.id, Some("agreed")).await.unwrap();
    assert_eq!(done.status, ProposalStatus::Approved);
    enforce_approved(&e).await;
    upload(&e, "1.0.0", block_deepseek()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_are_checked_against_the_catalogue() {
    let e = env().await;
    let req = |target: &str, reason: &str| ProposalRequest {
        service_id: target.into(),
        verdict: Verdict::Tolerated,
        scope: PolicyScope::Fleet,
        reason: reason.into(),
    };
    for (target, reason, needle) in [
        ("no-such-service", "x", "unknown service"),
        ("category:nonsense", "x", "is not a service id"),
        (
            "jurisdiction:XQ",
            "x",
            "no catalogue service is in jurisdiction",
        ),
        ("deepseek", "   ", "reason: required"),
    ] {
        let err = e.alice.propose(&req(target, reason)).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{target}: {err}");
        assert!(err.to_string().contains(needle), "{target}: {err}");
    }
    for ok in [
        "deepseek",
        "category:chat_assistant",
        "jurisdiction:CN",
        "*",
    ] {
        let p = e.alice.propose(&req(ok, "fine")).await.unwrap();
        assert_eq!(p.status, ProposalStatus::Applied, "{ok}");
    }
}

/// What `shadowai rules publish` does, step by step through the typed client: the policy
/// in force comes from the collector (no hand-written TOML), is compiled with the
/// collector's catalogue, signed with the publisher's key, uploaded, rolled out to a canary
/// group — and the canary agent receives a bundle that verifies and blocks the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_approval_to_the_agent_in_one_flow() {
    use shadowai_api::RolloutRequest;
    use shadowai_api::client::BundleFetch;
    use shadowai_rules::{Engine, Mode, Query};

    let e = env().await;
    approved(&e, "kimi", Verdict::Blocked, PolicyScope::Fleet).await;
    // a non-block decision applies at once and is part of the policy too
    approved(
        &e,
        "category:ai_search",
        Verdict::Tolerated,
        PolicyScope::Fleet,
    )
    .await;
    approved(
        &e,
        "perplexity",
        Verdict::Sanctioned,
        PolicyScope::Group {
            group: "research".into(),
        },
    )
    .await;

    // the mode is never guessed
    let r = common::raw()
        .get(format!("{}/api/v1/policy/document", e.srv.url))
        .bearer_auth(&e.srv.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let doc = e.alice.policy_document(Mode::Enforce).await.unwrap();
    let ids: Vec<&str> = doc.policy.rules.iter().map(|r| r.id.as_str()).collect();
    // service decisions first (group before fleet), then the category
    assert_eq!(ids, ["proposal-3", "proposal-1", "proposal-2"], "{doc:?}");
    assert_eq!(doc.proposals, [1, 2, 3]);
    enforce_approved(&e).await;
    let cat = e.alice.catalogue().await.unwrap();
    assert_eq!(&cat, common::catalogue());

    let opts = bundle::CompileOptions {
        version: semver::Version::new(1, 0, 0),
        issued_at: now_s() - 10,
        expires_at: now_s() + 86_400,
        min_agent_version: semver::Version::new(0, 1, 0),
    };
    let body = bundle::compile(&cat, &doc.policy, &opts).unwrap();
    let signed = bundle::sign_body(&body, &e.key).unwrap();
    e.alice
        .upload_bundle("1.0.0", Some("publish"), signed.clone())
        .await
        .unwrap();
    let r = e
        .alice
        .start_rollout(&RolloutRequest {
            bundle_version: "1.0.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    // Nobody is in the canary group yet: the collector says so.
    let st = e.alice.rollout_agents(r.id).await.unwrap();
    assert_eq!(st.canary.agents, 0);
    assert!(st.warnings[0].contains("has no agents"), "{st:?}");
    let (_, token) = e.srv.enroll("host-c", Some("canary")).await;
    e.srv.enroll("host-d", None).await;
    let st = e.alice.rollout_agents(r.id).await.unwrap();
    assert_eq!(
        (st.canary.agents, st.canary.silent, st.rest.agents),
        (1, 1, 1)
    );
    assert!(
        st.warnings[0].contains("1 of 1 canary agents sent no heartbeat"),
        "{st:?}"
    );
    e.srv
        .client(Some(&token))
        .heartbeat(&shadowai_api::Heartbeat {
            agent_version: "0.1.0".into(),
            bundle_version: Some("1.0.0".into()),
            mode: shadowai_api::AgentMode::Enforce,
            lost_events: 0,
            group: Some("canary".into()),
            bundle_error: None,
            pipeline: None,
        })
        .await
        .unwrap();
    let st = e.alice.rollout_agents(r.id).await.unwrap();
    assert_eq!((st.canary.on_version, st.canary.silent), (1, 0));
    assert!(st.warnings.is_empty(), "{st:?}");
    // Widening needs an explicit percentage: there is no default of 100 %.
    let resp = common::raw()
        .post(format!("{}/api/v1/rollouts/{}/advance", e.srv.url, r.id))
        .bearer_auth(&e.srv.admin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let BundleFetch::Bundle { bytes, .. } =
        e.srv.client(Some(&token)).fetch_bundle(None).await.unwrap()
    else {
        panic!("the canary agent gets the bundle")
    };
    assert_eq!(bytes, signed);
    let v = bundle::verify(
        &bytes,
        &e.key.verifying_key(),
        &bundle::VerifyOptions {
            now: now_s(),
            in_use: None,
            agent_version: None,
        },
    )
    .unwrap();
    let engine = Engine::from_bundle(&v).unwrap();
    let ask = |name: &'static str, tags: &'static [&'static str]| {
        let d = engine
            .classify(&Query {
                name: Some(name),
                host_tags: tags,
                ..Query::default()
            })
            .unwrap();
        (d.verdict, d.enforce())
    };
    assert_eq!(ask("www.kimi.com", &["canary"]), (Verdict::Blocked, true));
    assert_eq!(
        ask("perplexity.ai", &["canary"]),
        (Verdict::Tolerated, false)
    );
    assert_eq!(
        ask("perplexity.ai", &["research"]),
        (Verdict::Sanctioned, false)
    );
}

/// Before approving, an approver sees which services change verdict for whom, and from
/// recent findings which hosts, users and processes use them — only within the proposal's
/// group when it has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_shows_its_impact_before_approval() {
    use shadowai_api::IngestBatch;

    let e = env().await;
    let (_, lab) = e.srv.enroll("host-a", Some("lab")).await;
    let (_, other) = e.srv.enroll("host-b", None).await;
    let now = now_s() * 1000;
    for (token, host, user) in [(&lab, "host-a", "alice"), (&other, "host-b", "bob")] {
        let mut f = common::finding(
            "f1",
            host,
            "deepseek",
            Verdict::Unsanctioned,
            user,
            now - 3_600_000,
        );
        if host == "host-b" {
            f.process.exe = "/usr/bin/curl".into();
        }
        e.srv
            .client(Some(token))
            .ingest(&IngestBatch {
                batch_id: "b1".into(),
                findings: vec![f],
            })
            .await
            .unwrap();
    }
    let p = e
        .alice
        .propose(&ProposalRequest {
            service_id: "deepseek".into(),
            verdict: Verdict::Blocked,
            scope: PolicyScope::Group {
                group: "lab".into(),
            },
            reason: "lab data must not leave".into(),
        })
        .await
        .unwrap();
    let bob_view = e.bob.proposal_impact(p.id).await.unwrap();
    assert_eq!(bob_view.proposal, p.id);
    let ch: Vec<(&str, &str, Option<Verdict>, Option<Verdict>)> = bob_view
        .changes
        .iter()
        .map(|c| (c.service_id.as_str(), c.who.as_str(), c.old, c.new))
        .collect();
    assert_eq!(
        ch,
        [(
            "deepseek",
            "host tag lab",
            Some(Verdict::Unsanctioned),
            Some(Verdict::Blocked)
        )],
        "{bob_view:?}"
    );
    assert_eq!(bob_view.affected.len(), 1);
    let a = &bob_view.affected[0];
    assert_eq!(a.hosts, ["host-a.example"]);
    assert_eq!(a.users, ["alice"]);
    assert_eq!(a.processes, ["/usr/bin/python3"]);
    // A runtime the catalogue ties to a service (Ollama listening on host-a) is affected by
    // a decision on that service: its finding (`runtime:ollama`) is counted under it.
    let mut listener = common::finding(
        "f2",
        "host-a",
        "runtime:ollama",
        Verdict::Tolerated,
        "ollama",
        now - 60_000,
    );
    listener.category = "self_hosted_runtime".into();
    listener.process.exe = "/usr/local/bin/ollama".into();
    e.srv
        .client(Some(&lab))
        .ingest(&IngestBatch {
            batch_id: "b2".into(),
            findings: vec![listener],
        })
        .await
        .unwrap();
    let r = e
        .alice
        .propose(&ProposalRequest {
            service_id: "ollama".into(),
            verdict: Verdict::Blocked,
            scope: PolicyScope::Fleet,
            reason: "no unreviewed local models".into(),
        })
        .await
        .unwrap();
    let view = e.bob.proposal_impact(r.id).await.unwrap();
    let o = view
        .affected
        .iter()
        .find(|a| a.service_id == "ollama")
        .unwrap_or_else(|| panic!("the runtime's finding is not counted: {view:?}"));
    assert_eq!(
        (o.findings, o.users.as_slice(), o.processes.as_slice()),
        (
            1,
            &["ollama".to_string()][..],
            &["/usr/local/bin/ollama".to_string()][..]
        )
    );
    // a fleet-wide proposal reaches both hosts
    let q = e
        .alice
        .propose(&ProposalRequest {
            service_id: "jurisdiction:CN".into(),
            verdict: Verdict::Blocked,
            scope: PolicyScope::Fleet,
            reason: "residency".into(),
        })
        .await
        .unwrap();
    let fleet = e.bob.proposal_impact(q.id).await.unwrap();
    assert!(fleet.changes.len() > 10, "every CN service changes");
    let d = fleet
        .affected
        .iter()
        .find(|a| a.service_id == "deepseek")
        .unwrap();
    assert_eq!(d.hosts, ["host-a.example", "host-b.example"]);
    assert_eq!(
        e.bob.proposal_impact(999).await.unwrap_err().status(),
        Some(404)
    );
}

/// A canary agent that heartbeats during a rollout and then goes silent halts the rollout
/// by itself (audited as `system`); a canary host that was already dead before it started
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_halts_when_canary_agents_go_silent() {
    use shadowai_api::{AgentMode, Heartbeat, RolloutRequest, RolloutStage};

    let key = bundle::generate_key().unwrap();
    let srv = start_server(false, |c| c.rollout_halt_silent_secs = 1).await;
    let alice = srv.client(Some(&srv.person("alice", Role::Admin)));
    let (_, dead) = srv.enroll("host-dead", Some("canary")).await;
    let hb = Heartbeat {
        agent_version: "0.1.0".into(),
        bundle_version: None,
        mode: AgentMode::Monitor,
        lost_events: 0,
        group: Some("canary".into()),
        bundle_error: None,
        pipeline: None,
    };
    srv.client(Some(&dead)).heartbeat(&hb).await.unwrap();
    let bob = srv.client(Some(&srv.person("bob", Role::Approver)));
    let e = Env {
        srv,
        key,
        alice,
        bob,
        _keydir: tempfile::tempdir().unwrap(),
    };
    let b = signed(&e, "1.0.0", common::catalogue(), Policy::default());
    e.alice.upload_bundle("1.0.0", None, b).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = e
        .alice
        .start_rollout(&RolloutRequest {
            bundle_version: "1.0.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    let stage = |e: &Env| {
        let c = e.alice.clone();
        async move { c.rollouts().await.unwrap()[0].stage }
    };
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        stage(&e).await,
        RolloutStage::Canary,
        "a host dead before the rollout does not halt it"
    );
    let (_, live) = e.srv.enroll("host-c", Some("canary")).await;
    e.srv.client(Some(&live)).heartbeat(&hb).await.unwrap();
    let note = halted(&e, r.id, 10).await;
    assert!(
        note.contains("host-c.example") && !note.contains("host-dead"),
        "{note}"
    );
}

/// Switching monitor ⇄ enforce is a decision of its own (`mode:enforce` / `mode:monitor`,
/// fleet-wide, approved by a second person), and the baseline of the rule is what agents
/// run — the stable bundle and a rollout in progress — checked again when a rollout
/// starts: a bundle uploaded earlier cannot go out once the decisions behind it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_switches_need_a_second_person_and_the_baseline_is_what_agents_run() {
    let e = env().await;
    let mode_req = |target: &str, verdict, scope| ProposalRequest {
        service_id: target.into(),
        verdict,
        scope,
        reason: "go live".into(),
    };
    for (verdict, scope, needle) in [
        (
            Verdict::Tolerated,
            PolicyScope::Fleet,
            "its verdict is `blocked`",
        ),
        (
            Verdict::Blocked,
            PolicyScope::Group {
                group: "lab".into(),
            },
            "fleet-wide",
        ),
    ] {
        let err = e
            .alice
            .propose(&mode_req("mode:enforce", verdict, scope))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    approved(&e, "deepseek", Verdict::Blocked, PolicyScope::Fleet).await;
    let m = upload(&e, "1.0.0", block_deepseek()).await.unwrap_err();
    assert!(m.contains("mode changes from monitor to enforce"), "{m}");
    assert!(m.contains("propose `mode:enforce`"), "{m}");
    let p = e
        .alice
        .propose(&mode_req(
            "mode:enforce",
            Verdict::Blocked,
            PolicyScope::Fleet,
        ))
        .await
        .unwrap();
    assert_eq!(
        p.status,
        ProposalStatus::Pending,
        "a mode decision waits for a second person"
    );
    let err = e.alice.approve(p.id, None).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    e.bob.approve(p.id, None).await.unwrap();
    upload(&e, "1.0.0", block_deepseek()).await.unwrap();
    roll_out_to_all(&e, "1.0.0").await;
    // back to monitor lifts every block at once: a second person again
    let mut monitor = block_deepseek();
    monitor.mode = shadowai_rules::Mode::Monitor;
    let m = upload(&e, "1.1.0", monitor.clone()).await.unwrap_err();
    assert!(m.contains("from enforce to monitor"), "{m}");

    // Kimi's block is approved and uploaded as 2.0.0, but not rolled out…
    approved(&e, "kimi", Verdict::Blocked, PolicyScope::Fleet).await;
    let both = policy(serde_json::json!({"rules": [
        {"id": "d", "verdict": "blocked", "services": ["deepseek"]},
        {"id": "k", "verdict": "blocked", "services": ["kimi"]}]}));
    upload(&e, "2.0.0", both).await.unwrap();
    // …so a bundle without it lifts nothing any agent has: no approval needed for kimi.
    upload(&e, "1.2.0", block_deepseek()).await.unwrap();
    roll_out_to_all(&e, "1.2.0").await;
    // The decision on kimi changes (a second person approves tolerating it); 2.0.0 was
    // accepted at upload, but rolling it out now would block kimi without an approval.
    let lift = e
        .alice
        .propose(&mode_req("kimi", Verdict::Tolerated, PolicyScope::Fleet))
        .await
        .unwrap();
    assert_eq!(lift.status, ProposalStatus::Pending);
    e.bob.approve(lift.id, None).await.unwrap();
    let err = e
        .alice
        .start_rollout(&shadowai_api::RolloutRequest {
            bundle_version: "2.0.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("`kimi` becomes blocked"), "{err}");
    let log = e.alice.audit_export().await.unwrap();
    assert!(
        log.iter()
            .any(|x| x.action == "rollout.refused" && x.target == "bundle:2.0.0"),
        "the refused rollout is audited"
    );
    assert!(
        e.alice
            .rollouts()
            .await
            .unwrap()
            .iter()
            .all(|r| r.bundle_version != "2.0.0")
    );
    // the mode approval in force is the newest: proposing monitor and approving it lets a
    // monitor bundle in
    approved(&e, "mode:monitor", Verdict::Blocked, PolicyScope::Fleet).await;
    upload(&e, "1.3.0", monitor.clone()).await.unwrap();
    drop(e.srv);
}

/// An agent that refuses the bundle of a rollout in progress says so in its heartbeat; the
/// rollout halts by itself (audited as `system`, with the host and the agent's reason) even
/// with the silence check off. A refusal of another version does not halt it; the fleet
/// view shows what each agent refused; oversized reports are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_halts_when_its_agents_refuse_the_bundle() {
    use shadowai_api::{AgentMode, BundleRefused, Heartbeat, RolloutRequest, RolloutStage};

    let key = bundle::generate_key().unwrap();
    let srv = start_server(false, |c| c.rollout_halt_silent_secs = 0).await;
    let alice = srv.client(Some(&srv.person("alice", Role::Admin)));
    let bob = srv.client(Some(&srv.person("bob", Role::Approver)));
    let e = Env {
        srv,
        key,
        alice,
        bob,
        _keydir: tempfile::tempdir().unwrap(),
    };
    let (_, canary) = e.srv.enroll("host-c", Some("canary")).await;
    let agent = e.srv.client(Some(&canary));
    let hb = |err: Option<BundleRefused>| Heartbeat {
        agent_version: "0.1.0".into(),
        bundle_version: None,
        mode: AgentMode::Monitor,
        lost_events: 0,
        group: Some("canary".into()),
        bundle_error: err,
        pipeline: None,
    };
    let b = signed(&e, "1.0.0", common::catalogue(), Policy::default());
    e.alice.upload_bundle("1.0.0", None, b).await.unwrap();
    let r = e
        .alice
        .start_rollout(&RolloutRequest {
            bundle_version: "1.0.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    let long = BundleRefused {
        version: "1.0.0".into(),
        reason: "x".repeat(4 * BundleRefused::MAX_REASON + 1),
    };
    let err = agent.heartbeat(&hb(Some(long))).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("bundle_error.reason"), "{err}");
    let cut = BundleRefused::new("1.0.0", &format!("line\n{}", "y".repeat(900)));
    assert_eq!(cut.reason.chars().count(), BundleRefused::MAX_REASON);
    assert!(!cut.reason.contains('\n') && cut.reason.ends_with('…'));
    // another version's refusal (an older bundle) does not halt this rollout
    agent
        .heartbeat(&hb(Some(BundleRefused::new("0.9.0", "expired"))))
        .await
        .unwrap();
    let stage = || {
        let c = e.alice.clone();
        async move { c.rollouts().await.unwrap()[0].stage }
    };
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    assert_eq!(stage().await, RolloutStage::Canary);
    let reason = "bundle signed by key 0123abcd, trusted: 89ab4567";
    agent
        .heartbeat(&hb(Some(BundleRefused::new("1.0.0", reason))))
        .await
        .unwrap();
    let agents = e.alice.agents().await.unwrap();
    assert_eq!(
        agents[0].bundle_error.as_ref().map(|x| x.reason.as_str()),
        Some(reason)
    );
    let note = halted(&e, r.id, 15).await;
    assert!(
        note.contains("refused bundle 1.0.0") && note.contains("host-c.example"),
        "{note}"
    );
    assert!(note.contains(reason), "{note}");
    // a bundle that loads clears the report
    agent.heartbeat(&hb(None)).await.unwrap();
    assert_eq!(e.alice.agents().await.unwrap()[0].bundle_error, None);
}

/// What the web UI does (`ui/publish.js`): compose on the collector, sign `context || body`
/// with the admin's key where the admin is (here: in the test, as the browser does with
/// WebCrypto), upload the envelope built around the body verbatim. The collector verifies it
/// and applies the two-person rule like any upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_composed_by_the_collector_and_signed_elsewhere_is_verified_and_checked() {
    use ed25519_dalek::Signer;
    use sha2::Digest;

    let e = env().await;
    let carol = e.srv.person("carol", Role::Admin);
    let http = reqwest::Client::new();
    let compose = |body: serde_json::Value| {
        http.post(format!("{}/api/v1/policy/compose", e.srv.url))
            .bearer_auth(&carol)
            .json(&body)
            .send()
    };
    let browser_sign = |c: &serde_json::Value| {
        let body = c["body"].as_str().unwrap();
        let mut msg = hex::decode(c["context_hex"].as_str().unwrap()).unwrap();
        msg.extend_from_slice(body.as_bytes());
        let sig = hex::encode(e.key.sign(&msg).to_bytes());
        let pubkey = e.key.verifying_key();
        let key_id = hex::encode(&sha2::Sha256::digest(pubkey.as_bytes())[..8]);
        format!("{{\"body\":{body},\"key_id\":\"{key_id}\",\"signature\":\"{sig}\"}}\n")
    };
    let upload = |version: String, envelope: String| {
        http.post(format!(
            "{}/api/v1/bundles?version={version}&note=web%20UI",
            e.srv.url
        ))
        .bearer_auth(&carol)
        .header("content-type", "application/octet-stream")
        .body(envelope)
        .send()
    };

    // The mode is never defaulted; bad values are named.
    for (body, want) in [
        (serde_json::json!({"valid_days": 30}), "mode"),
        (
            serde_json::json!({"mode": "block", "valid_days": 30}),
            "is not enforce or monitor",
        ),
        (
            serde_json::json!({"mode": "enforce", "valid_days": 0}),
            "valid_days",
        ),
        (
            serde_json::json!({"mode": "enforce", "valid_days": 30, "version": "one"}),
            "is not a semver version",
        ),
    ] {
        let r = compose(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(want), "{body}: {text}");
    }

    // Before anyone approved enforcement, the signed bundle is refused on upload.
    let c: serde_json::Value = compose(serde_json::json!({"mode": "enforce", "valid_days": 30}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["version"], "1.0.0");
    let r = upload("1.0.0".into(), browser_sign(&c)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text().await.unwrap().contains("second person"),
        "the two-person rule applies"
    );

    // Approved by a second person: the same path is accepted, and its content is the policy.
    approved(&e, "deepseek-api", Verdict::Blocked, PolicyScope::Fleet).await;
    enforce_approved(&e).await;
    let c: serde_json::Value = compose(serde_json::json!({"mode": "enforce", "valid_days": 30}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(c["rules"].as_u64().unwrap() >= 1, "{c}");
    let r = upload(c["version"].as_str().unwrap().into(), browser_sign(&c))
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let stored = e.alice.bundle_file("1.0.0").await.unwrap();
    let pubkey = e.key.verifying_key();
    let verified = bundle::verify(
        &stored,
        &pubkey,
        &bundle::VerifyOptions {
            now: now_s(),
            in_use: None,
            agent_version: None,
        },
    )
    .unwrap();
    assert!(
        verified
            .body
            .policy
            .rules
            .iter()
            .any(|r| r.services.iter().any(|s| s == "deepseek-api")),
        "the composed policy blocks deepseek-api"
    );

    // An envelope naming a key the collector does not trust is refused.
    let other = bundle::generate_key().unwrap();
    let forged = browser_sign(&c).replace(
        &hex::encode(&sha2::Sha256::digest(pubkey.as_bytes())[..8]),
        &bundle::key_id(&other.verifying_key()),
    );
    let r = upload("1.1.0".into(), forged).await.unwrap();
    let status = r.status();
    assert!(
        status.is_client_error(),
        "{status}: {}",
        r.text().await.unwrap()
    );
}

/// `POST /api/v1/rollouts/{id}/rollback/compose` (what the web UI's "Roll back" signs):
/// admin only, 404 for an unknown rollout, 409 when the rollout replaced nothing; otherwise
/// the replaced bundle's content under a higher version with fresh dates. Uploading it is
/// checked by the two-person rule again: while the bad rollout still runs, lifting its block
/// is refused; once it is stopped, the content agents ran before goes back out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_composed_from_the_replaced_bundle_and_checked_again() {
    use ed25519_dalek::Signer;

    let e = env().await;
    let http = reqwest::Client::new();
    let alice = e.srv.person("alice2", Role::Admin);
    let bob = e.srv.person("bob2", Role::Approver);
    let compose = |id: i64, token: &str, days: u32| {
        http.post(format!(
            "{}/api/v1/rollouts/{id}/rollback/compose",
            e.srv.url
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({ "valid_days": days }))
        .send()
    };
    let sign = |c: &serde_json::Value| {
        let body = c["body"].as_str().unwrap();
        let mut msg = hex::decode(c["context_hex"].as_str().unwrap()).unwrap();
        msg.extend_from_slice(body.as_bytes());
        let sig = hex::encode(e.key.sign(&msg).to_bytes());
        let key_id = bundle::key_id(&e.key.verifying_key());
        format!("{{\"body\":{body},\"key_id\":\"{key_id}\",\"signature\":\"{sig}\"}}\n")
            .into_bytes()
    };

    let r = compose(999_999, &alice, 30).await.unwrap();
    assert_eq!(r.status(), 404, "unknown rollout");
    assert!(r.text().await.unwrap().contains("rollout 999999 not found"));

    enforce_approved(&e).await;
    e.alice
        .upload_bundle(
            "1.0.0",
            None,
            signed(
                &e,
                "1.0.0",
                common::catalogue(),
                policy(serde_json::json!({})),
            ),
        )
        .await
        .unwrap();
    let first = e
        .alice
        .start_rollout(&shadowai_api::RolloutRequest {
            bundle_version: "1.0.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    let r = compose(first.id, &alice, 30).await.unwrap();
    assert_eq!(r.status(), 409, "nothing replaced: nothing to return to");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("replaced no earlier bundle"),
        "the refusal says why"
    );
    e.alice.advance_rollout(first.id, 100).await.unwrap();

    approved(&e, "deepseek", Verdict::Blocked, PolicyScope::Fleet).await;
    upload(&e, "1.1.0", block_deepseek()).await.unwrap();
    let bad = e
        .alice
        .start_rollout(&shadowai_api::RolloutRequest {
            bundle_version: "1.1.0".into(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    assert_eq!(bad.previous_version.as_deref(), Some("1.0.0"));

    // Wrong role: refused before the body is read (an unparsable body still gets 403).
    let r = compose(bad.id, &bob, 30).await.unwrap();
    assert_eq!(r.status(), 403, "an approver cannot compose a rollback");
    let r = http
        .post(format!(
            "{}/api/v1/rollouts/{}/rollback/compose",
            e.srv.url, bad.id
        ))
        .bearer_auth(&bob)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for (days, want) in [(0, "valid_days"), (367, "valid_days")] {
        let r = compose(bad.id, &alice, days).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains(want));
    }

    let c: serde_json::Value = compose(bad.id, &alice, 7)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        c["version"], "1.2.0",
        "higher than every uploaded version: {c}"
    );
    let body: BundleBody = serde_json::from_str(c["body"].as_str().unwrap()).unwrap();
    let before = bundle::read_unverified(&e.alice.bundle_file("1.0.0").await.unwrap()).unwrap();
    assert_eq!(body.version, "1.2.0");
    assert_eq!(body.policy, before.policy, "the content of 1.0.0");
    assert_eq!(body.catalogue, before.catalogue);
    assert!((body.issued_at - now_s()).abs() < 60, "issued now");
    assert_eq!(body.expires_at - body.issued_at, 7 * 86_400);
    // Composing changed nothing.
    let rollouts = e.alice.rollouts().await.unwrap();
    assert_eq!(rollouts[0].stage, shadowai_api::RolloutStage::Canary);
    assert_eq!(e.alice.bundles().await.unwrap().len(), 2);

    // While the bad rollout runs, the rollback would lift its block: a second person must
    // agree (the two-person rule is checked again on upload).
    let err = e
        .alice
        .upload_bundle("1.2.0", None, sign(&c))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("stops being blocked"), "{err}");

    // Stopped, the fleet's baseline is 1.0.0 again: its content goes back out.
    e.alice
        .rollback_rollout(bad.id, Some("breaks builds"))
        .await
        .unwrap();
    let info = e
        .alice
        .upload_bundle("1.2.0", Some("rollback"), sign(&c))
        .await
        .unwrap();
    let back = e
        .alice
        .start_rollout(&shadowai_api::RolloutRequest {
            bundle_version: info.version.clone(),
            canary_group: "canary".into(),
        })
        .await
        .unwrap();
    let back = e.alice.advance_rollout(back.id, 100).await.unwrap();
    assert_eq!(back.stage, shadowai_api::RolloutStage::All);
    assert_eq!(back.previous_version.as_deref(), Some("1.0.0"));
}
