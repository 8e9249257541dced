//! Storage: one [`Store`] trait, one SQL implementation ([`sql::SqlStore`]) written once over a
//! tiny [`Backend`] seam, and two backends — SQLite (embedded default) and PostgreSQL (several
//! replicas). The same test suite runs against both.
//!
//! The store is synchronous; the server calls it through `spawn_blocking`. Every mutating admin
//! method appends its audit entry in the same transaction as the change, so an action is never
//! stored without its audit record (or the other way round).

mod first_uses;
mod group_commit;
mod known_keys;
pub mod postgres;
mod report_index;
pub use report_index::WINDOW_COVER_INDEX;
mod fold;
pub use fold::{FOLD_ROWS, FoldOutcome, PENDING_BOUND};
pub use wal::WalCheckpoint;

/// Group commit's totals since the store opened (`group_commit.rs`, `sql_ingest_group.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitTotals {
    /// Transactions written.
    pub transactions: u64,
    /// Ingest batches they held.
    pub batches: u64,
    /// Groups written again with a savepoint per batch, after a batch failed mid-write.
    pub rewrites: u64,
}
mod finding_doc;
mod rollup;
pub mod rollup_sql;
pub mod rollup_sums;
pub mod rows;
pub mod sql;
pub mod sql_catalogue;
pub mod sql_discovery;
mod sql_findings;
mod sql_ingest_group;
mod wal;
pub use sql_findings::day_string;
mod sql_identity;
mod sql_inventory;
mod sql_outbox;
mod sql_policy;
mod sql_reports;
pub mod sqlite;

pub use sql_outbox::{AlertPolicy, ConflictSeen, DueItem, Settle};
pub use sql_reports::{ALERTS_PER_BATCH, GroupSort, Raised};

use shadowai_api::audit::AuditEntry;
use shadowai_api::{
    AgentInfo, AlertPage, Bucket, BundleInfo, EnrollmentKeyInfo, Facets, FindingQuery, GroupBy,
    GroupPage, Heartbeat, IngestAck, IngestBatch, PolicyEntry, Proposal, ProposalRequest,
    ProposalStatus, Role, Rollout, RolloutStage, ServiceReport, TrendPoint,
};
use shadowai_api::{Finding, PolicyScope};

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {source}")]
    Sqlite {
        #[from]
        source: rusqlite::Error,
    },
    #[error("postgresql: {source}")]
    Postgres {
        #[from]
        source: ::postgres::Error,
    },
    #[error("opening the database at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what}: {reason}")]
    InvalidState { what: String, reason: String },
    #[error(
        "{person} proposed #{proposal} and cannot approve or reject it (needs a different person)"
    )]
    SelfApproval { person: String, proposal: i64 },
    #[error("stored row in {table} is corrupt: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("database schema is at version {found}, newer than this collector knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the store connection pool is poisoned (a previous call panicked)")]
    Poisoned,
    #[error("PostgreSQL CA file {path}: {reason}")]
    TlsCa { path: String, reason: String },
    #[error("{what} returned no row")]
    NoRow { what: &'static str },
    /// The group transaction this batch was written in failed (SQLite group commit): no
    /// batch of the group is stored.
    #[error("the transaction this batch shared with others failed; nothing of it is stored")]
    GroupFailed {
        #[source]
        source: std::sync::Arc<StoreError>,
    },
    /// The writer running this batch's group stopped (panicked) before answering it.
    #[error("the writer of this batch's transaction stopped before committing it")]
    GroupAborted,
    /// About `pending` findings wait for the roll-up's fold and the fold an ingest runs
    /// then failed: the batch is refused (retry later) so what waits stays bounded.
    #[error("{pending} findings wait for the roll-up's fold, which failed: {source}")]
    FoldBacklog {
        pending: u64,
        #[source]
        source: Box<StoreError>,
    },
    /// `pending` findings wait for the roll-up's fold, twice its bound, and another replica
    /// holds the fold lock: the batch is refused (retry later).
    #[error("{pending} findings wait for the roll-up's fold, which another replica holds")]
    FoldBehind { pending: u64 },
}

/// A person's API token as stored (the token itself is never stored, only its SHA-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub revoked: bool,
    /// Who created it (`cli:<operator>` for `shadowai-collector token create`, `system` at first start).
    pub created_by: String,
}

/// An enrolled agent as the auth layer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub agent_id: String,
    pub host_id: String,
    pub group: Option<String>,
    pub revoked: bool,
}

