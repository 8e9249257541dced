//! The roll-up's fold (issue 14, `store/fold.rs`): ingests leave findings unfolded, folds add
//! them to the roll-up, and the reports are exact throughout — on SQLite and a throwaway
//! PostgreSQL.
//!
//! - One statement sees every finding exactly once (the roll-up's sums plus the unfolded
//!   findings equal `findings`), checked again and again while ingests, two folders (two
//!   replicas on PostgreSQL) and deletes run at once; afterwards every report equals the raw
//!   query's, before and after the last fold.
//! - A folder finding the fold lock taken (the other replica folds) does nothing; an ingest
//!   past twice the bound then is refused (`FoldBehind`).
//! - A flood from one host with no folder running: what waits stays within the bound plus one
//!   batch (ingests fold themselves); with the fold failing, an ingest past the bound is
//!   refused (`FoldBacklog`) and nothing more waits; once the fold works again it catches up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PgServer, enroll_in_store, finding};
use shadowai_api::{Bucket, Finding, FindingQuery, GroupBy, IngestBatch, Verdict};
use shadowai_collector::store::{GroupSort, Store, StoreError};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_763_769_600_000; // 2025-11-22T00:00:00Z

/// Runs one SQL statement, returning its rows' first columns as integers.
type Sql<'a> = &'a (dyn Fn(&str) -> Result<Vec<i64>, String> + Sync);

fn batch(host: usize, b: usize, n: usize) -> Vec<Finding> {
    (0..n)
        .map(|k| {
            let i = b * n + k;
            let start = T0 + (i as i64 % 9) * DAY / 2 + i as i64 * 997;
            let mut f = finding(
                &format!("h{host}-b{b}-{k}"),
                &format!("host-{host}"),
                ["chatgpt", "claude", "gemini"][i % 3],
                [Verdict::Unsanctioned, Verdict::Tolerated][i % 2],
                &format!("user-{}", i % 7),
                start,
            );
            f.window_end_ms = start + 60_000;
            f.count = (i % 13) as u64;
            f.bytes_out = (!i.is_multiple_of(4)).then_some(i as u64 * 31);
            f
        })
        .collect()
}

fn ingest(s: &dyn Store, host: usize, b: usize, n: usize) -> Result<u64, StoreError> {
    s.ingest(
        &format!("agt-{host}"),
        &IngestBatch {
            batch_id: format!("b{b}"),
            findings: batch(host, b, n),
        },
        T0,
    )
    .map(|a| a.accepted)
}

/// In one statement: findings, what the roll-up holds (keys' totals, days), what is unfolded.
const ONCE: &str = "SELECT (SELECT COUNT(*) FROM findings), \
     (SELECT COALESCE(SUM(findings), 0) FROM finding_keys), \
     (SELECT COALESCE(SUM(findings), 0) FROM finding_days), \
     (SELECT COUNT(*) FROM findings_unfolded)";

fn counted_once(sql: Sql, what: &str) -> i64 {
    let v = sql(ONCE).unwrap();
    assert_eq!(
        v[0],
        v[1] + v[3],
        "{what}: keys + unfolded = findings ({v:?})"
    );
    assert_eq!(
        v[0],
        v[2] + v[3],
        "{what}: days + unfolded = findings ({v:?})"
    );
    v[3]
}

fn reports(s: &dyn Store, q: &FindingQuery) -> Vec<serde_json::Value> {
    let mut out = vec![
        serde_json::to_value(s.services_report(q).unwrap()).unwrap(),
        serde_json::to_value(s.trend_by(q, Bucket::Day).unwrap()).unwrap(),
        serde_json::to_value(s.facets(q).unwrap()).unwrap(),
    ];
    for by in [GroupBy::User, GroupBy::Host] {
        out.push(
            serde_json::to_value(s.group_report(by, q, GroupSort::Events, 50, 0).unwrap()).unwrap(),
        );
    }
    out
}

/// Every report with the roll-up equals the raw query's.
fn exact(s: &dyn Store, set_rollup: &dyn Fn(bool), what: &str) {
    let queries = [
        FindingQuery::default(),
        FindingQuery {
            from_ms: Some(T0 + DAY + 5),
            to_ms: Some(T0 + 4 * DAY),
            ..FindingQuery::default()
        },
        FindingQuery {
            from_ms: Some(T0 + 2 * DAY),
            ..FindingQuery::default()
        },
        FindingQuery {
            host: Some("host-1".into()),
            ..FindingQuery::default()
        },
    ];
    for q in &queries {
        set_rollup(false);
        let raw = reports(s, q);
        set_rollup(true);
        assert_eq!(raw, reports(s, q), "{what}: reports differ under {q:?}");
    }
}

