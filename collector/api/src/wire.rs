//! Request and response bodies of the collector's HTTP API (see `collector/API.md`).

use serde::{Deserialize, Serialize};
use shadowai_rules::Verdict;

use crate::Finding;

/// The JSON error body every failing route returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `code` is a stable machine-readable word, `message` says what and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// A person's role. A token has exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Analyst,
    Admin,
    Approver,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Admin, Role::Approver];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Approver => "approver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// `POST /api/v1/enroll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub secret: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub host_id: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 64>")]
    pub group: Option<String>,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub agent_version: String,
    /// The per-host credential: hex of 32 random bytes the agent generated before its first
    /// enrollment and keeps (mode 0600) in its state directory. The collector binds `host_id`
    /// to its SHA-256 on first enrollment; a later enrollment of the same `host_id` with another
    /// key is refused (409 `host_identity_conflict`) until an admin releases the host.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub host_key: String,
}

/// `POST /api/v1/reenroll`: an enrolled host whose token stopped working (401) proves it is
/// the same host with its per-host key and gets a fresh token; no enrollment secret is needed.
/// Refused with 403 `agent_revoked` when an admin revoked the host, with 409
/// `host_identity_conflict` when the key does not match the one bound to `host_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReenrollRequest {
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub host_id: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub host_key: String,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub agent_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: String,
    /// The agent's bearer token (`saa_…`), shown once.
    pub token: String,
}

/// `POST /api/v1/ingest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBatch {
    #[serde(deserialize_with = "crate::bounded::string::<_, 128>")]
    pub batch_id: String,
    /// At most [`MAX_FINDINGS_PER_BATCH`], refused while parsing.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_FINDINGS_PER_BATCH>")]
    pub findings: Vec<Finding>,
}

/// The most findings one ingest batch may carry.
pub const MAX_FINDINGS_PER_BATCH: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    pub batch_id: String,
    pub accepted: u64,
    pub duplicates: u64,
    /// True when this batch id had been committed before and this is its original ack.
    #[serde(default)]
    pub replayed: bool,
}

/// Agent operating mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    Monitor,
    Enforce,
}

impl AgentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Monitor => "monitor",
            AgentMode::Enforce => "enforce",
        }
    }
}

/// `POST /api/v1/heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub agent_version: String,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 64>")]
    pub bundle_version: Option<String>,
    pub mode: AgentMode,
    /// Events the agent lost since it started (ring buffer overruns, full queues).
    #[serde(default)]
    pub lost_events: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 64>")]
    pub group: Option<String>,
    /// The agent's own pipeline: spool losses, quarantine, identity (absent from agents
    /// older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineHealth>,
    /// The last bundle this agent refused (bad signature, expired, older than the one in
    /// use, does not load…), until a newer one loads. A rollout whose canary agents report
    /// its bundle here halts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_error: Option<BundleRefused>,
}

/// A bundle an agent refused, and why (the verification error, at most
/// [`BundleRefused::MAX_REASON`] characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRefused {
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub version: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 2000>")]
    pub reason: String,
}

impl BundleRefused {
    /// Longest version string accepted.
    pub const MAX_VERSION: usize = 64;
    /// Longest reason accepted (characters); agents cut longer ones with `…`.
    pub const MAX_REASON: usize = 500;

    /// A report cut to the limits the collector accepts (characters; control characters
    /// become spaces).
    pub fn new(version: &str, reason: &str) -> Self {
        let cut = |s: &str, n: usize| {
            let clean = s.chars().map(|c| if c.is_control() { ' ' } else { c });
            if s.chars().count() <= n {
                clean.collect()
            } else {
                let mut t: String = clean.take(n - 1).collect();
                t.push('…');
                t
            }
        };
        Self {
            version: cut(version, Self::MAX_VERSION),
            reason: cut(reason, Self::MAX_REASON),
        }
    }
}

/// What an agent reports about its pipeline in each heartbeat; counts since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineHealth {
    /// Spooled batches dropped before upload (size cap, full disk, corruption).
    #[serde(default)]
    pub spool_dropped_batches: u64,
    /// Bytes of those batches (as stored).
    #[serde(default)]
    pub spool_dropped_bytes: u64,
    /// Findings lost on the agent: in dropped batches, or never spooled.
    #[serde(default)]
    pub spool_lost_findings: u64,
    /// Batches the collector refused for good, set aside on the agent.
    #[serde(default)]
    pub quarantined_batches: u64,
    /// Where the agent stands on its identity.
    #[serde(default)]
    pub identity: IdentityState,
    /// Fresh tokens the agent obtained with its host key after a 401.
    #[serde(default)]
    pub reenrollments: u64,
    /// The sensor's hooks that did not attach on this host (`skb_egress`, `connect4`, …; the
    /// names of `shadowai_hook_attached`): what the agent cannot see or enforce there. Empty
    /// when every hook attached, and then not sent (collectors older than the field refuse
    /// it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 32, 64>")]
    pub hooks_missing: Vec<String>,
}

