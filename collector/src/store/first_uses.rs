//! First-use bookkeeping at ingest: `first_uses` (the earliest time each fleet, host, user,
//! process and group key was seen) and `alert_keys` (which (service, fleet/host/user) pairs
//! have raised their first-use alert), in the ingest's transaction.
//!
//! A batch's keys are written with a few multi-row statements, not one per key, and keys this
//! process knows are stored at or before the batch's time are skipped ([`KnownKeys`]): in a
//! steady fleet almost every key is known, so an ingest runs none of these statements.
//! No statement locks a row that exists: an existing `first_uses` row is read, and updated
//! only when the batch's time is earlier; `alert_keys` rows are inserted with `ON CONFLICT
//! DO NOTHING` (PostgreSQL locks the existing row of an `ON CONFLICT DO UPDATE` even when
//! nothing changes, and the fleet-wide keys are the same rows for every agent). Statements
//! take keys in one sorted order, so two ingests that insert the same new keys wait for each
//! other instead of deadlocking.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use shadowai_api::{Alert, AlertReason, Finding, Verdict};

use super::StoreError;
use super::known_keys::{Key, KnownKeys, Table};
use super::rows::{Tx, V};
use super::sql::verdict_str;
use super::sql_reports::Raised;

/// (scope, subject, service_id) of a `first_uses` or `alert_keys` row.
type Scoped = (&'static str, String, String);

/// Keys per statement: a few fixed shapes, so prepared statements are reused.
const KEY_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Splits `items` into runs of the [`KEY_CHUNKS`] sizes.
fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = KEY_CHUNKS
            .into_iter()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// `($1, $2, $3), ($4, $5, $6), …` for `rows` rows of `cols` parameters, each row followed
/// by `extra` literal values.
fn values_list(rows: usize, cols: usize, extra: &str) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}${}", r * cols + c + 1);
        }
        s.push_str(extra);
        s.push(')');
    }
    s
}

fn risky(v: Verdict) -> bool {
    matches!(v, Verdict::Unsanctioned | Verdict::Blocked)
}

/// What an ingest's first-use bookkeeping produced: the alerts it raised and the keys its
/// transaction stored, for [`KnownKeys::learn`] once that transaction has committed.
pub(super) struct Noted {
    pub raised: Raised,
    pub learned: Vec<(Key, i64)>,
}

/// Keeps `first_uses` and raises first-use alerts for the findings just stored (same
/// transaction; a duplicate finding's keys exist already, so it raises nothing).
pub(super) fn note_first_uses(
    tx: &mut dyn Tx,
    stored: &[&Finding],
    group: Option<&str>,
    policy: &super::sql_outbox::AlertPolicy,
    now_ms: i64,
    known: &KnownKeys,
) -> Result<Noted, StoreError> {
    let mut learned = Vec::new();
    record_first_uses(tx, first_use_keys(stored, group), known, &mut learned)?;
    let wanted = new_alert_keys(tx, stored, known, &mut learned)?;
    let raised = raise_alerts(tx, wanted, policy, now_ms)?;
    Ok(Noted { raised, learned })
}

/// Each key of the batch with the batch's earliest time for it, in sorted order.
fn first_use_keys(stored: &[&Finding], group: Option<&str>) -> BTreeMap<Scoped, i64> {
    let mut firsts: BTreeMap<Scoped, i64> = BTreeMap::new();
    for f in stored {
        let keys = [
            ("fleet", verdict_str(f.verdict), f.service_id.clone()),
            ("host", f.host_id.clone(), String::new()),
            ("user", f.user.clone(), String::new()),
            ("process", f.process.exe.clone(), String::new()),
            ("group", group.unwrap_or("").to_owned(), String::new()),
        ];
        for k in keys {
            let e = firsts.entry(k).or_insert(f.first_seen_ms);
            *e = (*e).min(f.first_seen_ms);
        }
    }
    firsts
}

fn first_use_key(k: &Scoped) -> Key {
    (Table::FirstUses, k.0, k.1.clone(), k.2.clone())
}

fn scoped_params(k: &Scoped, params: &mut Vec<V>) {
    params.extend([k.0.into(), k.1.as_str().into(), k.2.as_str().into()]);
}

