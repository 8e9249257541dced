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
pub mod uplink;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use shadowai_api::AgentMode;
use shadowai_rules::policy::Mode;
use tokio::sync::{mpsc, watch};

use crate::error::AgentError;
use crate::live::Live;
use crate::sensor::SensorOptions;
use config::AgentConfig;
use enroll::Identity;
use health::Health;
use sink::{Outputs, Sink};
use spool::Spool;
use spool_worker::SpoolWorker;

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

fn open_jsonl(cfg: &AgentConfig) -> Result<Option<std::fs::File>, AgentError> {
    let Some(p) = &cfg.output.findings_jsonl else {
        return Ok(None);
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map(Some)
        .map_err(|source| AgentError::Io {
            what: format!("opening {}", p.display()),
            source,
        })
}

pub async fn run(cfg: AgentConfig, print: bool, poll: Duration) -> anyhow::Result<()> {
    if !crate::memory::limit_arenas() {
        tracing::debug!("the C library keeps its default malloc arenas");
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
    let identity = identity(&cfg);
    let health = Health::default();
    let (spool, spool_thread) = SpoolWorker::spawn(
        Spool::open(
            &state.join("spool"),
            cfg.agent.spool_max_mib.saturating_mul(1024 * 1024),
        )?,
        health.clone(),
    )
    .map_err(|source| AgentError::Io {
        what: "starting the spool thread".into(),
        source,
    })?;
    let tags: Vec<String> = cfg
        .agent
        .tags
        .iter()
        .cloned()
        .chain(cfg.agent.group.clone())
        .collect();

    let mut live = Live::start(
        &SensorOptions {
            dns_ports: cfg.sensor.dns_ports.clone(),
            ring_bytes: cfg.sensor.ring_bytes().map_err(anyhow::Error::msg)?,
            dedup: Duration::from_secs(cfg.sensor.dedup_secs),
            ..SensorOptions::default()
        },
        poll,
    )?;
    if let Some(addr) = cfg.output.metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(live.collector()));
        health.register(&mut registry);
        crate::metrics::spawn_server(addr, registry);
    }

    let mut discovery = None;
    let mut inventory_client = None;
    if let Some(c) = &cfg.collector {
        let base = uplink::base_client(c)?;
        let shared = discovery::Shared::default();
        tokio::spawn(discovery::report_loop(
            discovery::Reporter {
                base: base.clone(),
                state_dir: state.clone(),
                period: Duration::from_secs(c.upload_secs.max(1).saturating_mul(6)),
                health: health.clone(),
            },
            shared.clone(),
        ));
        discovery = Some(shared);
        inventory_client = Some(base.clone());
        let up = uplink::Uplink {
            client: base.clone(),
            enrolled: false,
            enroll_secret: c.enroll_secret_file.clone(),
            enroll_trouble: Default::default(),
            base,
            spool: spool.clone(),
            identity: identity.clone(),
            state_dir: state.clone(),
            bundle_key: key,
            engine_tx,
            version_tx,
            bundle_version: in_use.as_ref().map(|u| u.version.to_string()),
            in_use,
            period: Duration::from_secs(c.upload_secs),
            health: health.clone(),
            mode,
            bundle_error: None,
            spool_trouble: Default::default(),
        };
        tokio::spawn(up.run());
    } else {
        drop(engine_tx);
        drop(version_tx);
    }

    let outputs = Outputs {
        jsonl: open_jsonl(&cfg)?,
        print,
    };
    let (windows, output_thread) = Sink::new(spool.clone(), outputs, health.clone())
        .spawn()
        .map_err(|source| AgentError::Io {
            what: "starting the output thread".into(),
            source,
        })?;
    let mut inventory_task = None;
    if cfg.inventory.enabled {
        let engine = engine_rx.borrow().clone();
        let tracker = Arc::new(parking_lot::Mutex::new(crate::inventory::Tracker::new(
            Arc::new(engine.catalogue().inventory_hints.clone()),
            crate::inventory::TrackerOptions {
                read_tenant: cfg.inventory.read_tenant,
                corporate_tenants: cfg.inventory.corporate_tenants.clone(),
                // Session start's file reads run in the inventory stage, not on the drain.
                defer_reads: true,
                ..Default::default()
            },
        )));
        live.set_inventory(tracker.clone());
        inventory_task = Some(tokio::spawn(
            inventory::InventoryStage {
                tracker,
                engine_rx: engine_rx.clone(),
                host_id: identity.host_id.clone(),
                hostname: identity.hostname.clone(),
                state_dir: state.clone(),
                period: Duration::from_secs(cfg.inventory.scan_secs.max(1)),
                health: health.clone(),
                client: inventory_client,
                findings: windows.clone(),
                policy_version: version_rx.clone(),
                host_tags: tags.clone(),
            }
            .run(),
        ));
    }
    let printer = if print {
        let (p, _thread) =
            print::PrintSender::spawn(health.clone()).map_err(|source| AgentError::Io {
                what: "starting the print thread".into(),
                source,
            })?;
        Some(p)
    } else {
        None
    };
    let (events_tx, events_rx) = mpsc::channel(classify::QUEUE);
    let classify = classify::ClassifyStage {
        engine_rx: engine_rx.clone(),
        policy_version: version_rx,
        tags: tags.clone(),
        agg: findings::Aggregator::new(
            identity.host_id.clone(),
            identity.hostname.clone(),
            i64::try_from(cfg.agent.window_secs).unwrap_or(60) * 1000,
        )
        .with_large_upload(cfg.agent.large_upload_bytes),
        out: windows,
        health: health.clone(),
        print: printer,
        hold: Default::default(),
        discovery,
        meter: live
            .take_byte_counters()
            .map(|b| usage::Meter::new(b, health.clone())),
    };
    let classify = tokio::spawn(classify.run(events_rx));
    // Loading the programs (the kernel's BTF) and the rules left freed heap behind.
    crate::memory::release_free_heap();
    tracing::info!(host_id = %identity.host_id, "agent running");
    source::Source {
        live,
        engine_rx,
        tags,
        health,
    }
    .run(events_tx)
    .await;

    // The source dropped its sender: the classify stage closes the open window and
    // returns; the output thread ends once it has written it.
    if let Err(e) = classify.await {
        tracing::error!(error = %e, "the classify stage ended abnormally");
    }
    // The inventory stage holds a sender into the output stage too: stop it first.
    if let Some(t) = inventory_task {
        t.abort();
        let _ = t.await;
    }
    let joined = tokio::task::spawn_blocking(move || output_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the output thread ended abnormally; the last window may be lost");
    }
    // The spool thread writes what the output thread handed it, then answers; a disk that
    // does not answer within the deadline does not hold the stop up.
    match spool.call("len", |s| Ok(s.len())).await {
        Ok(spooled) => tracing::info!(spooled, "stopping; unsent findings stay in the spool"),
        Err(e) => {
            tracing::error!(error = %e, "stopping without the spool's answer; batches it had not written are lost")
        }
    }
    drop(spool);
    drop(spool_thread);
    Ok(())
}
