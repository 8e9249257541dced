//! Where a report reads its rows: the daily roll-up (`finding_days`, `finding_keys`; schema in
//! `rollup_sql.rs`) for the whole days of its range, the raw `findings` for the rest.
//!
//! A report reads two sources with the same column names as `findings`:
//! - *rows* (sums, extremes, day buckets): roll-up days wholly inside the range, plus the raw
//!   findings of the partial days at its edges;
//! - *keys* (distinct hosts, users, executables, services): the keys seen in those whole days
//!   — from `finding_keys` by first/last day, checking `finding_days` only for a key that
//!   straddles both ends of a two-sided range — plus the keys of the raw edge findings.
//!
//! A finding belongs to the day its window starts in. Day `D` is whole for a range when every
//! finding starting in it matches the range (`window_end_ms > from`, `window_start_ms < to`):
//! `D * DAY > from` (a window ends no earlier than it starts) and `(D + 1) * DAY <= to`.
//! Findings starting before the first whole day can still end inside the range; those with
//! windows up to an hour are found by the `window_start_ms` index from `from - 1 h`, longer
//! ones by the partial index `findings_long`. So the numbers are the raw query's, exactly.
//! Reports that read raw findings only (hour buckets, container filters, ranges without a
//! whole day) find them the same way when the range has a start.
//!
//! The roll-up holds the findings folded so far (`fold.rs`); the rest are in the view
//! `findings_unfolded`. Every read of the roll-up adds the unfolded findings of the same
//! whole days (rows and keys add up; the day trend counts a host or user of an unfolded
//! finding only when the per-day sums do not hold it yet). A fold moves findings from the view
//! to the roll-up in one transaction, so one statement sees each finding exactly once.

use super::FindingFilter;
use super::rows::V;
use super::sql_findings::where_clause;

const DAY_MS: i64 = 86_400_000;
/// Windows longer than this are found through `findings_long` (its predicate, verbatim).
const LONG: &str = "window_end_ms - window_start_ms > 3600000";
const SHORT: &str = "window_end_ms - window_start_ms <= 3600000";
const EDGE_MS: i64 = 3_600_000;

/// The key columns, as `finding_days`/`finding_keys` name them.
const KEY: &str = "host_id, service_id, verdict, action, user_name, exe, process_name, hostname, \
     grp, category, risk_score";
/// The same from `findings` (`grp` may be NULL there).
const RAW_KEY: &str = "host_id, service_id, verdict, action, user_name, exe, process_name, \
     hostname, COALESCE(grp, '') AS grp, category, risk_score";
/// Measures of one finding, named as the roll-up names its sums.
const RAW_MEASURES: &str = "1 AS findings, count AS events, bytes_out, bytes_in, \
     CASE WHEN bytes_out IS NULL THEN 0 ELSE 1 END AS bytes_known, first_seen_ms, last_seen_ms, \
     service_name, vendor";
const DAY_MEASURES: &str = "findings, events, bytes_out, bytes_in, bytes_known, first_seen_ms, \
     last_seen_ms, service_name, vendor";

fn add(params: &mut Vec<V>, v: i64) -> String {
    params.push(v.into());
    format!("${}", params.len())
}

/// The whole days `[lo, hi)` of a range (`None`: unbounded), or `None` when no day is whole.
fn whole_days(from: Option<i64>, to: Option<i64>) -> Option<(Option<i64>, Option<i64>)> {
    let lo = from.map(|f| f.div_euclid(DAY_MS) + 1);
    let hi = to.map(|t| t.div_euclid(DAY_MS));
    match (lo, hi) {
        (Some(l), Some(h)) if l >= h => None,
        _ => Some((lo, hi)),
    }
}

/// Which source a report reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Key columns, `b` (the bucket) and the measures.
    Rows { bucket_ms: i64 },
    /// Key columns only, of every finding in range (repeats allowed): for distinct counts.
    Keys,
}

