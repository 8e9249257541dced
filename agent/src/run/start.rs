//! Starting and stopping the daemon's stages (`run`): each function starts one stage
//! with what it owns and hands back the ends the others need.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::registry::Registry;
use shadowai_api::AgentMode;
use shadowai_api::client::Client;
use shadowai_rules::Engine;
use shadowai_rules::keyset::KeySet;
use tokio::sync::{mpsc, watch};

use super::config::{AgentConfig, CollectorSection};
use super::enroll::Identity;
use super::health::Health;
use super::sink::{Outputs, Sink, WindowSender};
use super::spool::Spool;
use super::spool_worker::SpoolWorker;
use super::{classify, discovery, findings, inventory, print, uplink, usage};
use crate::error::AgentError;
use crate::event::Event;
use crate::live::Live;
use crate::sensor::SensorOptions;
use shadowai_rules::bundle::InUse;

/// What every stage is started with.
pub(super) struct Common<'a> {
    pub cfg: &'a AgentConfig,
    pub identity: Identity,
    pub health: Health,
    /// The host's tags and group, for the policy's scopes.
    pub tags: Vec<String>,
    pub engine_rx: watch::Receiver<Arc<Engine>>,
    pub version_rx: watch::Receiver<Option<String>>,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        what: what.into(),
        source,
    }
}

/// The spool and the thread that owns it (every fsync happens there).
pub(super) fn spool(
    cfg: &AgentConfig,
    health: &Health,
) -> Result<(SpoolWorker, JoinHandle<()>), AgentError> {
    let spool = Spool::open(
        &cfg.agent.state_dir.join("spool"),
        cfg.agent.spool_max_mib.saturating_mul(1024 * 1024),
    )?;
    SpoolWorker::spawn(spool, health.clone()).map_err(io("starting the spool thread"))
}

/// The kernel sensor, and `/metrics` when configured.
pub(super) fn live(cfg: &AgentConfig, poll: Duration, health: &Health) -> anyhow::Result<Live> {
    let live = Live::start(
        &SensorOptions {
            dns_ports: cfg.sensor.dns_ports.clone(),
            ring_bytes: cfg.sensor.ring_bytes().map_err(anyhow::Error::msg)?,
            dedup: Duration::from_secs(cfg.dedup_secs()),
            ..SensorOptions::default()
        },
        poll,
    )?;
    health.set_hooks_missing(live.hooks_missing());
    if let Some(addr) = cfg.output.metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(live.collector()));
        health.register(&mut registry);
        crate::metrics::spawn_server(addr, registry);
    }
    Ok(live)
}

/// What the uplink takes over: the ends that publish a new engine from a bundle.
pub(super) struct Rules {
    pub key: Option<KeySet>,
    pub engine_tx: watch::Sender<Arc<Engine>>,
    pub version_tx: watch::Sender<Option<String>>,
    pub in_use: Option<InUse>,
    pub mode: AgentMode,
}

/// What the collector's tasks give the other stages.
#[derive(Default)]
pub(super) struct Links {
    pub discovery: Option<discovery::Shared>,
    pub inventory_client: Option<Client>,
}

/// The uplink (enroll, upload, bundles, heartbeats) and the discovery reporter.
pub(super) fn collector(
    c: &CollectorSection,
    cm: &Common<'_>,
    spool: SpoolWorker,
    rules: Rules,
) -> Result<Links, AgentError> {
    let base = uplink::base_client(c)?;
    let shared = discovery::Shared::default();
    tokio::spawn(discovery::report_loop(
        discovery::Reporter {
            base: base.clone(),
            state_dir: cm.cfg.agent.state_dir.clone(),
            period: Duration::from_secs(c.upload_secs.max(1).saturating_mul(6)),
            health: cm.health.clone(),
        },
        shared.clone(),
    ));
    let up = uplink::Uplink {
        client: base.clone(),
        enrolled: false,
        enroll_secret: c.enroll_secret_file.clone(),
        enroll_trouble: Default::default(),
        base: base.clone(),
        spool,
        identity: cm.identity.clone(),
        state_dir: cm.cfg.agent.state_dir.clone(),
        bundle_key: rules.key,
        engine_tx: rules.engine_tx,
        version_tx: rules.version_tx,
        bundle_version: rules.in_use.as_ref().map(|u| u.version.to_string()),
        in_use: rules.in_use,
        period: Duration::from_secs(c.upload_secs),
        health: cm.health.clone(),
        mode: rules.mode,
        bundle_error: None,
        spool_trouble: Default::default(),
    };
    tokio::spawn(up.run());
    Ok(Links {
        discovery: Some(shared),
        inventory_client: Some(base),
    })
}