/// Writes the keys whose stored time is unknown or may be later than the batch's: reads
/// their rows, inserts the missing ones, and lowers the ones stored later.
fn record_first_uses(
    tx: &mut dyn Tx,
    firsts: BTreeMap<Scoped, i64>,
    known: &KnownKeys,
    learned: &mut Vec<(Key, i64)>,
) -> Result<(), StoreError> {
    let todo: Vec<(Scoped, i64)> = firsts
        .into_iter()
        .filter(|(k, t)| known.get(&first_use_key(k)).is_none_or(|c| c > *t))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let mut times: HashMap<(String, String, String), i64> = HashMap::new();
    for chunk in chunks(&todo) {
        let mut params = Vec::with_capacity(chunk.len() * 3);
        for (k, _) in chunk {
            scoped_params(k, &mut params);
        }
        let sql = format!(
            "SELECT f.scope, f.subject, f.service_id, f.first_seen_ms FROM (VALUES {}) AS v \
             JOIN first_uses f ON f.scope = v.column1 AND f.subject = v.column2 \
             AND f.service_id = v.column3",
            values_list(chunk.len(), 3, "")
        );
        for r in tx.query("first_uses", &sql, &params)? {
            times.insert((r.text(0)?, r.text(1)?, r.text(2)?), r.i64(3)?);
        }
    }
    let (mut absent, mut earlier) = (Vec::new(), Vec::new());
    for (k, t) in todo {
        match times.get(&(k.0.to_owned(), k.1.clone(), k.2.clone())) {
            Some(&stored) if stored <= t => learned.push((first_use_key(&k), stored)),
            Some(_) => earlier.push((k, t)),
            None => absent.push((k, t)),
        }
    }
    let mut inserted: HashSet<(String, String, String)> = HashSet::new();
    for chunk in chunks(&absent) {
        let mut params = Vec::with_capacity(chunk.len() * 4);
        for (k, t) in chunk {
            scoped_params(k, &mut params);
            params.push((*t).into());
        }
        let sql = format!(
            "INSERT INTO first_uses (scope, subject, service_id, first_seen_ms) VALUES {} \
             ON CONFLICT (scope, subject, service_id) DO NOTHING \
             RETURNING scope, subject, service_id",
            values_list(chunk.len(), 4, "")
        );
        for r in tx.query("first_uses", &sql, &params)? {
            inserted.insert((r.text(0)?, r.text(1)?, r.text(2)?));
        }
    }
    for (k, t) in absent {
        if inserted.contains(&(k.0.to_owned(), k.1.clone(), k.2.clone())) {
            learned.push((first_use_key(&k), t));
        } else {
            // Another transaction stored it since the read: lower it if it is later.
            earlier.push((k, t));
        }
    }
    // In key order, like the inserts: ingests that lower the same keys lock them in one order.
    earlier.sort();
    for (k, t) in earlier {
        tx.exec(
            "UPDATE first_uses SET first_seen_ms = $4 \
             WHERE scope = $1 AND subject = $2 AND service_id = $3 AND first_seen_ms > $4",
            &[
                k.0.into(),
                k.1.as_str().into(),
                k.2.as_str().into(),
                t.into(),
            ],
        )?;
        learned.push((first_use_key(&k), t));
    }
    Ok(())
}