/// SQL for `FROM (…)` reading the rows of the findings `f` selects: key columns, `b`
/// (`window_start_ms / bucket_ms`) and the measures (`findings`, `events`, `bytes_out`,
/// `bytes_in`, `bytes_known`, `first_seen_ms`, `last_seen_ms`, `service_name`, `vendor`).
/// Buckets other than days read raw findings. `rollup` false: raw findings only.
pub(super) fn rows(f: &FindingFilter, bucket_ms: i64, rollup: bool, params: &mut Vec<V>) -> String {
    source(f, Kind::Rows { bucket_ms }, rollup, params)
}

/// As [`rows`] by day for reports that do not use `b` (sums over the range): over all time
/// (no `from`, no `to`) the rows are each key's totals in `finding_keys` — one row per key
/// instead of one per key and day (`b` is then 0).
pub(super) fn totals(f: &FindingFilter, rollup: bool, params: &mut Vec<V>) -> String {
    if !rollup || f.container.is_some() || f.from_ms.is_some() || f.to_ms.is_some() {
        return rows(f, DAY_MS, rollup, params);
    }
    let keyed = where_clause(f, params);
    format!(
        "SELECT {KEY}, 0 AS b, {DAY_MEASURES} FROM finding_keys WHERE {keyed} UNION ALL \
         SELECT {RAW_KEY}, 0 AS b, {RAW_MEASURES} FROM {UNFOLDED} WHERE {keyed}"
    )
}

/// The findings not folded into the roll-up yet (`rollup_fold_sql.rs`).
const UNFOLDED: &str = "findings_unfolded";

/// ` AND` the window starts in the whole days `[lo, hi)` (`l`, `h`: their parameters).
fn in_days(l: Option<&String>, h: Option<&String>) -> String {
    let mut out = String::new();
    if let Some(l) = l {
        out.push_str(&format!(" AND window_start_ms >= {l} * {DAY_MS}"));
    }
    if let Some(h) = h {
        out.push_str(&format!(" AND window_start_ms < {h} * {DAY_MS}"));
    }
    out
}

/// SQL for `FROM (…)` reading the key columns of the findings `f` selects (repeats allowed).
pub(super) fn keys(f: &FindingFilter, rollup: bool, params: &mut Vec<V>) -> String {
    source(f, Kind::Keys, rollup, params)
}

fn source(f: &FindingFilter, kind: Kind, rollup: bool, params: &mut Vec<V>) -> String {
    let raw_from = |table: &str, cond: &str| match kind {
        Kind::Rows { bucket_ms } => format!(
            "SELECT {RAW_KEY}, window_start_ms / {bucket_ms} AS b, {RAW_MEASURES} FROM {table} \
             WHERE {cond}"
        ),
        Kind::Keys => format!("SELECT {RAW_KEY} FROM {table} WHERE {cond}"),
    };
    let raw = |cond: &str| raw_from("findings", cond);
    // The container is not part of the roll-up's key; hours are finer than its days.
    let finer = matches!(kind, Kind::Rows { bucket_ms } if bucket_ms != DAY_MS);
    let days = whole_days(f.from_ms, f.to_ms).filter(|_| rollup && f.container.is_none() && !finer);
    let Some((lo, hi)) = days else {
        return match (rollup, f.from_ms) {
            (true, Some(from)) => index_friendly(f, from, &raw, params),
            _ => raw(&where_clause(f, params)),
        };
    };
    let keyed = where_clause(
        &FindingFilter {
            from_ms: None,
            to_ms: None,
            ..f.clone()
        },
        params,
    );
    let (l, h) = (lo.map(|l| add(params, l)), hi.map(|h| add(params, h)));
    let unfolded = raw_from(
        UNFOLDED,
        &format!("{keyed}{}", in_days(l.as_ref(), h.as_ref())),
    );
    let mut parts = vec![match kind {
        Kind::Rows { .. } => {
            let range = match (&l, &h) {
                (Some(l), Some(h)) => format!(" AND day >= {l} AND day < {h}"),
                (Some(l), None) => format!(" AND day >= {l}"),
                (None, Some(h)) => format!(" AND day < {h}"),
                (None, None) => String::new(),
            };
            format!("SELECT {KEY}, day AS b, {DAY_MEASURES} FROM finding_days WHERE {keyed}{range}")
        }
        Kind::Keys => {
            let range = match (&l, &h) {
                (Some(l), Some(h)) => format!(
                    " AND first_day < {h} AND last_day >= {l} AND (first_day >= {l} \
                     OR last_day < {h} OR EXISTS (SELECT 1 FROM finding_days d WHERE {} \
                     AND d.day >= {l} AND d.day < {h}))",
                    super::rollup_sql::DAYS_OF_KEY
                ),
                (Some(l), None) => format!(" AND last_day >= {l}"),
                (None, Some(h)) => format!(" AND first_day < {h}"),
                (None, None) => String::new(),
            };
            format!("SELECT {KEY} FROM finding_keys WHERE {keyed}{range}")
        }
    }];
    parts.push(unfolded);
    parts.extend(edges(f, &raw, (lo, hi), params));
    parts.join(" UNION ALL ")
}

