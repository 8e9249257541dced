//! Index-shaped reads for the SOC's two slowest raw reads at fleet scale (issue 14), and the
//! indexes they use (a migration appended to both stores').
//!
//! - **Hour trend** (PostgreSQL, filters by time alone): one range of the window index per
//!   hour instead of one read of the whole range sorted by (hour, service, verdict). Each
//!   hour's findings are grouped on their own (a few thousand rows, sorted in memory), and the
//!   covering index `findings_window_cover` (the window index with the columns a trend reads
//!   included) lets PostgreSQL read them without the findings' heap (≈ 1 KB a row, most of it
//!   the JSON document). Windows start at or after 1970 (checked first), so every finding of
//!   hour `h` has `window_start_ms / 3600000 = h`. The hours read: every hour from an hour before `from` (a window up to
//!   an hour long starting then can still end inside the range) to the last window start in
//!   range, plus the start hours of the longer windows that reach into the range
//!   (`findings_long`). A finding belongs to the hour its window starts in, so every hour
//!   groups the same findings the plain query groups under it: the numbers are exact.
//!   `findings` keeps its visibility map set by an insert-driven autovacuum every ≈ 0.5 % of
//!   the table (its default, 20 %, leaves ≈ 2 M rows of a 10 M-row table — two weeks of a
//!   10,000-host fleet — read through the heap).
//! - **One host's findings**: the filter `host_id = $1 OR hostname = $1` has no index (a
//!   finding keeps the host name it was sent under). The host ids that ever had that name
//!   come from `finding_keys` (one row per key, host name included, kept exact by the
//!   roll-up's triggers; indexed on `hostname` here), and `host_id IN (…)` lets the
//!   `findings_host` index serve the read. The original condition stays, so the rows are
//!   the same.

use super::FindingFilter;
use super::StoreError;
use super::rows::{Tx, V};
use super::sql_findings::where_clause;

const HOUR_MS: i64 = 3_600_000;
/// Windows longer than this are found through `findings_long` (its predicate, verbatim).
const LONG: &str = "window_end_ms - window_start_ms > 3600000";

/// PostgreSQL: the covering window index (replaces `findings_window`, same key), the
/// insert-driven autovacuum that keeps index-only reads off the heap, and `finding_keys`
/// indexed by host name.
pub(super) const POSTGRES_MIGRATION: &str = "
-- ---- report indexes: the hour trend and one host's findings at fleet scale (issue 14) ----
CREATE INDEX findings_window_cover ON findings (window_start_ms)
    INCLUDE (window_end_ms, service_id, verdict, host_id, user_name, count, bytes_out);
DROP INDEX findings_window;
ALTER TABLE findings SET (autovacuum_vacuum_insert_scale_factor = 0.005,
    autovacuum_vacuum_insert_threshold = 10000);
CREATE INDEX finding_keys_hostname ON finding_keys (hostname);
ANALYZE findings;
";

/// SQLite: `finding_keys` indexed by host name (its hour trend keeps the plain query).
pub(super) const SQLITE_MIGRATION: &str = "
-- ---- report indexes: one host's findings at fleet scale (issue 14) ----
CREATE INDEX finding_keys_hostname ON finding_keys (hostname);
";

/// The definition of the covering window index (the fleet bench rebuilds it after a bulk
/// load, as a restore would).
pub const WINDOW_COVER_INDEX: (&str, &str) = (
    "findings_window_cover",
    "ON findings (window_start_ms) INCLUDE (window_end_ms, service_id, verdict, host_id, \
     user_name, count, bytes_out)",
);

/// `f` selects by time alone.
fn time_only(f: &FindingFilter) -> bool {
    let mut scratch = Vec::new();
    where_clause(
        &FindingFilter {
            from_ms: None,
            to_ms: None,
            ..f.clone()
        },
        &mut scratch,
    ) == "1 = 1"
}

