//! The daily roll-up returns exactly what the raw findings do (issue 14), on SQLite and a
//! throwaway PostgreSQL: randomised findings over many days, hosts (renamed mid-way), users,
//! executables, groups, verdicts, actions, risk scores, byte counts known and unknown, windows
//! of zero length, across midnight, longer than an hour and longer than a day, duplicates
//! re-sent; every report (services, day and hour trends, the four group-bys in both orders,
//! pickers, and searches by host through `finding_keys`) under random filters whose ranges cut
//! days, start at midnight or are open — with
//! the roll-up on and off — then again after deleting random findings; an UPDATE of a finding
//! is refused (it would bypass the roll-up). The unfiltered day trend reads the per-day sums
//! (`finding_day_sums`): a host flooding junk user names under every verdict, users shared by
//! hosts, and deletes that empty a host's or user's day keep it equal to the raw findings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{PgServer, finding};
use shadowai_api::{Action, Bucket, Finding, FindingQuery, GroupBy, IngestBatch, Verdict};
use shadowai_collector::store::{EnrollAttempt, EnrollOutcome, GroupSort, NewEnrollmentKey, Store};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const T0: i64 = 1_763_769_600_000; // 2025-11-22T00:00:00Z
const DAYS: i64 = 12;
const HOSTS: usize = 6;

/// A small deterministic generator (xorshift64*): the same findings on both stores.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn host(i: usize) -> String {
    format!("host-{i}")
}

fn enroll_all(s: &dyn Store) {
    s.seed_enrollment_key(
        &NewEnrollmentKey {
            key_hash: "rollup-secret".into(),
            note: "rollup".into(),
            expires_ms: None,
            max_uses: None,
        },
        T0,
    )
    .unwrap();
    for i in 0..HOSTS {
        let group = ["finance", "eng"].get(i % 3).copied();
        let out = s
            .enroll_host(
                &EnrollAttempt {
                    secret_hash: "rollup-secret".into(),
                    host_id: host(i),
                    hostname: format!("{}.example", host(i)),
                    group: group.map(Into::into),
                    agent_version: "0.1.0".into(),
                    key_sha256: format!("key-{i}"),
                    new_agent_id: format!("agt-{i}"),
                    token_hash: format!("hash-{i}"),
                    max_hosts: 100,
                    peer: "127.0.0.1".into(),
                },
                T0,
            )
            .unwrap();
        assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
    }
}

fn random_finding(r: &mut Rng, n: usize, h: usize) -> Finding {
    let verdicts = [
        Verdict::Sanctioned,
        Verdict::Tolerated,
        Verdict::Unsanctioned,
        Verdict::Blocked,
    ];
    let verdict = verdicts[r.below(4) as usize];
    let service = r.pick(&["chatgpt", "claude", "deepseek", "gemini"]);
    let user = r.pick(&["alice", "bob", "carol", "dave", "Eve"]);
    let start = T0 + r.below(DAYS as u64 * DAY as u64) as i64;
    let mut f = finding(&format!("f{n}"), &host(h), service, verdict, user, start);
    // Windows: a minute mostly; zero length, across midnight, > 1 h and > 1 day sometimes.
    let len = match r.below(20) {
        0 => 0,
        1 => 2 * HOUR + r.below(HOUR as u64) as i64,
        2 => DAY + r.below(DAY as u64) as i64,
        3 => (start / DAY + 1) * DAY - start + 30_000,
        _ => 60_000,
    };
    f.window_end_ms = start + len;
    f.first_seen_ms = start + r.below(1_000) as i64;
    f.last_seen_ms = f.first_seen_ms + r.below(len.max(1) as u64) as i64;
    f.action = match (verdict, r.below(3)) {
        (Verdict::Blocked, 0) => Action::WouldBlock,
        (Verdict::Blocked, _) => Action::Blocked,
        (Verdict::Unsanctioned, 0) => Action::WouldBlock,
        _ => Action::Allowed,
    };
    f.process.exe = r
        .pick(&[
            "/usr/bin/python3",
            "/usr/bin/curl",
            "/opt/app/bin/app",
            "/usr/bin/node",
        ])
        .into();
    f.process.name = f.process.exe.rsplit('/').next().unwrap_or("x").into();
    f.process.container_id = ["c1", "c2"].get(r.below(3) as usize).map(|c| (*c).into());
    // A host renamed half-way through; risk drifts within a service.
    if start > T0 + DAYS / 2 * DAY && h.is_multiple_of(2) {
        f.hostname = format!("{}-renamed.example", host(h));
    }
    f.risk_score = [10, 45, 80][r.below(3) as usize];
    f.category = if service == "deepseek" {
        "chat_cn"
    } else {
        "chat"
    }
    .into();
    f.service_name = format!("{service} v{}", r.below(2));
    f.count = r.below(50);
    f.bytes_out = (r.below(3) > 0).then(|| r.below(1 << 40));
    f.bytes_in = f.bytes_out.map(|b| b / 3);
    f
}

