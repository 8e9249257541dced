//! Concurrent ingests on SQLite (group commit: batches queued behind a running transaction
//! share the next one; a batch that fails mid-write has the group written again with each
//! batch behind a savepoint) and on PostgreSQL (one transaction per batch
//! on a pool): every good batch is stored whole and answered with its own counts, a bad batch
//! (revoked agent, a finding of another host, a reused batch id with other content, a row
//! the store refuses after the batch's first rows were written) fails alone with its own
//! error while the batches beside it commit, a retried batch is a replay,
//! and every first use raises its alert exactly once however the batches were grouped —
//! the first-use keys are kept right whether this process knew them already or not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use common::{PgServer, finding};
use shadowai_api::{AlertReason, Finding, FindingQuery, GroupBy, IngestBatch, Verdict};
use shadowai_collector::store::{AlertPolicy, GroupSort, Raised, Store, StoreError};

const T0: i64 = 1_763_769_600_000; // 2025-11-22T00:00:00Z
const HOSTS: usize = 8;
const BATCHES: usize = 24;
const PER_BATCH: usize = 20;
const SERVICES: [&str; 3] = ["deepseek", "mistral", "perplexity"];

fn enroll(s: &dyn Store, agent: &str, host: &str) {
    common::enroll_in_store(s, "concurrent", agent, host, Some("lab"), T0);
}

/// Batch `b` of host `h`: users shared across hosts (u0..u4), three services, times that
/// go back and forth so some keys' first use moves earlier after it was stored.
fn batch(h: usize, b: usize) -> IngestBatch {
    IngestBatch {
        batch_id: format!("h{h}-b{b}"),
        findings: (0..PER_BATCH)
            .map(|i| {
                let n = b * PER_BATCH + i;
                finding(
                    &format!("h{h}-b{b}-{i}"),
                    &format!("host-{h}"),
                    SERVICES[n % SERVICES.len()],
                    [Verdict::Unsanctioned, Verdict::Sanctioned, Verdict::Blocked][n % 3],
                    &format!("u{}", (n + h) % 5),
                    T0 + ((b * 7_919 + h * 104_729) % 50_000) as i64,
                )
            })
            .collect(),
    }
}

/// What a thread saw for each batch it sent.
enum Sent {
    Good {
        findings: Vec<String>,
        accepted: u64,
        raised: Raised,
    },
    Refused(StoreError),
}

fn ingest(s: &dyn Store, agent: &str, b: IngestBatch, p: &AlertPolicy) -> Sent {
    let ids = b.findings.iter().map(|f| f.id.clone()).collect();
    match s.ingest_shared(agent, Arc::new(b), p, T0 + 60_000) {
        Ok((ack, raised)) => {
            assert!(!ack.replayed);
            Sent::Good {
                findings: ids,
                accepted: ack.accepted,
                raised,
            }
        }
        Err(e) => Sent::Refused(e),
    }
}

/// The kind of bad batch `k`.
fn bad_kind(k: usize) -> usize {
    (k / 4) % 4
}

/// A bad batch of host `h`, kind `k`: a finding of another host, or a reused batch id with
/// other content, or one from the revoked agent — all refused before anything is written —
/// or one whose last finding the store refuses after the others were written (the test's
/// `poison` trigger, standing for any write that fails mid-batch).
fn bad(s: &dyn Store, h: usize, k: usize, p: &AlertPolicy) -> StoreError {
    let agent = format!("agt-{h}");
    let result = match bad_kind(k) {
        3 => {
            let mut b = batch(h, 2_000 + k);
            b.findings[PER_BATCH - 1].id.push_str("-poison");
            s.ingest_shared(&agent, Arc::new(b), p, T0)
        }
        0 => {
            let mut b = batch(h, 1_000 + k);
            b.findings[PER_BATCH / 2].host_id = format!("host-{}", (h + 1) % HOSTS);
            s.ingest_shared(&agent, Arc::new(b), p, T0)
        }
        1 => {
            let mut b = batch(h, 0);
            b.findings[0].count += 1;
            s.ingest_shared(&agent, Arc::new(b), p, T0)
        }
        _ => s.ingest_shared("agt-revoked", Arc::new(batch(99, k)), p, T0),
    };
    match result {
        Err(e) => e,
        Ok(ack) => panic!("bad batch {h}/{k} was stored: {ack:?}"),
    }
}

