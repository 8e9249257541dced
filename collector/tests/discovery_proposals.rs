//! A discovery candidate promoted into the catalogue through the proposal flow, over HTTP
//! against a real collector (SQLite, the repository's catalogue, a bundle key): an analyst
//! proposes the entry (validated like a catalogue file, errors by field, impact shown), the
//! proposer cannot approve it (audited, however the name is spelled), roles hold, a
//! different approver approves, the entry joins the catalogue the collector serves, a policy
//! can then target it, and a bundle is accepted only when it carries the new entry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::start_server;
use shadowai_api::client::{Client, ClientError};
use shadowai_api::discovery::{
    CatalogueEntry, CatalogueProposalRequest, DiscoveryCandidate, DiscoveryReason, DiscoveryReport,
    EntryRisk,
};
use shadowai_api::{PolicyScope, ProposalRequest, ProposalStatus, Role, Verdict};
use shadowai_rules::bundle::{self, CompileOptions};
use shadowai_rules::catalogue::{Retention, Training};
use shadowai_rules::{Category, Mode};

const RELAY: &str = "api.newrelay.example";

fn entry() -> CatalogueEntry {
    CatalogueEntry {
        id: "newrelay-api".into(),
        name: "NewRelay API".into(),
        vendor: "NewRelay".into(),
        category: Category::ModelApi,
        description: "An OpenAI-compatible inference relay.".into(),
        domains: vec![],
        hosts: vec![RELAY.into()],
        risk: EntryRisk {
            trains_on_user_data: Training::Unknown,
            retention: Retention::Extended,
            jurisdiction: "US".into(),
            enterprise_controls: vec![],
            certifications: vec![],
        },
        source: "https://newrelay.example/legal/privacy".into(),
        checked: "2026-11-20".into(),
    }
}

fn request(e: CatalogueEntry) -> CatalogueProposalRequest {
    CatalogueProposalRequest {
        candidate: Some(RELAY.into()),
        entry: e,
        reason: "seen from SDK processes on two hosts".into(),
    }
}

/// The refusal's status and message.
fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Status {
            status, message, ..
        }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn report_candidate(srv: &common::TestServer, host: &str) {
    let (_, token) = srv.enroll(host, None).await;
    let ack = srv
        .client(Some(&token))
        .report_discovery(&DiscoveryReport {
            candidates: vec![DiscoveryCandidate {
                name: RELAY.into(),
                reason: DiscoveryReason::AiProcess,
                exe: "/usr/bin/python3".into(),
                alongside: Some("openai-api".into()),
                count: 3,
                first_seen_ms: 1,
                last_seen_ms: 2,
            }],
            dropped: 0,
        })
        .await
        .unwrap();
    assert_eq!(ack.accepted, 1);
}

struct People {
    analyst: Client,
    admin: Client,
    viewer: Client,
    bob: Client,
    /// An approver token named like the analyst (case, spacing): the same person.
    carol_again: Client,
}

fn people(srv: &common::TestServer) -> People {
    People {
        analyst: srv.client(Some(&srv.person("carol", Role::Analyst))),
        admin: srv.client(Some(&srv.admin)),
        viewer: srv.client(Some(&srv.person("vic", Role::Viewer))),
        bob: srv.client(Some(&srv.person("bob", Role::Approver))),
        carol_again: srv.client(Some(&srv.person(" Carol ", Role::Approver))),
    }
}

