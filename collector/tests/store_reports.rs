//! Issue 15's report aggregates, run against SQLite and a throwaway PostgreSQL: bytes and
//! actions per service, hour/day trend buckets, group-by user / host / process / host group
//! with paging and true first use, top uploaders to unsanctioned services, pickers from the
//! data, partial case-insensitive filters, and first-use alerts raised once per key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{PgServer, finding};
use shadowai_api::{
    Action, AlertReason, Bucket, Finding, FindingQuery, GroupBy, IngestBatch, Layer, Verdict,
};
use shadowai_collector::store::{GroupSort, Store};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_763_769_600_000; // 2025-11-22T00:00:00Z

fn enroll(s: &dyn Store, agent: &str, host: &str, group: Option<&str>) {
    common::enroll_in_store(s, "reports", agent, host, group, T0);
}

#[allow(
    clippy::too_many_arguments,
    reason = "a test finding is described by all of these"
)]
fn use_of(
    id: &str,
    host: &str,
    service: &str,
    verdict: Verdict,
    user: &str,
    exe: &str,
    start: i64,
    bytes_out: Option<u64>,
) -> Finding {
    let mut f = finding(id, host, service, verdict, user, start);
    f.process.exe = exe.into();
    f.bytes_out = bytes_out;
    f.bytes_in = bytes_out.map(|b| b / 10);
    f.policy_version = Some("1.4.0".into());
    f.risk_score = match service {
        "deepseek" => 80,
        "chatgpt" => 45,
        _ => 10,
    };
    if verdict == Verdict::Unsanctioned && service == "deepseek" {
        f.action = Action::WouldBlock;
        f.layer = Some(Layer::Sni);
    }
    f
}

fn ingest(s: &dyn Store, agent: &str, batch: &str, findings: Vec<Finding>, now: i64) -> usize {
    let (ack, raised) = s
        .ingest_alerting(
            agent,
            &IngestBatch {
                batch_id: batch.into(),
                findings,
            },
            now,
        )
        .unwrap();
    assert!(!ack.replayed);
    assert_eq!(raised.suppressed, 0);
    raised.alerts.len()
}

fn q() -> FindingQuery {
    FindingQuery::default()
}

