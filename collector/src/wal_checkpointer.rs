//! The SQLite write-ahead log's background checkpointer (issue 14, `store/wal.rs`): one task
//! per collector process copies committed log frames into the database file every `every`,
//! on a connection of its own, so the writer does not do it inside an ingest's commit.
//!
//! It stops at once on a store that keeps no such log (PostgreSQL). A failed checkpoint is
//! counted, logged once until one succeeds again, and the next is tried after a delay that
//! doubles up to `max_backoff`; meanwhile the writer's own backstop checkpoint keeps the log
//! bounded.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::{Store, WalCheckpoint};

/// The checkpointer's figures on `/metrics`.
#[derive(Clone, Default)]
pub struct WalMetrics {
    /// Checkpoints run.
    pub checkpoints: Counter,
    /// Checkpoints that failed.
    pub failures: Counter,
    /// Frames in the log at the last checkpoint.
    pub frames: Gauge,
    /// Frames of the log not yet in the database file after the last checkpoint.
    pub behind: Gauge,
}

impl WalMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sqlite_wal_checkpoints",
            "Background checkpoints of the SQLite write-ahead log",
            self.checkpoints.clone(),
        );
        r.register(
            "sqlite_wal_checkpoint_failures",
            "Background checkpoints of the SQLite write-ahead log that failed (the writer's \
             backstop checkpoint keeps the log bounded)",
            self.failures.clone(),
        );
        r.register(
            "sqlite_wal_frames",
            "Frames in the SQLite write-ahead log at the last background checkpoint",
            self.frames.clone(),
        );
        r.register(
            "sqlite_wal_frames_behind",
            "Frames of the SQLite write-ahead log not in the database file after the last \
             background checkpoint",
            self.behind.clone(),
        );
    }

    fn observe(&self, c: &WalCheckpoint) {
        self.checkpoints.inc();
        self.frames.set(c.frames);
        self.behind.set(c.frames.saturating_sub(c.copied).max(0));
    }
}

/// How often the checkpointer runs, and its longest wait after failures.
#[derive(Clone, Debug)]
pub struct CheckpointerConfig {
    pub every: Duration,
    pub max_backoff: Duration,
}

impl Default for CheckpointerConfig {
    fn default() -> Self {
        CheckpointerConfig {
            every: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Runs until the task is aborted, its runtime stops, or the store keeps no log.
pub async fn run(store: Arc<dyn Store>, metrics: WalMetrics, cfg: CheckpointerConfig) {
    let mut backoff = cfg.every;
    let mut failing = false;
    loop {
        let s = store.clone();
        let failure = match tokio::task::spawn_blocking(move || s.checkpoint_wal()).await {
            Ok(Ok(None)) => return,
            Ok(Ok(Some(c))) => {
                if failing {
                    tracing::info!(frames = c.frames, "WAL checkpoint: recovered");
                }
                failing = false;
                backoff = cfg.every;
                metrics.observe(&c);
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the checkpoint task stopped: {e}")),
        };
        let wait = match failure {
            None => cfg.every,
            Some(error) => {
                metrics.failures.inc();
                if !failing {
                    tracing::error!(%error, retry_in_ms = backoff.as_millis() as u64,
                        "WAL checkpoint failed; the writer's backstop checkpoint keeps the log \
                         bounded, retrying with backoff");
                }
                failing = true;
                let w = backoff;
                backoff = (backoff * 2).min(cfg.max_backoff);
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}
