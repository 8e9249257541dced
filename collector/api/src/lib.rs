//! The vocabulary the agent, the collector and the admin CLI share.
//!
//! A [`Finding`] is an aggregate, never a payload: one service used by one process of one
//! user on one host with one verdict during one time window, with counts and evidence
//! (names, SNI, IPs, ports, an exe hash). No prompt text or payload bytes ever appear here.

use serde::{Deserialize, Serialize};
pub use shadowai_rules::Verdict;

pub mod audit;
pub mod client;
pub mod ocsf;
pub mod wire;

pub use wire::*;

/// What happened to the traffic a finding describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Observed and let through (monitor mode, or a verdict that allows it).
    Allowed,
    /// Stopped by the agent.
    Blocked,
}

/// The process behind a finding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRef {
    /// Executable path (`/usr/bin/python3.11`).
    pub exe: String,
    /// Task name (`comm`).
    pub name: String,
    /// SHA-256 of the executable, hex, when the agent could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
    /// Container id or systemd unit, when the process runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

/// Evidence for a finding: names and addresses only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// DNS names queried that matched the service.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// TLS/QUIC SNI values seen.
    #[serde(default)]
    pub sni: Vec<String>,
    /// Destination IPs (text form).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Destination ports.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Protocols seen (`dns`, `tls`, `quic`, `tcp`, `udp`).
    #[serde(default)]
    pub protocols: Vec<String>,
}

/// One aggregated shadow-AI finding (OCSF Detection Finding 2004 when exported).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable id: the same (host, window, service, process, user, verdict) always gets the
    /// same id, so re-sent findings are recognised and never stored twice.
    pub id: String,
    /// The agent's host id (stable per host) and its host name.
    pub host_id: String,
    pub hostname: String,
    /// Window start and end, Unix milliseconds.
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Catalogue service id (`openai-chatgpt`), name, vendor and category.
    pub service_id: String,
    pub service_name: String,
    pub vendor: String,
    pub category: String,
    /// Risk score of the service, 0 (low) – 100 (high).
    pub risk_score: u8,
    pub verdict: Verdict,
    pub action: Action,
    /// The rule (catalogue or policy entry) that decided the verdict.
    pub rule: String,
    pub process: ProcessRef,
    pub user: String,
    pub uid: u32,
    /// Number of connections/lookups aggregated into this finding.
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub evidence: Evidence,
}
