//! soc (issues 15, 13, 10): what the collector raises besides findings — security notices
//! (a host identity conflict, a host's alerts suppressed over its cap), the audit chain head it
//! forwards as an external anchor — and the durable alert outbox with its delivery states.

use serde::{Deserialize, Serialize};

use crate::Alert;

/// What a notice reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Someone holding the enrollment secret claimed a host id bound to another host key (a
    /// takeover attempt, or a cloned machine). Refused; raised at most once per host per hour.
    HostIdentityConflict,
    /// A host presented more first-use alerts in an hour than its cap: the rest are recorded
    /// (they never alert later) but not raised. One notice per host per hour.
    AlertsSuppressed,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::HostIdentityConflict => "host_identity_conflict",
            NoticeKind::AlertsSuppressed => "alerts_suppressed",
        }
    }
}

/// A security notice about one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub created_ms: i64,
    pub host_id: String,
    /// Conflicts: refused claims of this host id so far. Suppressed: alerts suppressed in the
    /// window when the notice was raised (the running count is in the outbox listing's
    /// `suppressed` of later notices and in `/metrics`).
    pub count: u64,
    /// The hour the notice covers (`[start, end)`, Unix ms).
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Conflicts: the client address of the refused claim and the route (`enroll`,
    /// `reenroll`). Empty for other kinds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub via: String,
    /// One line for a person.
    pub summary: String,
    /// The drill-down in the web UI (relative to its URL).
    pub link: String,
}

/// One item of the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "item", rename_all = "snake_case")]
pub enum OutboxItem {
    Alert(Alert),
    Notice(Notice),
}

/// Where an outbox item stands with the webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    /// The webhook answered 2xx.
    Delivered,
    /// Given up: a permanent refusal (4xx other than 408/429) or attempts exhausted.
    Failed,
    /// No webhook is configured: kept for the record, never sent.
    NotSent,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::NotSent => "not_sent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            "not_sent" => DeliveryState::NotSent,
            _ => return None,
        })
    }
}

/// An alert or notice with its delivery to the webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub created_ms: i64,
    pub host_id: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub done_ms: Option<i64>,
    #[serde(flatten)]
    pub item: OutboxItem,
}

/// A page of the outbox, newest first, with totals by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxPage {
    pub items: Vec<OutboxEntry>,
    /// Pass as `before` for older entries.
    pub next_before: Option<i64>,
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
    pub not_sent: u64,
}

/// The head of the collector's audit chain: the hash of entry `seq` covers every entry before
/// it, so a copy kept outside the collector (the SIEM) detects a rewrite or truncation with
/// `shadowai audit verify --expect-head SEQ:HASH`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    /// When entry `seq` was written.
    pub entry_ms: i64,
    /// When this head was read and sent.
    pub observed_ms: i64,
    /// The collector's name for the SIEM (its configured UI URL or listen address).
    pub collector: String,
    /// Why it was sent: `start`, `changed` or `periodic`.
    pub reason: String,
}