/// The raw findings `f` selects, `from` on, read through indexes: `window_end_ms > from` has
/// no index of its own (a scan of every finding), so the windows up to an hour are found by
/// `window_start_ms >= from - 1 h` and the longer ones by `findings_long` — the same rows.
fn index_friendly(
    f: &FindingFilter,
    from: i64,
    raw: &dyn Fn(&str) -> String,
    params: &mut Vec<V>,
) -> String {
    let clause = where_clause(f, params);
    let back = add(params, from.saturating_sub(EDGE_MS));
    format!(
        "{} UNION ALL {}",
        raw(&format!(
            "{clause} AND window_start_ms >= {back} AND {SHORT}"
        )),
        raw(&format!("{clause} AND {LONG}"))
    )
}

/// The raw findings outside the whole days `[lo, hi)`: the head (before `lo`) and the tail
/// (from `hi`), each read by `raw` (given its `WHERE` condition).
fn edges(
    f: &FindingFilter,
    raw: &dyn Fn(&str) -> String,
    (lo, hi): (Option<i64>, Option<i64>),
    params: &mut Vec<V>,
) -> Vec<String> {
    let mut parts = Vec::new();
    // (Only a bounded range has edges; an unused parameter would have no type in PostgreSQL.)
    let clause = if lo.is_some() || hi.is_some() {
        where_clause(f, params)
    } else {
        String::new()
    };
    if let (Some(lo), Some(from)) = (lo, f.from_ms) {
        let start = add(params, lo.saturating_mul(DAY_MS));
        let back = add(params, from.saturating_sub(EDGE_MS));
        parts.push(raw(&format!(
            "{clause} AND window_start_ms >= {back} AND window_start_ms < {start} AND {SHORT}"
        )));
        parts.push(raw(&format!(
            "{clause} AND {LONG} AND window_start_ms < {start}"
        )));
    }
    if let Some(hi) = hi {
        let end = add(params, hi.saturating_mul(DAY_MS));
        parts.push(raw(&format!("{clause} AND window_start_ms >= {end}")));
    }
    parts
}