fn load(s: &dyn Store, seed: u64) -> Vec<Finding> {
    enroll_all(s);
    let mut r = Rng(seed);
    let mut all = Vec::new();
    for b in 0..40 {
        let h = (b % HOSTS as u64) as usize;
        let mut batch: Vec<Finding> = (0..25)
            .map(|k| random_finding(&mut r, (b * 25 + k) as usize, h))
            .collect();
        // Re-sent findings (an agent's retry under a new batch id): stored once.
        if b >= HOSTS as u64 {
            let again: Vec<Finding> = all
                .iter()
                .filter(|f: &&Finding| f.host_id == host(h))
                .take(3)
                .cloned()
                .collect();
            batch.extend(again);
        }
        let ack = s
            .ingest(
                &format!("agt-{h}"),
                &IngestBatch {
                    batch_id: format!("b{b}"),
                    findings: batch.clone(),
                },
                T0,
            )
            .unwrap();
        assert!(!ack.replayed);
        all.extend(batch.into_iter().take(25));
    }
    assert_eq!(s.count_findings().unwrap(), all.len() as u64);
    all
}

/// Random filters: ranges cutting days, at midnight, one-sided, open, empty; plus the other
/// filters alone or combined.
fn filters(seed: u64) -> Vec<FindingQuery> {
    let mut r = Rng(seed);
    let mut out = vec![
        FindingQuery::default(),
        FindingQuery {
            from_ms: Some(T0 + 3 * DAY),
            ..FindingQuery::default()
        },
        FindingQuery {
            to_ms: Some(T0 + 5 * DAY),
            ..FindingQuery::default()
        },
        FindingQuery {
            from_ms: Some(T0 + 2 * DAY),
            to_ms: Some(T0 + 9 * DAY),
            ..FindingQuery::default()
        },
        FindingQuery {
            from_ms: Some(T0 + 2 * DAY + 5),
            to_ms: Some(T0 + 2 * DAY + HOUR),
            ..FindingQuery::default()
        },
        FindingQuery {
            container: Some("c1".into()),
            from_ms: Some(T0 + DAY + 7),
            ..FindingQuery::default()
        },
    ];
    // Hosts by id, by a name held before or after a rename, by a name no host has.
    for h in [
        "host-2",
        "host-2-renamed.example",
        "host-2.example",
        "host-5",
        "nope",
    ] {
        out.push(FindingQuery {
            host: Some(h.into()),
            ..FindingQuery::default()
        });
    }
    // Time alone (the day trend then reads the per-day sums, the hour trend on PostgreSQL
    // its hours one by one): random, midnight-aligned.
    for _ in 0..16 {
        let a = T0 - DAY + r.below((DAYS as u64 + 2) * DAY as u64) as i64;
        let a = if r.below(3) == 0 { a / DAY * DAY } else { a };
        let b = a + r.below(6 * DAY as u64) as i64;
        out.push(FindingQuery {
            from_ms: (r.below(4) > 0).then_some(a),
            to_ms: (r.below(2) == 0).then_some(b),
            ..FindingQuery::default()
        });
    }
    for _ in 0..40 {
        let a = T0 - DAY + r.below((DAYS as u64 + 2) * DAY as u64) as i64;
        let b = a + r.below(8 * DAY as u64) as i64;
        let mut q = FindingQuery {
            from_ms: (r.below(4) > 0).then_some(a),
            to_ms: (r.below(3) == 0).then_some(b),
            ..FindingQuery::default()
        };
        match r.below(10) {
            0 => q.service = Some(r.pick(&["chatgpt", "deepseek"]).into()),
            1 => q.user = Some(r.pick(&["alice", "Eve"]).into()),
            2 => {
                q.host = Some(
                    r.pick(&["host-2", "host-2-renamed.example", "host-1.example"])
                        .into(),
                )
            }
            3 => q.verdict = Some([Verdict::Unsanctioned, Verdict::Blocked][r.below(2) as usize]),
            4 => q.action = Some([Action::WouldBlock, Action::Allowed][r.below(2) as usize]),
            5 => q.group = Some(r.pick(&["finance", "(none)"]).into()),
            6 => q.risk_min = Some(45),
            7 => q.user_contains = Some("E".into()),
            8 => {
                q.process = Some("curl".into());
                q.category = Some("chat".into());
            }
            _ => {}
        }
        out.push(q);
    }
    out
}

