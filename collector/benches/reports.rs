//! Issue 15's SOC reports on a large SQLite store: 200 000 findings from 200 hosts, 5 000 users,
//! 300 executables and 60 services over 30 days. Every report the web UI draws is measured
//! beside its peer in the same run: the services report as it was before issue 15 (plain SQL on
//! the same database, no bytes, no action split, range-bound first seen) and a findings page.
//! `cargo bench -p shadowai-collector --bench reports`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowai_api::{
    Action, Bucket, Evidence, Finding, FindingQuery, GroupBy, IngestBatch, ProcessRef, Verdict,
};
use shadowai_collector::store::{EnrollAttempt, GroupSort, NewEnrollmentKey, Store};

const T0: i64 = 1_763_769_600_000;
const DAY: i64 = 86_400_000;
const HOSTS: u64 = 200;
const PER_HOST: u64 = 1_000;

fn finding(id: u64, host: u64) -> Finding {
    let verdicts = [
        Verdict::Unsanctioned,
        Verdict::Sanctioned,
        Verdict::Blocked,
        Verdict::Tolerated,
    ];
    let verdict = verdicts[(id % 4) as usize];
    let start = T0 + (id % 30) as i64 * DAY + (id % 24) as i64 * 3_600_000;
    Finding {
        layer: None,
        policy_version: Some("1.2.0".into()),
        bytes_out: Some(id % 100_000),
        bytes_in: Some(id % 10_000),
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id: format!("f{id}"),
        host_id: format!("host{host}"),
        hostname: format!("host{host}.example"),
        window_start_ms: start,
        window_end_ms: start + 60_000,
        service_id: format!("svc{}", id % 60),
        service_name: format!("Service {}", id % 60),
        vendor: "Vendor".into(),
        category: ["chat", "coding", "image"][(id % 3) as usize].into(),
        risk_score: (id % 100) as u8,
        verdict,
        action: if verdict == Verdict::Blocked {
            Action::Blocked
        } else {
            Action::Allowed
        },
        rule: "catalogue".into(),
        process: ProcessRef {
            exe: format!("/usr/bin/app{}", id % 300),
            name: "app".into(),
            ..Default::default()
        },
        user: format!("user{}", id % 5_000),
        uid: 1000,
        count: 3,
        first_seen_ms: start + 1,
        last_seen_ms: start + 50_000,
        evidence: Evidence {
            sni: vec!["api.example.ai".into()],
            ..Default::default()
        },
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.db");
    let store = shadowai_collector::store::sqlite::open(&path).unwrap();
    store
        .seed_enrollment_key(
            &NewEnrollmentKey {
                key_hash: "k".into(),
                note: "bench".into(),
                expires_ms: None,
                max_uses: None,
            },
            0,
        )
        .unwrap();
    for h in 0..HOSTS {
        store
            .enroll_host(
                &EnrollAttempt {
                    secret_hash: "k".into(),
                    host_id: format!("host{h}"),
                    hostname: format!("host{h}.example"),
                    group: Some(format!("group{}", h % 10)),
                    agent_version: "0".into(),
                    key_sha256: format!("key{h}"),
                    new_agent_id: format!("a{h}"),
                    token_hash: format!("t{h}"),
                    max_hosts: u64::MAX,
                    peer: "127.0.0.1".into(),
                },
                0,
            )
            .unwrap();
        let findings = (0..PER_HOST)
            .map(|i| finding(h * PER_HOST + i, h))
            .collect();
        store
            .ingest(
                &format!("a{h}"),
                &IngestBatch {
                    batch_id: format!("b{h}"),
                    findings,
                },
                1,
            )
            .unwrap();
    }
    assert_eq!(store.count_findings().unwrap(), HOSTS * PER_HOST);
    let peer = rusqlite::Connection::open(&path).unwrap();
    let week = FindingQuery {
        from_ms: Some(T0 + 23 * DAY),
        ..Default::default()
    };

    let mut g = c.benchmark_group("reports_sqlite_200k");
    g.sample_size(10);
    // Peer: the services report as the overview ran it before issue 15.
    g.bench_function("peer_services_report_before", |b| {
        b.iter(|| {
            let mut st = peer
                .prepare_cached(
                    "SELECT service_id, verdict, MAX(service_name), MAX(vendor), MAX(category), \
                     MAX(risk_score), COUNT(DISTINCT host_id), COUNT(DISTINCT user_name), \
                     COUNT(DISTINCT exe), COUNT(*), CAST(SUM(count) AS BIGINT), MIN(first_seen_ms), \
                     MAX(last_seen_ms) FROM findings WHERE window_end_ms > ?1 \
                     GROUP BY service_id, verdict ORDER BY service_id, verdict",
                )
                .unwrap();
            let n = st
                .query_map([T0 + 23 * DAY], |r| r.get::<_, String>(0))
                .unwrap()
                .count();
            black_box(n)
        })
    });
    g.bench_function("peer_findings_page_100", |b| {
        b.iter(|| black_box(store.search(&week, 100, None).unwrap()))
    });
    g.bench_function("services_report_7d", |b| {
        b.iter(|| black_box(store.services_report(&week).unwrap()))
    });
    g.bench_function("trend_hour_7d", |b| {
        b.iter(|| black_box(store.trend_by(&week, Bucket::Hour).unwrap()))
    });
    g.bench_function("trend_day_all", |b| {
        b.iter(|| {
            black_box(
                store
                    .trend_by(&FindingQuery::default(), Bucket::Day)
                    .unwrap(),
            )
        })
    });
    for (name, by) in [
        ("groups_user_7d_page50", GroupBy::User),
        ("groups_host_7d_page50", GroupBy::Host),
        ("groups_process_7d_page50", GroupBy::Process),
        ("groups_group_7d_page50", GroupBy::Group),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    store
                        .group_report(by, &week, GroupSort::Events, 50, 0)
                        .unwrap(),
                )
            })
        });
    }
    g.bench_function("uploaders_user_7d_top5", |b| {
        b.iter(|| {
            black_box(
                store
                    .group_report(GroupBy::User, &week, GroupSort::Uploaders, 5, 0)
                    .unwrap(),
            )
        })
    });
    g.bench_function("facets_7d", |b| {
        b.iter(|| black_box(store.facets(&week).unwrap()))
    });
    let partial = FindingQuery {
        user_contains: Some("ER49".into()),
        ..week.clone()
    };
    g.bench_function("search_user_contains_page_100", |b| {
        b.iter(|| black_box(store.search(&partial, 100, None).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