/// An agent's identity state as it reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityState {
    /// The token works.
    #[default]
    Ok,
    /// The token was refused and re-enrollment is in progress.
    Reenrolling,
    /// An admin revoked this host: nothing is uploaded.
    Revoked,
    /// The collector bound this host id to another host key.
    HostIdentityConflict,
    /// Not enrolled yet (the first enrollment is still being retried).
    Enrolling,
}

impl IdentityState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Ok => "ok",
            IdentityState::Reenrolling => "reenrolling",
            IdentityState::Revoked => "revoked",
            IdentityState::HostIdentityConflict => "host_identity_conflict",
            IdentityState::Enrolling => "enrolling",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub server_time_ms: i64,
    pub desired_bundle_version: Option<String>,
}

/// `GET /api/v1/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub name: String,
    pub role: Role,
}

/// Filters shared by findings search, reports and exports (query string).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    // ---- soc (issue 15): filters people can use ----
    /// What happened: `allowed`, `would_block`, `blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::Action>,
    /// The agent's host group (exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Case-insensitive partial match on the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_contains: Option<String>,
    /// Case-insensitive partial match on the host name or host id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_contains: Option<String>,
    /// Case-insensitive partial match on the executable path or process name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_contains: Option<String>,
    /// Risk score range, inclusive (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_max: Option<u8>,
    /// Trend buckets (default: hours for ranges up to 7 days, days beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<crate::Bucket>,
    /// Group-by reports: what to group by, and where the page starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<crate::GroupBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingsPage {
    pub items: Vec<Finding>,
    pub next_cursor: Option<String>,
    /// soc (issue 15): the collector catalogue's risk of each service on the page, with its
    /// factors per plan ([`crate::ServiceRisk::explain`] picks the plan of a finding's score).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk: Vec<crate::ServiceRisk>,
}

/// One row of the services × verdict report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub service_id: String,
    pub service_name: String,
    pub vendor: String,
    pub category: String,
    pub verdict: Verdict,
    pub risk_score: u8,
    pub hosts: u64,
    pub users: u64,
    pub processes: u64,
    pub findings: u64,
    pub events: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    // ---- soc (issue 15) ----
    /// Payload bytes sent / received (findings without counts add nothing).
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub bytes_in: u64,
    /// Events by what happened to them: verdict and action are not the same thing.
    #[serde(default)]
    pub blocked_events: u64,
    #[serde(default)]
    pub would_block_events: u64,
    /// First use of this service with this verdict ever, not bound to the selected range.
    #[serde(default)]
    pub first_seen_ever_ms: Option<i64>,
    /// The plan of the collector's catalogue that gives `risk_score`, with its factors (none:
    /// the service is not in that catalogue or no plan gives this score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::PlanRisk>,
}

/// One time bucket (UTC hour or day) × service × verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// `YYYY-MM-DD` (UTC) of the bucket.
    pub day: String,
    pub service_id: String,
    pub verdict: Verdict,
    pub events: u64,
    pub hosts: u64,
    pub users: u64,
    /// Start of the bucket, Unix ms, and its size (`hour` or `day`).
    #[serde(default)]
    pub bucket_start_ms: i64,
    #[serde(default = "day_bucket")]
    pub bucket: crate::Bucket,
    #[serde(default)]
    pub bytes_out: u64,
}

fn day_bucket() -> crate::Bucket {
    crate::Bucket::Day
}

/// An enrolled agent as the fleet view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub host_id: String,
    pub hostname: String,
    pub group: Option<String>,
    pub enrolled_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub agent_version: Option<String>,
    pub bundle_version: Option<String>,
    pub mode: Option<AgentMode>,
    pub lost_events: u64,
    pub revoked: bool,
    /// Enrollments of this agent's `host_id` refused because they carried another host key
    /// ("host seen twice": a cloned machine, or someone holding the enrollment secret trying
    /// to take the host over). Non-zero is an alert for the admins.
    #[serde(default)]
    pub identity_conflicts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_identity_conflict_ms: Option<i64>,
    /// The last bundle the agent reported refusing (see [`Heartbeat::bundle_error`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_error: Option<BundleRefused>,
    /// The agent's pipeline as its last heartbeat reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineHealth>,
}

// ---- enrollment keys (admin): the secrets agents enroll with ----

/// `POST /api/v1/enrollment-keys` (admin): a new enrollment secret, limited in time and uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentKeyRequest {
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub note: String,
    /// Seconds until the key stops working (1..=31 536 000); none = no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// How many distinct hosts may enroll with it (1..=1 000 000); none = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
}

/// An enrollment key as stored (the secret itself is stored only as SHA-256).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentKeyInfo {
    pub id: i64,
    pub note: String,
    pub created_by: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub max_uses: Option<u64>,
    pub uses: u64,
    pub revoked: bool,
}

/// Answer to `POST /api/v1/enrollment-keys`: the secret is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentKeyCreated {
    pub key: EnrollmentKeyInfo,
    /// `sae_…`, to hand to the hosts that will enroll with it.
    pub secret: String,
}

