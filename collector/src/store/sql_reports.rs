//! SOC reports over the `findings` table (issue 15): services × verdict with bytes and true
//! first use, hour/day trends, fleet-wide group-by (user, host, process, host group),
//! pickers from the data, and the alerts page.
//!
//! True first-seen comes from `first_uses`, kept at ingest (`first_uses.rs`), so it does not
//! depend on the selected range and costs one primary-key lookup.

use shadowai_api::{
    Alert, AlertPage, Bucket, FacetValue, Facets, GroupBy, GroupPage, GroupRow, ServiceReport,
    TrendPoint,
};

use super::rows::{Backend, Dialect, Row, Tx, V};
use super::sql::{SqlStore, verdict_from};
use super::sql_findings::day_string;
use super::{FindingFilter, StoreError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Most values one picker lists.
const FACET_MAX: i64 = 1_000;
/// Most alerts one ingest batch raises by default (`[alerts] per_batch`). A host that
/// presents more brand-new unsanctioned (service, user) pairs is flooding (junk user names):
/// the pairs are still recorded, so they never alert later, but only this many alerts reach
/// the SOC; the rest are counted (`shadowai_collector_alerts_suppressed_total`) and logged, and
/// the hour's first suppression raises one `alerts_suppressed` notice for the host.
pub const ALERTS_PER_BATCH: usize = 20;

/// The alerts and notices one batch raised, and what was held back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raised {
    pub alerts: Vec<Alert>,
    /// First uses recorded but not raised (per-batch or per-host-hour cap).
    pub suppressed: u64,
    /// soc: the host's `alerts_suppressed` notice, on its first suppression of the hour.
    pub notices: Vec<shadowai_api::Notice>,
    /// Undelivered outbox rows dropped (oldest first) to keep the outbox under its cap.
    pub outbox_dropped: u64,
}

/// The `group` filter value for hosts enrolled without a group (as is `""`).
pub const NO_GROUP: &str = "(none)";

/// How a group-by report is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSort {
    /// Most events first.
    Events,
    /// Unsanctioned and blocked uses only, most bytes sent first (top uploaders).
    Uploaders,
}

/// Byte counters are u64 on the wire and BIGINT in the database.
pub(super) fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u8(v: i64) -> u8 {
    u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX)
}

