//! Host administration commands that fleet tooling runs: `enroll` (configure and enroll in
//! one step) and `status` (what the installed agent is doing), plus the man page and shell
//! completions generated from the command line definition at packaging time.
//!
//! These read the running daemon only through stable interfaces: the configuration file,
//! the state directory (`agent.token`, `agent.id`, `host.key`, `bundle.json`), the collector's
//! API, and the daemon's Prometheus endpoint. They never reach into the daemon's internals.

pub mod docs;
pub mod enroll;
pub mod rules;
pub mod status;

use std::path::PathBuf;

/// Errors of the admin commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Agent(#[from] crate::AgentError),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid TOML", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("{arg}: {reason}")]
    Argument { arg: &'static str, reason: String },
    #[error("collector: {what}")]
    Collector {
        what: &'static str,
        #[source]
        source: shadowai_api::client::ClientError,
    },
    #[error(transparent)]
    Rules(#[from] shadowai_rules::RulesError),
}

/// The agent's state directory files (see `run::uplink`).
pub(crate) const TOKEN_FILE: &str = "agent.token";
pub(crate) const AGENT_ID_FILE: &str = "agent.id";
pub(crate) const HOST_KEY_FILE: &str = "host.key";
pub(crate) const BUNDLE_FILE: &str = "bundle.json";
