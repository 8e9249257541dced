//! Ingest writes findings with multi-row INSERT statements (chunks of 64/16/4/1): a large
//! batch with duplicates inside one chunk, across chunks and against earlier batches is
//! counted exactly and stored once, on SQLite and on PostgreSQL. Rows are encoded before the
//! write transaction and get the agent's host group inside it: every row of every chunk
//! carries it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{PgServer, finding};
use shadowai_api::{GroupBy, IngestBatch, Verdict};
use shadowai_collector::store::{
    EnrollAttempt, EnrollOutcome, FindingFilter, GroupSort, NewEnrollmentKey, Store,
};

const T0: i64 = 1_763_769_600_000;

fn check(s: &dyn Store) {
    s.seed_enrollment_key(
        &NewEnrollmentKey {
            key_hash: "chunks-secret".into(),
            note: "chunks".into(),
            expires_ms: None,
            max_uses: None,
        },
        T0,
    )
    .unwrap();
    let out = s
        .enroll_host(
            &EnrollAttempt {
                secret_hash: "chunks-secret".into(),
                host_id: "host-c".into(),
                hostname: "host-c.example".into(),
                group: Some("lab".into()),
                agent_version: "0.1.0".into(),
                key_sha256: "key-c".into(),
                new_agent_id: "agt-c".into(),
                token_hash: "hash-c".into(),
                max_hosts: 10,
                peer: "127.0.0.1".into(),
            },
            T0,
        )
        .unwrap();
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
    let f = |i: u32| {
        finding(
            &format!("f{i}"),
            "host-c",
            "chatgpt",
            Verdict::Unsanctioned,
            &format!("user{i}"),
            T0 + i64::from(i),
        )
    };
    // 30 findings stored first.
    let first = IngestBatch {
        batch_id: "b-first".into(),
        findings: (0..30).map(f).collect(),
    };
    let ack = s.ingest("agt-c", &first, T0).unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (30, 0));
    // 157 findings: 20 already stored (f10..f29), 100 new (f100..f199) of which 37 are sent
    // twice — the copy right behind its original (same 64-row statement) or 64 rows later
    // (the next statement).
    let mut findings: Vec<_> = (10..30).map(f).collect();
    for i in 100..200 {
        findings.push(f(i));
        if i % 3 == 0 {
            findings.push(f(i));
        }
    }
    for i in 100..104 {
        findings.push(f(i));
    }
    let n = findings.len() as u64;
    let second = IngestBatch {
        batch_id: "b-second".into(),
        findings,
    };
    let ack = s.ingest("agt-c", &second, T0 + 1).unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (100, n - 100), "{n}");
    assert_eq!(s.count_findings().unwrap(), 130);
    // Every stored finding reads back whole, once.
    let (items, next) = s.search(&FindingFilter::default(), 500, None).unwrap();
    assert!(next.is_none());
    let mut ids: Vec<_> = items.iter().map(|x| x.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 130);
    assert!(
        items
            .iter()
            .all(|x| x.user == format!("user{}", &x.id[1..]))
    );
    // The agent's group is on every row, whichever chunk (64/16/4/1 rows) wrote it.
    let groups = s
        .group_report(
            GroupBy::Group,
            &FindingFilter::default(),
            GroupSort::Events,
            10,
            0,
        )
        .unwrap();
    let keys: Vec<(&str, u64)> = groups
        .items
        .iter()
        .map(|r| (r.key.as_str(), r.findings))
        .collect();
    assert_eq!(keys, vec![("lab", 130)]);
    // A replay of the whole batch is recognised, not re-counted.
    let again = s.ingest("agt-c", &second, T0 + 2).unwrap();
    assert_eq!((again.accepted, again.replayed), (100, true));
}

#[test]
fn sqlite_counts_and_stores_chunked_inserts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap();
    check(&s);
}

#[test]
fn postgres_counts_and_stores_chunked_inserts_exactly() {
    let pg = PgServer::start();
    let conn = pg.create_db("chunks");
    let s = shadowai_collector::store::postgres::open(&conn, 1, None).unwrap();
    check(&s);
}