/// Records the batch's (service, fleet/host/user) pairs of unsanctioned and blocked uses in
/// `alert_keys`; returns, in the batch's order, each finding that was the first use of a pair
/// with the reasons it raises.
fn new_alert_keys<'f>(
    tx: &mut dyn Tx,
    stored: &[&'f Finding],
    known: &KnownKeys,
    learned: &mut Vec<(Key, i64)>,
) -> Result<Vec<(&'f Finding, Vec<AlertReason>)>, StoreError> {
    // Each pair at its first finding in the batch.
    let mut firsts: Vec<(&'f Finding, AlertReason, Scoped)> = Vec::new();
    let mut seen: HashSet<Scoped> = HashSet::new();
    for f in stored.iter().copied().filter(|f| risky(f.verdict)) {
        for (scope, subject, reason) in [
            ("fleet", "", AlertReason::NewInFleet),
            ("host", f.host_id.as_str(), AlertReason::NewHost),
            ("user", f.user.as_str(), AlertReason::NewUser),
        ] {
            let k: Scoped = (scope, subject.to_owned(), f.service_id.clone());
            if seen.insert(k.clone()) {
                firsts.push((f, reason, k));
            }
        }
    }
    let alert_key = |k: &Scoped| (Table::AlertKeys, k.0, k.1.clone(), k.2.clone());
    let todo: Vec<Scoped> = firsts
        .iter()
        .map(|(_, _, k)| k)
        .filter(|k| known.get(&alert_key(k)).is_none())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut new: HashSet<(String, String, String)> = HashSet::new();
    for chunk in chunks(&todo) {
        let mut params = Vec::with_capacity(chunk.len() * 3);
        for k in chunk {
            scoped_params(k, &mut params);
        }
        let sql = format!(
            "INSERT INTO alert_keys (scope, subject, service_id, alert_id) VALUES {} \
             ON CONFLICT (scope, subject, service_id) DO NOTHING \
             RETURNING scope, subject, service_id",
            values_list(chunk.len(), 3, ", 0")
        );
        for r in tx.query("alert_keys", &sql, &params)? {
            new.insert((r.text(0)?, r.text(1)?, r.text(2)?));
        }
    }
    learned.extend(todo.iter().map(|k| (alert_key(k), 0)));
    let mut wanted: Vec<(&'f Finding, Vec<AlertReason>)> = Vec::new();
    for (f, reason, k) in firsts {
        if !new.contains(&(k.0.to_owned(), k.1, k.2)) {
            continue;
        }
        match wanted.last_mut() {
            Some((last, reasons)) if std::ptr::eq(*last, f) => reasons.push(reason),
            _ => wanted.push((f, vec![reason])),
        }
    }
    Ok(wanted)
}

/// Stores the alerts of `wanted` the host's budget allows (with their outbox rows) and, on
/// the hour's first suppression, the host's notice.
fn raise_alerts(
    tx: &mut dyn Tx,
    wanted: Vec<(&Finding, Vec<AlertReason>)>,
    policy: &super::sql_outbox::AlertPolicy,
    now_ms: i64,
) -> Result<Raised, StoreError> {
    let mut raised = Raised::default();
    // A batch holds one host's findings (checked before the insert).
    let Some(host_id) = wanted.first().map(|(f, _)| f.host_id.clone()) else {
        return Ok(raised);
    };
    let (allowed, hour_suppressed, first_cut) =
        super::sql_outbox::take_budget(tx, &host_id, wanted.len() as u64, policy, now_ms)?;
    raised.suppressed = wanted.len() as u64 - allowed;
    for (f, reasons) in wanted
        .into_iter()
        .take(usize::try_from(allowed).unwrap_or(usize::MAX))
    {
        let mut alert = alert_of(f, reasons, now_ms);
        let doc = serde_json::to_string(&alert).map_err(|e| StoreError::Corrupt {
            table: "alerts",
            reason: format!("cannot encode the alert of finding {:?}: {e}", f.id),
        })?;
        let rows = tx.query(
            "alerts",
            "INSERT INTO alerts (created_ms, service_id, doc) VALUES ($1, $2, $3) RETURNING id",
            &[now_ms.into(), f.service_id.as_str().into(), doc.into()],
        )?;
        alert.id = rows
            .first()
            .map(|r| r.i64(0))
            .transpose()?
            .ok_or(StoreError::NoRow {
                what: "INSERT INTO alerts … RETURNING",
            })?;
        tx.exec(
            "UPDATE alert_keys SET alert_id = $1 WHERE alert_id = 0 AND service_id = $2 \
             AND ((scope = 'fleet' AND subject = '') OR (scope = 'host' AND subject = $3) \
             OR (scope = 'user' AND subject = $4))",
            &[
                alert.id.into(),
                f.service_id.as_str().into(),
                f.host_id.as_str().into(),
                f.user.as_str().into(),
            ],
        )?;
        super::sql_outbox::put(
            tx,
            &super::sql_outbox::alert_item(&alert),
            &f.host_id,
            policy,
            now_ms,
        )?;
        raised.alerts.push(alert);
    }
    if first_cut {
        let notice =
            super::sql_outbox::suppressed_notice(&host_id, hour_suppressed, policy, now_ms);
        super::sql_outbox::put(
            tx,
            &shadowai_api::OutboxItem::Notice(notice.clone()),
            &host_id,
            policy,
            now_ms,
        )?;
        raised.notices.push(notice);
    }
    if !raised.alerts.is_empty() || !raised.notices.is_empty() {
        raised.outbox_dropped = super::sql_outbox::trim(tx, policy.outbox_cap)?;
    }
    Ok(raised)
}

fn alert_of(f: &Finding, reasons: Vec<AlertReason>, now_ms: i64) -> Alert {
    let link = serde_urlencoded::to_string([
        ("service", f.service_id.as_str()),
        ("host", f.host_id.as_str()),
        ("user", f.user.as_str()),
    ])
    .map(|q| format!("#/findings?{q}"))
    .unwrap_or_else(|_| "#/findings".to_owned());
    Alert {
        id: 0,
        created_ms: now_ms,
        reasons,
        service_id: f.service_id.clone(),
        service_name: f.service_name.clone(),
        category: f.category.clone(),
        verdict: f.verdict,
        action: f.action,
        risk_score: f.risk_score,
        host_id: f.host_id.clone(),
        hostname: f.hostname.clone(),
        user: f.user.clone(),
        exe: f.process.exe.clone(),
        finding_id: f.id.clone(),
        first_seen_ms: f.first_seen_ms,
        link,
    }
}

#[cfg(test)]
mod tests {
    use super::{chunks, values_list};

    #[test]
    fn chunks_cover_every_key_once_in_few_shapes() {
        for len in 0..300 {
            let items: Vec<usize> = (0..len).collect();
            let parts: Vec<&[usize]> = chunks(&items).collect();
            assert_eq!(parts.concat(), items);
            let shapes: std::collections::BTreeSet<usize> = parts.iter().map(|p| p.len()).collect();
            assert!(
                shapes.iter().all(|s| [64, 16, 4, 1].contains(s)),
                "{shapes:?}"
            );
        }
    }

    #[test]
    fn values_number_every_parameter_once() {
        assert_eq!(values_list(2, 3, ", 0"), "($1, $2, $3, 0), ($4, $5, $6, 0)");
        assert_eq!(values_list(1, 4, ""), "($1, $2, $3, $4)");
    }
}