fn all_findings(s: &dyn Store) -> Vec<Finding> {
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = s.search(&FindingQuery::default(), 1_000, cursor).unwrap();
        out.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// SQLite: the trigger that refuses a finding whose id ends in `-poison`.
const SQLITE_POISON: &str = "CREATE TRIGGER poison BEFORE INSERT ON findings \
    WHEN NEW.id LIKE '%-poison' BEGIN SELECT RAISE(ABORT, 'poisoned finding'); END;";

/// PostgreSQL: the same.
const POSTGRES_POISON: &str = "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS \
    $$ BEGIN IF NEW.id LIKE '%-poison' THEN RAISE EXCEPTION 'poisoned finding'; END IF; \
    RETURN NEW; END $$; CREATE TRIGGER poison BEFORE INSERT ON findings FOR EACH ROW \
    EXECUTE FUNCTION poison();";

fn suite(s: Arc<dyn Store>) {
    for h in 0..HOSTS {
        enroll(&*s, &format!("agt-{h}"), &format!("host-{h}"));
    }
    enroll(&*s, "agt-revoked", "host-99");
    s.revoke_agent("admin", "agt-revoked", None, T0).unwrap();
    // Generous caps: every first use raises its alert, so exactly-once is visible.
    let p = AlertPolicy {
        per_batch: 1_000,
        per_host_per_hour: 100_000,
        webhook: false,
        outbox_cap: 100_000,
    };
    let start = Arc::new(Barrier::new(HOSTS));
    let threads: Vec<_> = (0..HOSTS)
        .map(|h| {
            let (s, p, start) = (s.clone(), p.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut sent = Vec::new();
                let mut bad_errors = Vec::new();
                for b in 0..BATCHES {
                    sent.push(ingest(&*s, &format!("agt-{h}"), batch(h, b), &p));
                    if b % 4 == 1 {
                        bad_errors.push((b, bad(&*s, h, b, &p)));
                    }
                }
                (sent, bad_errors)
            })
        })
        .collect();
    let mut stored_ids = BTreeSet::new();
    let mut alerts: BTreeMap<(AlertReason, String, String), usize> = BTreeMap::new();
    let mut answered = 0;
    for t in threads {
        let (sent, bad_errors) = t.join().unwrap();
        for x in sent {
            match x {
                Sent::Good {
                    findings,
                    accepted,
                    raised,
                } => {
                    assert_eq!(accepted, PER_BATCH as u64);
                    stored_ids.extend(findings);
                    answered += raised.alerts.len();
                    for a in raised.alerts {
                        for r in a.reasons {
                            let subject = match r {
                                AlertReason::NewInFleet => String::new(),
                                AlertReason::NewHost => a.host_id.clone(),
                                AlertReason::NewUser => a.user.clone(),
                            };
                            *alerts
                                .entry((r, subject, a.service_id.clone()))
                                .or_default() += 1;
                        }
                    }
                }
                Sent::Refused(e) => panic!("a good batch was refused: {e}"),
            }
        }
        for (b, e) in bad_errors {
            match (bad_kind(b), &e) {
                (0, StoreError::InvalidState { .. })
                | (1, StoreError::Conflict { .. })
                | (2, StoreError::NotFound { .. }) => {}
                (3, e) if format!("{e:?}").contains("poisoned finding") => {}
                _ => panic!("bad batch {b}: unexpected error {e:?}"),
            }
        }
    }
    // Every good batch whole, nothing of a bad one.
    let found: BTreeSet<String> = all_findings(&*s).into_iter().map(|f| f.id).collect();
    assert_eq!(found, stored_ids);
    assert_eq!(found.len(), HOSTS * BATCHES * PER_BATCH);

    // Each (reason, subject, service) of unsanctioned or blocked uses alerted exactly once.
    let mut expected = BTreeSet::new();
    for h in 0..HOSTS {
        for b in 0..BATCHES {
            for f in batch(h, b).findings {
                if matches!(f.verdict, Verdict::Unsanctioned | Verdict::Blocked) {
                    let sv = f.service_id.clone();
                    expected.insert((AlertReason::NewInFleet, String::new(), sv.clone()));
                    expected.insert((AlertReason::NewHost, f.host_id.clone(), sv.clone()));
                    expected.insert((AlertReason::NewUser, f.user.clone(), sv));
                }
            }
        }
    }
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(alerts.values().all(|&n| n == 1), "{alerts:?}");
    assert_eq!(
        s.alerts(None, 1_000).unwrap().items.len(),
        answered,
        "alerts stored = alerts answered"
    );

    // True first use (`first_uses`) is the earliest time across all batches, whichever
    // batch stored it. A range that starts after most findings makes the report show it:
    // a user's first seen is the earlier of its first use and the range's own findings.
    let late_range = FindingQuery {
        from_ms: Some(T0 + 109_000),
        ..Default::default()
    };
    let users = s
        .group_report(GroupBy::User, &late_range, GroupSort::Events, 50, 0)
        .unwrap();
    assert!(!users.items.is_empty());
    for row in &users.items {
        let earliest = (0..HOSTS)
            .flat_map(|h| (0..BATCHES).flat_map(move |b| batch(h, b).findings))
            .filter(|f| f.user == row.key)
            .map(|f| f.first_seen_ms)
            .min()
            .unwrap();
        assert!(earliest < T0 + 49_000);
        assert_eq!(row.first_seen_ms, earliest, "user {}", row.key);
    }
    // A late upload from before every stored time moves it earlier, though this process
    // knows the key (it skips only keys stored at or before the batch's time).
    let mut late = batch(0, 500);
    for f in &mut late.findings {
        f.user = "u0".into();
        f.first_seen_ms = T0 - 5_000;
        f.window_start_ms = T0 - 5_000;
        f.window_end_ms = T0 + 1_000;
    }
    assert!(matches!(
        ingest(&*s, "agt-0", late.clone(), &p),
        Sent::Good { .. }
    ));
    let users = s
        .group_report(GroupBy::User, &late_range, GroupSort::Events, 50, 0)
        .unwrap();
    let u0 = users.items.iter().find(|r| r.key == "u0").unwrap();
    assert_eq!(u0.first_seen_ms, T0 - 5_000);
    // Re-sent: a replay with the counts of the first time, raising nothing.
    let (ack, raised) = s
        .ingest_shared("agt-0", Arc::new(late), &p, T0 + 120_000)
        .unwrap();
    assert!(ack.replayed && ack.accepted == PER_BATCH as u64);
    assert!(raised.alerts.is_empty());
}

