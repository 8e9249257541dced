//! The roll-up's fold (issue 14): findings an ingest stored but the roll-up does not hold yet
//! are added to it in bulk, by a background folder (`crate::rollup_folder`) and, past a bound,
//! by the ingest itself. The schema and the SQL are `rollup_fold_sql.rs`'s.
//!
//! Bounded: at most [`FOLD_ROWS`] findings a fold. Back-pressure: each store keeps an estimate
//! of the findings waiting (what it stored since its last fold, plus what that fold left);
//! once it reaches the bound ([`PENDING_BOUND`] by default) an ingest folds before it writes
//! — so a flood (one host or many) pays for its own fold and what waits stays near the bound
//! however slow or stopped the background folder is. If that fold fails, the ingest is
//! refused (`FoldBacklog`: HTTP 503, the agent keeps the batch and retries later) rather than
//! letting what waits grow without end.

use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;
use super::rows::{Backend, Dialect, Tx};
use super::sql::SqlStore;

/// Findings one fold adds at most.
pub const FOLD_ROWS: u64 = 20_000;

/// Findings waiting for their fold past which an ingest folds first.
pub const PENDING_BOUND: u64 = 200_000;

/// What one fold did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldOutcome {
    /// Another folder held the fold lock (PostgreSQL): nothing was done.
    pub busy: bool,
    /// Findings added to the roll-up.
    pub folded: u64,
    /// Findings still waiting after this fold.
    pub pending: u64,
    /// When the oldest finding still waiting was received (ms since the epoch).
    pub oldest_received_ms: Option<i64>,
}

/// A store's fold state: the estimate of findings waiting and the bound.
pub(super) struct FoldState {
    waiting: AtomicU64,
    bound: AtomicU64,
}

impl Default for FoldState {
    fn default() -> Self {
        FoldState {
            waiting: AtomicU64::new(0),
            bound: AtomicU64::new(PENDING_BOUND),
        }
    }
}

impl<B: Backend> SqlStore<B> {
    /// Adds up to `max_rows` waiting findings to the roll-up in one transaction. A failed fold
    /// leaves them waiting (the transaction rolls back).
    pub(super) fn fold_rollup_now(&self, max_rows: u64) -> Result<FoldOutcome, StoreError> {
        let limit = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
        let dialect = self.backend.dialect();
        let out = self.tx(|tx| {
            let folded = match dialect {
                Dialect::Sqlite => fold_sqlite(tx, limit)?,
                Dialect::Postgres => {
                    let got = tx.query(
                        "finding_rollup_pending",
                        super::rollup_sql::POSTGRES_TRY_LOCK,
                        &[],
                    )?;
                    if got.first().map(|r| r.i64(0)).transpose()? != Some(1) {
                        // Another replica folds: what waits, for this store's estimate.
                        let (pending, oldest_received_ms) = waiting(tx, dialect)?;
                        return Ok(FoldOutcome {
                            busy: true,
                            folded: 0,
                            pending,
                            oldest_received_ms,
                        });
                    }
                    let r = tx.query(
                        "finding_rollup_pending",
                        "SELECT folded FROM shadowai_rollup_fold($1)",
                        &[limit.into()],
                    )?;
                    let folded = r
                        .first()
                        .ok_or(StoreError::NoRow {
                            what: "shadowai_rollup_fold",
                        })?
                        .u64(0)?;
                    tx.exec(super::rollup_sums::POSTGRES_PENDING_FOLD, &[])?;
                    folded
                }
            };
            let (pending, oldest_received_ms) = waiting(tx, dialect)?;
            Ok(FoldOutcome {
                busy: false,
                folded,
                pending,
                oldest_received_ms,
            })
        })?;
        self.fold.waiting.store(out.pending, Ordering::Relaxed);
        Ok(out)
    }