/// Filters already validated by the server (see `FindingQuery`).
pub type FindingFilter = FindingQuery;

// ---- host identity and enrollment keys (issue 13) ----

/// An enrollment request, validated by the server; the store decides it in one transaction.
#[derive(Clone, Debug)]
pub struct EnrollAttempt {
    /// SHA-256 of the enrollment secret presented.
    pub secret_hash: String,
    pub host_id: String,
    pub hostname: String,
    pub group: Option<String>,
    pub agent_version: String,
    /// SHA-256 (hex) of the host key presented.
    pub key_sha256: String,
    /// Used when the host is bound for the first time.
    pub new_agent_id: String,
    pub token_hash: String,
    /// Refuse a new binding when this many hosts are bound already.
    pub max_hosts: u64,
    /// The client's address, for the audit entry of a refused takeover.
    pub peer: String,
}

/// What an enrollment or re-enrollment came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// The token in the attempt is now the host's agent token. `rebound`: the host was
    /// already bound to this key (the agent keeps its id; its old token is dead).
    Enrolled { agent_id: String, rebound: bool },
    /// No usable enrollment key has this secret (unknown, revoked, expired or used up).
    BadSecret,
    /// The host id is bound to another host key (counted, audited at most hourly per host).
    Conflict { conflicts: u64 },
    /// An admin revoked the host.
    Revoked,
    /// Re-enrollment of a host id that is not bound.
    UnknownHost,
    /// `max_hosts` hosts are bound already.
    HostLimit,
}

/// A new enrollment key to store.
#[derive(Clone, Debug)]
pub struct NewEnrollmentKey {
    pub key_hash: String,
    pub note: String,
    pub expires_ms: Option<i64>,
    pub max_uses: Option<u64>,
}