/// The output thread (exe hashes, JSONL, the spool's hand-off).
pub(super) fn output(
    cfg: &AgentConfig,
    print: bool,
    spool: SpoolWorker,
    health: &Health,
) -> Result<(WindowSender, JoinHandle<()>), AgentError> {
    let jsonl = match &cfg.output.findings_jsonl {
        None => None,
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| AgentError::Io {
                    what: format!("opening {}", p.display()),
                    source,
                })?,
        ),
    };
    Sink::new(spool, Outputs { jsonl, print }, health.clone())
        .spawn()
        .map_err(io("starting the output thread"))
}

/// The inventory of AI agents, MCP servers and runtimes, when enabled: the tracker fed
/// from the sensor's exec/exit events, and its stage.
pub(super) fn inventory_stage(
    cm: &Common<'_>,
    live: &mut Live,
    client: Option<Client>,
    findings: WindowSender,
) -> Option<tokio::task::JoinHandle<()>> {
    let cfg = cm.cfg;
    if !cfg.inventory.enabled {
        return None;
    }
    let engine = cm.engine_rx.borrow().clone();
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
    Some(tokio::spawn(
        inventory::InventoryStage {
            tracker,
            engine_rx: cm.engine_rx.clone(),
            host_id: cm.identity.host_id.clone(),
            hostname: cm.identity.hostname.clone(),
            state_dir: cm.cfg.agent.state_dir.clone(),
            period: Duration::from_secs(cfg.inventory.scan_secs.max(1)),
            health: cm.health.clone(),
            client,
            findings,
            policy_version: cm.version_rx.clone(),
            host_tags: cm.tags.clone(),
        }
        .run(),
    ))
}

/// The classify + aggregate stage; returns the queue the source feeds.
pub(super) fn classify_stage(
    cm: &Common<'_>,
    live: &mut Live,
    windows: WindowSender,
    discovery: Option<discovery::Shared>,
    print: bool,
) -> Result<(mpsc::Sender<Vec<Event>>, tokio::task::JoinHandle<()>), AgentError> {
    let printer = if print {
        let (p, _thread) = print::PrintSender::spawn(cm.health.clone())
            .map_err(io("starting the print thread"))?;
        Some(p)
    } else {
        None
    };
    let (events_tx, events_rx) = mpsc::channel(classify::QUEUE);
    let stage = classify::ClassifyStage {
        engine_rx: cm.engine_rx.clone(),
        policy_version: cm.version_rx.clone(),
        tags: cm.tags.clone(),
        agg: findings::Aggregator::new(
            cm.identity.host_id.clone(),
            cm.identity.hostname.clone(),
            i64::try_from(cm.cfg.agent.window_secs).unwrap_or(60) * 1000,
        )
        .with_large_upload(cm.cfg.agent.large_upload_bytes),
        out: windows,
        health: cm.health.clone(),
        print: printer,
        hold: Default::default(),
        discovery,
        meter: live
            .take_byte_counters()
            .map(|b| usage::Meter::new(b, cm.health.clone())),
    };
    Ok((events_tx, tokio::spawn(stage.run(events_rx))))
}

/// Everything a stop waits for, in the order it must.
pub(super) struct Running {
    pub classify: tokio::task::JoinHandle<()>,
    pub inventory: Option<tokio::task::JoinHandle<()>>,
    pub output: JoinHandle<()>,
    pub spool: SpoolWorker,
    pub spool_thread: JoinHandle<()>,
}

impl Running {
    /// Called once the source has stopped (it dropped its sender).
    pub async fn stop(self) {
        // The classify stage closes the open window and returns; the output thread ends
        // once it has written it.
        if let Err(e) = self.classify.await {
            tracing::error!(error = %e, "the classify stage ended abnormally");
        }
        // The inventory stage holds a sender into the output stage too: stop it first.
        if let Some(t) = self.inventory {
            t.abort();
            let _ = t.await;
        }
        let output = self.output;
        let joined = tokio::task::spawn_blocking(move || output.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the output thread ended abnormally; the last window may be lost");
        }
        // The spool thread writes what the output thread handed it, then answers; a disk
        // that does not answer within the deadline does not hold the stop up.
        match self.spool.call("len", |s| Ok(s.len())).await {
            Ok(spooled) => tracing::info!(spooled, "stopping; unsent findings stay in the spool"),
            Err(e) => {
                tracing::error!(error = %e, "stopping without the spool's answer; batches it had not written are lost")
            }
        }
        drop(self.spool);
        drop(self.spool_thread);
    }
}
