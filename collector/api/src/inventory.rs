//! The inventory of AI agents at work on one host: agent sessions (a coding agent and its
//! descendants), the MCP servers they started, local model runtimes and their listeners.
//! Identity, names, addresses and counts only — never prompts, payloads, tokens or keys.
//! The agent prints it (`shadowai-agent inventory --json`) and uploads it to the collector
//! when it changes; every list is bounded on the wire.

use serde::{Deserialize, Serialize};

use crate::bounded;
use crate::{Flag, SessionRef};

/// Destinations (names or addresses) kept per inventory item at most.
pub const MAX_DESTINATIONS: usize = 32;

/// One host's inventory at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryReport {
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub host_id: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 253>")]
    pub hostname: String,
    /// When the agent took this view, Unix ms.
    pub time_ms: i64,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 1024>")]
    pub sessions: Vec<AgentSession>,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 1024>")]
    pub mcp_servers: Vec<McpServer>,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 1024>")]
    pub runtimes: Vec<Runtime>,
}

/// A running (or recently ended) AI agent and what it spawned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSession {
    /// Id, kind, root pid, start and version.
    #[serde(flatten)]
    pub session: SessionRef,
    /// Display name of the kind (`Gemini CLI`).
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub name: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub user: String,
    pub uid: u32,
    /// Working directory of the root process when it was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 4096>")]
    pub cwd: Option<String>,
    /// Executable and command line of the root process.
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub exe: String,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 64, 4096>")]
    pub argv: Vec<String>,
    /// Processes started in the session so far (the root included).
    pub processes: u64,
    /// Processes of the session alive now.
    pub live_processes: u64,
    /// Names (SNI / DNS) and addresses the session's processes contacted.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 32, 253>")]
    pub destinations: Vec<String>,
    /// Destinations the catalogue does not know (subset of `destinations`).
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 32, 253>")]
    pub off_catalogue: Vec<String>,
    /// The organisation id the tool records locally (opt-in; never a token or key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 4096>")]
    pub tenant: Option<String>,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 16>")]
    pub flags: Vec<Flag>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The root process has exited.
    pub ended: bool,
}

/// An MCP server: a stdio server an agent started, or an HTTP/SSE one seen listening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Stable id: session id + launcher pid.
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub id: String,
    /// `stdio` or `http`.
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub transport: String,
    /// The launcher (`npx`, `uvx`, `docker-run`) or `local` for a server run directly.
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub launcher: String,
    /// Package or image as written (`@modelcontextprotocol/server-filesystem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 4096>")]
    pub package: Option<String>,
    /// The package argument pins an exact version (or an image digest).
    pub pinned: bool,
    pub pid: u32,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 64, 4096>")]
    pub argv: Vec<String>,
    /// The session (parent agent) that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::bounded::opt_string::<_, 128>")]
    pub session_id: Option<String>,
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 32, 253>")]
    pub destinations: Vec<String>,
    /// Addresses it listens on (HTTP/SSE servers).
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 32>")]
    pub listeners: Vec<Listener>,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 16>")]
    pub flags: Vec<Flag>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub ended: bool,
}

/// A local model runtime process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Stable id: kind + pid + start time.
    #[serde(deserialize_with = "crate::bounded::string::<_, 256>")]
    pub id: String,
    /// Catalogue kind (`ollama`).
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub kind: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub name: String,
    pub pid: u32,
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub exe: String,
    #[serde(deserialize_with = "crate::bounded::string::<_, 4096>")]
    pub user: String,
    /// How it was recognised: `exe`, `script` or `port`.
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub matched_by: String,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 32>")]
    pub listeners: Vec<Listener>,
    /// Hosts the runtime itself contacted (model pulls).
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 32, 253>")]
    pub pull_hosts: Vec<String>,
    /// Processes that connected to it (`exe` or `pid:exe`), and remote peers.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::strings::<_, 32, 4096>")]
    pub clients: Vec<String>,
    #[serde(default, deserialize_with = "bounded::vec::<_, _, 16>")]
    pub flags: Vec<Flag>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub ended: bool,
}

/// A listening TCP socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Bound address (`0.0.0.0`, `::`, `127.0.0.1`).
    #[serde(deserialize_with = "crate::bounded::string::<_, 64>")]
    pub addr: String,
    pub port: u16,
    /// Bound to all interfaces (`0.0.0.0` / `::`): reachable from the network.
    pub exposed: bool,
}

/// What an inventory item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Session,
    McpServer,
    Runtime,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Session => "session",
            ItemKind::McpServer => "mcp_server",
            ItemKind::Runtime => "runtime",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ItemKind::Session, ItemKind::McpServer, ItemKind::Runtime]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One stored inventory item, fleet-wide (`GET /api/v1/inventory`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryItem {
    pub host_id: String,
    pub hostname: String,
    pub kind: ItemKind,
    /// The item's id on its host (session id, MCP server id, runtime id).
    pub id: String,
    /// Agent kind, MCP package or runtime kind: what the item is, in one word.
    pub name: String,
    pub flags: Vec<Flag>,
    /// First and last seen, Unix ms, across every report of the host.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub ended: bool,
    /// The item as the agent last reported it ([`AgentSession`], [`McpServer`] or [`Runtime`]).
    pub detail: serde_json::Value,
}

/// Filters of `GET /api/v1/inventory` and its exports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    /// Host id or host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ItemKind>,
    /// Only items carrying this flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<Flag>,
    /// Items at most (default and maximum 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The acknowledgement of an inventory report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryAck {
    /// Items stored or updated.
    pub items: u64,
}

impl InventoryReport {
    /// Every item as (kind, id, name, flags, first, last, ended, detail).
    pub fn items(&self) -> Vec<InventoryItem> {
        let mut out = Vec::new();
        let mut push = |kind, id: &str, name: &str, flags: &[Flag], first, last, ended, detail| {
            out.push(InventoryItem {
                host_id: self.host_id.clone(),
                hostname: self.hostname.clone(),
                kind,
                id: id.to_string(),
                name: name.to_string(),
                flags: flags.to_vec(),
                first_seen_ms: first,
                last_seen_ms: last,
                ended,
                detail,
            });
        };
        for s in &self.sessions {
            let d = serde_json::to_value(s).unwrap_or_default();
            push(
                ItemKind::Session,
                &s.session.id,
                &s.session.kind,
                &s.flags,
                s.first_seen_ms,
                s.last_seen_ms,
                s.ended,
                d,
            );
        }
        for m in &self.mcp_servers {
            let d = serde_json::to_value(m).unwrap_or_default();
            let name = m.package.as_deref().unwrap_or(&m.launcher);
            push(
                ItemKind::McpServer,
                &m.id,
                name,
                &m.flags,
                m.first_seen_ms,
                m.last_seen_ms,
                m.ended,
                d,
            );
        }
        for r in &self.runtimes {
            let d = serde_json::to_value(r).unwrap_or_default();
            push(
                ItemKind::Runtime,
                &r.id,
                &r.kind,
                &r.flags,
                r.first_seen_ms,
                r.last_seen_ms,
                r.ended,
                d,
            );
        }
        out
    }
}