fn suite(s: &dyn Store) {
    enroll(s, "agt-a", "host-a", Some("finance"));
    enroll(s, "agt-b", "host-b", None);
    // An old use (30 days back) that a 1-day range does not include: true first use.
    let old = use_of(
        "old",
        "host-a",
        "chatgpt",
        Verdict::Unsanctioned,
        "Alice",
        "/usr/bin/python3",
        T0 - 30 * DAY,
        Some(1_000),
    );
    assert_eq!(ingest(s, "agt-a", "b0", vec![old], T0 - 30 * DAY), 1);
    let day = vec![
        use_of(
            "a1",
            "host-a",
            "chatgpt",
            Verdict::Unsanctioned,
            "Alice",
            "/usr/bin/python3",
            T0,
            Some(50_000),
        ),
        use_of(
            "a2",
            "host-a",
            "deepseek",
            Verdict::Unsanctioned,
            "Alice",
            "/usr/bin/curl",
            T0 + 2 * HOUR,
            Some(900_000),
        ),
        use_of(
            "a3",
            "host-a",
            "claude",
            Verdict::Sanctioned,
            "bob",
            "/usr/bin/node",
            T0 + 2 * HOUR,
            Some(5_000_000),
        ),
        use_of(
            "a4",
            "host-a",
            "copilot",
            Verdict::Blocked,
            "bob",
            "/usr/bin/code",
            T0 + 3 * HOUR,
            None,
        ),
    ];
    // New in the fleet: deepseek (alice) and copilot (bob, blocked); chatgpt was seen in the
    // old batch, so a1 raises nothing.
    assert_eq!(ingest(s, "agt-a", "b1", day, T0 + 4 * HOUR), 2);
    let b = vec![
        use_of(
            "b1",
            "host-b",
            "deepseek",
            Verdict::Unsanctioned,
            "carol",
            "/opt/tools/DeepSeekClient",
            T0 + 5 * HOUR,
            Some(20_000),
        ),
        // the same key again in the same batch: one alert
        use_of(
            "b2",
            "host-b",
            "deepseek",
            Verdict::Unsanctioned,
            "carol",
            "/opt/tools/DeepSeekClient",
            T0 + 6 * HOUR,
            Some(1),
        ),
    ];
    assert_eq!(ingest(s, "agt-b", "b2", b.clone(), T0 + 7 * HOUR), 1);

    // ---- alerts: reasons, de-duplication, link, paging ----
    let page = s.alerts(None, 10).unwrap();
    assert_eq!(page.items.len(), 4);
    let newest = &page.items[0];
    assert_eq!(newest.service_id, "deepseek");
    assert_eq!(newest.hostname, "host-b.example");
    assert_eq!(
        newest.reasons,
        vec![AlertReason::NewHost, AlertReason::NewUser],
        "deepseek was already seen in the fleet (alice on host-a)"
    );
    assert!(
        newest
            .link
            .starts_with("#/findings?service=deepseek&host=host-b&user=carol"),
        "{}",
        newest.link
    );
    let oldest = page.items.last().unwrap();
    assert_eq!(oldest.service_id, "chatgpt");
    assert_eq!(
        oldest.reasons,
        vec![
            AlertReason::NewInFleet,
            AlertReason::NewHost,
            AlertReason::NewUser
        ]
    );
    let p1 = s.alerts(None, 3).unwrap();
    assert_eq!(p1.items.len(), 3);
    let p2 = s.alerts(p1.next_before, 3).unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next_before, None);
    // Sanctioned use raises nothing, a replay raises nothing.
    let (ack, again) = s
        .ingest_alerting(
            "agt-b",
            &IngestBatch {
                batch_id: "b2".into(),
                findings: b,
            },
            T0 + 8 * HOUR,
        )
        .unwrap();
    assert!(ack.replayed && again.alerts.is_empty());

    // ---- services: bytes, actions, true first use ----
    let day_q = FindingQuery {
        from_ms: Some(T0 - 1),
        to_ms: Some(T0 + DAY),
        ..q()
    };
    let services = s.services_report(&day_q).unwrap();
    let chatgpt = services.iter().find(|r| r.service_id == "chatgpt").unwrap();
    assert_eq!(chatgpt.bytes_out, 50_000);
    assert_eq!(chatgpt.bytes_in, 5_000);
    assert_eq!(chatgpt.first_seen_ms, T0 + 1, "first seen within the range");
    assert_eq!(
        chatgpt.first_seen_ever_ms,
        Some(T0 - 30 * DAY + 1),
        "true first use, not bound to the range"
    );
    let deepseek = services
        .iter()
        .find(|r| r.service_id == "deepseek")
        .unwrap();
    assert_eq!(deepseek.bytes_out, 920_001);
    assert_eq!(deepseek.would_block_events, 15);
    assert_eq!(deepseek.blocked_events, 0);
    let copilot = services.iter().find(|r| r.service_id == "copilot").unwrap();
    assert_eq!((copilot.blocked_events, copilot.bytes_out), (5, 0));

    // ---- trend: hour and day buckets ----
    let hours = s.trend_by(&day_q, Bucket::Hour).unwrap();
    let starts: Vec<i64> = hours.iter().map(|p| p.bucket_start_ms).collect();
    assert!(starts.contains(&T0) && starts.contains(&(T0 + 2 * HOUR)));
    assert!(starts.contains(&(T0 + 6 * HOUR)));
    assert!(hours.iter().all(|p| p.bucket == Bucket::Hour));
    let h2: u64 = hours
        .iter()
        .filter(|p| p.bucket_start_ms == T0 + 2 * HOUR)
        .map(|p| p.events)
        .sum();
    assert_eq!(h2, 10, "deepseek and claude at 02:00");
    let days = s.trend_by(&q(), Bucket::Day).unwrap();
    assert!(days.iter().all(|p| p.bucket_start_ms % DAY == 0));
    assert_eq!(days.first().unwrap().bucket_start_ms, T0 - 30 * DAY);
    assert_eq!(days.first().unwrap().day, "2025-10-23");

    // ---- group by user across services, with bytes and true first use ----
    let users = s
        .group_report(GroupBy::User, &day_q, GroupSort::Events, 10, 0)
        .unwrap();
    let alice = users.items.iter().find(|r| r.key == "Alice").unwrap();
    assert_eq!((alice.services, alice.risky_services), (2, 2));
    assert_eq!(alice.bytes_out, 950_000);
    assert_eq!(alice.first_seen_ms, T0 - 30 * DAY + 1);
    assert_eq!(alice.max_risk, 80);
    assert_eq!(alice.would_block_events, 5);
    let bob = users.items.iter().find(|r| r.key == "bob").unwrap();
    assert_eq!((bob.services, bob.risky_services), (2, 1));
    assert_eq!((bob.blocked_events, bob.bytes_known), (5, 1));
    // hosts: the label is the host name
    let hosts = s
        .group_report(GroupBy::Host, &q(), GroupSort::Events, 10, 0)
        .unwrap();
    assert_eq!(hosts.items[0].key, "host-a");
    assert_eq!(hosts.items[0].label, "host-a.example");
    assert_eq!(hosts.items[0].users, 2);
    // host groups: the agent's group at ingest; no group is ""
    let groups = s
        .group_report(GroupBy::Group, &q(), GroupSort::Events, 10, 0)
        .unwrap();
    let keys: Vec<&str> = groups.items.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["finance", ""]);
    // processes, paged one at a time: every process exactly once
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let p = s
            .group_report(GroupBy::Process, &q(), GroupSort::Events, 1, offset)
            .unwrap();
        seen.extend(p.items.into_iter().map(|r| r.key));
        match p.next_offset {
            Some(o) => offset = o,
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "/opt/tools/DeepSeekClient",
            "/usr/bin/code",
            "/usr/bin/curl",
            "/usr/bin/node",
            "/usr/bin/python3"
        ]
    );

    // ---- top uploaders: unsanctioned / blocked only, by bytes sent ----
    let up = s
        .group_report(GroupBy::User, &q(), GroupSort::Uploaders, 10, 0)
        .unwrap();
    let order: Vec<(&str, u64)> = up
        .items
        .iter()
        .map(|r| (r.key.as_str(), r.bytes_out))
        .collect();
    assert_eq!(
        order,
        vec![("Alice", 951_000), ("carol", 20_001), ("bob", 0)],
        "bob's 5 MB went to a sanctioned service and do not count"
    );

    // ---- partial, case-insensitive filters; risk range; action; group ----
    let count = |f: FindingQuery| s.search(&f, 100, None).unwrap().0.len();
    assert_eq!(
        count(FindingQuery {
            user_contains: Some("ALI".into()),
            ..q()
        }),
        3
    );
    assert_eq!(
        count(FindingQuery {
            host_contains: Some("B.EXAMPLE".into()),
            ..q()
        }),
        2
    );
    assert_eq!(
        count(FindingQuery {
            process_contains: Some("deepseekclient".into()),
            ..q()
        }),
        2
    );
    assert_eq!(
        count(FindingQuery {
            user_contains: Some("%".into()),
            ..q()
        }),
        0,
        "LIKE wildcards are taken literally"
    );
    assert_eq!(
        count(FindingQuery {
            risk_min: Some(50),
            risk_max: Some(100),
            ..q()
        }),
        3
    );
    assert_eq!(
        count(FindingQuery {
            action: Some(Action::WouldBlock),
            ..q()
        }),
        3
    );
    assert_eq!(
        count(FindingQuery {
            group: Some("finance".into()),
            ..q()
        }),
        5
    );
    assert_eq!(
        count(FindingQuery {
            group: Some(String::new()),
            ..q()
        }),
        2
    );
    assert_eq!(
        count(FindingQuery {
            group: Some("(none)".into()),
            ..q()
        }),
        2,
        "`(none)` is how a URL names hosts without a group"
    );

    // ---- pickers from the data ----
    let f = s.facets(&q()).unwrap();
    let svc: Vec<(&str, &str)> = f
        .services
        .iter()
        .map(|v| (v.value.as_str(), v.label.as_str()))
        .collect();
    assert_eq!(
        svc,
        vec![
            ("chatgpt", "chatgpt name"),
            ("claude", "claude name"),
            ("copilot", "copilot name"),
            ("deepseek", "deepseek name")
        ]
    );
    assert_eq!(f.categories.len(), 1);
    assert_eq!(f.categories[0].value, "chat");
    let verdicts: Vec<&str> = f.verdicts.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(verdicts, vec!["blocked", "sanctioned", "unsanctioned"]);
    let actions: Vec<&str> = f.actions.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(actions, vec!["allowed", "blocked", "would_block"]);
    assert_eq!((f.risk_min, f.risk_max), (Some(10), Some(80)));
    let later = s
        .facets(&FindingQuery {
            from_ms: Some(T0 + 4 * HOUR),
            ..q()
        })
        .unwrap();
    assert_eq!(later.services.len(), 1, "pickers follow the time range");
}