/// Every report under `q`, as JSON (so one comparison shows the whole difference).
fn reports(s: &dyn Store, q: &FindingQuery) -> Vec<serde_json::Value> {
    let mut out = vec![
        serde_json::to_value(s.services_report(q).unwrap()).unwrap(),
        serde_json::to_value(s.trend_by(q, Bucket::Day).unwrap()).unwrap(),
        serde_json::to_value(s.trend_by(q, Bucket::Hour).unwrap()).unwrap(),
        serde_json::to_value(s.facets(q).unwrap()).unwrap(),
    ];
    // Searches (newest first, two pages): a host filter reads through `finding_keys`.
    let (page, next) = s.search(q, 7, None).unwrap();
    let ids = |p: &[Finding]| p.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    out.push(serde_json::json!([ids(&page), next]));
    if let Some(c) = next {
        let (page, next) = s.search(q, 500, Some(c)).unwrap();
        out.push(serde_json::json!([ids(&page), next]));
    }
    for by in [
        GroupBy::User,
        GroupBy::Host,
        GroupBy::Process,
        GroupBy::Group,
    ] {
        for sort in [GroupSort::Events, GroupSort::Uploaders] {
            out.push(serde_json::to_value(s.group_report(by, q, sort, 3, 1).unwrap()).unwrap());
            out.push(serde_json::to_value(s.group_report(by, q, sort, 50, 0).unwrap()).unwrap());
        }
    }
    out
}

fn compare(s: &dyn Store, set_rollup: &dyn Fn(bool), seed: u64, what: &str) -> usize {
    let mut nonempty = 0;
    for q in filters(seed) {
        set_rollup(false);
        let raw = reports(s, &q);
        set_rollup(true);
        let rolled = reports(s, &q);
        for (i, (a, b)) in raw.iter().zip(&rolled).enumerate() {
            assert_eq!(a, b, "{what}: report #{i} differs under {q:?}");
        }
        nonempty += usize::from(raw[0].as_array().is_some_and(|a| !a.is_empty()));
    }
    nonempty
}

/// Adversarial input for the per-day distinct counts: one batch (several insert statements)
/// in which a host floods 300 junk user names over two days, two services and every verdict,
/// some users seen again under another verdict and on another host, and the same host under
/// several verdicts the same day.
fn flood(s: &dyn Store) {
    let verdicts = [
        Verdict::Sanctioned,
        Verdict::Tolerated,
        Verdict::Unsanctioned,
        Verdict::Blocked,
    ];
    for (h, batch_id, users) in [(3, "flood-a", 300), (4, "flood-b", 40)] {
        let findings: Vec<Finding> = (0..users)
            .map(|i| {
                let start = T0 + 4 * DAY + (i as i64 % 2) * DAY + i as i64 * 1_000;
                let service = ["chatgpt", "claude"][i % 2];
                let mut f = finding(
                    &format!("{batch_id}-{i}"),
                    &host(h),
                    service,
                    verdicts[i % 4],
                    &format!("junk-{}", i % 97),
                    start,
                );
                f.window_end_ms = start + 60_000;
                f.count = i as u64;
                f.bytes_out = (i % 3 != 0).then_some(i as u64 * 1_000);
                f
            })
            .collect();
        let ack = s
            .ingest(
                &format!("agt-{h}"),
                &IngestBatch {
                    batch_id: batch_id.into(),
                    findings,
                },
                T0,
            )
            .unwrap();
        assert_eq!(ack.accepted, users as u64);
    }
}