/// Body of revoke / approve / reject / rollback calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    #[serde(default, alias = "reason", skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 1000>")]
    pub note: Option<String>,
}

/// Where a policy entry applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyScope {
    Fleet,
    Group { group: String },
}

/// `POST /api/v1/proposals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    #[serde(deserialize_with = "crate::bounded::string::<_, 160>")]
    pub service_id: String,
    pub verdict: Verdict,
    pub scope: PolicyScope,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::string::<_, 1000>")]
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waits for a different person with the approver role.
    Pending,
    Approved,
    Rejected,
    /// Took effect at once (did not need a second person).
    Applied,
}

impl ProposalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Pending => "pending",
            ProposalStatus::Approved => "approved",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::Applied => "applied",
        }
    }

    pub fn parse(s: &str) -> Option<ProposalStatus> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Applied]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: i64,
    pub service_id: String,
    pub verdict: Verdict,
    pub scope: PolicyScope,
    pub reason: String,
    pub status: ProposalStatus,
    pub proposed_by: String,
    pub proposed_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub decision_note: Option<String>,
}

/// One effective org policy entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEntry {
    pub service_id: String,
    pub verdict: Verdict,
    pub scope: PolicyScope,
    pub proposal_id: i64,
    pub decided_by: Option<String>,
    pub effective_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub uploaded_by: String,
    pub uploaded_ms: i64,
    #[serde(default)]
    pub note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStage {
    Canary,
    Percent,
    All,
    RolledBack,
}

impl RolloutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStage::Canary => "canary",
            RolloutStage::Percent => "percent",
            RolloutStage::All => "all",
            RolloutStage::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<RolloutStage> {
        [Self::Canary, Self::Percent, Self::All, Self::RolledBack]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// `POST /api/v1/rollouts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub bundle_version: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub canary_group: String,
}

/// `POST /api/v1/rollouts/{id}/advance`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceRequest {
    /// Required: 1..=99 → stage `percent`; 100 → stage `all` (absent is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: i64,
    pub bundle_version: String,
    pub previous_version: Option<String>,
    pub stage: RolloutStage,
    pub canary_group: String,
    pub percent: u8,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

// ---- policy as structured data, publish (issue 10) ----

/// `GET /api/v1/policy/document?mode=enforce|monitor`: the decisions in force composed into
/// one policy, ready to be compiled with the collector's catalogue (`GET /api/v1/catalogue`)
/// and signed by the publisher (`shadowai rules publish`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    pub policy: shadowai_rules::Policy,
    /// The proposals it is made of.
    pub proposals: Vec<i64>,
}

/// `GET /api/v1/proposals/{id}/impact`: what approving it would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalImpact {
    pub proposal: i64,
    /// Services whose verdict changes, and for whom (host groups, users, … named by the
    /// policy; "everyone" for the rest).
    pub changes: Vec<ImpactChange>,
    /// From findings of the last `window_ms`: who uses the changing services today.
    pub affected: Vec<AffectedUse>,
    pub window_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactChange {
    pub service_id: String,
    pub who: String,
    pub old: Option<Verdict>,
    pub new: Option<Verdict>,
}

/// Hosts, users and processes (most active first, at most 20 each) seen using a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedUse {
    pub service_id: String,
    pub findings: u64,
    pub hosts: Vec<String>,
    pub users: Vec<String>,
    pub processes: Vec<String>,
}

/// `GET /api/v1/rollouts/{id}/agents`: who each stage reaches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutAgents {
    pub rollout: i64,
    pub bundle_version: String,
    /// Agents of the canary group.
    pub canary: StageAgents,
    /// Other agents inside the rollout's percentage (0 agents until it is advanced).
    pub percent: StageAgents,
    /// Everyone else (they get the bundle when the rollout reaches `all`).
    pub rest: StageAgents,
    /// E.g. a stage that reaches no agent, canary agents that stopped heartbeating.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageAgents {
    pub agents: u64,
    /// Reporting the rollout's bundle version in their last heartbeat.
    pub on_version: u64,
    /// No heartbeat for 5 minutes (or never).
    pub silent: u64,
}

#[cfg(test)]
mod tests {
    use super::PipelineHealth;

    #[test]
    fn a_heartbeat_names_at_most_32_missing_hooks_of_64_bytes() {
        let hooks =
            |n: usize, len: usize| serde_json::json!({ "hooks_missing": vec!["h".repeat(len); n] });
        let ok: PipelineHealth = serde_json::from_value(hooks(32, 64)).unwrap();
        assert_eq!(ok.hooks_missing.len(), 32);
        let e = serde_json::from_value::<PipelineHealth>(hooks(33, 8)).unwrap_err();
        assert!(e.to_string().contains("more than 32"), "{e}");
        let e = serde_json::from_value::<PipelineHealth>(hooks(1, 65)).unwrap_err();
        assert!(e.to_string().contains("64"), "{e}");
    }
}