#[test]
fn sqlite_reports() {
    let dir = tempfile::tempdir().unwrap();
    let s = shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap();
    suite(&s);
}

#[test]
fn postgres_reports() {
    let pg = PgServer::start();
    let conn = pg.create_db("reports");
    let s = shadowai_collector::store::postgres::open(&conn, 2, None).unwrap();
    suite(&s);
}

/// A host flooding junk user names raises at most ALERTS_PER_BATCH alerts per batch; the rest
/// are recorded (they never alert later) and counted as suppressed.
fn flood(s: &dyn Store) {
    enroll(s, "agt-f", "host-f", None);
    let junk: Vec<Finding> = (0..200)
        .map(|i| {
            use_of(
                &format!("j{i}"),
                "host-f",
                "deepseek",
                Verdict::Unsanctioned,
                &format!("junk{i}"),
                "/tmp/x",
                T0,
                None,
            )
        })
        .collect();
    let (_, raised) = s
        .ingest_alerting(
            "agt-f",
            &IngestBatch {
                batch_id: "flood".into(),
                findings: junk.clone(),
            },
            T0,
        )
        .unwrap();
    assert_eq!(
        raised.alerts.len(),
        shadowai_collector::store::ALERTS_PER_BATCH
    );
    assert_eq!(
        raised.suppressed as usize,
        200 - shadowai_collector::store::ALERTS_PER_BATCH
    );
    let again: Vec<Finding> = junk
        .into_iter()
        .map(|mut f| {
            f.id = format!("again-{}", f.id);
            f
        })
        .collect();
    let (_, raised) = s
        .ingest_alerting(
            "agt-f",
            &IngestBatch {
                batch_id: "flood2".into(),
                findings: again,
            },
            T0,
        )
        .unwrap();
    assert_eq!(raised, shadowai_collector::store::Raised::default());
}

