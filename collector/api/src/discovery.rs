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
    /// The newest catalogue proposal made from this candidate (`approved`: promoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<CandidateProposal>,
}

// ---- catalogue proposals: a discovered name promoted into the catalogue ----

/// Catalogue proposals kept pending at most (a flood of proposals is refused, not stored).
pub const MAX_PENDING_PROPOSALS: usize = 200;
/// Approved catalogue additions at most (the overlay composed into every bundle).
pub const MAX_OVERLAY_ENTRIES: usize = 1_000;
/// Domains + hosts of one proposed entry at most.
pub const MAX_ENTRY_NAMES: usize = 64;

/// The risk facts of a proposed entry (the catalogue's factors; the score is computed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRisk {
    pub trains_on_user_data: shadowai_rules::catalogue::Training,
    pub retention: shadowai_rules::catalogue::Retention,
    /// ISO 3166-1 alpha-2 code, `EU` or `LOCAL`.
    pub jurisdiction: String,
    #[serde(default)]
    pub enterprise_controls: Vec<shadowai_rules::catalogue::Control>,
    #[serde(default)]
    pub certifications: Vec<shadowai_rules::catalogue::Certification>,
}

/// A new catalogue entry as an analyst writes it: what the service is, the names that are
/// it, its risk facts and where they come from. Every field is required but `description`,
/// `hosts`/`domains` (one of them) and the lists in `risk`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    /// Catalogue id: lower-case letters, digits and `-`, at most 64.
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub category: shadowai_rules::Category,
    #[serde(default)]
    pub description: String,
    /// Label-boundary suffixes (the name and every name below it).
    #[serde(default, deserialize_with = "bounded::vec::<_, _, MAX_ENTRY_NAMES>")]
    pub domains: Vec<String>,
    /// Exact host names.
    #[serde(default, deserialize_with = "bounded::vec::<_, _, MAX_ENTRY_NAMES>")]
    pub hosts: Vec<String>,
    pub risk: EntryRisk,
    /// The vendor page the facts were read from (`https://…`).
    pub source: String,
    /// The day `source` was read (`YYYY-MM-DD`).
    pub checked: String,
}

/// `POST /api/v1/discovery/proposals`: propose adding an entry to the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueProposalRequest {
    /// The discovery candidate this promotes (a name from `GET /api/v1/discovery`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    pub entry: CatalogueEntry,
    /// Why it belongs in the catalogue.
    pub reason: String,
}

/// What adding an entry would name: discovery candidates and recent findings whose names it
/// matches, with their hosts, users and processes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueImpact {
    /// Candidate names it would name (at most 50 listed).
    pub candidates: Vec<String>,
    /// Hits of those candidates.
    pub candidate_hits: u64,
    /// Findings of the last `window_ms` with a name it matches in their evidence.
    pub findings: u64,
    /// Services those findings are named as today.
    pub services_now: Vec<String>,
    /// Hosts (candidates' and findings') that would see the new name (at most 50).
    pub hosts: Vec<String>,
    /// Users of those findings (at most 50).
    pub users: Vec<String>,
    /// Processes (at most 50).
    pub processes: Vec<String>,
    /// The verdict the policy in force gives the new service (its category / default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<shadowai_rules::Verdict>,
    pub window_ms: i64,
}

/// A catalogue proposal as stored: pending until a different person approves or rejects it;
/// approved entries are the collector's catalogue overlay, part of every bundle published
/// after the approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueProposal {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    pub entry: CatalogueEntry,
    pub reason: String,
    pub status: crate::wire::ProposalStatus,
    pub proposed_by: String,
    pub proposed_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_note: Option<String>,
    /// Computed when created or asked for (`GET …/proposals/{id}/impact`); not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<CatalogueImpact>,
}

/// A candidate's promotion: the newest catalogue proposal made from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateProposal {
    pub id: i64,
    pub entry_id: String,
    pub status: crate::wire::ProposalStatus,
}