/// `%value%` for `LIKE … ESCAPE '\'`, lower-cased, with `%`, `_` and `\` taken literally.
fn like_pattern(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('%');
    for c in v.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The filter conditions added by issue 15 (action, group, partial matches, risk range).
pub(super) fn more_conditions(f: &FindingFilter, params: &mut Vec<V>, conds: &mut Vec<String>) {
    let add = |params: &mut Vec<V>, v: V| {
        params.push(v);
        format!("${}", params.len())
    };
    if let Some(a) = f.action {
        conds.push(format!("action = {}", add(params, a.as_str().into())));
    }
    if let Some(g) = &f.group {
        // Group names are [A-Za-z0-9._:-]+ (checked at enrollment): `(none)` cannot be one.
        let g = if g == NO_GROUP { "" } else { g.as_str() };
        conds.push(format!("COALESCE(grp, '') = {}", add(params, g.into())));
    }
    if let Some(u) = &f.user_contains {
        let p = add(params, like_pattern(u).into());
        conds.push(format!("LOWER(user_name) LIKE {p} ESCAPE '\\'"));
    }
    if let Some(h) = &f.host_contains {
        let p = add(params, like_pattern(h).into());
        conds.push(format!(
            "(LOWER(hostname) LIKE {p} ESCAPE '\\' OR LOWER(host_id) LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(pr) = &f.process_contains {
        let p = add(params, like_pattern(pr).into());
        conds.push(format!(
            "(LOWER(exe) LIKE {p} ESCAPE '\\' OR LOWER(process_name) LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(r) = f.risk_min {
        conds.push(format!(
            "risk_score >= {}",
            add(params, i64::from(r).into())
        ));
    }
    if let Some(r) = f.risk_max {
        conds.push(format!(
            "risk_score <= {}",
            add(params, i64::from(r).into())
        ));
    }
}

/// The SQL expressions of a grouping: (key, label, `first_uses` scope).
fn group_columns(by: GroupBy) -> (&'static str, &'static str, &'static str) {
    match by {
        GroupBy::User => ("user_name", "user_name", "user"),
        GroupBy::Host => ("host_id", "hostname", "host"),
        GroupBy::Process => ("exe", "exe", "process"),
        GroupBy::Group => ("COALESCE(grp, '')", "COALESCE(grp, '')", "group"),
    }
}

/// Sums of events by action and of bytes over a report's rows (`rollup.rs`), shared by the
/// services and group reports.
const SUMS: &str = "CAST(SUM(findings) AS BIGINT) AS findings, CAST(SUM(events) AS BIGINT) AS events, \
     CAST(SUM(CASE WHEN action = 'blocked' THEN events ELSE 0 END) AS BIGINT) AS blocked, \
     CAST(SUM(CASE WHEN action = 'would_block' THEN events ELSE 0 END) AS BIGINT) AS would_block, \
     CAST(COALESCE(SUM(bytes_out), 0) AS BIGINT) AS bytes_out, \
     CAST(COALESCE(SUM(bytes_in), 0) AS BIGINT) AS bytes_in, \
     CAST(SUM(bytes_known) AS BIGINT) AS bytes_known";

/// The five pickers (services, categories, verdicts, actions, groups) from one scan of the
/// report's rows `rows`: the rows are first summed per combination of the five (a few hundred
/// at fleet scale), each picker is then summed from those — the same values, labels, counts,
/// order and limit as one `GROUP BY` per picker, at the cost of one scan instead of five.
fn facets_in_one_scan(
    tx: &mut dyn Tx,
    rows: &str,
    params: &[V],
) -> Result<[Vec<FacetValue>; 5], StoreError> {
    let pick = |k: usize, value: &str, label: &str| {
        format!(
            "SELECT * FROM (SELECT {k} AS k, {value} AS v, MAX({label}) AS l, \
             CAST(SUM(n) AS BIGINT) AS n FROM c GROUP BY {value} \
             ORDER BY MAX({label}), {value} LIMIT {FACET_MAX}) p{k}"
        )
    };
    let sql = format!(
        "WITH c AS (SELECT service_id, category, verdict, action, COALESCE(grp, '') AS grp, \
         MAX(service_name) AS service_name, SUM(findings) AS n FROM ({rows}) r \
         GROUP BY service_id, category, verdict, action, COALESCE(grp, '')) \
         {} UNION ALL {} UNION ALL {} UNION ALL {} UNION ALL {} ORDER BY 1, 3, 2",
        pick(0, "service_id", "service_name"),
        pick(1, "category", "category"),
        pick(2, "verdict", "verdict"),
        pick(3, "action", "action"),
        pick(4, "grp", "grp"),
    );
    let mut out: [Vec<FacetValue>; 5] = Default::default();
    for r in tx.query("findings", &sql, params)?.iter() {
        let k = usize::try_from(r.i64(0)?).unwrap_or(usize::MAX);
        let Some(facet) = out.get_mut(k) else {
            return Err(StoreError::Corrupt {
                table: "findings",
                reason: format!("picker query returned picker #{k}"),
            });
        };
        facet.push(FacetValue {
            value: r.text(1)?,
            label: r.text(2)?,
            findings: r.u64(3)?,
        });
    }
    Ok(out)
}

fn group_row(r: &Row) -> Result<GroupRow, StoreError> {
    Ok(GroupRow {
        key: r.text(0)?,
        label: r.text(1)?,
        services: r.u64(2)?,
        risky_services: r.u64(3)?,
        hosts: r.u64(4)?,
        users: r.u64(5)?,
        findings: r.u64(6)?,
        events: r.u64(7)?,
        blocked_events: r.u64(8)?,
        would_block_events: r.u64(9)?,
        bytes_out: r.u64(10)?,
        bytes_in: r.u64(11)?,
        bytes_known: r.u64(12)?,
        last_seen_ms: r.i64(14)?,
        max_risk: to_u8(r.i64(15)?),
        first_seen_ms: r.opt_i64(16)?.unwrap_or(r.i64(13)?).min(r.i64(13)?),
    })
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn report_groups(
        &self,
        by: GroupBy,
        filter: &FindingFilter,
        sort: GroupSort,
        limit: u32,
        offset: u64,
    ) -> Result<GroupPage, StoreError> {
        let (key, label, scope) = group_columns(by);
        let order = match sort {
            GroupSort::Events => "g.events DESC, g.k",
            GroupSort::Uploaders => "g.bytes_out DESC, g.events DESC, g.k",
        };
        let only = match sort {
            GroupSort::Events => "",
            GroupSort::Uploaders => " AND verdict IN ('unsanctioned', 'blocked')",
        };
        let rollup = self.uses_rollup();
        let setup = self.backend.report_setup_sql();
        self.read_tx(|tx| {
            if let Some(sql) = setup {
                tx.exec(sql, &[])?;
            }
            let mut params = Vec::new();
            let rows = super::rollup::totals(filter, rollup, &mut params);
            let keys = super::rollup::keys(filter, rollup, &mut params);
            params.push((i64::from(limit) + 1).into());
            let lim = params.len();
            params.push(clamp_i64(offset).into());
            let off = params.len();
            let sql = format!(
                "SELECT g.k, q.label, q.services, q.risky, q.hosts, q.users, g.findings, g.events, \
                 g.blocked, g.would_block, g.bytes_out, g.bytes_in, g.bytes_known, g.first_ms, \
                 g.last_ms, q.max_risk, (SELECT fu.first_seen_ms FROM first_uses fu \
                 WHERE fu.scope = '{scope}' AND fu.subject = g.k AND fu.service_id = '') \
                 FROM (SELECT {key} AS k, {SUMS}, MIN(first_seen_ms) AS first_ms, \
                 MAX(last_seen_ms) AS last_ms FROM ({rows}) r WHERE 1 = 1{only} GROUP BY {key}) g \
                 JOIN (SELECT {key} AS k, MAX({label}) AS label, \
                 COUNT(DISTINCT service_id) AS services, COUNT(DISTINCT CASE WHEN verdict IN \
                 ('unsanctioned', 'blocked') THEN service_id END) AS risky, \
                 COUNT(DISTINCT host_id) AS hosts, COUNT(DISTINCT user_name) AS users, \
                 MAX(risk_score) AS max_risk FROM ({keys}) s WHERE 1 = 1{only} GROUP BY {key}) q \
                 ON q.k = g.k ORDER BY {order} LIMIT ${lim} OFFSET ${off}"
            );
            let rows = tx.query("findings", &sql, &params)?;
            let more = rows.len() > limit as usize;
            let items = rows
                .iter()
                .take(limit as usize)
                .map(group_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(GroupPage {
                by,
                next_offset: more.then(|| offset + u64::from(limit)),
                items,
            })
        })
    }

    pub(super) fn report_services(
        &self,
        filter: &FindingFilter,
    ) -> Result<Vec<ServiceReport>, StoreError> {
        let rollup = self.uses_rollup();
        let setup = self.backend.report_setup_sql();
        self.read_tx(|tx| {
            if let Some(sql) = setup {
                tx.exec(sql, &[])?;
            }
            let mut params = Vec::new();
            let rows = super::rollup::totals(filter, rollup, &mut params);
            let keys = super::rollup::keys(filter, rollup, &mut params);
            let sql = format!(
                "SELECT s.service_id, s.verdict, s.n, s.v, s.c, k.r, k.hosts, k.users, k.procs, \
                 s.findings, s.first_ms, s.last_ms, s.events, s.blocked, s.would_block, \
                 s.bytes_out, s.bytes_in, s.bytes_known, (SELECT fu.first_seen_ms FROM first_uses \
                 fu WHERE fu.scope = 'fleet' AND fu.subject = s.verdict \
                 AND fu.service_id = s.service_id) FROM \
                 (SELECT service_id, verdict, MAX(service_name) AS n, MAX(vendor) AS v, \
                 MAX(category) AS c, MIN(first_seen_ms) AS first_ms, \
                 MAX(last_seen_ms) AS last_ms, {SUMS} FROM ({rows}) r \
                 GROUP BY service_id, verdict) s JOIN \
                 (SELECT service_id, verdict, MAX(risk_score) AS r, \
                 COUNT(DISTINCT host_id) AS hosts, COUNT(DISTINCT user_name) AS users, \
                 COUNT(DISTINCT exe) AS procs FROM ({keys}) q GROUP BY service_id, verdict) k \
                 ON k.service_id = s.service_id AND k.verdict = s.verdict \
                 ORDER BY s.service_id, s.verdict"
            );
            tx.query("findings", &sql, &params)?
                .iter()
                .map(|r| {
                    Ok(ServiceReport {
                        service_id: r.text(0)?,
                        verdict: r.parsed(1, "verdict", verdict_from)?,
                        service_name: r.text(2)?,
                        vendor: r.text(3)?,
                        category: r.text(4)?,
                        risk_score: to_u8(r.i64(5)?),
                        hosts: r.u64(6)?,
                        users: r.u64(7)?,
                        processes: r.u64(8)?,
                        findings: r.u64(9)?,
                        first_seen_ms: r.i64(10)?,
                        last_seen_ms: r.i64(11)?,
                        events: r.u64(12)?,
                        blocked_events: r.u64(13)?,
                        would_block_events: r.u64(14)?,
                        bytes_out: r.u64(15)?,
                        bytes_in: r.u64(16)?,
                        first_seen_ever_ms: r.opt_i64(18)?,
                        risk: None,
                    })
                })
                .collect()
        })
    }

    pub(super) fn report_trend(
        &self,
        filter: &FindingFilter,
        bucket: Bucket,
    ) -> Result<Vec<TrendPoint>, StoreError> {
        let size = match bucket {
            Bucket::Hour => HOUR_MS,
            Bucket::Day => DAY_MS,
        };
        let rollup = self.uses_rollup();
        let setup = self.backend.report_setup_sql();
        self.read_tx(|tx| {
            if let Some(sql) = setup {
                tx.exec(sql, &[])?;
            }
            let mut params = Vec::new();
            // Unfiltered day trends add up the per-day sums (`rollup_sums.rs`).
            let sums = match bucket {
                Bucket::Day => super::rollup::day_trend(filter, rollup, &mut params),
                Bucket::Hour => None,
            };
            // PostgreSQL reads time-only hour trends hour by hour (`report_index.rs`).
            let hourly = match (bucket, self.backend.dialect()) {
                (Bucket::Hour, Dialect::Postgres) if rollup => {
                    super::report_index::hour_trend(tx, filter, &mut params)?
                }
                _ => None,
            };
            let sql = if let Some(sql) = hourly {
                sql
            } else if let Some(sums) = sums {
                format!(
                    "SELECT b, service_id, verdict, CAST(SUM(events) AS BIGINT), \
                     CAST(SUM(hosts) AS BIGINT), CAST(SUM(users) AS BIGINT), \
                     CAST(SUM(bytes_out) AS BIGINT) FROM ({sums}) r \
                     GROUP BY b, service_id, verdict ORDER BY b, service_id, verdict"
                )
            } else {
                let rows = super::rollup::rows(filter, size, rollup, &mut params);
                format!(
                    "SELECT b, service_id, verdict, CAST(SUM(events) AS BIGINT), \
                     COUNT(DISTINCT host_id), COUNT(DISTINCT user_name), \
                     CAST(COALESCE(SUM(bytes_out), 0) AS BIGINT) FROM ({rows}) r \
                     GROUP BY b, service_id, verdict ORDER BY b, service_id, verdict"
                )
            };
            tx.query("findings", &sql, &params)?
                .iter()
                .map(|r| {
                    let start = r.i64(0)?.saturating_mul(size);
                    Ok(TrendPoint {
                        day: day_string(start.div_euclid(DAY_MS)),
                        service_id: r.text(1)?,
                        verdict: r.parsed(2, "verdict", verdict_from)?,
                        events: r.u64(3)?,
                        hosts: r.u64(4)?,
                        users: r.u64(5)?,
                        bucket_start_ms: start,
                        bucket,
                        bytes_out: r.u64(6)?,
                    })
                })
                .collect()
        })
    }

    /// Picker values within the filter's time range (other filters do not narrow them).
    pub(super) fn report_facets(&self, filter: &FindingFilter) -> Result<Facets, StoreError> {
        let range = FindingFilter {
            from_ms: filter.from_ms,
            to_ms: filter.to_ms,
            ..FindingFilter::default()
        };
        let rollup = self.uses_rollup();
        let setup = self.backend.report_setup_sql();
        self.read_tx(|tx| {
            if let Some(sql) = setup {
                tx.exec(sql, &[])?;
            }
            let mut params = Vec::new();
            let rows = super::rollup::totals(&range, rollup, &mut params);
            let facet = |tx: &mut dyn Tx, value: &str, label: &str| {
                let sql = format!(
                    "SELECT {value} AS v, MAX({label}), CAST(SUM(findings) AS BIGINT) \
                     FROM ({rows}) r GROUP BY {value} ORDER BY MAX({label}), v LIMIT {FACET_MAX}"
                );
                tx.query("findings", &sql, &params)?
                    .iter()
                    .map(|r| {
                        Ok(FacetValue {
                            value: r.text(0)?,
                            label: r.text(1)?,
                            findings: r.u64(2)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            };
            let [services, categories, verdicts, actions, groups] = if rollup {
                facets_in_one_scan(tx, &rows, &params)?
            } else {
                // The plain form: the reference the one-scan form is tested against.
                [
                    facet(tx, "service_id", "service_name")?,
                    facet(tx, "category", "category")?,
                    facet(tx, "verdict", "verdict")?,
                    facet(tx, "action", "action")?,
                    facet(tx, "COALESCE(grp, '')", "COALESCE(grp, '')")?,
                ]
            };
            let mut key_params = Vec::new();
            let keys = super::rollup::keys(&range, rollup, &mut key_params);
            let risk = tx.query(
                "findings",
                &format!("SELECT MIN(risk_score), MAX(risk_score) FROM ({keys}) k"),
                &key_params,
            )?;
            let (risk_min, risk_max) = match risk.first() {
                Some(r) => (r.opt_i64(0)?.map(to_u8), r.opt_i64(1)?.map(to_u8)),
                None => (None, None),
            };
            Ok(Facets {
                services,
                categories,
                verdicts,
                actions,
                groups,
                risk_min,
                risk_max,
            })
        })
    }

    pub(super) fn alerts_page(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AlertPage, StoreError> {
        self.read_tx(|tx| {
            let rows = tx.query(
                "alerts",
                "SELECT id, doc FROM alerts WHERE id < $1 ORDER BY id DESC LIMIT $2",
                &[
                    before.unwrap_or(i64::MAX).into(),
                    (i64::from(limit) + 1).into(),
                ],
            )?;
            let more = rows.len() > limit as usize;
            let mut items = Vec::with_capacity(rows.len());
            for r in rows.iter().take(limit as usize) {
                let id = r.i64(0)?;
                let mut a: Alert =
                    serde_json::from_str(&r.text(1)?).map_err(|e| StoreError::Corrupt {
                        table: "alerts",
                        reason: format!("doc of alert {id} is not an Alert: {e}"),
                    })?;
                a.id = id;
                items.push(a);
            }
            Ok(AlertPage {
                next_before: if more {
                    items.last().map(|a| a.id)
                } else {
                    None
                },
                items,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("Alice"), "%alice%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
