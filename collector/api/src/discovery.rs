//! The unknown-AI discovery loop on the wire: names the catalogue does not know that an
//! agent saw contacted by known AI tools and SDK processes, or that look like inference
//! APIs. Names, process paths and counts only — never payloads.

use serde::{Deserialize, Serialize};

use crate::bounded;

/// Candidates one report carries at most (an agent reports a few per upload period).
pub const MAX_REPORT: usize = 256;

/// Why a name became a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryReason {
    /// Contacted by a process that also used a catalogue model API, coding assistant,
    /// agent platform, MCP endpoint, enterprise AI tenant or LLM-ops service.
    AiProcess,
    /// The name itself looks like an inference API or LLM relay.
    NamePattern,
}

impl DiscoveryReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryReason::AiProcess => "ai_process",
            DiscoveryReason::NamePattern => "name_pattern",
        }
    }
}

/// One (name, process) an agent saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryCandidate {
    /// The DNS name or SNI contacted (lower case).
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub name: String,
    pub reason: DiscoveryReason,
    /// Executable of the process that contacted it.
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub exe: String,
    /// The catalogue service the same process used (for `ai_process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 160>")]
    pub alongside: Option<String>,
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// `POST /api/v1/discovery/report` (agent token): the host is the token's, never the body's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryReport {
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_REPORT>")]
    pub candidates: Vec<DiscoveryCandidate>,
    /// Candidates the agent dropped since its last report (its table was full).
    #[serde(default)]
    pub dropped: u64,
}

/// The collector's answer to a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryAck {
    /// Rows stored or updated.
    pub accepted: u64,
    /// Refused: the collector's discovery table (or this host's share of it) is full.
    pub refused: u64,
}

/// `GET /api/v1/discovery`: one unknown name with where it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateView {
    pub name: String,
    pub reasons: Vec<DiscoveryReason>,
    pub hits: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Host ids that saw it (at most 50 listed).
    pub hosts: Vec<String>,
    /// Executables that contacted it (at most 50 listed).
    pub processes: Vec<String>,
    /// Catalogue services the same processes used.
    pub alongside: Vec<String>,
}