#[tokio::test]
async fn a_candidate_becomes_a_catalogue_entry_after_a_second_person_approves() {
    let key = bundle::generate_key().unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let pubkey = keydir.path().join("bundle.pub");
    bundle::write_verifying_key(&pubkey, &key.verifying_key()).unwrap();
    let srv = start_server(false, |c| c.bundle_public_key = Some(pubkey.clone())).await;
    let p = people(&srv);
    report_candidate(&srv, "h1").await;
    report_candidate(&srv, "h2").await;

    // Roles: a viewer cannot propose.
    let (status, msg) = refusal(p.viewer.propose_catalogue_entry(&request(entry())).await);
    assert_eq!(status, 403, "{msg}");

    // The analyst proposes; the answer shows what it would name.
    let prop = p
        .analyst
        .propose_catalogue_entry(&request(entry()))
        .await
        .unwrap();
    assert_eq!(prop.status, ProposalStatus::Pending);
    assert_eq!(prop.proposed_by, "carol");
    let imp = prop.impact.clone().unwrap();
    assert_eq!(imp.candidates, vec![RELAY]);
    assert_eq!(imp.hosts, vec!["h1", "h2"]);
    assert_eq!(imp.processes, vec!["/usr/bin/python3"]);
    assert_eq!(imp.candidate_hits, 6);
    assert_eq!(imp.verdict, Some(Verdict::Unsanctioned), "{imp:?}");
    let cands = p.viewer.discovery().await.unwrap();
    let c = cands.iter().find(|c| c.name == RELAY).unwrap();
    assert_eq!(c.proposal.as_ref().unwrap().status, ProposalStatus::Pending);
    // One open proposal per entry id.
    let (status, msg) = refusal(p.admin.propose_catalogue_entry(&request(entry())).await);
    assert_eq!(status, 409, "{msg}");
    // Not yet in the catalogue, and a policy cannot target it yet.
    assert!(
        p.viewer
            .catalogue()
            .await
            .unwrap()
            .service("newrelay-api")
            .is_none()
    );

    // The proposer cannot approve it under another token with a look-alike name; audited.
    let (status, msg) = refusal(
        p.carol_again
            .decide_catalogue_proposal(prop.id, true, None)
            .await,
    );
    assert_eq!(status, 403, "{msg}");
    let audit = p.admin.audit(0, 1000).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "catalogue.approve.refused"
            && a.target == format!("catalogue-proposal:{}", prop.id)),
        "{audit:#?}"
    );
    // Roles: neither an analyst nor an admin approves.
    for c in [&p.analyst, &p.admin] {
        let (status, _) = refusal(c.decide_catalogue_proposal(prop.id, true, None).await);
        assert_eq!(status, 403);
    }

    let done = p
        .bob
        .decide_catalogue_proposal(prop.id, true, Some("vendor terms read"))
        .await
        .unwrap();
    assert_eq!(done.status, ProposalStatus::Approved);
    assert_eq!(done.decided_by.as_deref(), Some("bob"));
    let (status, _) = refusal(p.bob.decide_catalogue_proposal(prop.id, false, None).await);
    assert_eq!(status, 409, "decided once");
    let audit = p.admin.audit(0, 1000).await.unwrap();
    for action in ["catalogue.propose", "catalogue.approve"] {
        assert!(audit.iter().any(|a| a.action == action), "{action}");
    }

    // The catalogue the collector serves (and `rules publish` signs) now has the entry.
    let cat = p.viewer.catalogue().await.unwrap();
    let svc = cat.service("newrelay-api").expect("the approved entry");
    assert_eq!(svc.hosts, vec![RELAY]);
    let sources: Vec<&str> = svc.provenance.sources.iter().map(|x| x.text()).collect();
    assert_eq!(sources, vec!["https://newrelay.example/legal/privacy"]);
    assert_eq!(svc.provenance.checked, "2026-11-20");
    assert!(
        cat.service("openai-api").is_some(),
        "the shipped entries stay"
    );
    let cands = p.viewer.discovery().await.unwrap();
    let c = cands.iter().find(|c| c.name == RELAY).unwrap();
    assert_eq!(
        c.proposal.as_ref().map(|x| (x.status, x.entry_id.as_str())),
        Some((ProposalStatus::Approved, "newrelay-api")),
        "the candidate is marked promoted"
    );
    let risk = p.viewer.risk(&["newrelay-api"]).await.unwrap();
    assert_eq!(risk.len(), 1, "the risk report knows the new service");

    // A policy decision can now target the new service.
    let block = p
        .admin
        .propose(&ProposalRequest {
            service_id: "newrelay-api".into(),
            verdict: Verdict::Blocked,
            scope: PolicyScope::Fleet,
            reason: "unvetted relay".into(),
        })
        .await
        .unwrap();
    assert_eq!(block.status, ProposalStatus::Pending);

    // Publishing: a bundle over the served catalogue is accepted; one that leaves the new
    // entry out is refused (a bundle must carry the collector's catalogue unchanged).
    let doc = p.admin.policy_document(Mode::Monitor).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let opts = |v: &str| CompileOptions {
        version: semver::Version::parse(v).unwrap(),
        issued_at: now - 10,
        expires_at: now + 86_400,
        min_agent_version: semver::Version::new(0, 1, 0),
    };
    let stale = common::catalogue().clone();
    let old = bundle::compile(&stale, &doc.policy, &opts("1.0.0")).unwrap();
    let (status, msg) = refusal(
        p.admin
            .upload_bundle("1.0.0", None, bundle::sign_body(&old, &key).unwrap())
            .await,
    );
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("newrelay-api"), "{msg}");
    let body = bundle::compile(&cat, &doc.policy, &opts("1.1.0")).unwrap();
    let info = p
        .admin
        .upload_bundle("1.1.0", None, bundle::sign_body(&body, &key).unwrap())
        .await
        .unwrap();
    assert_eq!(info.version, "1.1.0");
}

