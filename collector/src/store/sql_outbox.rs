//! soc (issues 15, 13): the durable alert outbox and per-host alert budgets.
//!
//! Every alert and notice is written to `alert_outbox` in the transaction that raises it
//! (first-use alerts: the ingest transaction of the findings that trigger them), so a
//! collector restart loses nothing: the delivery task ([`crate::alerts`]) takes due rows,
//! claims each with a short lease (replicas on one PostgreSQL never send a row twice at the
//! same time), POSTs it and settles it as delivered, failed or due again after a capped
//! exponential back-off. The table is bounded: past `outbox_cap` undelivered rows the oldest
//! are dropped (returned, counted and logged by the caller), and settled rows beyond the cap
//! are pruned oldest first.
//!
//! A host's alerts are budgeted per hour (`alert_budget`): beyond `per_host_per_hour` (and
//! `per_batch` in one batch) its first uses are recorded but not raised, and the first
//! suppression of the hour raises one `alerts_suppressed` notice for that host.

use shadowai_api::{Alert, DeliveryState, Notice, NoticeKind, OutboxEntry, OutboxItem, OutboxPage};

use super::StoreError;
use super::rows::{Backend, Row, Tx};
use super::sql::SqlStore;

pub const HOUR_MS: i64 = 3_600_000;

/// How alerts are raised and kept (from `[alerts]` of the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Alerts one ingest batch may raise.
    pub per_batch: u64,
    /// Alerts one host may raise per clock hour.
    pub per_host_per_hour: u64,
    /// A webhook is configured: new rows are `pending` (else `not_sent`).
    pub webhook: bool,
    /// Most undelivered rows kept; also how many settled rows are kept.
    pub outbox_cap: u64,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            per_batch: 20,
            per_host_per_hour: 60,
            webhook: false,
            outbox_cap: 10_000,
        }
    }
}

/// A refused claim of a bound host id, as the enroll routes saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictSeen {
    pub host_id: String,
    pub peer: String,
    pub via: String,
    pub conflicts: u64,
}

/// A row the delivery task claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueItem {
    pub id: i64,
    pub attempts: u32,
    pub item: OutboxItem,
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Try again at `next_ms`.
    Retry {
        next_ms: i64,
        error: String,
    },
    Failed {
        error: String,
    },
}

fn hour_of(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(HOUR_MS)
}

fn encode(item: &OutboxItem) -> Result<String, StoreError> {
    serde_json::to_string(item).map_err(|e| StoreError::Corrupt {
        table: "alert_outbox",
        reason: format!("cannot encode an outbox item: {e}"),
    })
}

fn decode(id: i64, doc: &str) -> Result<OutboxItem, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        table: "alert_outbox",
        reason: format!("doc of outbox row {id} is not an outbox item: {e}"),
    })
}

/// Writes one alert or notice to the outbox (inside the raising transaction).
pub(super) fn put(
    tx: &mut dyn Tx,
    item: &OutboxItem,
    host_id: &str,
    policy: &AlertPolicy,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (kind, state) = (
        match item {
            OutboxItem::Alert(_) => "alert",
            OutboxItem::Notice(_) => "notice",
        },
        if policy.webhook {
            DeliveryState::Pending
        } else {
            DeliveryState::NotSent
        },
    );
    tx.exec(
        "INSERT INTO alert_outbox (created_ms, host_id, kind, doc, state, attempts, next_ms) \
         VALUES ($1, $2, $3, $4, $5, 0, $1)",
        &[
            now_ms.into(),
            host_id.into(),
            kind.into(),
            encode(item)?.into(),
            state.as_str().into(),
        ],
    )?;
    Ok(())
}

