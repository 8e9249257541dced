//! Unknown-AI discovery candidates: one row per (name, host, executable), bounded in total
//! and per host, so neither a flood from one compromised host nor the whole fleet can
//! grow the table without limit; refusals are counted back to the caller.

use std::collections::{BTreeMap, BTreeSet};

use shadowai_api::discovery::{CandidateView, DiscoveryAck, DiscoveryCandidate, DiscoveryReason};

use super::StoreError;
use super::rows::{Backend, Tx};
use super::sql::SqlStore;

/// Rows kept at most, fleet-wide.
pub const MAX_ROWS: i64 = 100_000;
/// Rows one host may hold at most.
pub const MAX_ROWS_PER_HOST: i64 = 2_000;
/// Rows read to build the candidate list (newest first).
const LIST_ROWS: i64 = 20_000;
/// Hosts / processes / services listed per candidate at most.
const LIST_EACH: usize = 50;
/// Candidates listed at most.
const LIST_NAMES: usize = 1_000;

/// Storage of discovery candidates.
pub trait DiscoveryStore {
    /// Records what `host_id` reported; rows past the bounds are refused and counted.
    fn record_discovery(
        &self,
        host_id: &str,
        candidates: &[DiscoveryCandidate],
        now_ms: i64,
    ) -> Result<DiscoveryAck, StoreError>;
    /// Candidates grouped by name: most hosts first, then most hits.
    fn list_discovery(&self) -> Result<Vec<CandidateView>, StoreError>;
}

fn count(tx: &mut dyn Tx, sql: &str, params: &[super::rows::V]) -> Result<i64, StoreError> {
    let rows = tx.query("discovery", sql, params)?;
    rows.first()
        .map(|r| r.i64(0))
        .transpose()
        .map(|v| v.unwrap_or(0))
}

impl<B: Backend> DiscoveryStore for SqlStore<B> {
    fn record_discovery(
        &self,
        host_id: &str,
        candidates: &[DiscoveryCandidate],
        now_ms: i64,
    ) -> Result<DiscoveryAck, StoreError> {
        self.tx(|tx| {
            let mut ack = DiscoveryAck::default();
            let mut total = count(tx, "SELECT COUNT(*) FROM discovery", &[])?;
            let mut mine = count(
                tx,
                "SELECT COUNT(*) FROM discovery WHERE host_id = $1",
                &[host_id.into()],
            )?;
            for c in candidates {
                let hits = i64::try_from(c.count).unwrap_or(i64::MAX);
                let updated = tx.exec(
                    "UPDATE discovery SET hits = hits + $1, last_ms = $2, reason = $3, \
                     alongside = COALESCE($4, alongside) \
                     WHERE name = $5 AND host_id = $6 AND exe = $7",
                    &[
                        hits.into(),
                        now_ms.into(),
                        c.reason.as_str().into(),
                        c.alongside.clone().into(),
                        c.name.as_str().into(),
                        host_id.into(),
                        c.exe.as_str().into(),
                    ],
                )?;
                if updated > 0 {
                    ack.accepted += 1;
                    continue;
                }
                if total >= MAX_ROWS || mine >= MAX_ROWS_PER_HOST {
                    ack.refused += 1;
                    continue;
                }
                tx.exec(
                    "INSERT INTO discovery (name, host_id, exe, reason, alongside, hits, first_ms, last_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    &[
                        c.name.as_str().into(),
                        host_id.into(),
                        c.exe.as_str().into(),
                        c.reason.as_str().into(),
                        c.alongside.clone().into(),
                        hits.into(),
                        now_ms.into(),
                    ],
                )?;
                total += 1;
                mine += 1;
                ack.accepted += 1;
            }
            Ok(ack)
        })
    }

    fn list_discovery(&self) -> Result<Vec<CandidateView>, StoreError> {
        let (rows, mut promoted) = self.read_tx(|tx| {
            let rows = tx.query(
                "discovery",
                "SELECT name, host_id, exe, reason, alongside, hits, first_ms, last_ms \
                 FROM discovery ORDER BY last_ms DESC LIMIT $1",
                &[LIST_ROWS.into()],
            )?;
            Ok((rows, super::sql_catalogue::proposals_of_candidates(tx)?))
        })?;
        #[derive(Default)]
        struct Acc {
            reasons: BTreeSet<DiscoveryReason>,
            hits: u64,
            first: i64,
            last: i64,
            hosts: BTreeSet<String>,
            procs: BTreeSet<String>,
            alongside: BTreeSet<String>,
        }
        let mut by_name: BTreeMap<String, Acc> = BTreeMap::new();
        for r in &rows {
            let name = r.text(0)?;
            let a = by_name.entry(name).or_insert_with(|| Acc {
                first: i64::MAX,
                ..Acc::default()
            });
            let reason = match r.text(3)?.as_str() {
                "ai_process" => DiscoveryReason::AiProcess,
                _ => DiscoveryReason::NamePattern,
            };
            a.reasons.insert(reason);
            a.hits = a.hits.saturating_add(r.u64(5)?);
            a.first = a.first.min(r.i64(6)?);
            a.last = a.last.max(r.i64(7)?);
            for (set, v) in [
                (&mut a.hosts, Some(r.text(1)?)),
                (&mut a.procs, Some(r.text(2)?)),
                (&mut a.alongside, r.opt_text(4)?),
            ] {
                if let Some(v) = v
                    && set.len() < LIST_EACH
                {
                    set.insert(v);
                }
            }
        }
        let mut out: Vec<CandidateView> = by_name
            .into_iter()
            .map(|(name, a)| CandidateView {
                proposal: promoted.remove(&name),
                name,
                reasons: a.reasons.into_iter().collect(),
                hits: a.hits,
                first_seen_ms: a.first,
                last_seen_ms: a.last,
                hosts: a.hosts.into_iter().collect(),
                processes: a.procs.into_iter().collect(),
                alongside: a.alongside.into_iter().collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.hosts
                .len()
                .cmp(&a.hosts.len())
                .then(b.hits.cmp(&a.hits))
                .then(a.name.cmp(&b.name))
        });
        out.truncate(LIST_NAMES);
        Ok(out)
    }
}