#[tokio::test]
async fn invalid_entries_are_refused_with_the_field_named() {
    let srv = start_server(false, |_| {}).await;
    let p = people(&srv);
    report_candidate(&srv, "h1").await;
    let cases: Vec<(&str, CatalogueEntry, &str)> = vec![
        (
            "no source",
            CatalogueEntry {
                source: String::new(),
                ..entry()
            },
            "entry.source",
        ),
        (
            "source not https",
            CatalogueEntry {
                source: "http://newrelay.example/privacy".into(),
                ..entry()
            },
            "entry.source",
        ),
        (
            "no checked date",
            CatalogueEntry {
                checked: String::new(),
                ..entry()
            },
            "entry.checked",
        ),
        (
            "checked in the future",
            CatalogueEntry {
                checked: "2999-01-01".into(),
                ..entry()
            },
            "entry.checked",
        ),
        (
            "shared infrastructure",
            CatalogueEntry {
                domains: vec!["cloudfront.net".into()],
                ..entry()
            },
            "entry.domains[0]",
        ),
        (
            "known-benign host",
            CatalogueEntry {
                hosts: vec![RELAY.into(), "themeforest.net".into()],
                ..entry()
            },
            "entry.hosts[1]",
        ),
        (
            "a name an existing service has",
            CatalogueEntry {
                hosts: vec![RELAY.into(), "api.openai.com".into()],
                ..entry()
            },
            "entry.hosts[1]",
        ),
        (
            "a domain over an existing service's host",
            CatalogueEntry {
                domains: vec!["openai.com".into()],
                ..entry()
            },
            "entry.domains[0]",
        ),
        (
            "an existing id",
            CatalogueEntry {
                id: "openai-api".into(),
                ..entry()
            },
            "entry.id",
        ),
        (
            "a bad jurisdiction",
            CatalogueEntry {
                risk: EntryRisk {
                    jurisdiction: "usa".into(),
                    ..entry().risk
                },
                ..entry()
            },
            "entry.risk.jurisdiction",
        ),
        (
            "does not name its candidate",
            CatalogueEntry {
                hosts: vec!["api.other.example".into()],
                ..entry()
            },
            "entry.hosts",
        ),
        (
            "not a DNS name",
            CatalogueEntry {
                hosts: vec![RELAY.into(), "Bad Name".into()],
                ..entry()
            },
            "entry.hosts[1]",
        ),
    ];
    for (what, e, field) in cases {
        let (status, msg) = refusal(p.analyst.propose_catalogue_entry(&request(e)).await);
        assert_eq!(status, 400, "{what}: {msg}");
        assert!(msg.contains(field), "{what}: {msg} should name {field}");
    }
    // An unknown candidate, an empty reason.
    let mut r = request(entry());
    r.candidate = Some("never.seen.example".into());
    let (status, msg) = refusal(p.analyst.propose_catalogue_entry(&r).await);
    assert_eq!(status, 404, "{msg}");
    let mut r = request(entry());
    r.reason = " ".into();
    let (status, msg) = refusal(p.analyst.propose_catalogue_entry(&r).await);
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("reason"), "{msg}");
    // Nothing refused was stored.
    assert!(p.viewer.catalogue_proposals(None).await.unwrap().is_empty());
    // An unknown field is refused at parse time.
    let resp = common::raw()
        .post(format!("{}/api/v1/discovery/proposals", srv.url))
        .bearer_auth(&srv.admin)
        .json(&serde_json::json!({"entry": entry(), "reason": "x", "approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
