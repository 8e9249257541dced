//! Store throughput on SQLite (the embedded default): ingest of a 500-finding batch
//! (one durable transaction), a findings page, and the services report over 20 000 findings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowai_api::{Action, Evidence, Finding, FindingQuery, IngestBatch, ProcessRef, Verdict};
use shadowai_collector::store::{EnrollAttempt, NewEnrollmentKey, Store};

/// Enrolls agent `a` for host `host`, as `POST /api/v1/enroll` does.
fn enroll(store: &dyn Store) {
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
    store
        .enroll_host(
            &EnrollAttempt {
                secret_hash: "k".into(),
                host_id: "host".into(),
                hostname: "host".into(),
                group: None,
                agent_version: "0".into(),
                key_sha256: "key".into(),
                new_agent_id: "a".into(),
                token_hash: "h".into(),
                max_hosts: 10,
                peer: "127.0.0.1".into(),
            },
            0,
        )
        .unwrap();
}

fn finding(id: u64, host: &str) -> Finding {
    let services = ["chatgpt", "claude", "deepseek", "gemini", "mistral"];
    let verdicts = [
        Verdict::Unsanctioned,
        Verdict::Sanctioned,
        Verdict::Blocked,
        Verdict::Tolerated,
    ];
    Finding {
        layer: None,
        policy_version: None,
        bytes_out: None,
        bytes_in: None,
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id: format!("f{id}"),
        host_id: host.to_owned(),
        hostname: host.to_owned(),
        window_start_ms: 1_763_769_600_000 + (id as i64 % 30) * 86_400_000,
        window_end_ms: 1_763_769_660_000 + (id as i64 % 30) * 86_400_000,
        service_id: services[id as usize % 5].to_owned(),
        service_name: "Service".to_owned(),
        vendor: "Vendor".to_owned(),
        category: "chat_assistant".to_owned(),
        risk_score: 60,
        verdict: verdicts[id as usize % 4],
        action: Action::Allowed,
        rule: "catalogue".to_owned(),
        process: ProcessRef {
            exe: format!("/usr/bin/app{}", id % 17),
            name: "app".to_owned(),
            ..Default::default()
        },
        user: format!("user{}", id % 50),
        uid: 1000,
        count: 3,
        first_seen_ms: 1_763_769_600_001,
        last_seen_ms: 1_763_769_650_000,
        evidence: Evidence {
            sni: vec!["api.example.ai".to_owned()],
            ips: vec!["192.0.2.7".to_owned()],
            ports: vec![443],
            ..Default::default()
        },
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = shadowai_collector::store::sqlite::open(&dir.path().join("bench.db")).unwrap();
    enroll(&store);
    let next = AtomicU64::new(0);
    let mut batch_no = 0u64;
    let mut g = c.benchmark_group("store_sqlite");
    g.throughput(Throughput::Elements(500));
    g.bench_function("ingest_batch_500", |b| {
        b.iter(|| {
            batch_no += 1;
            let findings = (0..500)
                .map(|_| finding(next.fetch_add(1, Ordering::Relaxed), "host"))
                .collect();
            let ack = store
                .ingest(
                    "a",
                    &IngestBatch {
                        batch_id: format!("b{batch_no}"),
                        findings,
                    },
                    1,
                )
                .unwrap();
            black_box(ack);
        })
    });
    // A separate database with exactly 20 000 findings for the read benchmarks.
    let store = shadowai_collector::store::sqlite::open(&dir.path().join("read.db")).unwrap();
    enroll(&store);
    for n in 0..20u64 {
        let findings = (0..1000).map(|i| finding(n * 1000 + i, "host")).collect();
        store
            .ingest(
                "a",
                &IngestBatch {
                    batch_id: format!("r{n}"),
                    findings,
                },
                1,
            )
            .unwrap();
    }
    assert_eq!(store.count_findings().unwrap(), 20_000);
    g.throughput(Throughput::Elements(1));
    g.bench_function("search_page_100_filtered", |b| {
        let q = FindingQuery {
            service: Some("claude".into()),
            verdict: Some(Verdict::Sanctioned),
            ..Default::default()
        };
        b.iter(|| black_box(store.search(&q, 100, None).unwrap()))
    });
    g.sample_size(20);
    g.bench_function("services_report_20k", |b| {
        b.iter(|| black_box(store.services_report(&FindingQuery::default()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