#[test]
fn sqlite_alert_flood_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    flood(&shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap());
}

#[test]
fn postgres_alert_flood_is_capped() {
    let pg = PgServer::start();
    flood(&shadowai_collector::store::postgres::open(&pg.create_db("flood"), 2, None).unwrap());
}

/// A store written by the previous schema gets the new columns and its first uses back-filled.
#[test]
fn sqlite_migration_backfills_first_uses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let s = shadowai_collector::store::sqlite::open(&path).unwrap();
        enroll(&s, "agt-a", "host-a", Some("finance"));
        let f = use_of(
            "x",
            "host-a",
            "chatgpt",
            Verdict::Unsanctioned,
            "alice",
            "/usr/bin/python3",
            T0,
            None,
        );
        ingest(&s, "agt-a", "b", vec![f], T0);
    }
    // Undo what the report migration made (and the outbox, catalogue-proposal, roll-up,
    // day-sums, totals, report-index and fold migrations after it: every migration appended later must be undone here too; the
    // roll-up's back-fill then runs over the old rows), as if the rows came
    // from the schema before them.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP VIEW findings_unfolded; DROP TRIGGER finding_rollup_fold_delete; \
         DROP TABLE finding_rollup_fold; \
         DROP TRIGGER finding_sums_delete; \
         DROP TABLE finding_day_sums; DROP TABLE finding_day_pending; DROP TABLE finding_day_hosts; \
         DROP TABLE finding_day_users; \
         DROP TRIGGER finding_days_delete; \
         DROP TRIGGER findings_immutable; DROP TABLE finding_days; DROP TABLE finding_keys; \
         DROP INDEX findings_long; \
         DELETE FROM first_uses; DELETE FROM alert_keys; DELETE FROM alerts; \
         DROP INDEX findings_host; DROP INDEX findings_exe; DROP INDEX findings_verdict_window; \
         DROP TABLE first_uses; DROP TABLE alert_keys; DROP TABLE alerts; \
         ALTER TABLE findings DROP COLUMN bytes_out; ALTER TABLE findings DROP COLUMN bytes_in; \
         ALTER TABLE findings DROP COLUMN policy_version; ALTER TABLE findings DROP COLUMN layer; \
         ALTER TABLE findings DROP COLUMN grp; \
         DROP TABLE alert_outbox; DROP TABLE alert_budget; DROP TABLE catalogue_proposals; \
         DELETE FROM schema_version WHERE version >= (SELECT MAX(version) FROM schema_version) - 7;",
    )
    .unwrap();
    drop(c);
    let s = shadowai_collector::store::sqlite::open(&path).unwrap();
    let users = s
        .group_report(GroupBy::User, &q(), GroupSort::Events, 10, 0)
        .unwrap();
    assert_eq!(users.items[0].first_seen_ms, T0 + 1);
    let groups = s
        .group_report(GroupBy::Group, &q(), GroupSort::Events, 10, 0)
        .unwrap();
    assert_eq!(groups.items[0].key, "finance");
    // The old unsanctioned use is known: a new use of it by the same user raises nothing.
    let f = use_of(
        "y",
        "host-a",
        "chatgpt",
        Verdict::Unsanctioned,
        "alice",
        "/usr/bin/python3",
        T0 + DAY,
        None,
    );
    assert_eq!(ingest(&s, "agt-a", "b2", vec![f], T0 + DAY), 0);
}