/// The day trend of time-only filters reads the sums (changing them changes the trend), and
/// they stay small: at most days × services × verdicts rows, plus the pending deltas.
fn sums_are_read(s: &dyn Store, sql: &dyn Fn(&str) -> Result<u64, String>) {
    let q = FindingQuery::default();
    let before = serde_json::to_value(s.trend_by(&q, Bucket::Day).unwrap()).unwrap();
    // (On PostgreSQL the sums hold what was folded: one statement in 32 folds.)
    let n = sql("UPDATE finding_day_sums SET hosts = hosts + 1000").unwrap();
    assert!(
        n > 0 && n <= (DAYS + 1) as u64 * 4 * 4,
        "{n}: one sums row per day, service and verdict"
    );
    sql("UPDATE finding_day_pending SET hosts = hosts + 1000").unwrap();
    let after = serde_json::to_value(s.trend_by(&q, Bucket::Day).unwrap()).unwrap();
    assert_ne!(before, after, "the day trend reads finding_day_sums");
    sql("UPDATE finding_day_sums SET hosts = hosts - 1000").unwrap();
    sql("UPDATE finding_day_pending SET hosts = hosts - 1000").unwrap();
}

/// Folds everything waiting (in bounded folds).
fn fold_all(s: &dyn Store) {
    for _ in 0..1_000 {
        let out = s.fold_rollup(shadowai_collector::store::FOLD_ROWS).unwrap();
        assert!(!out.busy, "no other folder runs here");
        if out.pending == 0 {
            return;
        }
    }
    panic!("the fold made no progress in 1,000 folds");
}

