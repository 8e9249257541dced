//! The roll-up's background folder (issue 14): one task per collector process adds the
//! findings ingests stored to the daily roll-up (`store::fold`), in bounded folds.
//!
//! A full fold (it hit its row bound) is followed by the next at once; otherwise the task
//! waits `idle`. On PostgreSQL two replicas' folders share one database: a fold that finds
//! the fold lock taken does nothing (the other folds). A failed fold leaves the findings
//! waiting (its transaction rolls back), is counted, logged once until a fold succeeds
//! again, and the next is tried after a delay that doubles up to `max_backoff` — never a
//! tight loop. Reports stay exact meanwhile (they read what is not folded too); ingests fold
//! themselves past the store's bound.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::server::now_ms;
use crate::store::{FOLD_ROWS, FoldOutcome, Store};

/// The fold's figures on `/metrics`.
#[derive(Clone, Default)]
pub struct FoldMetrics {
    /// Findings added to the roll-up by this process's folder.
    pub folded: Counter,
    /// Folds that failed.
    pub failures: Counter,
    /// Findings waiting for their fold (after the last fold of this process).
    pub pending: Gauge,
    /// Age of the oldest finding waiting, in ms (0: none waits).
    pub lag_ms: Gauge,
}

impl FoldMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rollup_folded_findings",
            "Findings this process's folder added to the daily roll-up",
            self.folded.clone(),
        );
        r.register(
            "rollup_fold_failures",
            "Roll-up folds that failed (the findings stay waiting; reports stay exact)",
            self.failures.clone(),
        );
        r.register(
            "rollup_pending_findings",
            "Findings stored but not yet folded into the daily roll-up",
            self.pending.clone(),
        );
        r.register(
            "rollup_fold_lag_ms",
            "Age of the oldest finding not yet folded into the daily roll-up, in ms",
            self.lag_ms.clone(),
        );
    }

    fn observe(&self, out: &FoldOutcome, now_ms: i64) {
        self.folded.inc_by(out.folded);
        self.pending
            .set(i64::try_from(out.pending).unwrap_or(i64::MAX));
        self.lag_ms.set(
            out.oldest_received_ms
                .map_or(0, |t| now_ms.saturating_sub(t).max(0)),
        );
    }
}

/// How the folder paces itself.
#[derive(Clone, Debug)]
pub struct FolderConfig {
    /// Findings a fold adds at most.
    pub rows: u64,
    /// Wait after a fold that emptied the backlog (or found the lock taken).
    pub idle: Duration,
    /// Longest wait after failures.
    pub max_backoff: Duration,
}

impl Default for FolderConfig {
    fn default() -> Self {
        FolderConfig {
            rows: FOLD_ROWS,
            idle: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Runs until the task is aborted (or its runtime stops).
pub async fn run(store: Arc<dyn Store>, metrics: FoldMetrics, cfg: FolderConfig) {
    let mut backoff = cfg.idle;
    let mut failing = false;
    loop {
        let s = store.clone();
        let rows = cfg.rows;
        let wait = match tokio::task::spawn_blocking(move || s.fold_rollup(rows)).await {
            Ok(Ok(out)) => {
                if failing {
                    tracing::info!(pending = out.pending, "roll-up fold: recovered");
                }
                failing = false;
                backoff = cfg.idle;
                metrics.observe(&out, now_ms());
                if !out.busy && out.folded >= rows {
                    Duration::ZERO
                } else {
                    cfg.idle
                }
            }
            Ok(Err(e)) => {
                metrics.failures.inc();
                if !failing {
                    tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "roll-up fold failed; the findings stay waiting (reports stay exact), \
                         retrying with backoff");
                }
                failing = true;
                let w = backoff;
                backoff = (backoff * 2).min(cfg.max_backoff);
                w
            }
            Err(e) => {
                metrics.failures.inc();
                tracing::error!(error = %e, "roll-up fold: the fold task stopped");
                let w = backoff;
                backoff = (backoff * 2).min(cfg.max_backoff);
                w
            }
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}