/// SQL of the hour trend read hour by hour (PostgreSQL), with the same columns and rows as
/// the plain `GROUP BY b, service_id, verdict` over the raw findings; `None` when `f` filters
/// by more than time or a window starts before 1970 (an hour of integer division would then
/// hold two clock hours; the collector refuses such findings at ingest).
pub(super) fn hour_trend(
    tx: &mut dyn Tx,
    f: &FindingFilter,
    params: &mut Vec<V>,
) -> Result<Option<String>, StoreError> {
    if !time_only(f) {
        return Ok(None);
    }
    let bounds = tx.query(
        "findings",
        "SELECT MIN(window_start_ms), MAX(window_start_ms) FROM findings",
        &[],
    )?;
    let (min, max) = match bounds.first() {
        Some(r) => (r.opt_i64(0)?, r.opt_i64(1)?),
        None => (None, None),
    };
    let (Some(min), Some(max)) = (min, max) else {
        // No findings: the plain query is as cheap.
        return Ok(None);
    };
    if min < 0 {
        return Ok(None);
    }
    let lo = f
        .from_ms
        .map_or(min, |from| from.saturating_sub(HOUR_MS).max(min));
    let hi = f.to_ms.map_or(max, |to| to.saturating_sub(1).min(max));
    let clause = where_clause(f, params);
    params.push((lo / HOUR_MS).into());
    let first = params.len();
    params.push((hi.max(0) / HOUR_MS).into());
    let last = params.len();
    let inner = where_clause(f, params);
    // Within an hour, services, verdicts, hosts and users are grouped and counted by their
    // bytes (`COLLATE "C"`: the same groups and counts as the database's collation, which is
    // deterministic, at a fraction of the comparison cost); the rows come out in its order.
    Ok(Some(format!(
        "SELECT hrs.h, x.service_id, x.verdict, x.events, x.hosts, x.users, x.bytes_out \
         FROM (SELECT generate_series(${first}::BIGINT, ${last}::BIGINT) AS h \
         UNION SELECT window_start_ms / {HOUR_MS} FROM findings WHERE {clause} AND {LONG}) hrs \
         CROSS JOIN LATERAL (SELECT service_id COLLATE \"C\" AS service_id, \
         verdict COLLATE \"C\" AS verdict, CAST(SUM(count) AS BIGINT) AS events, \
         COUNT(DISTINCT host_id COLLATE \"C\") AS hosts, \
         COUNT(DISTINCT user_name COLLATE \"C\") AS users, \
         CAST(COALESCE(SUM(bytes_out), 0) AS BIGINT) AS bytes_out FROM findings \
         WHERE {inner} AND window_start_ms >= hrs.h * {HOUR_MS} \
         AND window_start_ms < hrs.h * {HOUR_MS} + {HOUR_MS} GROUP BY 1, 2) x \
         ORDER BY 1, x.service_id COLLATE \"default\", x.verdict COLLATE \"default\""
    )))
}

/// Most host ids a search by host lists; a name shared by more hosts keeps the plain read.
const HOST_IDS_MAX: usize = 256;

/// For a search by host: ` AND host_id IN (…)` with the host ids that ever had `host` as id
/// or name (from `finding_keys` and the findings not folded into it yet); `""` when more than [`HOST_IDS_MAX`] hosts had it (the
/// plain condition alone); `None` when no finding can match (no such host).
pub(super) fn host_ids(
    tx: &mut dyn Tx,
    host: &str,
    params: &mut Vec<V>,
) -> Result<Option<String>, StoreError> {
    let ids = tx.query(
        "finding_keys",
        &format!(
            "SELECT host_id FROM finding_keys WHERE host_id = $1 UNION \
             SELECT host_id FROM finding_keys WHERE hostname = $1 UNION \
             SELECT host_id FROM findings_unfolded WHERE host_id = $1 OR hostname = $1 LIMIT {}",
            HOST_IDS_MAX + 1
        ),
        &[host.into()],
    )?;
    if ids.is_empty() {
        return Ok(None);
    }
    if ids.len() > HOST_IDS_MAX {
        return Ok(Some(String::new()));
    }
    let mut list = Vec::with_capacity(ids.len());
    for r in ids.iter() {
        params.push(r.text(0)?.into());
        list.push(format!("${}", params.len()));
    }
    Ok(Some(format!(" AND host_id IN ({})", list.join(", "))))
}
