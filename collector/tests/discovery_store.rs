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
use shadowai_api::discovery::{DiscoveryCandidate, DiscoveryReason};
use shadowai_collector::store::Store;
use shadowai_collector::store::sql_discovery::MAX_ROWS_PER_HOST;

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
