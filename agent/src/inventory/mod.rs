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

pub mod feed;
pub mod hints;
pub mod listeners;
pub mod scan;
pub mod tenant;
pub mod tracker;

pub use tracker::{ProcFacts, Tag, Tracker, TrackerOptions};

#[cfg(test)]
mod tracker_tests;
