//! soc: the alert outbox and per-host alert budgets on SQLite and a throwaway PostgreSQL —
//! rows written with the ingest, claimed once under a lease, settled (retry with its time,
//! delivered, failed), counted by state, bounded (oldest undelivered dropped past the cap,
//! settled rows pruned), hourly budgets per host with one suppression notice, identity-conflict
//! notices once per host per hour, and the audit chain head.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{PgServer, finding};
use shadowai_api::{DeliveryState, Finding, IngestBatch, NoticeKind, OutboxItem, Verdict};
use shadowai_collector::store::{AlertPolicy, ConflictSeen, Settle, Store};

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_763_769_600_000; // 2025-11-22T00:00:00Z, an hour boundary

fn enroll(s: &dyn Store, agent: &str, host: &str) {
    common::enroll_in_store(s, "outbox", agent, host, None, T0);
}

/// `n` unsanctioned uses by new users: each a new (service, user) pair.
fn uses(host: &str, tag: &str, n: usize) -> Vec<Finding> {
    (0..n)
        .map(|i| {
            finding(
                &format!("{tag}-{i}"),
                host,
                "deepseek",
                Verdict::Unsanctioned,
                &format!("{tag}-user-{i}"),
                T0,
            )
        })
        .collect()
}

fn ingest(
    s: &dyn Store,
    agent: &str,
    batch: &str,
    findings: Vec<Finding>,
    p: &AlertPolicy,
    now: i64,
) -> shadowai_collector::store::Raised {
    s.ingest_alerting_with(
        agent,
        &IngestBatch {
            batch_id: batch.into(),
            findings,
        },
        p,
        now,
    )
    .unwrap()
    .1
}

fn suite(s: &dyn Store) {
    enroll(s, "agt-a", "host-a");
    enroll(s, "agt-b", "host-b");
    let p = AlertPolicy {
        per_batch: 3,
        per_host_per_hour: 5,
        webhook: true,
        outbox_cap: 1_000,
    };
    // Budgets: 3 in the first batch, 2 in the second, none in the third; one notice.
    let r = ingest(s, "agt-a", "a1", uses("host-a", "a1", 4), &p, T0 + 10);
    assert_eq!((r.alerts.len(), r.suppressed, r.notices.len()), (3, 1, 1));
    assert_eq!(r.notices[0].kind, NoticeKind::AlertsSuppressed);
    assert_eq!(r.notices[0].count, 1);
    assert_eq!(
        (r.notices[0].window_start_ms, r.notices[0].window_end_ms),
        (T0, T0 + HOUR)
    );
    let r = ingest(s, "agt-a", "a2", uses("host-a", "a2", 4), &p, T0 + 20);
    assert_eq!((r.alerts.len(), r.suppressed, r.notices.len()), (2, 2, 0));
    let r = ingest(s, "agt-a", "a3", uses("host-a", "a3", 2), &p, T0 + 30);
    assert_eq!((r.alerts.len(), r.suppressed, r.notices.len()), (0, 2, 0));
    // Another host has its own budget; the next hour refills host-a's.
    let r = ingest(s, "agt-b", "b1", uses("host-b", "b1", 1), &p, T0 + 40);
    assert_eq!((r.alerts.len(), r.suppressed), (1, 0));
    let r = ingest(s, "agt-a", "a4", uses("host-a", "a4", 4), &p, T0 + HOUR + 1);
    assert_eq!((r.alerts.len(), r.suppressed, r.notices.len()), (3, 1, 1));

    // The outbox holds every alert and notice, pending, oldest first when claimed.
    let page = s.outbox(None, 100).unwrap();
    assert_eq!(page.pending, 3 + 2 + 1 + 3 + 2);
    assert_eq!(page.items.len() as u64, page.pending);
    let now = T0 + 2 * HOUR;
    let due = s.outbox_due(now, 2, 60_000).unwrap();
    assert_eq!(due.len(), 2);
    assert!(due[0].id < due[1].id);
    assert!(matches!(&due[0].item, OutboxItem::Alert(a) if a.host_id == "host-a"));
    // Claimed rows are leased: not due again until the lease ends.
    let again = s.outbox_due(now, 100, 60_000).unwrap();
    assert!(again.iter().all(|d| d.id != due[0].id && d.id != due[1].id));
    assert_eq!(again.len(), 9);
    // Settle: a retry keeps it pending with its time and error; delivered; failed.
    s.outbox_settle(
        due[0].id,
        1,
        &Settle::Retry {
            next_ms: now + 5_000,
            error: "HTTP 503".into(),
        },
        now,
    )
    .unwrap();
    s.outbox_settle(due[1].id, 1, &Settle::Delivered, now)
        .unwrap();
    s.outbox_settle(
        again[0].id,
        3,
        &Settle::Failed {
            error: "HTTP 400".into(),
        },
        now,
    )
    .unwrap();
    let page = s.outbox(None, 100).unwrap();
    assert_eq!((page.pending, page.delivered, page.failed), (9, 1, 1));
    let e = page.items.iter().find(|e| e.id == due[0].id).unwrap();
    assert_eq!(
        (
            e.state,
            e.attempts,
            e.next_attempt_ms,
            e.last_error.as_deref()
        ),
        (
            DeliveryState::Pending,
            1,
            Some(now + 5_000),
            Some("HTTP 503")
        )
    );
    let e = page.items.iter().find(|e| e.id == due[1].id).unwrap();
    assert_eq!((e.state, e.done_ms), (DeliveryState::Delivered, Some(now)));
    // The retried row is due at its time, not before.
    assert!(
        s.outbox_due(now + 4_999, 100, 60_000)
            .unwrap()
            .iter()
            .all(|d| d.id != due[0].id)
    );
    let back = s.outbox_due(now + 5_000, 100, 60_000).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].id, back[0].attempts), (due[0].id, 1));
    // Paging.
    let first = s.outbox(None, 4).unwrap();
    let rest = s.outbox(first.next_before, 100).unwrap();
    assert_eq!(first.items.len() + rest.items.len(), 11);
    assert!(rest.next_before.is_none());
    // Pruning keeps `keep` settled rows (newest), never a pending one.
    assert_eq!(s.outbox_housekeep(1, now).unwrap(), 1);
    let page = s.outbox(None, 100).unwrap();
    assert_eq!((page.pending, page.delivered + page.failed), (9, 1));

    // The cap: past it, the oldest undelivered rows go (and say how many).
    let tight = AlertPolicy {
        outbox_cap: 10,
        per_batch: 20,
        per_host_per_hour: 100,
        ..p.clone()
    };
    enroll(s, "agt-c", "host-c");
    let r = ingest(s, "agt-c", "c1", uses("host-c", "c1", 4), &tight, now);
    assert_eq!(r.alerts.len(), 4);
    assert_eq!(r.outbox_dropped, 3, "9 + 4 pending, cap 10");
    let page = s.outbox(None, 100).unwrap();
    assert_eq!(page.pending, 10);
    assert!(
        page.items
            .iter()
            .filter(|e| e.state == DeliveryState::Pending)
            .all(|e| e.id > due[0].id),
        "the oldest went first"
    );

    // Identity conflicts: one notice per host per hour, another in the next hour.
    let seen = ConflictSeen {
        host_id: "host-b".into(),
        peer: "192.0.2.7:4000".into(),
        via: "enroll".into(),
        conflicts: 1,
    };
    let (n, _) = s.host_conflict_notice(&seen, &tight, now).unwrap();
    let n = n.unwrap();
    assert_eq!(
        (n.kind, n.count, n.peer.as_str()),
        (NoticeKind::HostIdentityConflict, 1, "192.0.2.7:4000")
    );
    assert!(
        s.host_conflict_notice(&seen, &tight, now + 10)
            .unwrap()
            .0
            .is_none()
    );
    assert!(
        s.host_conflict_notice(&seen, &tight, now + HOUR)
            .unwrap()
            .0
            .is_some()
    );

    // Without a webhook, rows are kept as not_sent and never due.
    let quiet = AlertPolicy {
        webhook: false,
        ..tight.clone()
    };
    enroll(s, "agt-d", "host-d");
    ingest(s, "agt-d", "d1", uses("host-d", "d1", 1), &quiet, now);
    let page = s.outbox(None, 100).unwrap();
    assert_eq!(page.not_sent, 1);
    let due = s.outbox_due(now + 10 * HOUR, 100, 1).unwrap();
    assert!(!due.is_empty());
    assert!(
        !due.iter()
            .any(|d| matches!(&d.item, OutboxItem::Alert(a) if a.host_id == "host-d"))
    );

    // The audit chain head is the last entry.
    let (seq, hash, _) = s.audit_head().unwrap().unwrap();
    let all = s.audit_entries(0, 10_000).unwrap();
    let last = all.last().unwrap();
    assert_eq!((seq, hash.as_str()), (last.seq, last.hash.as_str()));
}

