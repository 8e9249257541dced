//! The vocabulary the agent, the collector and the admin CLI share.
//!
//! A [`Finding`] is an aggregate, never a payload: one service used by one process of one
//! user on one host with one verdict during one time window, with counts and evidence
//! (names, SNI, IPs, ports, an exe hash). No prompt text or payload bytes ever appear here.

use serde::{Deserialize, Serialize};
pub use shadowai_rules::Verdict;

pub mod audit;
pub mod bounded;
pub mod client;
pub mod discovery;
pub mod inventory;
pub mod ocsf;
pub mod outbox;
pub mod publish;
pub mod reports;
pub mod wire;

pub use outbox::{
    AuditHead, DeliveryState, Notice, NoticeKind, OutboxEntry, OutboxItem, OutboxPage,
};
pub use reports::*;
pub use wire::*;

/// What happened to the traffic a finding describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Observed and let through (monitor mode, or a verdict that allows it).
    Allowed,
    /// Let through, but enforce mode (or an observe-only rule switched to enforce) would have
    /// refused it: the impact of a block before it is switched on.
    WouldBlock,
    /// Stopped by the agent.
    Blocked,
}

impl Action {
    /// The wire name (`allowed` / `would_block` / `blocked`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allowed => "allowed",
            Action::WouldBlock => "would_block",
            Action::Blocked => "blocked",
        }
    }
}

impl Layer {
    /// The wire name (`dns`, `dns_tcp`, `sni`, `quic`, `cidr`).
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Dns => "dns",
            Layer::DnsTcp => "dns_tcp",
            Layer::Sni => "sni",
            Layer::Quic => "quic",
            Layer::Cidr => "cidr",
        }
    }
}

/// Which enforcement layer refused (`blocked`) or would have refused (`would_block`) a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// A DNS query over UDP for the name or a name below it.
    Dns,
    /// A DNS query over TCP.
    DnsTcp,
    /// A TLS ClientHello over TCP whose SNI names the service.
    Sni,
    /// A QUIC Initial whose (decrypted) SNI names the service.
    Quic,
    /// A connect into one of the service's published networks.
    Cidr,
}

/// A risk flag on a finding: something the policy and the SOC can act on beyond the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// An AI agent started with a permission-bypass flag (`--dangerously-skip-permissions`, `--yolo`).
    PermissionBypass,
    /// An MCP server auto-installed without a pinned version (`npx -y pkg`, `uvx pkg`).
    UnpinnedMcpServer,
    /// A local model runtime listening on all interfaces.
    RuntimeExposed,
    /// A descendant of an AI agent contacted a host the catalogue does not know.
    OffCatalogueContact,
    /// An AI agent running as root.
    AgentAsRoot,
    /// More data uploaded than the configured threshold.
    LargeUpload,
    /// The service name rests only on low-confidence naming (namespace or host-level DNS).
    LowConfidence,
    /// An AI agent session whose tool records an organisation (tenant) that is not one of
    /// the agent's configured corporate tenants: a personal account.
    PersonalTenant,
}

impl Flag {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::PermissionBypass => "permission_bypass",
            Flag::UnpinnedMcpServer => "unpinned_mcp_server",
            Flag::RuntimeExposed => "runtime_exposed",
            Flag::OffCatalogueContact => "off_catalogue_contact",
            Flag::AgentAsRoot => "agent_as_root",
            Flag::LargeUpload => "large_upload",
            Flag::LowConfidence => "low_confidence",
            Flag::PersonalTenant => "personal_tenant",
        }
    }
}

/// How the agent obtained the service name of a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// The TLS or QUIC SNI the process itself sent.
    Sni,
    /// The question of a DNS lookup the process itself sent.
    DnsQuestion,
    /// A DNS answer this very process received.
    DnsAnswer,
    /// The answer a local resolver (systemd-resolved, dnsmasq, …) gave for the process.
    ResolverAnswer,
    /// A DNS answer seen in the process's network namespace, not by the process itself.
    Namespace,
    /// A DNS answer seen somewhere on the host.
    Host,
    /// The destination lies in the service's published networks.
    Cidr,
}

/// How sure the agent is of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// Provenance of a finding's service name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Naming {
    pub source: NameSource,
    pub confidence: Confidence,
}

/// The AI agent session (a coding agent and every descendant) a use belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// Stable id of the session: root agent pid + its start time on this host.
    #[serde(deserialize_with = "crate::bounded::string::<_, 128>")]
    pub id: String,
    /// Catalogue agent kind (`claude-code`, `codex-cli`, …).
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub kind: String,
    pub root_pid: u32,
    pub started_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 256>")]
    pub version: Option<String>,
}

/// The process behind a finding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRef {
    /// Executable path (`/usr/bin/python3.11`).
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub exe: String,
    /// Task name (`comm`).
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub name: String,
    /// SHA-256 of the executable, hex, when the agent could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 256>")]
    pub exe_sha256: Option<String>,
    /// Container id or systemd unit, when the process runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 256>")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 256>")]
    pub systemd_unit: Option<String>,
}

/// Evidence for a finding: names and addresses only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// DNS names queried that matched the service.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 64, 253>")]
    pub dns_names: Vec<String>,
    /// TLS/QUIC SNI values seen.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 64, 253>")]
    pub sni: Vec<String>,
    /// Destination IPs (text form).
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 64, 64>")]
    pub ips: Vec<String>,
    /// Destination ports.
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 64>")]
    pub ports: Vec<u16>,
    /// Protocols seen (`dns`, `tls`, `quic`, `tcp`, `udp`).
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 16, 16>")]
    pub protocols: Vec<String>,
}

/// One aggregated shadow-AI finding (OCSF Detection Finding 2004 when exported).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable id: the same (host, window, service, process, user, verdict) always gets the
    /// same id, so re-sent findings are recognised and never stored twice.
    #[serde(deserialize_with = "crate::bounded::string::<_, 128>")]
    pub id: String,
    /// The agent's host id (stable per host) and its host name.
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub host_id: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub hostname: String,
    /// Window start and end, Unix milliseconds.
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Catalogue service id (`openai-chatgpt`), name, vendor and category.
    #[serde(deserialize_with = "crate::bounded::string::<_, 128>")]
    pub service_id: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub service_name: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub vendor: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub category: String,
    /// Risk score of the service, 0 (low) – 100 (high).
    pub risk_score: u8,
    pub verdict: Verdict,
    pub action: Action,
    /// The rule (catalogue or policy entry) that decided the verdict.
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub rule: String,
    pub process: ProcessRef,
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub user: String,
    pub uid: u32,
    /// Number of connections/lookups aggregated into this finding.
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub evidence: Evidence,
    /// Which layer refused the use (`blocked`) or would have (`would_block`); none when allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Layer>,
    /// Version of the policy bundle that decided the verdict (none: the built-in catalogue only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 64>")]
    pub policy_version: Option<String>,
    /// TCP/UDP payload bytes sent to / received from the service over this use's sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// How the service name was obtained, and how sure the agent is of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naming: Option<Naming>,
    /// The AI agent session this use belongs to, when the process descends from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRef>,
    /// Risk flags raised on this use (sorted, each at most once).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::vec::<_, _, 16>"
    )]
    pub flags: Vec<Flag>,
    /// The agent cut or sanitised some value of this finding to fit the collector's limits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}
