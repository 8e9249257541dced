//! The agent library's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no cgroup2 filesystem is mounted (see /proc/self/mountinfo); the agent needs the unified hierarchy"
    )]
    NoCgroup2,
    #[error("mounting {fs} at {}: {reason}", target.display())]
    Mount {
        fs: String,
        target: PathBuf,
        reason: String,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    #[error("no eBPF hook could be attached; the agent would see nothing")]
    NothingAttached,
    #[error("capture {}: {reason}", path.display())]
    Capture { path: PathBuf, reason: String },
    #[error("spool")]
    Spool(#[from] crate::run::spool::SpoolError),
    #[error("collector: {what}: {reason}")]
    Uplink { what: String, reason: String },
    #[error("collector: {what}")]
    Client {
        what: &'static str,
        #[source]
        source: shadowai_api::client::ClientError,
    },
    #[error(
        "no agent token in {} and no collector.enroll_secret_file configured", token.display()
    )]
    NotEnrolled { token: PathBuf },
    #[error(
        "host key {} is not 64 hex digits; remove it only if an admin released this host", path.display()
    )]
    HostKey { path: PathBuf },
    #[error("the OS refused randomness for {what}")]
    Random {
        what: &'static str,
        #[source]
        source: getrandom::Error,
    },
    #[error(transparent)]
    Rules(#[from] shadowai_rules::RulesError),
    #[error("config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
}