/// Drops the oldest undelivered rows beyond the cap; returns how many.
pub(super) fn trim(tx: &mut dyn Tx, cap: u64) -> Result<u64, StoreError> {
    let rows = tx.query(
        "alert_outbox",
        "SELECT COUNT(*) FROM alert_outbox WHERE state = 'pending'",
        &[],
    )?;
    let pending = rows.first().map(|r| r.u64(0)).transpose()?.unwrap_or(0);
    if pending <= cap {
        return Ok(0);
    }
    let excess = pending - cap;
    let n = tx.exec(
        "DELETE FROM alert_outbox WHERE state = 'pending' AND id <= (SELECT id FROM alert_outbox \
         WHERE state = 'pending' ORDER BY id LIMIT 1 OFFSET $1)",
        &[i64::try_from(excess - 1).unwrap_or(i64::MAX).into()],
    )?;
    Ok(n)
}

/// Takes up to `wanted` alerts from `host_id`'s budget of this hour. Returns (allowed, the
/// hour's suppressed total, whether this is the hour's first suppression).
pub(super) fn take_budget(
    tx: &mut dyn Tx,
    host_id: &str,
    wanted: u64,
    policy: &AlertPolicy,
    now_ms: i64,
) -> Result<(u64, u64, bool), StoreError> {
    let window = hour_of(now_ms);
    // DO UPDATE (to the same value), not DO NOTHING: it takes the row's lock before the
    // read, so on PostgreSQL a concurrent ingest of the same host (another replica, another
    // pool connection) waits here until this one commits and then reads what it took: the
    // read-then-update below cannot hand out the same room twice, whatever else orders
    // those ingests (`store_outbox.rs::*_concurrent_ingests_share_one_budget`).
    tx.exec(
        "INSERT INTO alert_budget (host_id, window_ms, raised, suppressed, noticed) \
         VALUES ($1, $2, 0, 0, 0) ON CONFLICT (host_id, window_ms) \
         DO UPDATE SET raised = alert_budget.raised",
        &[host_id.into(), window.into()],
    )?;
    let rows = tx.query(
        "alert_budget",
        "SELECT raised, suppressed, noticed FROM alert_budget WHERE host_id = $1 AND window_ms = $2",
        &[host_id.into(), window.into()],
    )?;
    let r = rows.first().ok_or(StoreError::NoRow {
        what: "alert_budget after upsert",
    })?;
    let (raised, suppressed, noticed) = (r.u64(0)?, r.u64(1)?, r.i64(2)? != 0);
    let room = policy
        .per_host_per_hour
        .saturating_sub(raised)
        .min(policy.per_batch);
    let allowed = wanted.min(room);
    let cut = wanted - allowed;
    let first = cut > 0 && !noticed;
    tx.exec(
        "UPDATE alert_budget SET raised = raised + $1, suppressed = suppressed + $2, \
         noticed = $3 WHERE host_id = $4 AND window_ms = $5",
        &[
            i64::try_from(allowed).unwrap_or(i64::MAX).into(),
            i64::try_from(cut).unwrap_or(i64::MAX).into(),
            i64::from(noticed || first).into(),
            host_id.into(),
            window.into(),
        ],
    )?;
    Ok((allowed, suppressed + cut, first))
}

/// The notice of a host's first suppressed alert in an hour.
pub(super) fn suppressed_notice(
    host_id: &str,
    suppressed: u64,
    policy: &AlertPolicy,
    now_ms: i64,
) -> Notice {
    let start = hour_of(now_ms);
    Notice {
        kind: NoticeKind::AlertsSuppressed,
        created_ms: now_ms,
        host_id: host_id.to_owned(),
        count: suppressed,
        window_start_ms: start,
        window_end_ms: start + HOUR_MS,
        peer: String::new(),
        via: String::new(),
        summary: format!(
            "host {host_id} raised more first-use alerts than its cap ({} per hour, {} per \
             batch): {suppressed} suppressed so far this hour; its uses are recorded and shown \
             in reports, but no more alerts from it until the hour ends",
            policy.per_host_per_hour, policy.per_batch
        ),
        link: link_for_host(host_id),
    }
}

fn link_for_host(host_id: &str) -> String {
    serde_urlencoded::to_string([("host", host_id)])
        .map(|q| format!("#/findings?{q}"))
        .unwrap_or_else(|_| "#/findings".to_owned())
}