fn enroll(s: &dyn Store, hosts: usize) {
    for h in 0..hosts {
        enroll_in_store(
            s,
            "fold",
            &format!("agt-{h}"),
            &format!("host-{h}"),
            None,
            T0,
        );
    }
}

/// Ingests on three hosts, two folders and deletes at once; `counted_once` checked all along.
fn race(a: &dyn Store, b: &dyn Store, sql: Sql, set_rollup: &dyn Fn(bool)) {
    enroll(a, 3);
    let done = AtomicBool::new(false);
    let checks = std::thread::scope(|sc| {
        let ingests: Vec<_> = (0..3)
            .map(|h| {
                let s = if h == 1 { b } else { a };
                sc.spawn(move || {
                    for i in 0..40 {
                        assert_eq!(ingest(s, h, i, 50).unwrap(), 50);
                    }
                })
            })
            .collect();
        for s in [a, b] {
            let done = &done;
            sc.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    s.fold_rollup(37).unwrap();
                }
            });
        }
        let deleter = sc.spawn(|| {
            for i in 0..10 {
                // Batch `i` of host-2 once it is stored (it may be folded or not yet).
                let stored = format!("SELECT COUNT(*) FROM findings WHERE id LIKE 'h2-b{i}-%'");
                let deadline = Instant::now() + Duration::from_secs(60);
                while sql(&stored).unwrap()[0] < 50 {
                    assert!(
                        Instant::now() < deadline,
                        "host-2's batch {i} not stored in 60 s"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                sql(&format!(
                    "DELETE FROM findings WHERE host_id = 'host-2' AND id LIKE 'h2-b{i}-%'"
                ))
                .unwrap();
            }
        });
        let checker = sc.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                counted_once(sql, "during the race");
                n += 1;
            }
            n
        });
        for i in ingests {
            i.join().unwrap();
        }
        deleter.join().unwrap();
        done.store(true, Ordering::Relaxed);
        checker.join().unwrap()
    });
    assert!(checks > 0);
    let left = counted_once(sql, "after the race");
    exact(a, set_rollup, "after the race");
    // Deleted while unfolded or folded: gone from the reports either way.
    let v = sql("SELECT COUNT(*) FROM findings WHERE host_id = 'host-2'").unwrap();
    assert_eq!(v[0], 30 * 50);
    while a.fold_rollup(1_000).unwrap().pending > 0 {}
    assert_eq!(counted_once(sql, "folded"), 0);
    exact(a, set_rollup, &format!("after folding the {left} left"));
}

/// A flood with no folder running: the bound holds; a failing fold refuses ingests past it.
fn flood(s: &dyn Store, set_bound: &dyn Fn(u64), sql: Sql, break_fold: &str, mend: &str) {
    enroll(s, 1);
    set_bound(1_000);
    let mut most = 0;
    for b in 0..30 {
        assert_eq!(ingest(s, 0, b, 200).unwrap(), 200);
        most = most.max(counted_once(sql, "flood"));
    }
    assert!(
        most <= 1_000 + 200,
        "{most} waited: the bound is 1,000 + a batch"
    );
    assert!(most >= 1_000, "{most}: the bound was reached");
    // The fold fails: findings wait up to the bound, then ingests are refused.
    sql(break_fold).unwrap();
    let mut refused = 0;
    for b in 30..50 {
        match ingest(s, 0, b, 200) {
            Ok(n) => assert_eq!(n, 200),
            Err(StoreError::FoldBacklog { pending, .. }) => {
                assert!(pending >= 1_000);
                refused += 1;
            }
            Err(e) => panic!("batch {b}: {e}"),
        }
        assert!(counted_once(sql, "fold failing") <= 1_000 + 200);
    }
    assert!(refused >= 14, "{refused} batches refused");
    sql(mend).unwrap();
    assert_eq!(ingest(s, 0, 99, 200).unwrap(), 200);
    while s.fold_rollup(500).unwrap().pending > 0 {}
    assert_eq!(counted_once(sql, "mended"), 0);
}