/// The collector's storage contract.
pub trait Store:
    sql_discovery::DiscoveryStore + sql_catalogue::CatalogueProposalStore + Send + Sync + 'static
{
    /// Cheap round trip to the database.
    fn health(&self) -> Result<(), StoreError>;

    // ---- settings ----
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` unless the key exists; true when stored.
    fn set_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError>;
    /// Stores `value`, replacing any previous one.
    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;

    // ---- people ----
    fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<TokenRecord, StoreError>;
    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    fn revoke_token(&self, actor: &str, id: i64, now_ms: i64) -> Result<TokenRecord, StoreError>;

    // ---- agents ----
    fn agent_by_token_hash(&self, token_hash: &str) -> Result<Option<AgentRecord>, StoreError>;
    fn list_agents(&self) -> Result<Vec<AgentInfo>, StoreError>;
    fn revoke_agent(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError>;
    fn record_heartbeat(
        &self,
        agent_id: &str,
        hb: &Heartbeat,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    // ---- host identity and enrollment keys (issue 13) ----
    /// True when `secret_hash` names a usable enrollment key (no write).
    fn enrollment_key_valid(&self, secret_hash: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Enrolls a host: binds a new host id to its key, or re-issues the token of a host
    /// already bound to the same key; refuses another key (see [`EnrollOutcome`]).
    fn enroll_host(&self, a: &EnrollAttempt, now_ms: i64) -> Result<EnrollOutcome, StoreError>;
    /// A fresh token for a bound host that proves its key (no enrollment secret).
    fn reenroll_host(
        &self,
        host_id: &str,
        key_sha256: &str,
        token_hash: &str,
        peer: &str,
        now_ms: i64,
    ) -> Result<EnrollOutcome, StoreError>;
    /// Kills the agent's current token (replaced by `dead_hash`, which no token hashes to);
    /// the host stays bound and re-enrolls with its key.
    fn rotate_agent_token(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        dead_hash: &str,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError>;
    /// Clears the host's key binding (and revokes the agent) so the host may enroll anew.
    fn release_agent(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError>;
    /// Stores a key; with `replace_all`, revokes every other key in the same transaction
    /// (rotation).
    fn create_enrollment_key(
        &self,
        actor: &str,
        key: &NewEnrollmentKey,
        replace_all: bool,
        now_ms: i64,
    ) -> Result<EnrollmentKeyInfo, StoreError>;
    /// Stores `key` only if no enrollment key was ever stored; true when stored.
    fn seed_enrollment_key(&self, key: &NewEnrollmentKey, now_ms: i64) -> Result<bool, StoreError>;
    fn list_enrollment_keys(&self) -> Result<Vec<EnrollmentKeyInfo>, StoreError>;
    fn revoke_enrollment_key(
        &self,
        actor: &str,
        id: i64,
        now_ms: i64,
    ) -> Result<EnrollmentKeyInfo, StoreError>;

    // ---- findings ----
    /// Stores a batch atomically; idempotent by batch id and finding id.
    fn ingest(
        &self,
        agent_id: &str,
        batch: &IngestBatch,
        now_ms: i64,
    ) -> Result<IngestAck, StoreError> {
        self.ingest_alerting(agent_id, batch, now_ms)
            .map(|(ack, _)| ack)
    }
    /// [`Store::ingest`], also returning the first-use alerts the batch raised (stored in
    /// the same transaction; a replayed batch raises none).
    fn ingest_alerting(
        &self,
        agent_id: &str,
        batch: &IngestBatch,
        now_ms: i64,
    ) -> Result<(IngestAck, Raised), StoreError> {
        self.ingest_alerting_with(agent_id, batch, &AlertPolicy::default(), now_ms)
    }
    // ---- soc: alert outbox, per-host budgets, audit head (issues 15, 13, 10) ----
    /// [`Store::ingest_alerting`] under `policy` (caps; outbox rows pending when a webhook
    /// is configured).
    fn ingest_alerting_with(
        &self,
        agent_id: &str,
        batch: &IngestBatch,
        policy: &AlertPolicy,
        now_ms: i64,
    ) -> Result<(IngestAck, Raised), StoreError>;
    /// [`Store::ingest_alerting_with`] of a batch the caller shares (the ingest route):
    /// a store that hands the batch to another thread (group commit) need not copy it.
    fn ingest_shared(
        &self,
        agent_id: &str,
        batch: std::sync::Arc<IngestBatch>,
        policy: &AlertPolicy,
        now_ms: i64,
    ) -> Result<(IngestAck, Raised), StoreError> {
        self.ingest_alerting_with(agent_id, &batch, policy, now_ms)
    }
    /// Raises a host-identity-conflict notice (at most one per host per hour; none: one was
    /// raised this hour) and returns it with the outbox rows dropped to stay under the cap.
    fn host_conflict_notice(
        &self,
        c: &ConflictSeen,
        policy: &AlertPolicy,
        now_ms: i64,
    ) -> Result<(Option<shadowai_api::Notice>, u64), StoreError>;
    /// Claims up to `limit` due outbox rows, each leased for `lease_ms`.
    fn outbox_due(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueItem>, StoreError>;
    fn outbox_settle(
        &self,
        id: i64,
        attempts: u32,
        outcome: &Settle,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// When the earliest pending row is due.
    fn outbox_next_due(&self) -> Result<Option<i64>, StoreError>;
    /// The outbox, newest first, with totals by state.
    fn outbox(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<shadowai_api::OutboxPage, StoreError>;
    /// Prunes settled rows beyond `keep` and budgets of past hours; returns rows pruned.
    fn outbox_housekeep(&self, keep: u64, now_ms: i64) -> Result<u64, StoreError>;
    /// The last audit entry (seq, hash, time).
    fn audit_head(&self) -> Result<Option<(i64, String, i64)>, StoreError>;
    /// Newest first; `cursor` is the `seq` to continue below.
    fn search(
        &self,
        filter: &FindingFilter,
        limit: u32,
        cursor: Option<i64>,
    ) -> Result<(Vec<Finding>, Option<i64>), StoreError>;
    fn services_report(&self, filter: &FindingFilter) -> Result<Vec<ServiceReport>, StoreError>;
    fn trend(&self, filter: &FindingFilter) -> Result<Vec<TrendPoint>, StoreError> {
        self.trend_by(filter, Bucket::Day)
    }
    // ---- soc: issue 15 reports ----
    fn trend_by(
        &self,
        filter: &FindingFilter,
        bucket: Bucket,
    ) -> Result<Vec<TrendPoint>, StoreError>;
    /// Findings grouped by user / host / process / host group across services, paged.
    fn group_report(
        &self,
        by: GroupBy,
        filter: &FindingFilter,
        sort: GroupSort,
        limit: u32,
        offset: u64,
    ) -> Result<GroupPage, StoreError>;
    /// Values for the filter pickers within the filter's time range.
    fn facets(&self, filter: &FindingFilter) -> Result<Facets, StoreError>;
    /// First-use alerts, newest first, below `before` (an alert id).
    fn alerts(&self, before: Option<i64>, limit: u32) -> Result<AlertPage, StoreError>;
    fn count_findings(&self) -> Result<u64, StoreError>;
    /// Adds up to `max_rows` findings not yet in the daily roll-up to it (`fold.rs`).
    fn fold_rollup(&self, max_rows: u64) -> Result<FoldOutcome, StoreError>;
    /// One checkpoint of the write-ahead log off the writer (SQLite, `wal.rs`); `None`: the
    /// store keeps no such log itself (PostgreSQL).
    fn checkpoint_wal(&self) -> Result<Option<WalCheckpoint>, StoreError>;
    /// Group commit's totals since start (SQLite); `None`: a transaction per batch.
    fn group_commit_totals(&self) -> Option<GroupCommitTotals>;

    // ---- sessions: inventory of AI agents at work (issue 12) ----
    /// Stores a host's inventory report; returns the items written.
    fn put_inventory(
        &self,
        report: &shadowai_api::inventory::InventoryReport,
    ) -> Result<u64, StoreError>;
    /// Inventory items across the fleet, most recently seen first.
    fn inventory(
        &self,
        q: &shadowai_api::inventory::InventoryQuery,
    ) -> Result<Vec<shadowai_api::inventory::InventoryItem>, StoreError>;

    // ---- proposals ----
    fn create_proposal(
        &self,
        actor: &str,
        req: &ProposalRequest,
        needs_approval: bool,
        now_ms: i64,
    ) -> Result<Proposal, StoreError>;
    fn decide_proposal(
        &self,
        actor: &str,
        id: i64,
        approve: bool,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Proposal, StoreError>;
    fn list_proposals(&self, status: Option<ProposalStatus>) -> Result<Vec<Proposal>, StoreError>;
    fn policy(&self) -> Result<Vec<PolicyEntry>, StoreError>;

    // ---- bundles and rollouts ----
    fn put_bundle(&self, actor: &str, info: &BundleInfo, bytes: &[u8]) -> Result<(), StoreError>;
    fn bundle(&self, version: &str) -> Result<Option<(BundleInfo, Vec<u8>)>, StoreError>;
    fn bundle_info(&self, version: &str) -> Result<Option<BundleInfo>, StoreError>;
    fn list_bundles(&self) -> Result<Vec<BundleInfo>, StoreError>;
    fn create_rollout(
        &self,
        actor: &str,
        bundle_version: &str,
        canary_group: &str,
        now_ms: i64,
    ) -> Result<Rollout, StoreError>;
    fn update_rollout(
        &self,
        actor: &str,
        id: i64,
        stage: RolloutStage,
        percent: u8,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Rollout, StoreError>;
    fn list_rollouts(&self) -> Result<Vec<Rollout>, StoreError>;

    // ---- audit ----
    /// Appends one entry (for actions that have no other row to write).
    fn append_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
        now_ms: i64,
    ) -> Result<AuditEntry, StoreError>;
    fn audit_entries(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Which bundle version an agent should run, from the rollouts (newest first).
pub fn desired_version(
    rollouts: &[Rollout],
    agent_id: &str,
    group: Option<&str>,
) -> Option<String> {
    let stable = rollouts
        .iter()
        .find(|r| r.stage == RolloutStage::All)
        .map(|r| r.bundle_version.clone());
    let Some(active) = rollouts
        .iter()
        .find(|r| matches!(r.stage, RolloutStage::Canary | RolloutStage::Percent))
    else {
        return stable;
    };
    let in_canary = group == Some(active.canary_group.as_str());
    let in_percent = active.stage == RolloutStage::Percent && bucket(agent_id) < active.percent;
    if in_canary || in_percent {
        Some(active.bundle_version.clone())
    } else {
        stable
    }
}

/// The agent's stable rollout bucket, 0..100.
pub fn bucket(agent_id: &str) -> u8 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(agent_id.as_bytes());
    (u16::from_be_bytes([d[0], d[1]]) % 100) as u8
}

/// Scope as stored: `fleet` or `group:<name>`.
pub fn scope_to_str(s: &PolicyScope) -> String {
    match s {
        PolicyScope::Fleet => "fleet".to_owned(),
        PolicyScope::Group { group } => format!("group:{group}"),
    }
}

pub fn scope_from_str(s: &str) -> Option<PolicyScope> {
    if s == "fleet" {
        Some(PolicyScope::Fleet)
    } else {
        s.strip_prefix("group:").map(|g| PolicyScope::Group {
            group: g.to_owned(),
        })
    }
}