    /// Before an ingest: folds first when the findings waiting reached the bound; refuses
    /// the ingest when that fold fails.
    pub(super) fn fold_if_backlogged(&self) -> Result<(), StoreError> {
        let waiting = self.fold.waiting.load(Ordering::Relaxed);
        if waiting < self.fold.bound.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.fold_rollup_now(FOLD_ROWS) {
            // Another replica holds the fold lock; past twice the bound it is not keeping up
            // (or is stuck): refuse rather than grow.
            Ok(out) if out.busy && out.pending >= self.fold.bound.load(Ordering::Relaxed) * 2 => {
                Err(StoreError::FoldBehind {
                    pending: out.pending,
                })
            }
            Ok(_) => Ok(()),
            Err(source) => Err(StoreError::FoldBacklog {
                pending: waiting,
                source: Box::new(source),
            }),
        }
    }

    /// After an ingest stored `n` findings.
    pub(super) fn fold_note_stored(&self, n: u64) {
        self.fold.waiting.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the bound past which an ingest folds first (tests; the default is
    /// [`PENDING_BOUND`]).
    pub fn set_fold_bound(&self, bound: u64) {
        self.fold.bound.store(bound.max(1), Ordering::Relaxed);
    }
}

/// SQLite: the next `limit` findings above the watermark (`seq` never repeats).
fn fold_sqlite(tx: &mut dyn Tx, limit: i64) -> Result<u64, StoreError> {
    let r = tx.query(
        "finding_rollup_fold",
        "SELECT folded_seq, (SELECT COALESCE(MAX(seq), 0) FROM findings) \
         FROM finding_rollup_fold",
        &[],
    )?;
    let row = r.first().ok_or(StoreError::NoRow {
        what: "finding_rollup_fold",
    })?;
    let (from, newest) = (row.i64(0)?, row.i64(1)?);
    if newest <= from {
        return Ok(0);
    }
    // The `limit`-th finding above the watermark, or the newest.
    let r = tx.query(
        "findings",
        "SELECT seq FROM findings WHERE seq > $1 ORDER BY seq LIMIT 1 OFFSET $2",
        &[from.into(), limit.saturating_sub(1).into()],
    )?;
    let hi = r.first().map(|r| r.i64(0)).transpose()?.unwrap_or(newest);
    let n = tx.query(
        "findings",
        "SELECT COUNT(*) FROM findings WHERE seq > $1 AND seq <= $2",
        &[from.into(), hi.into()],
    )?;
    let folded = n.first().map(|r| r.u64(0)).transpose()?.unwrap_or(0);
    let hi = [hi.into()];
    for stmt in [
        super::rollup_sql::SQLITE_FOLD_GROUPS,
        super::rollup_sql::SQLITE_FOLD_GROUPED,
    ]
    .iter()
    .flat_map(|sql| sql.split(";\n"))
    .filter(|s| !s.trim().is_empty())
    {
        let params: &[super::rows::V] = if stmt.contains("$1") { &hi } else { &[] };
        tx.exec(stmt, params)?;
    }
    Ok(folded)
}

/// How many findings wait for their fold, and when the oldest was received (PostgreSQL: the
/// pending rows, counting those of findings deleted since, which the next fold drops; the
/// oldest by `seq`).
fn waiting(tx: &mut dyn Tx, dialect: Dialect) -> Result<(u64, Option<i64>), StoreError> {
    let sql = match dialect {
        Dialect::Sqlite => {
            "SELECT (SELECT COUNT(*) FROM findings_unfolded), \
             (SELECT received_ms FROM findings_unfolded ORDER BY seq LIMIT 1)"
        }
        Dialect::Postgres => {
            "SELECT (SELECT COUNT(*) FROM finding_rollup_pending), (SELECT received_ms \
             FROM findings WHERE seq = (SELECT MIN(seq) FROM finding_rollup_pending))"
        }
    };
    let r = tx.query("findings", sql, &[])?;
    let row = r.first().ok_or(StoreError::NoRow {
        what: "findings_unfolded",
    })?;
    Ok((row.u64(0)?, row.opt_i64(1)?))
}