fn sqlite_sql(path: &std::path::Path) -> impl Fn(&str) -> Result<Vec<i64>, String> + Sync {
    let c = std::sync::Mutex::new(rusqlite::Connection::open(path).unwrap());
    c.lock()
        .unwrap()
        .busy_timeout(Duration::from_secs(30))
        .unwrap();
    move |q: &str| {
        let c = c.lock().unwrap();
        let mut st = c.prepare(q).map_err(|e| e.to_string())?;
        if st.column_count() == 0 {
            st.execute([]).map_err(|e| e.to_string())?;
            return Ok(Vec::new());
        }
        let n = st.column_count();
        let mut rows = st.query([]).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        if let Some(r) = rows.next().map_err(|e| e.to_string())? {
            for i in 0..n {
                out.push(r.get::<_, i64>(i).map_err(|e| e.to_string())?);
            }
        }
        Ok(out)
    }
}

fn pg_sql(conn: &str) -> impl Fn(&str) -> Result<Vec<i64>, String> + Sync {
    let c = std::sync::Mutex::new(postgres::Client::connect(conn, postgres::NoTls).unwrap());
    move |q: &str| {
        let mut c = c.lock().unwrap();
        let rows = c.simple_query(q).map_err(|e| format!("{e:?}"))?;
        let mut out = Vec::new();
        for m in rows {
            if let postgres::SimpleQueryMessage::Row(r) = m
                && out.is_empty()
            {
                for i in 0..r.len() {
                    out.push(r.get(i).unwrap_or("0").parse().unwrap());
                }
            }
        }
        Ok(out)
    }
}

#[test]
fn sqlite_reports_exact_while_ingests_folds_and_deletes_race() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = shadowai_collector::store::sqlite::open(&path).unwrap();
    let sql = sqlite_sql(&path);
    race(&s, &s, &sql, &|on| s.set_rollup(on));
}

#[test]
fn postgres_reports_exact_while_two_replicas_fold_and_ingests_and_deletes_race() {
    let pg = PgServer::start();
    let conn = pg.create_db("foldrace");
    let a = shadowai_collector::store::postgres::open(&conn, 4, None).unwrap();
    let b = shadowai_collector::store::postgres::open(&conn, 4, None).unwrap();
    let sql = pg_sql(&conn);
    race(&a, &b, &sql, &|on| a.set_rollup(on));
}

#[test]
fn postgres_folder_skips_while_the_other_replica_folds() {
    let pg = PgServer::start();
    let conn = pg.create_db("foldskip");
    let s = shadowai_collector::store::postgres::open(&conn, 2, None).unwrap();
    enroll(&s, 1);
    assert_eq!(ingest(&s, 0, 0, 20).unwrap(), 20);
    let mut other = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
    let mut tx = other.transaction().unwrap();
    tx.batch_execute("SELECT pg_advisory_xact_lock(1936220522)")
        .unwrap();
    let t = Instant::now();
    let out = s.fold_rollup(100).unwrap();
    assert!(out.busy && out.folded == 0, "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "it did not wait");
    // Past twice the bound while the other holds the lock (stuck or slow): refused.
    s.set_fold_bound(10);
    match ingest(&s, 0, 1, 5) {
        Err(StoreError::FoldBehind { pending }) => assert_eq!(pending, 20),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.count_findings().unwrap(), 20, "nothing of it stored");
    tx.rollback().unwrap();
    assert_eq!(ingest(&s, 0, 1, 5).unwrap(), 5);
    let out = s.fold_rollup(100).unwrap();
    assert_eq!((out.busy, out.pending), (false, 0));
}

#[test]
fn sqlite_flood_stays_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = shadowai_collector::store::sqlite::open(&path).unwrap();
    let sql = sqlite_sql(&path);
    flood(
        &s,
        &|b| s.set_fold_bound(b),
        &sql,
        "CREATE TRIGGER boom BEFORE INSERT ON finding_days BEGIN SELECT RAISE(ABORT, 'boom'); END",
        "DROP TRIGGER boom",
    );
    exact(&s, &|on| s.set_rollup(on), "after the flood");
}

#[test]
fn postgres_flood_stays_within_the_bound() {
    let pg = PgServer::start();
    let conn = pg.create_db("foldflood");
    let s = shadowai_collector::store::postgres::open(&conn, 2, None).unwrap();
    let sql = pg_sql(&conn);
    flood(
        &s,
        &|b| s.set_fold_bound(b),
        &sql,
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'boom'; END $$; CREATE TRIGGER boom BEFORE INSERT ON finding_days \
         FOR EACH ROW EXECUTE FUNCTION boom()",
        "DROP TRIGGER boom ON finding_days",
    );
    exact(&s, &|on| s.set_rollup(on), "after the flood");
}