#[test]
fn sqlite_outbox_and_budgets() {
    let dir = tempfile::tempdir().unwrap();
    suite(&shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap());
}

/// Concurrent ingests of one host (replicas, or pool connections of one) share its hourly
/// budget: together they raise no more alerts than it allows.
fn concurrent_ingests_share_one_budget(s: &(dyn Store + Sync)) {
    enroll(s, "agt-c", "host-c");
    let p = AlertPolicy {
        per_batch: 10,
        per_host_per_hour: 10,
        webhook: true,
        outbox_cap: 10_000,
    };
    for round in 0..4i64 {
        let now = T0 + round * HOUR + 1;
        // The hour's budget row exists before the burst (one alert taken): a new row's
        // concurrent inserts would queue behind each other anyway.
        let first = ingest(
            s,
            "agt-c",
            &format!("r{round}first"),
            uses("host-c", &format!("r{round}first"), 1),
            &p,
            now,
        );
        assert_eq!(first.alerts.len(), 1);
        let gate = std::sync::Barrier::new(8);
        let raised: u64 = std::thread::scope(|sc| {
            let runs: Vec<_> = (0..8)
                .map(|i| {
                    let (gate, p) = (&gate, &p);
                    sc.spawn(move || {
                        let tag = format!("r{round}b{i}");
                        let fs = uses("host-c", &tag, 10);
                        gate.wait();
                        ingest(s, "agt-c", &tag, fs, p, now).alerts.len() as u64
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).sum()
        });
        assert_eq!(
            raised, 9,
            "round {round}: 8 concurrent batches of 10 new uses after 1 alert this hour"
        );
    }
}

#[test]
fn sqlite_concurrent_ingests_share_one_budget() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_ingests_share_one_budget(
        &shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap(),
    );
}

#[test]
fn postgres_concurrent_ingests_share_one_budget() {
    let pg = PgServer::start();
    concurrent_ingests_share_one_budget(
        &shadowai_collector::store::postgres::open(&pg.create_db("budget"), 8, None).unwrap(),
    );
}

#[test]
fn postgres_outbox_and_budgets() {
    let pg = PgServer::start();
    suite(&shadowai_collector::store::postgres::open(&pg.create_db("outbox"), 2, None).unwrap());
}