fn entry(r: &Row) -> Result<OutboxEntry, StoreError> {
    let id = r.i64(0)?;
    let state = r.text(4)?;
    let state = DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        table: "alert_outbox",
        reason: format!("row {id}: unknown state {state:?}"),
    })?;
    Ok(OutboxEntry {
        id,
        created_ms: r.i64(1)?,
        host_id: r.text(2)?,
        item: decode(id, &r.text(3)?)?,
        state,
        attempts: u32::try_from(r.u64(5)?).unwrap_or(u32::MAX),
        next_attempt_ms: (state == DeliveryState::Pending)
            .then(|| r.i64(6))
            .transpose()?,
        last_error: r.opt_text(7)?,
        done_ms: r.opt_i64(8)?,
    })
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn host_conflict_notice(
        &self,
        c: &ConflictSeen,
        policy: &AlertPolicy,
        now_ms: i64,
    ) -> Result<(Option<Notice>, u64), StoreError> {
        let window = hour_of(now_ms);
        self.tx(|tx| {
            // One notice per host per hour, however many claims are refused.
            let n = tx.exec(
                "INSERT INTO alert_keys (scope, subject, service_id, alert_id) \
                 VALUES ('conflict', $1, $2, 0) ON CONFLICT (scope, subject, service_id) DO NOTHING",
                &[c.host_id.as_str().into(), window.to_string().into()],
            )?;
            if n == 0 {
                return Ok((None, 0));
            }
            // Keys of past hours are worth nothing: keep one row per host.
            tx.exec(
                "DELETE FROM alert_keys WHERE scope = 'conflict' AND subject = $1 AND service_id <> $2",
                &[c.host_id.as_str().into(), window.to_string().into()],
            )?;
            let notice = Notice {
                kind: NoticeKind::HostIdentityConflict,
                created_ms: now_ms,
                host_id: c.host_id.clone(),
                count: c.conflicts,
                window_start_ms: window,
                window_end_ms: window + HOUR_MS,
                peer: c.peer.clone(),
                via: c.via.clone(),
                summary: format!(
                    "host identity conflict: {} claimed host {} with another host key ({} \
                     refused claims so far); the host stays bound to its key — a takeover \
                     attempt or a cloned machine",
                    if c.peer.is_empty() { "a client" } else { &c.peer },
                    c.host_id,
                    c.conflicts
                ),
                link: "#/fleet".to_owned(),
            };
            put(
                tx,
                &OutboxItem::Notice(notice.clone()),
                &c.host_id,
                policy,
                now_ms,
            )?;
            let dropped = trim(tx, policy.outbox_cap)?;
            Ok((Some(notice), dropped))
        })
    }

    /// Claims up to `limit` due rows (each leased until `now_ms + lease_ms`).
    pub(super) fn outbox_claim_due(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueItem>, StoreError> {
        self.tx(|tx| {
            let rows = tx.query(
                "alert_outbox",
                "SELECT id, attempts, doc FROM alert_outbox WHERE state = 'pending' \
                 AND next_ms <= $1 ORDER BY id LIMIT $2",
                &[now_ms.into(), i64::from(limit).into()],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let id = r.i64(0)?;
                let claimed = tx.exec(
                    "UPDATE alert_outbox SET next_ms = $1 WHERE id = $2 AND state = 'pending' \
                     AND next_ms <= $3",
                    &[(now_ms + lease_ms).into(), id.into(), now_ms.into()],
                )?;
                if claimed == 1 {
                    out.push(DueItem {
                        id,
                        attempts: u32::try_from(r.u64(1)?).unwrap_or(u32::MAX),
                        item: decode(id, &r.text(2)?)?,
                    });
                }
            }
            Ok(out)
        })
    }

    pub(super) fn outbox_settle_row(
        &self,
        id: i64,
        attempts: u32,
        outcome: &Settle,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (state, next, error, done): (&str, i64, Option<String>, Option<i64>) = match outcome {
            Settle::Delivered => ("delivered", now_ms, None, Some(now_ms)),
            Settle::Retry { next_ms, error } => ("pending", *next_ms, Some(error.clone()), None),
            Settle::Failed { error } => ("failed", now_ms, Some(error.clone()), Some(now_ms)),
        };
        self.tx(|tx| {
            tx.exec(
                "UPDATE alert_outbox SET state = $1, attempts = $2, next_ms = $3, \
                 last_error = COALESCE($4, last_error), done_ms = $5 WHERE id = $6",
                &[
                    state.into(),
                    i64::from(attempts).into(),
                    next.into(),
                    error.clone().into(),
                    done.into(),
                    id.into(),
                ],
            )?;
            Ok(())
        })
    }

    pub(super) fn outbox_next(&self) -> Result<Option<i64>, StoreError> {
        self.read_tx(|tx| {
            let rows = tx.query(
                "alert_outbox",
                "SELECT MIN(next_ms) FROM alert_outbox WHERE state = 'pending'",
                &[],
            )?;
            Ok(rows.first().map(|r| r.opt_i64(0)).transpose()?.flatten())
        })
    }

    pub(super) fn outbox_list(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<OutboxPage, StoreError> {
        self.read_tx(|tx| {
            let rows = tx.query(
                "alert_outbox",
                "SELECT id, created_ms, host_id, doc, state, attempts, next_ms, last_error, \
                 done_ms FROM alert_outbox WHERE id < $1 ORDER BY id DESC LIMIT $2",
                &[
                    before.unwrap_or(i64::MAX).into(),
                    (i64::from(limit) + 1).into(),
                ],
            )?;
            let more = rows.len() > limit as usize;
            let items = rows
                .iter()
                .take(limit as usize)
                .map(entry)
                .collect::<Result<Vec<_>, _>>()?;
            let mut page = OutboxPage {
                next_before: if more {
                    items.last().map(|e| e.id)
                } else {
                    None
                },
                items,
                ..OutboxPage::default()
            };
            for r in tx.query(
                "alert_outbox",
                "SELECT state, COUNT(*) FROM alert_outbox GROUP BY state",
                &[],
            )? {
                let n = r.u64(1)?;
                match DeliveryState::parse(&r.text(0)?) {
                    Some(DeliveryState::Pending) => page.pending = n,
                    Some(DeliveryState::Delivered) => page.delivered = n,
                    Some(DeliveryState::Failed) => page.failed = n,
                    Some(DeliveryState::NotSent) => page.not_sent = n,
                    None => {}
                }
            }
            Ok(page)
        })
    }

    /// Prunes settled rows beyond `keep` (oldest first) and budgets of past hours.
    pub(super) fn outbox_prune(&self, keep: u64, now_ms: i64) -> Result<u64, StoreError> {
        self.tx(|tx| {
            let n = tx.exec(
                "DELETE FROM alert_outbox WHERE state <> 'pending' AND id <= (SELECT id FROM \
                 alert_outbox WHERE state <> 'pending' ORDER BY id DESC LIMIT 1 OFFSET $1)",
                &[i64::try_from(keep).unwrap_or(i64::MAX).into()],
            )?;
            tx.exec(
                "DELETE FROM alert_budget WHERE window_ms < $1",
                &[(hour_of(now_ms) - HOUR_MS).into()],
            )?;
            Ok(n)
        })
    }

    /// The last audit entry: (seq, hash, ts_ms).
    pub(super) fn audit_last(&self) -> Result<Option<(i64, String, i64)>, StoreError> {
        self.read_tx(|tx| {
            let rows = tx.query(
                "audit",
                "SELECT seq, hash, ts_ms FROM audit ORDER BY seq DESC LIMIT 1",
                &[],
            )?;
            rows.first()
                .map(|r| Ok((r.i64(0)?, r.text(1)?, r.i64(2)?)))
                .transpose()
        })
    }
}

/// An alert as an outbox item.
pub(super) fn alert_item(a: &Alert) -> OutboxItem {
    OutboxItem::Alert(a.clone())
}