#[test]
fn sqlite_concurrent_ingests_share_commits_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = Arc::new(shadowai_collector::store::sqlite::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(SQLITE_POISON)
        .unwrap();
    suite(store.clone());
    let (groups, batches) = store.ingest_group_stats();
    // Each poisoned batch (kind 3: one per host) had its group written again with
    // savepoints; two of them in one group make one rewrite.
    let totals = store.group_commit_totals().unwrap();
    assert_eq!((totals.transactions, totals.batches), (groups, batches));
    assert!((1..=HOSTS as u64).contains(&totals.rewrites), "{totals:?}");
    // Good, bad and late batches all went through group commit; eight writers at once
    // queue behind each other's fsync, so some transactions held several batches.
    assert_eq!(batches as usize, HOSTS * BATCHES + HOSTS * BATCHES / 4 + 2);
    assert!(
        groups < batches,
        "{groups} transactions for {batches} batches"
    );
}

#[test]
fn postgres_concurrent_ingests_fail_alone_and_alert_once() {
    let pg = PgServer::start();
    let url = pg.create_db("concurrent");
    let store = shadowai_collector::store::postgres::open(&url, 4, None).unwrap();
    assert_eq!(store.group_commit_totals(), None);
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap()
        .batch_execute(POSTGRES_POISON)
        .unwrap();
    suite(Arc::new(store));
}
