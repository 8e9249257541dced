//! The running collector folds what it ingests into the daily roll-up in the background
//! (`rollup_folder.rs`), and `/metrics` shows it: findings folded, none left waiting, no lag,
//! no failure — without anyone calling the fold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::time::{Duration, Instant};

use common::{finding, metric, start_server};
use shadowai_api::{IngestBatch, Verdict};

const T0: i64 = 1_763_769_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_folds_in_the_background_and_says_so() {
    let srv = start_server(false, |_| {}).await;
    let (_, tok) = srv.enroll("host-a", None).await;
    let agent = srv.client(Some(&tok));
    for b in 0..3 {
        let findings = (0..100)
            .map(|i| {
                finding(
                    &format!("f{b}-{i}"),
                    "host-a",
                    "chatgpt",
                    Verdict::Unsanctioned,
                    &format!("user-{}", i % 9),
                    T0 + i64::from(b) * 86_400_000 + i,
                )
            })
            .collect();
        let ack = agent
            .ingest(&IngestBatch {
                batch_id: format!("b{b}"),
                findings,
            })
            .await
            .unwrap();
        assert_eq!(ack.accepted, 100);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = srv.metrics_text().await;
        let folded = metric(&text, "shadowai_collector_rollup_folded_findings_total");
        let pending = metric(&text, "shadowai_collector_rollup_pending_findings");
        assert_eq!(
            metric(&text, "shadowai_collector_rollup_fold_failures_total"),
            0
        );
        if folded == 300 && pending == 0 {
            assert_eq!(metric(&text, "shadowai_collector_rollup_fold_lag_ms"), 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background folder did not fold 300 findings within 30 s \
             (folded {folded}, pending {pending})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
