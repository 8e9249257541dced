//! The store, written once in portable SQL over a [`Backend`] (SQLite or PostgreSQL).

use shadowai_api::audit::AuditEntry;
use shadowai_api::{
    AgentInfo, AgentMode, AlertPage, Bucket, BundleInfo, BundleRefused, EnrollmentKeyInfo, Facets,
    Finding, GroupBy, GroupPage, Heartbeat, IngestAck, IngestBatch, PolicyEntry, Proposal,
    ProposalRequest, ProposalStatus, Role, Rollout, RolloutStage, ServiceReport, TrendPoint,
};

use super::rows::{Backend, Row, Tx, V};
use super::{
    AgentRecord, EnrollAttempt, EnrollOutcome, FindingFilter, GroupSort, NewEnrollmentKey, Store,
    StoreError, TokenRecord,
};

pub struct SqlStore<B: Backend> {
    pub(super) backend: B,
    /// Reports read the daily roll-up for whole days (the default; see `rollup.rs`).
    rollup: std::sync::atomic::AtomicBool,
    /// First-use keys known to be stored (`known_keys.rs`).
    pub(super) known: super::known_keys::KnownKeys,
    /// Ingests waiting for the next group commit (`group_commit.rs`; SQLite only).
    pub(super) ingest_group: super::group_commit::Combiner<
        super::sql_findings::IngestJob,
        super::sql_findings::Ingested,
    >,
    /// Findings waiting for the roll-up's fold (`fold.rs`).
    pub(super) fold: super::fold::FoldState,
    /// Groups written again with a savepoint per batch after one failed mid-write
    /// (`sql_ingest_group.rs`).
    pub(super) ingest_group_rewrites: std::sync::atomic::AtomicU64,
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn new(backend: B) -> Self {
        SqlStore {
            backend,
            rollup: std::sync::atomic::AtomicBool::new(true),
            known: super::known_keys::KnownKeys::new(super::known_keys::CAPACITY),
            ingest_group: super::group_commit::Combiner::default(),
            fold: super::fold::FoldState::default(),
            ingest_group_rewrites: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether reports read the daily roll-up for the whole days of their range (on by
    /// default) or only the raw findings (the reference the roll-up is tested against).
    pub fn set_rollup(&self, on: bool) {
        self.rollup.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Group commit so far (SQLite): transactions written and the ingest batches they held.
    pub fn ingest_group_stats(&self) -> (u64, u64) {
        self.ingest_group.stats()
    }

    pub(super) fn uses_rollup(&self) -> bool {
        self.rollup.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` in a transaction and returns its value.
    pub(super) fn tx<T>(
        &self,
        mut f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut out = None;
        self.backend.transaction(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or(StoreError::Poisoned)
    }

    /// Runs a read-only `f` off the writer's path (see [`Backend::read`]).
    pub(super) fn read_tx<T>(
        &self,
        mut f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut out = None;
        self.backend.read(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or(StoreError::Poisoned)
    }

    /// Takes the cross-replica write lock (no-op on SQLite, which serialises writers anyway).
    pub(super) fn lock(&self, tx: &mut dyn Tx) -> Result<(), StoreError> {
        if let Some(sql) = self.backend.lock_sql() {
            tx.exec(sql, &[])?;
        }
        Ok(())
    }
}

/// Appends one audit entry inside `tx` (the caller holds the write lock).
/// Reads one row of a table into its type.
pub(super) type RowParser<T> = fn(&Row) -> Result<T, StoreError>;

/// Sets `revoked_ms` on the row of `table` whose `key_col` is `key`, if not revoked yet,
/// and reads the row back with `cols` / `parse`: `NotFound` when there is no such row,
/// `InvalidState` ("already revoked") when it was revoked before. `what` names the row.
pub(super) fn revoke_row<T>(
    tx: &mut dyn Tx,
    table: &'static str,
    (key_col, key): (&str, V),
    (cols, parse): (&str, RowParser<T>),
    what: &str,
    now_ms: i64,
) -> Result<T, StoreError> {
    let changed = tx.exec(
        &format!("UPDATE {table} SET revoked_ms = $1 WHERE {key_col} = $2 AND revoked_ms IS NULL"),
        &[now_ms.into(), key.clone()],
    )?;
    let rows = tx.query(
        table,
        &format!("SELECT {cols} FROM {table} WHERE {key_col} = $1"),
        &[key],
    )?;
    let info = rows
        .first()
        .map(parse)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what: what.to_owned(),
        })?;
    if changed == 0 {
        return Err(StoreError::InvalidState {
            what: what.to_owned(),
            reason: "already revoked".into(),
        });
    }
    Ok(info)
}

pub(super) fn audit_in(
    tx: &mut dyn Tx,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
    now_ms: i64,
) -> Result<AuditEntry, StoreError> {
    let last = tx.query(
        "audit",
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let prev = match last.first() {
        Some(r) => Some((r.text(1)?, r.i64(0)?)),
        None => None,
    };
    let e = AuditEntry::next(
        prev.as_ref().map(|(h, s)| (h.as_str(), *s)),
        now_ms,
        actor,
        action,
        target,
        details,
    );
    tx.exec(
        "INSERT INTO audit (seq, ts_ms, actor, action, target, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            e.seq.into(),
            e.ts_ms.into(),
            e.actor.as_str().into(),
            e.action.as_str().into(),
            e.target.as_str().into(),
            e.details.to_string().into(),
            e.prev_hash.as_str().into(),
            e.hash.as_str().into(),
        ],
    )?;
    Ok(e)
}

fn audit_row(r: &Row) -> Result<AuditEntry, StoreError> {
    let details_text = r.text(5)?;
    let details = serde_json::from_str(&details_text).map_err(|e| StoreError::Corrupt {
        table: "audit",
        reason: format!("details is not JSON: {e}"),
    })?;
    Ok(AuditEntry {
        seq: r.i64(0)?,
        ts_ms: r.i64(1)?,
        actor: r.text(2)?,
        action: r.text(3)?,
        target: r.text(4)?,
        details,
        prev_hash: r.text(6)?,
        hash: r.text(7)?,
    })
}

const TOKEN_COLS: &str = "id, name, role, created_ms, revoked_ms, created_by";

fn token_row(r: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: r.i64(0)?,
        name: r.text(1)?,
        role: r.parsed(2, "role", Role::parse)?,
        created_ms: r.i64(3)?,
        revoked: r.opt_i64(4)?.is_some(),
        created_by: r.text(5)?,
    })
}

pub(super) const AGENT_COLS: &str = "agent_id, host_id, hostname, grp, enrolled_ms, last_seen_ms, \
     agent_version, bundle_version, mode, lost_events, revoked_ms, \
     (SELECT h.conflicts FROM hosts h WHERE h.agent_id = agents.agent_id), \
     (SELECT h.last_conflict_ms FROM hosts h WHERE h.agent_id = agents.agent_id), \
     bundle_error_version, bundle_error, pipeline";

pub(super) fn agent_row(r: &Row) -> Result<AgentInfo, StoreError> {
    let mode = match r.opt_text(8)?.as_deref() {
        None => None,
        Some("monitor") => Some(AgentMode::Monitor),
        Some("enforce") => Some(AgentMode::Enforce),
        Some(other) => {
            return Err(StoreError::Corrupt {
                table: "agents",
                reason: format!("mode {other:?}"),
            });
        }
    };
    Ok(AgentInfo {
        agent_id: r.text(0)?,
        host_id: r.text(1)?,
        hostname: r.text(2)?,
        group: r.opt_text(3)?,
        enrolled_ms: r.i64(4)?,
        last_seen_ms: r.opt_i64(5)?,
        agent_version: r.opt_text(6)?,
        bundle_version: r.opt_text(7)?,
        mode,
        lost_events: r.u64(9)?,
        revoked: r.opt_i64(10)?.is_some(),
        identity_conflicts: r.opt_i64(11)?.map_or(0, |v| u64::try_from(v).unwrap_or(0)),
        last_identity_conflict_ms: r.opt_i64(12)?,
        bundle_error: match (r.opt_text(13)?, r.opt_text(14)?) {
            (Some(version), Some(reason)) => Some(BundleRefused { version, reason }),
            _ => None,
        },
        pipeline: match r.opt_text(15)? {
            None => None,
            Some(j) => Some(serde_json::from_str(&j).map_err(|e| StoreError::Corrupt {
                table: "agents",
                reason: format!("pipeline: {e}"),
            })?),
        },
    })
}

impl<B: Backend> Store for SqlStore<B> {
    fn health(&self) -> Result<(), StoreError> {
        self.tx(|tx| tx.query("health", "SELECT 1", &[]).map(|_| ()))
    }

    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.tx(|tx| {
            let rows = tx.query(
                "settings",
                "SELECT value FROM settings WHERE key = $1",
                &[key.into()],
            )?;
            rows.first().map(|r| r.text(0)).transpose()
        })
    }

    fn set_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        self.tx(|tx| {
            let n = tx.exec(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[key.into(), value.into()],
            )?;
            Ok(n == 1)
        })
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx(|tx| {
            tx.exec(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[key.into(), value.into()],
            )?;
            Ok(())
        })
    }

    fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<TokenRecord, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let rows = tx.query(
                "tokens",
                &format!(
                    "INSERT INTO tokens (name, role, token_hash, created_ms, created_by) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLS}"
                ),
                &[
                    name.into(),
                    role.as_str().into(),
                    token_hash.into(),
                    now_ms.into(),
                    actor.into(),
                ],
            )?;
            let rec = rows
                .first()
                .map(token_row)
                .transpose()?
                .ok_or(StoreError::NoRow {
                    what: "INSERT … RETURNING",
                })?;
            audit_in(
                tx,
                actor,
                "token.create",
                &format!("token:{}", rec.id),
                serde_json::json!({"name": name, "role": role.as_str()}),
                now_ms,
            )?;
            Ok(rec)
        })
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.tx(|tx| {
            let rows = tx.query(
                "tokens",
                &format!("SELECT {TOKEN_COLS} FROM tokens WHERE token_hash = $1"),
                &[token_hash.into()],
            )?;
            rows.first().map(token_row).transpose()
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.tx(|tx| {
            tx.query(
                "tokens",
                &format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY id"),
                &[],
            )?
            .iter()
            .map(token_row)
            .collect()
        })
    }

    fn revoke_token(&self, actor: &str, id: i64, now_ms: i64) -> Result<TokenRecord, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            tx.exec(
                "UPDATE tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
                &[now_ms.into(), id.into()],
            )?;
            let rows = tx.query(
                "tokens",
                &format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"),
                &[id.into()],
            )?;
            let rec =
                rows.first()
                    .map(token_row)
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("token {id}"),
                    })?;
            audit_in(
                tx,
                actor,
                "token.revoke",
                &format!("token:{id}"),
                serde_json::json!({"name": rec.name}),
                now_ms,
            )?;
            Ok(rec)
        })
    }

    fn agent_by_token_hash(&self, token_hash: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.tx(|tx| {
            let rows = tx.query(
                "agents",
                "SELECT agent_id, host_id, grp, revoked_ms FROM agents WHERE token_hash = $1",
                &[token_hash.into()],
            )?;
            rows.first()
                .map(|r| {
                    Ok(AgentRecord {
                        agent_id: r.text(0)?,
                        host_id: r.text(1)?,
                        group: r.opt_text(2)?,
                        revoked: r.opt_i64(3)?.is_some(),
                    })
                })
                .transpose()
        })
    }

    fn list_agents(&self) -> Result<Vec<AgentInfo>, StoreError> {
        self.tx(|tx| {
            tx.query(
                "agents",
                &format!("SELECT {AGENT_COLS} FROM agents ORDER BY hostname, enrolled_ms"),
                &[],
            )?
            .iter()
            .map(agent_row)
            .collect()
        })
    }

    fn revoke_agent(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let info = revoke_row(
                tx,
                "agents",
                ("agent_id", agent_id.into()),
                (AGENT_COLS, agent_row),
                &format!("agent {agent_id:?}"),
                now_ms,
            )?;
            // The host stays revoked: re-enrollment is refused until an admin releases it.
            tx.exec(
                "UPDATE hosts SET revoked_ms = $1 WHERE agent_id = $2",
                &[now_ms.into(), agent_id.into()],
            )?;
            audit_in(
                tx,
                actor,
                "agent.revoke",
                &format!("agent:{agent_id}"),
                serde_json::json!({"host_id": info.host_id, "hostname": info.hostname,
                                   "reason": reason}),
                now_ms,
            )?;
            Ok(info)
        })
    }

    fn record_heartbeat(
        &self,
        agent_id: &str,
        hb: &Heartbeat,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let lost = i64::try_from(hb.lost_events).unwrap_or(i64::MAX);
        // Re-encoded from the typed value, so what is stored is bounded and well-formed.
        let pipeline = match &hb.pipeline {
            None => None,
            Some(p) => Some(serde_json::to_string(p).map_err(|e| StoreError::Corrupt {
                table: "agents",
                reason: format!("encoding pipeline: {e}"),
            })?),
        };
        self.tx(|tx| {
            tx.exec(
                // `grp` is the admin's: a heartbeat never changes it.
                "UPDATE agents SET last_seen_ms = $1, agent_version = $2, bundle_version = $3, \
                 mode = $4, lost_events = $5, bundle_error_version = $6, bundle_error = $7, \
                 pipeline = $8 WHERE agent_id = $9",
                &[
                    now_ms.into(),
                    hb.agent_version.as_str().into(),
                    hb.bundle_version.clone().into(),
                    hb.mode.as_str().into(),
                    lost.into(),
                    hb.bundle_error.as_ref().map(|e| e.version.clone()).into(),
                    hb.bundle_error.as_ref().map(|e| e.reason.clone()).into(),
                    pipeline.clone().into(),
                    agent_id.into(),
                ],
            )?;
            Ok(())
        })
    }

    // ---- host identity and enrollment keys (issue 13) ----
    fn enrollment_key_valid(&self, secret_hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.key_valid(secret_hash, now_ms)
    }

    fn enroll_host(&self, a: &EnrollAttempt, now_ms: i64) -> Result<EnrollOutcome, StoreError> {
        self.host_enroll(a, now_ms)
    }

    fn reenroll_host(
        &self,
        host_id: &str,
        key_sha256: &str,
        token_hash: &str,
        peer: &str,
        now_ms: i64,
    ) -> Result<EnrollOutcome, StoreError> {
        self.host_reenroll(host_id, key_sha256, token_hash, peer, now_ms)
    }

    fn rotate_agent_token(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        dead_hash: &str,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError> {
        self.agent_rotate_token(actor, agent_id, reason, dead_hash, now_ms)
    }

    fn release_agent(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError> {
        self.agent_release(actor, agent_id, reason, now_ms)
    }

    fn create_enrollment_key(
        &self,
        actor: &str,
        key: &NewEnrollmentKey,
        replace_all: bool,
        now_ms: i64,
    ) -> Result<EnrollmentKeyInfo, StoreError> {
        self.key_create(actor, key, replace_all, now_ms)
    }

    fn seed_enrollment_key(&self, key: &NewEnrollmentKey, now_ms: i64) -> Result<bool, StoreError> {
        self.key_seed(key, now_ms)
    }

    fn list_enrollment_keys(&self) -> Result<Vec<EnrollmentKeyInfo>, StoreError> {
        self.key_list()
    }

    fn revoke_enrollment_key(
        &self,
        actor: &str,
        id: i64,
        now_ms: i64,
    ) -> Result<EnrollmentKeyInfo, StoreError> {
        self.key_revoke(actor, id, now_ms)
    }

    fn ingest_alerting_with(
        &self,
        agent_id: &str,
        batch: &IngestBatch,
        policy: &super::AlertPolicy,
        now_ms: i64,
    ) -> Result<(IngestAck, super::Raised), StoreError> {
        self.ingest_batch(agent_id, std::sync::Arc::new(batch.clone()), policy, now_ms)
    }

    fn ingest_shared(
        &self,
        agent_id: &str,
        batch: std::sync::Arc<IngestBatch>,
        policy: &super::AlertPolicy,
        now_ms: i64,
    ) -> Result<(IngestAck, super::Raised), StoreError> {
        self.ingest_batch(agent_id, batch, policy, now_ms)
    }

    fn host_conflict_notice(
        &self,
        c: &super::ConflictSeen,
        policy: &super::AlertPolicy,
        now_ms: i64,
    ) -> Result<(Option<shadowai_api::Notice>, u64), StoreError> {
        SqlStore::host_conflict_notice(self, c, policy, now_ms)
    }

    fn outbox_due(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<super::DueItem>, StoreError> {
        self.outbox_claim_due(now_ms, limit, lease_ms)
    }

    fn outbox_settle(
        &self,
        id: i64,
        attempts: u32,
        outcome: &super::Settle,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.outbox_settle_row(id, attempts, outcome, now_ms)
    }

    fn outbox_next_due(&self) -> Result<Option<i64>, StoreError> {
        self.outbox_next()
    }

    fn outbox(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<shadowai_api::OutboxPage, StoreError> {
        self.outbox_list(before, limit)
    }

    fn outbox_housekeep(&self, keep: u64, now_ms: i64) -> Result<u64, StoreError> {
        self.outbox_prune(keep, now_ms)
    }

    fn audit_head(&self) -> Result<Option<(i64, String, i64)>, StoreError> {
        self.audit_last()
    }

    fn search(
        &self,
        filter: &FindingFilter,
        limit: u32,
        cursor: Option<i64>,
    ) -> Result<(Vec<Finding>, Option<i64>), StoreError> {
        self.search_findings(filter, limit, cursor)
    }

    fn services_report(&self, filter: &FindingFilter) -> Result<Vec<ServiceReport>, StoreError> {
        self.report_services(filter)
    }

    fn trend_by(
        &self,
        filter: &FindingFilter,
        bucket: Bucket,
    ) -> Result<Vec<TrendPoint>, StoreError> {
        self.report_trend(filter, bucket)
    }

    fn group_report(
        &self,
        by: GroupBy,
        filter: &FindingFilter,
        sort: GroupSort,
        limit: u32,
        offset: u64,
    ) -> Result<GroupPage, StoreError> {
        self.report_groups(by, filter, sort, limit, offset)
    }

    fn facets(&self, filter: &FindingFilter) -> Result<Facets, StoreError> {
        self.report_facets(filter)
    }

    fn alerts(&self, before: Option<i64>, limit: u32) -> Result<AlertPage, StoreError> {
        self.alerts_page(before, limit)
    }

    fn fold_rollup(&self, max_rows: u64) -> Result<super::FoldOutcome, StoreError> {
        self.fold_rollup_now(max_rows)
    }

    fn checkpoint_wal(&self) -> Result<Option<super::WalCheckpoint>, StoreError> {
        self.backend.checkpoint_wal()
    }

    fn group_commit_totals(&self) -> Option<super::GroupCommitTotals> {
        let (transactions, batches) = self.ingest_group.stats();
        self.backend
            .group_commit()
            .then(|| super::GroupCommitTotals {
                transactions,
                batches,
                rewrites: self
                    .ingest_group_rewrites
                    .load(std::sync::atomic::Ordering::Relaxed),
            })
    }

    fn count_findings(&self) -> Result<u64, StoreError> {
        self.read_tx(|tx| {
            let rows = tx.query("findings", "SELECT COUNT(*) FROM findings", &[])?;
            rows.first().map(|r| r.u64(0)).unwrap_or(Ok(0))
        })
    }

    fn put_inventory(
        &self,
        report: &shadowai_api::inventory::InventoryReport,
    ) -> Result<u64, StoreError> {
        self.store_inventory(report)
    }

    fn inventory(
        &self,
        q: &shadowai_api::inventory::InventoryQuery,
    ) -> Result<Vec<shadowai_api::inventory::InventoryItem>, StoreError> {
        self.list_inventory(q)
    }

    fn create_proposal(
        &self,
        actor: &str,
        req: &ProposalRequest,
        needs_approval: bool,
        now_ms: i64,
    ) -> Result<Proposal, StoreError> {
        self.proposal_create(actor, req, needs_approval, now_ms)
    }

    fn decide_proposal(
        &self,
        actor: &str,
        id: i64,
        approve: bool,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Proposal, StoreError> {
        self.proposal_decide(actor, id, approve, note, now_ms)
    }

    fn list_proposals(&self, status: Option<ProposalStatus>) -> Result<Vec<Proposal>, StoreError> {
        self.proposal_list(status)
    }

    fn policy(&self) -> Result<Vec<PolicyEntry>, StoreError> {
        self.policy_entries()
    }

    fn put_bundle(&self, actor: &str, info: &BundleInfo, bytes: &[u8]) -> Result<(), StoreError> {
        self.bundle_put(actor, info, bytes)
    }

    fn bundle(&self, version: &str) -> Result<Option<(BundleInfo, Vec<u8>)>, StoreError> {
        self.bundle_get(version)
    }

    fn bundle_info(&self, version: &str) -> Result<Option<BundleInfo>, StoreError> {
        Ok(self.bundle_list(Some(version))?.into_iter().next())
    }

    fn list_bundles(&self) -> Result<Vec<BundleInfo>, StoreError> {
        self.bundle_list(None)
    }

    fn create_rollout(
        &self,
        actor: &str,
        bundle_version: &str,
        canary_group: &str,
        now_ms: i64,
    ) -> Result<Rollout, StoreError> {
        self.rollout_create(actor, bundle_version, canary_group, now_ms)
    }

    fn update_rollout(
        &self,
        actor: &str,
        id: i64,
        stage: RolloutStage,
        percent: u8,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Rollout, StoreError> {
        self.rollout_update(actor, id, stage, percent, note, now_ms)
    }

    fn list_rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.tx(|tx| super::sql_policy::rollouts_in(tx))
    }

    fn append_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
        now_ms: i64,
    ) -> Result<AuditEntry, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            audit_in(tx, actor, action, target, details.clone(), now_ms)
        })
    }

    fn audit_entries(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.tx(|tx| {
            tx.query(
                "audit",
                "SELECT seq, ts_ms, actor, action, target, details, prev_hash, hash FROM audit \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[after_seq.into(), i64::from(limit).into()],
            )?
            .iter()
            .map(audit_row)
            .collect()
        })
    }
}

/// Parses a verdict column.
pub(super) fn verdict_from(s: &str) -> Option<shadowai_api::Verdict> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// The stored text of a verdict.
pub(super) fn verdict_str(v: shadowai_api::Verdict) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{v:?}").to_lowercase(),
    }
}

impl From<u64> for V {
    fn from(v: u64) -> V {
        V::Int(Some(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}