fn suite(
    s: &dyn Store,
    set_rollup: &dyn Fn(bool),
    sql: &dyn Fn(&str) -> Result<u64, String>,
    backfill: &str,
) {
    let all = load(s, 0x5eed_1234_abcd_0001);
    flood(s);
    // Nothing folded yet: the reports read the unfolded findings.
    let nonempty = compare(s, set_rollup, 7, "after ingest, before any fold");
    assert!(nonempty > 20, "most filters select something ({nonempty})");
    // Part folded (the fold is bounded), then all.
    let out = s.fold_rollup(300).unwrap();
    assert_eq!(out.folded, 300);
    assert_eq!(out.pending, all.len() as u64 + 340 - 300);
    compare(s, set_rollup, 7, "part folded");
    fold_all(s);
    compare(s, set_rollup, 7, "all folded");
    sums_are_read(s, sql);
    // Findings ingested and deleted before their fold, beside folded ones.
    let pre: Vec<Finding> = all
        .iter()
        .filter(|f| f.host_id == host(2))
        .take(12)
        .map(|f| {
            let mut f = f.clone();
            f.id = format!("pre-{}", f.id);
            f
        })
        .collect();
    let ack = s
        .ingest(
            "agt-2",
            &IngestBatch {
                batch_id: "pre".into(),
                findings: pre.clone(),
            },
            T0,
        )
        .unwrap();
    assert_eq!(ack.accepted, 12);
    compare(s, set_rollup, 11, "folded and unfolded");
    let n = sql(&format!(
        "DELETE FROM findings WHERE id IN ({})",
        pre.iter()
            .step_by(2)
            .map(|f| format!("'{}'", f.id))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .unwrap();
    assert_eq!(n, 6);
    compare(s, set_rollup, 12, "unfolded findings deleted");
    // Deletes (retention, an admin's clean-up) keep the roll-up exact.
    let victims: Vec<String> = all
        .iter()
        .step_by(7)
        .map(|f| format!("'{}'", f.id))
        .collect();
    let n = sql(&format!(
        "DELETE FROM findings WHERE id IN ({})",
        victims.join(", ")
    ))
    .unwrap();
    assert_eq!(n, victims.len() as u64);
    let n = sql(&format!(
        "DELETE FROM findings WHERE window_start_ms < {}",
        T0 + 2 * DAY
    ))
    .unwrap();
    assert!(n > 0);
    // The last findings of a host under one verdict on a day; half of a flooding host's.
    let n = sql(&format!(
        "DELETE FROM findings WHERE host_id = 'host-3' AND verdict = 'tolerated' \
         AND window_start_ms >= {} AND window_start_ms < {}",
        T0 + 4 * DAY,
        T0 + 5 * DAY
    ))
    .unwrap();
    assert!(n > 0);
    let n = sql("DELETE FROM findings WHERE id LIKE 'flood-a-%' AND count % 2 = 1").unwrap();
    assert!(n > 0);
    compare(s, set_rollup, 8, "after deletes");
    sums_are_read(s, sql);
    // Findings are immutable: an UPDATE would bypass the roll-up.
    let e = sql("UPDATE findings SET count = count + 1").unwrap_err();
    assert!(e.contains("findings are immutable"), "{e}");
    // New findings after the deletes.
    let ack = s
        .ingest(
            "agt-1",
            &IngestBatch {
                batch_id: "late".into(),
                findings: all
                    .iter()
                    .filter(|f| f.host_id == host(1))
                    .take(10)
                    .map(|f| {
                        let mut f = f.clone();
                        f.id = format!("late-{}", f.id);
                        f
                    })
                    .collect(),
            },
            T0,
        )
        .unwrap();
    assert_eq!(ack.accepted, 10);
    compare(s, set_rollup, 9, "after more ingest");
    fold_all(s);
    compare(s, set_rollup, 9, "after more ingest, folded");
    // The migration's back-fill of the per-day sums gives what the folds kept.
    let kept = serde_json::to_value(s.trend_by(&FindingQuery::default(), Bucket::Day).unwrap());
    for t in [
        "finding_day_sums",
        "finding_day_pending",
        "finding_day_hosts",
        "finding_day_users",
    ] {
        sql(&format!("DELETE FROM {t}")).unwrap();
    }
    for stmt in backfill.split(";\n").filter(|s| !s.trim().is_empty()) {
        assert!(sql(stmt).unwrap() > 0, "{stmt}");
    }
    let rebuilt = serde_json::to_value(s.trend_by(&FindingQuery::default(), Bucket::Day).unwrap());
    assert_eq!(
        kept.unwrap(),
        rebuilt.unwrap(),
        "back-filled sums = trigger-kept sums"
    );
    compare(s, set_rollup, 10, "after the back-fill");
}

#[test]
fn sqlite_rollup_matches_raw_findings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = shadowai_collector::store::sqlite::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    suite(
        &s,
        &|on| s.set_rollup(on),
        &|q| {
            c.execute(q, [])
                .map(|n| n as u64)
                .map_err(|e| e.to_string())
        },
        shadowai_collector::store::rollup_sums::SQLITE_BACKFILL,
    );
}

#[test]
fn postgres_rollup_matches_raw_findings() {
    let pg = PgServer::start();
    let conn = pg.create_db("rollup");
    let s = shadowai_collector::store::postgres::open(&conn, 2, None).unwrap();
    let c = std::sync::Mutex::new(postgres::Client::connect(&conn, postgres::NoTls).unwrap());
    suite(
        &s,
        &|on| s.set_rollup(on),
        &|q| {
            c.lock()
                .unwrap()
                .execute(q, &[])
                .map_err(|e| format!("{e:?}"))
        },
        shadowai_collector::store::rollup_sums::POSTGRES_BACKFILL,
    );
}