/// SQL for `FROM (…)` of the day trend when `f` selects by time alone: rows of `b` (the day),
/// `service_id`, `verdict`, `events`, `hosts`, `users`, `bytes_out` that add up per
/// (`b`, `service_id`, `verdict`) — the whole days from `finding_day_sums`
/// and `finding_day_pending` (`rollup_sums.rs`), the edge days counted from the raw findings (a day comes from one
/// source only, so its distinct counts add). `None` when `f` filters by anything but time
/// (the sums are not kept per host, user or executable) or no day is whole.
pub(super) fn day_trend(f: &FindingFilter, rollup: bool, params: &mut Vec<V>) -> Option<String> {
    let timeless = FindingFilter {
        from_ms: None,
        to_ms: None,
        ..f.clone()
    };
    let mut scratch = Vec::new();
    where_clause(&timeless, &mut scratch);
    if !rollup || !scratch.is_empty() {
        return None;
    }
    let (lo, hi) = whole_days(f.from_ms, f.to_ms)?;
    let (l, h) = (lo.map(|l| add(params, l)), hi.map(|h| add(params, h)));
    let mut range = String::new();
    if let Some(l) = &l {
        range.push_str(&format!(" AND day >= {l}"));
    }
    if let Some(h) = &h {
        range.push_str(&format!(" AND day < {h}"));
    }
    // Unfolded findings add their events and bytes, and each host (user) the sums do not
    // hold yet for its day, service and verdict (a helper row exists for every one they do).
    let new_in = |table: &str, col: &str| {
        format!(
            "COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM {table} x WHERE x.day = u.b \
             AND x.service_id = u.service_id AND x.verdict = u.verdict AND x.{col} = u.{col}) \
             THEN u.{col} END)"
        )
    };
    let mut sql = format!(
        "SELECT day AS b, service_id, verdict, events, hosts, users, bytes_out \
         FROM finding_day_sums WHERE 1 = 1{range} UNION ALL SELECT day, service_id, verdict, \
         events, hosts, users, bytes_out FROM finding_day_pending WHERE 1 = 1{range} \
         UNION ALL SELECT b, service_id, verdict, SUM(count), {}, {}, \
         COALESCE(SUM(bytes_out), 0) FROM (SELECT window_start_ms / {DAY_MS} AS b, service_id, \
         verdict, host_id, user_name, count, bytes_out FROM {UNFOLDED} WHERE 1 = 1{}) u \
         GROUP BY b, service_id, verdict",
        new_in("finding_day_hosts", "host_id"),
        new_in("finding_day_users", "user_name"),
        in_days(l.as_ref(), h.as_ref())
    );
    let raw = |cond: &str| {
        format!(
            "SELECT window_start_ms / {DAY_MS} AS b, service_id, verdict, host_id, user_name, \
             count, bytes_out FROM findings WHERE {cond}"
        )
    };
    let parts = edges(f, &raw, (lo, hi), params);
    if !parts.is_empty() {
        sql.push_str(&format!(
            " UNION ALL SELECT b, service_id, verdict, SUM(count), COUNT(DISTINCT host_id), \
             COUNT(DISTINCT user_name), COALESCE(SUM(bytes_out), 0) FROM ({}) e \
             GROUP BY b, service_id, verdict",
            parts.join(" UNION ALL ")
        ));
    }
    Some(sql)
}

#[cfg(test)]
mod tests {
    use super::{DAY_MS, whole_days};

    #[test]
    fn whole_days_start_after_from_and_end_by_to() {
        assert_eq!(whole_days(None, None), Some((None, None)));
        // A range starting exactly at midnight leaves that day to the raw findings (a
        // zero-length window starting there does not match `window_end_ms > from`).
        assert_eq!(whole_days(Some(5 * DAY_MS), None), Some((Some(6), None)));
        assert_eq!(
            whole_days(Some(5 * DAY_MS + 1), None),
            Some((Some(6), None))
        );
        assert_eq!(whole_days(None, Some(9 * DAY_MS)), Some((None, Some(9))));
        assert_eq!(
            whole_days(None, Some(9 * DAY_MS - 1)),
            Some((None, Some(8)))
        );
        assert_eq!(
            whole_days(Some(5 * DAY_MS), Some(7 * DAY_MS)),
            Some((Some(6), Some(7)))
        );
        assert_eq!(whole_days(Some(5 * DAY_MS), Some(6 * DAY_MS + 5)), None);
    }
}
