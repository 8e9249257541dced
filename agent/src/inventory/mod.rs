//! AI agents at work on this host: coding-agent sessions and their lineage, the MCP
//! servers they start, local model runtimes and their listeners, and the risk flags these
//! raise (`permission_bypass`, `agent_as_root`, `unpinned_mcp_server`, `runtime_exposed`,
//! `off_catalogue_contact`). Recognition comes from the catalogue's process hints
//! (`_agents.toml`), never from code.
//!
//! - [`hints`]: one exec against the hints (pure);
//! - [`tracker`]: the live state, fed by exec/exit and attributed events, bounded;
//! - [`scan`] / [`listeners`]: /proc at start-up and listening sockets on a timer;
//! - [`tenant`]: the opt-in organisation id from a tool's own metadata (one field).
//!
//! Nothing here executes, or parses the configuration of, any tool: MCP servers are known
//! from the processes that actually ran.

pub mod cli;
pub mod feed;
pub mod hints;
pub mod listeners;
pub mod scan;
pub mod tenant;
pub mod tracker;

pub use tracker::{ProcFacts, Tag, Tracker, TrackerOptions};

#[cfg(test)]
mod tracker_tests;

/// `[inventory]` of the agent's configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// Track AI agent sessions, MCP servers and runtimes (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Read the organisation id tools keep in their own metadata (the `tenant` fields of
    /// `_agents.toml`, e.g. `oauthAccount.organizationUuid` of `~/.claude.json`; never a
    /// token or key). Default off.
    #[serde(default)]
    pub read_tenant: bool,
    /// The organisation's own tenant ids (e.g. Claude organisation UUIDs). With
    /// `read_tenant`, a session whose tool records any other id is flagged
    /// `personal_tenant`; empty (default): no session is judged personal or corporate.
    #[serde(default)]
    pub corporate_tenants: Vec<String>,
    /// How often listeners are read and the inventory is written (seconds, ≥ 1).
    #[serde(default = "default_scan")]
    pub scan_secs: u64,
}

fn yes() -> bool {
    true
}
fn default_scan() -> u64 {
    10
}

impl Default for InventorySection {
    fn default() -> Self {
        Self {
            enabled: true,
            read_tenant: false,
            corporate_tenants: Vec::new(),
            scan_secs: default_scan(),
        }
    }
}
