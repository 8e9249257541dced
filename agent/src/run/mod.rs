//! `shadowai-agent run`: the daemon, as a pipeline of stages that own their state,
//! connected by bounded queues whose when-full policy is "drop and count":
//!
//! ```text
//! Source (ring buffer → events) ──[QUEUE batches]──► Classify+aggregate ──[QUEUE windows]──► Output thread
//!   live sensor, kernel filters        rule engine, findings per window        exe hashes, fit, JSONL, stdout
//!                                                                                      │ [QUEUE batches]
//!                                                                                      ▼
//!                                              Uplink (upload, quarantine, ...) ◄──► Spool thread (sled, fsync)
//!                                                      calls with a deadline
//! ```
//!
//! The source never waits for a later stage: if classification falls behind, event
//! batches are dropped and counted (`shadowai_pipeline_dropped_total{stage="classify"}`)
//! rather than leaving the kernel's ring buffer to overflow unattributed. All blocking
//! work happens on the output thread (hashing, file writes) or the spool thread (fsync),
//! and nothing waits on the spool thread beyond a deadline ([`spool_worker`]).

pub mod agent_findings;
pub mod classify;
pub mod config;
pub mod discovery;
pub mod enforce;
pub mod enroll;
pub mod findings;
pub mod fit;
pub mod health;
pub mod inventory;
pub mod print;
pub mod rules;
pub mod runtime_findings;
pub mod sink;
pub mod source;
pub mod spool;
pub mod spool_worker;
mod start;
pub mod uplink;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use shadowai_api::AgentMode;
use shadowai_rules::policy::Mode;
use tokio::sync::watch;

use crate::error::AgentError;
use config::AgentConfig;
use enroll::Identity;
use health::Health;

pub use classify::classify;
pub use rules::validate;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The host id the agent enrolls with: the configured one, else /etc/machine-id.
pub fn host_id(cfg: &AgentConfig) -> String {
    cfg.agent.host_id.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(crate::watch::hostname)
    })
}

fn identity(cfg: &AgentConfig) -> Identity {
    Identity {
        host_id: host_id(cfg),
        hostname: cfg
            .agent
            .hostname
            .clone()
            .unwrap_or_else(crate::watch::hostname),
        group: cfg.agent.group.clone(),
    }
}

pub async fn run(cfg: AgentConfig, print: bool, poll: Duration) -> anyhow::Result<()> {
    if !crate::memory::limit_arenas() {
        tracing::debug!("the C library keeps its default malloc arenas or mmap threshold");
    }
    let state = &cfg.agent.state_dir;
    std::fs::create_dir_all(state).map_err(|source| AgentError::Io {
        what: format!("creating state dir {}", state.display()),
        source,
    })?;
    let key = rules::bundle_key(&cfg)?;
    let (engine, in_use) = rules::initial_engine(&cfg, key.as_ref())?;
    let mode = match engine.policy().mode {
        Mode::Enforce => AgentMode::Enforce,
        _ => AgentMode::Monitor,
    };
    let (engine_tx, engine_rx) = watch::channel(Arc::new(engine));
    let (version_tx, version_rx) = watch::channel(in_use.as_ref().map(|u| u.version.to_string()));
    let health = Health::default();
    let cm = start::Common {
        cfg: &cfg,
        identity: identity(&cfg),
        tags: cfg
            .agent
            .tags
            .iter()
            .cloned()
            .chain(cfg.agent.group.clone())
            .collect(),
        health: health.clone(),
        engine_rx: engine_rx.clone(),
        version_rx,
    };
    let (spool, spool_thread) = start::spool(&cfg, &health)?;
    let mut live = start::live(&cfg, poll, &health)?;
    let rules = start::Rules {
        key,
        engine_tx,
        version_tx,
        in_use,
        mode,
    };
    let links = match &cfg.collector {
        Some(c) => start::collector(c, &cm, spool.clone(), rules)?,
        None => {
            // Without a collector the engine never changes: its senders go now.
            drop(rules);
            start::Links::default()
        }
    };
    let (windows, output) = start::output(&cfg, print, spool.clone(), &health)?;
    let inventory = start::inventory_stage(&cm, &mut live, links.inventory_client, windows.clone());
    let (events_tx, classify) =
        start::classify_stage(&cm, &mut live, windows, links.discovery, print)?;
    // Loading the programs (the kernel's BTF) and the rules left freed heap behind.
    crate::memory::release_free_heap();
    tracing::info!(host_id = %cm.identity.host_id, "agent running");
    source::Source {
        live,
        engine_rx,
        tags: cm.tags.clone(),
        health,
    }
    .run(events_tx)
    .await;
    start::Running {
        classify,
        inventory,
        output,
        spool,
        spool_thread,
    }
    .stop()
    .await;
    Ok(())
}
