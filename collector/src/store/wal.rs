//! The SQLite write-ahead log's checkpoints, taken off the writer (issue 14).
//!
//! With `wal_autocheckpoint` at its usual size the connection that commits copies the log's
//! frames into the database file right after its commit, while it holds the store's one
//! writer: ≈ 7 % of an ingest's time (BENCHMARKS.md). A background task
//! (`crate::wal_checkpointer`) instead runs a PASSIVE checkpoint every fraction of a second
//! on a connection of its own, which copies what is committed without waiting for (or
//! holding up) the writer or readers. The writer keeps an autocheckpoint at a larger size
//! as a backstop, so the log stays bounded if the task stalls or fails.

/// What one checkpoint found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// A writer or reader kept it from copying everything it could otherwise.
    pub busy: bool,
    /// Frames in the log.
    pub frames: i64,
    /// Frames of the log now in the database file.
    pub copied: i64,
}

/// Runs a PASSIVE checkpoint on `conn` (not the writer's connection).
pub(super) fn passive(conn: &rusqlite::Connection) -> rusqlite::Result<WalCheckpoint> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(WalCheckpoint {
            busy: r.get::<_, i64>(0)? != 0,
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}
