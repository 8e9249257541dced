//! The discovery table on SQLite and PostgreSQL: repeated reports add up, candidates group
//! by name with their hosts and processes, and the bounds hold against a flood — one host
//! cannot take more than its share, and what is refused is counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::PgServer;
use shadowai_api::ProposalStatus;
use shadowai_api::discovery::{
    CatalogueEntry, CatalogueProposalRequest, DiscoveryCandidate, DiscoveryReason, EntryRisk,
    MAX_PENDING_PROPOSALS,
};
use shadowai_collector::store::sql_discovery::MAX_ROWS_PER_HOST;
use shadowai_collector::store::{Store, StoreError};
use shadowai_rules::catalogue::{Retention, Training};

const T0: i64 = 1_763_769_600_000;

fn cand(name: &str, exe: &str, reason: DiscoveryReason) -> DiscoveryCandidate {
    DiscoveryCandidate {
        name: name.into(),
        reason,
        exe: exe.into(),
        alongside: (reason == DiscoveryReason::AiProcess).then(|| "openai-api".into()),
        count: 2,
        first_seen_ms: T0,
        last_seen_ms: T0,
    }
}

fn suite(s: &dyn Store) {
    let relay = cand(
        "api.relay.example",
        "/usr/bin/python3",
        DiscoveryReason::AiProcess,
    );
    let ack = s
        .record_discovery("h1", std::slice::from_ref(&relay), T0)
        .unwrap();
    assert_eq!((ack.accepted, ack.refused), (1, 0));
    s.record_discovery("h1", std::slice::from_ref(&relay), T0 + 1)
        .unwrap();
    s.record_discovery(
        "h2",
        &[cand(
            "api.relay.example",
            "/usr/bin/node",
            DiscoveryReason::NamePattern,
        )],
        T0 + 2,
    )
    .unwrap();
    s.record_discovery(
        "h2",
        &[cand(
            "llm.other.example",
            "/usr/bin/node",
            DiscoveryReason::NamePattern,
        )],
        T0 + 3,
    )
    .unwrap();
    let list = s.list_discovery().unwrap();
    assert_eq!(list.len(), 2);
    let r = &list[0];
    assert_eq!(r.name, "api.relay.example", "most hosts first");
    assert_eq!(r.hosts, vec!["h1", "h2"]);
    assert_eq!(r.processes, vec!["/usr/bin/node", "/usr/bin/python3"]);
    assert_eq!(r.hits, 6);
    assert_eq!(
        r.reasons,
        vec![DiscoveryReason::AiProcess, DiscoveryReason::NamePattern]
    );
    assert_eq!(r.alongside, vec!["openai-api"]);
    assert_eq!((r.first_seen_ms, r.last_seen_ms), (T0, T0 + 2));

    // A flood from one (compromised) host: its share fills, the rest is refused and counted.
    let flood: Vec<DiscoveryCandidate> = (0..(MAX_ROWS_PER_HOST + 300))
        .map(|i| {
            cand(
                &format!("llm{i}.flood.example"),
                "/tmp/x",
                DiscoveryReason::NamePattern,
            )
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    for chunk in flood.chunks(256) {
        let ack = s.record_discovery("h3", chunk, T0 + 10).unwrap();
        accepted += ack.accepted;
        refused += ack.refused;
    }
    assert_eq!(accepted, MAX_ROWS_PER_HOST as u64);
    assert_eq!(refused, 300);
    // Existing rows of the flooding host still update; other hosts are unaffected.
    let again = s.record_discovery("h3", &flood[..1], T0 + 11).unwrap();
    assert_eq!((again.accepted, again.refused), (1, 0));
    let other = s
        .record_discovery(
            "h4",
            &[cand(
                "api.new.example",
                "/usr/bin/go",
                DiscoveryReason::NamePattern,
            )],
            T0 + 12,
        )
        .unwrap();
    assert_eq!((other.accepted, other.refused), (1, 0));
}

fn proposal(id: &str, candidate: Option<&str>) -> CatalogueProposalRequest {
    CatalogueProposalRequest {
        candidate: candidate.map(str::to_owned),
        entry: CatalogueEntry {
            id: id.into(),
            name: format!("{id} name"),
            vendor: "Vendor".into(),
            category: shadowai_rules::Category::ModelApi,
            description: String::new(),
            domains: vec![],
            hosts: vec![format!("api.{id}.example")],
            risk: EntryRisk {
                trains_on_user_data: Training::OptOut,
                retention: Retention::Limited,
                jurisdiction: "FR".into(),
                enterprise_controls: vec![],
                certifications: vec![],
            },
            source: "https://vendor.example/terms".into(),
            checked: "2026-11-01".into(),
        },
        reason: "seen on the fleet".into(),
    }
}

/// Catalogue proposals: stored whole, one open per entry id, a second person decides (the
/// proposer never, under any spelling of the name), approved entries form the overlay,
/// the candidate shows its promotion, pending proposals are bounded, everything audited.
fn catalogue_suite(s: &dyn Store) {
    s.record_discovery(
        "h1",
        &[cand(
            "api.relay.example",
            "/usr/bin/python3",
            DiscoveryReason::AiProcess,
        )],
        T0,
    )
    .unwrap();
    let req = proposal("relay", Some("api.relay.example"));
    let p = s.create_catalogue_proposal("carol", &req, T0).unwrap();
    assert_eq!(p.status, ProposalStatus::Pending);
    assert_eq!(p.entry, req.entry);
    assert_eq!(s.catalogue_proposal(p.id).unwrap().entry, req.entry);
    assert!(matches!(
        s.create_catalogue_proposal("dave", &req, T0),
        Err(StoreError::Conflict { .. })
    ));
    for who in ["carol", " CAROL ", "caro\u{200b}l"] {
        assert!(
            matches!(
                s.decide_catalogue_proposal(who, p.id, true, None, T0 + 1),
                Err(StoreError::SelfApproval { .. })
            ),
            "{who:?}"
        );
    }
    assert!(s.catalogue_overlay().unwrap().is_empty());
    let listed = s.list_discovery().unwrap();
    assert_eq!(
        listed[0].proposal.as_ref().map(|x| x.status),
        Some(ProposalStatus::Pending)
    );
    let done = s
        .decide_catalogue_proposal("bob", p.id, true, Some("ok"), T0 + 2)
        .unwrap();
    assert_eq!(done.status, ProposalStatus::Approved);
    assert_eq!(done.decided_by.as_deref(), Some("bob"));
    assert!(matches!(
        s.decide_catalogue_proposal("bob", p.id, false, None, T0 + 3),
        Err(StoreError::InvalidState { .. })
    ));
    let overlay = s.catalogue_overlay().unwrap();
    assert_eq!(overlay, vec![(p.id, req.entry.clone())]);
    let listed = s.list_discovery().unwrap();
    let promoted = listed[0].proposal.clone().unwrap();
    assert_eq!(
        (promoted.id, promoted.entry_id.as_str(), promoted.status),
        (p.id, "relay", ProposalStatus::Approved)
    );
    // Approved: a second proposal for the same id is refused; a rejected one frees the id.
    assert!(s.create_catalogue_proposal("carol", &req, T0).is_err());
    let other = s
        .create_catalogue_proposal("carol", &proposal("other", None), T0)
        .unwrap();
    s.decide_catalogue_proposal("bob", other.id, false, None, T0 + 4)
        .unwrap();
    s.create_catalogue_proposal("carol", &proposal("other", None), T0 + 5)
        .unwrap();
    assert_eq!(
        s.list_catalogue_proposals(Some(ProposalStatus::Rejected))
            .unwrap()
            .len(),
        1
    );
    // The pending bound holds against a flood of proposals; nothing past it is stored.
    let pending = s
        .list_catalogue_proposals(Some(ProposalStatus::Pending))
        .unwrap()
        .len();
    for i in pending..MAX_PENDING_PROPOSALS {
        s.create_catalogue_proposal("mallory", &proposal(&format!("flood{i}"), None), T0)
            .unwrap();
    }
    assert!(matches!(
        s.create_catalogue_proposal("mallory", &proposal("one-more", None), T0),
        Err(StoreError::InvalidState { .. })
    ));
    assert_eq!(
        s.list_catalogue_proposals(Some(ProposalStatus::Pending))
            .unwrap()
            .len(),
        MAX_PENDING_PROPOSALS
    );
    let audit = s.audit_entries(0, 10_000).unwrap();
    for action in ["catalogue.propose", "catalogue.approve", "catalogue.reject"] {
        assert!(audit.iter().any(|a| a.action == action), "{action}");
    }
}

#[test]
fn sqlite_discovery_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap();
    suite(&s);
}

#[test]
fn postgres_discovery_table() {
    let pg = PgServer::start();
    let conn = pg.create_db("discovery");
    let s = shadowai_collector::store::postgres::open(&conn, 1, None).unwrap();
    suite(&s);
}

#[test]
fn sqlite_catalogue_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let s = shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap();
    catalogue_suite(&s);
}

#[test]
fn postgres_catalogue_proposals() {
    let pg = PgServer::start();
    let conn = pg.create_db("catalogue_proposals");
    let s = shadowai_collector::store::postgres::open(&conn, 1, None).unwrap();
    catalogue_suite(&s);
}
