//! The SQLite write-ahead log is checkpointed off the writer (`store/wal.rs`,
//! `wal_checkpointer.rs`): checkpoints run beside concurrent ingests without losing or
//! blocking any, a quiet log ends up wholly in the database file, the running collector
//! does it on its own and says so on `/metrics` (beside group commit's totals), and
//! PostgreSQL has nothing to checkpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PgServer, finding, metric, start_server};
use shadowai_api::{IngestBatch, Verdict};
use shadowai_collector::store::{AlertPolicy, Store};

const T0: i64 = 1_763_769_600_000;

fn batch(b: usize) -> IngestBatch {
    IngestBatch {
        batch_id: format!("b{b}"),
        findings: (0..200)
            .map(|i| {
                finding(
                    &format!("f{b}-{i}"),
                    "host-a",
                    "chatgpt",
                    Verdict::Unsanctioned,
                    &format!("user-{}", i % 9),
                    T0 + (b * 200 + i) as i64,
                )
            })
            .collect(),
    }
}

#[test]
fn checkpoints_run_beside_ingests_and_copy_the_whole_log_once_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap());
    common::enroll_in_store(&*store, "wal", "agt-a", "host-a", None, T0);
    let done = Arc::new(AtomicBool::new(false));
    let checkpointer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                let c = store.checkpoint_wal().unwrap().expect("SQLite keeps a log");
                assert!(c.copied <= c.frames, "{c:?}");
                runs += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            runs
        })
    };
    let policy = AlertPolicy::default();
    for b in 0..60 {
        let (ack, _) = store
            .ingest_shared("agt-a", Arc::new(batch(b)), &policy, T0)
            .unwrap();
        assert_eq!(ack.accepted, 200);
    }
    done.store(true, Ordering::Relaxed);
    let runs = checkpointer.join().unwrap();
    assert!(runs > 1, "{runs} checkpoints ran beside the ingests");
    // Quiet (no writer, no reader): one checkpoint copies every frame.
    let c = store.checkpoint_wal().unwrap().unwrap();
    assert!(!c.busy && c.frames > 0 && c.copied == c.frames, "{c:?}");
    assert_eq!(store.count_findings().unwrap(), 60 * 200);
}

#[test]
fn postgres_has_no_log_to_checkpoint() {
    let pg = PgServer::start();
    let store = shadowai_collector::store::postgres::open(&pg.create_db("wal"), 2, None).unwrap();
    assert_eq!(store.checkpoint_wal().unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_checkpoints_in_the_background_and_says_so() {
    let srv = start_server(false, |_| {}).await;
    let (_, tok) = srv.enroll("host-a", None).await;
    let agent = srv.client(Some(&tok));
    for b in 0..3 {
        agent.ingest(&batch(b)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = srv.metrics_text().await;
        assert_eq!(
            metric(
                &text,
                "shadowai_collector_sqlite_wal_checkpoint_failures_total"
            ),
            0
        );
        // The three batches went through group commit, none written again.
        assert_eq!(
            metric(&text, "shadowai_collector_ingest_group_batches_total"),
            3
        );
        assert!(metric(&text, "shadowai_collector_ingest_group_transactions_total") >= 1);
        assert_eq!(
            metric(&text, "shadowai_collector_ingest_group_rewrites_total"),
            0
        );
        let runs = metric(&text, "shadowai_collector_sqlite_wal_checkpoints_total");
        let frames = metric(&text, "shadowai_collector_sqlite_wal_frames");
        let behind = metric(&text, "shadowai_collector_sqlite_wal_frames_behind");
        if runs > 0 && frames > 0 && behind == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no background checkpoint copied the log within 30 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
