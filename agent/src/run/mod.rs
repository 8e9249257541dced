//! `shadowai-agent run`: the daemon. Live events are classified against the rule engine
//! (a local catalogue + policy, or signed bundles from the collector), aggregated into
//! findings per window, written to the durable spool and uploaded; findings can also be
//! appended to a local OCSF JSONL file and printed.

pub mod config;
pub mod enforce;
pub mod findings;
pub mod spool;
pub mod uplink;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shadowai_api::{Action, AgentMode};
use shadowai_rules::Engine;
use shadowai_rules::catalogue::Catalogue;
use shadowai_rules::engine::Query;
use shadowai_rules::policy::{Mode, Policy};
use tokio::sync::watch;

use crate::error::AgentError;
use crate::event::{Event, EventKind};
use crate::live::Live;
use crate::sensor::SensorOptions;
use config::AgentConfig;
use findings::{Aggregator, Classified};
use spool::{Batch, Spool};
use uplink::{Identity, Uplink, UplinkStats};

/// The service and verdict for one event, if it is a use of an AI service.
pub fn classify(engine: &Engine, e: &Event, host_tags: &[&str]) -> Option<Classified> {
    let dns = matches!(e.kind, EventKind::DnsQuery | EventKind::DnsResponse);
    let name = if dns {
        e.dns.as_ref().map(|d| d.question.as_str())
    } else {
        e.hostname.as_deref()
    };
    let groups: Vec<&str> = e
        .process
        .as_ref()
        .map_or_else(Vec::new, |p| p.groups.iter().map(String::as_str).collect());
    let q = Query {
        name,
        ip: (!dns).then(|| e.dst.ip()),
        port: (!dns).then(|| e.dst.port()),
        process: e.process.as_ref().map(|p| p.exe.as_str()),
        user: e.process.as_ref().map(|p| p.user.as_str()),
        unix_groups: &groups,
        host_tags,
    };
    let d = engine.classify(&q)?;
    Some(Classified {
        service_id: d.service.id.clone(),
        service_name: d.service.name.clone(),
        vendor: d.service.vendor.clone(),
        category: d.service.category.as_str().to_string(),
        risk_score: d.service.risk.score,
        verdict: d.verdict,
        action: if e.blocked {
            Action::Blocked
        } else {
            Action::Allowed
        },
        rule: d.rule_id(),
    })
}

/// The rules to start with: the last good bundle (when bundles are configured), else the
/// local catalogue + policy, else an empty engine until the first bundle arrives.
fn initial_engine(
    cfg: &AgentConfig,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<(Engine, Option<shadowai_rules::bundle::InUse>), AgentError> {
    let saved = cfg.agent.state_dir.join("bundle.json");
    if let (Some(key), Ok(bytes)) = (key, std::fs::read(&saved)) {
        match uplink::load_bundle(&bytes, key, None) {
            Ok((engine, in_use)) => {
                tracing::info!(version = %in_use.version, "loaded the last good bundle");
                return Ok((engine, Some(in_use)));
            }
            Err(e) => tracing::warn!(error = %e, path = %saved.display(), "saved bundle refused"),
        }
    }
    if let Some(dir) = &cfg.rules.catalogue {
        let cat = Catalogue::load_dir(dir)?;
        let policy = match &cfg.rules.policy {
            Some(p) => Policy::load(p, &cat)?,
            None => Policy::default(),
        };
        tracing::info!(services = cat.services.len(), "loaded the local catalogue");
        return Ok((Engine::new(cat, policy)?, None));
    }
    tracing::warn!("no rules yet: nothing is classified until the collector sends a bundle");
    Ok((Engine::new(Catalogue::default(), Policy::default())?, None))
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

fn random_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    hex_lower(&b)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Checks a configuration and the rules it points at; the systemd unit runs this first.
pub fn validate(path: &Path) -> Result<String, AgentError> {
    let cfg = AgentConfig::load(path)?;
    let key = match &cfg.rules.bundle_key {
        Some(k) => Some(shadowai_rules::bundle::read_verifying_key(k)?),
        None => None,
    };
    let (engine, in_use) = initial_engine(&cfg, key.as_ref())?;
    Ok(format!(
        "{}: ok ({} services{}, policy mode {:?})",
        path.display(),
        engine.catalogue().services.len(),
        in_use
            .map(|u| format!(", bundle {}", u.version))
            .unwrap_or_default(),
        engine.policy().mode
    ))
}

pub async fn run(cfg: AgentConfig, print: bool, poll: Duration) -> anyhow::Result<()> {
    let state = &cfg.agent.state_dir;
    std::fs::create_dir_all(state).map_err(|source| AgentError::Io {
        what: format!("creating state dir {}", state.display()),
        source,
    })?;
    let key = match &cfg.rules.bundle_key {
        Some(k) => Some(shadowai_rules::bundle::read_verifying_key(k)?),
        None => None,
    };
    let (engine, in_use) = initial_engine(&cfg, key.as_ref())?;
    let mode = if engine.policy().mode == Mode::Enforce {
        AgentMode::Enforce
    } else {
        AgentMode::Monitor
    };
    let (engine_tx, mut engine_rx) = watch::channel(Arc::new(engine));
    let identity = Identity {
        host_id: host_id(&cfg),
        hostname: cfg
            .agent
            .hostname
            .clone()
            .unwrap_or_else(crate::watch::hostname),
        group: cfg.agent.group.clone(),
    };
    let spool = Arc::new(Mutex::new(Spool::open(
        &state.join("spool"),
        cfg.agent.spool_max_mib * 1024 * 1024,
    )?));
    let stats: Arc<Mutex<UplinkStats>> = Default::default();
    let lost = Arc::new(AtomicU64::new(0));

    let mut live = Live::start(
        &SensorOptions {
            dns_ports: cfg.sensor.dns_ports.clone(),
            ..SensorOptions::default()
        },
        poll,
        cfg.output.metrics,
    )?;

    if let Some(c) = &cfg.collector {
        let mut b = shadowai_api::client::Client::builder(c.url.clone());
        if let Some(ca) = &c.ca {
            let pem = std::fs::read(ca).map_err(|source| AgentError::Io {
                what: format!("reading collector CA {}", ca.display()),
                source,
            })?;
            b = b.ca_pem(&pem);
        }
        let base = b.build().map_err(|e| AgentError::Uplink {
            what: "client".into(),
            reason: e.to_string(),
        })?;
        let client =
            uplink::enroll(&base, &identity, state, c.enroll_secret_file.as_deref()).await?;
        let up = Uplink {
            client,
            spool: spool.clone(),
            identity: identity.clone(),
            state_dir: state.clone(),
            bundle_key: key,
            engine_tx,
            in_use,
            period: Duration::from_secs(c.upload_secs),
            stats: stats.clone(),
            lost_events: lost.clone(),
            mode,
        };
        tokio::spawn(up.run());
    } else {
        drop(engine_tx);
    }

    let st = stats.clone();
    let sp = spool.clone();
    live.extra_metrics = Some(Box::new(move || {
        let s = st.lock().map(|s| s.clone()).unwrap_or_default();
        let (queued, lost_b) = sp
            .lock()
            .map(|s| (s.len(), s.lost_batches))
            .unwrap_or((0, 0));
        format!(
            "# TYPE shadowai_uplink_batches_total counter\nshadowai_uplink_batches_total {}\n\
             # TYPE shadowai_uplink_findings_total counter\nshadowai_uplink_findings_total {}\n\
             # TYPE shadowai_uplink_failures_total counter\nshadowai_uplink_failures_total {}\n\
             # TYPE shadowai_bundle_updates_total counter\nshadowai_bundle_updates_total {}\n\
             # TYPE shadowai_bundle_rejected_total counter\nshadowai_bundle_rejected_total {}\n\
             # TYPE shadowai_spool_batches gauge\nshadowai_spool_batches {queued}\n\
             # TYPE shadowai_spool_lost_batches_total counter\nshadowai_spool_lost_batches_total {lost_b}\n",
            s.batches_sent, s.findings_sent, s.upload_failures, s.bundle_updates, s.bundle_rejected
        )
    }));

    let tags: Vec<String> = cfg
        .agent
        .tags
        .iter()
        .cloned()
        .chain(cfg.agent.group.clone())
        .collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut agg = Aggregator::new(
        identity.host_id.clone(),
        identity.hostname.clone(),
        i64::try_from(cfg.agent.window_secs).unwrap_or(60) * 1000,
    );
    let mut jsonl = match &cfg.output.findings_jsonl {
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
        None => None,
    };
    let mut engine = engine_rx.borrow_and_update().clone();
    apply_blocklist(&mut live, &engine, &tag_refs)?;
    let mut events = Vec::new();
    let mut stdout = std::io::stdout();
    tracing::info!(host_id = %identity.host_id, "agent running");
    loop {
        let go_on = live.next_batch(&mut events).await;
        if engine_rx.has_changed().unwrap_or(false) {
            engine = engine_rx.borrow_and_update().clone();
            apply_blocklist(&mut live, &engine, &tag_refs)?;
        }
        for e in events.drain(..) {
            if let Some(c) = classify(&engine, &e, &tag_refs) {
                if print {
                    let who = e.process.as_ref().map_or("?".to_string(), |p| {
                        format!("pid={} {} user={}", p.pid, p.exe, p.user)
                    });
                    let _ = writeln!(
                        stdout,
                        "AI {:<12} {} -> {} [{} / {}] {:?} ({})",
                        format!("{:?}", e.kind),
                        who,
                        e.hostname.as_deref().unwrap_or("-"),
                        c.service_name,
                        c.category,
                        c.verdict,
                        c.rule
                    );
                }
                agg.observe(&e, &c);
            }
        }
        lost.store(live.lost_events(), std::sync::atomic::Ordering::Relaxed);
        let closed = agg.close_if_due(now_ms(), !go_on);
        if !closed.is_empty() {
            emit(&closed, &spool, jsonl.as_mut(), print)?;
        }
        if !go_on {
            break;
        }
    }
    tracing::info!(
        spooled = spool.lock().map(|s| s.len()).unwrap_or(0),
        "stopping; unsent findings stay in the spool"
    );
    Ok(())
}

/// Loads what the rules block on this host into the kernel (enforce mode only).
fn apply_blocklist(live: &mut Live, engine: &Engine, tags: &[&str]) -> Result<(), AgentError> {
    let b = enforce::blocklist(engine, tags);
    live.set_blocklist(&b)?;
    if engine.policy().mode == Mode::Enforce {
        tracing::info!(services = ?b.services, names = b.names.len(), networks = b.nets4.len() + b.nets6.len(), "enforcing blocks in the kernel");
    }
    Ok(())
}

fn emit(
    findings: &[shadowai_api::Finding],
    spool: &Mutex<Spool>,
    jsonl: Option<&mut std::fs::File>,
    print: bool,
) -> Result<(), AgentError> {
    let batch = Batch {
        batch_id: random_id(),
        findings: findings.to_vec(),
    };
    if let Ok(mut s) = spool.lock() {
        s.append(&batch)?;
    }
    let mut lines = String::new();
    for f in findings {
        lines.push_str(&shadowai_api::ocsf::finding_to_ocsf(f).to_string());
        lines.push('\n');
        if print {
            println!(
                "FINDING {} by {} user={} host={} count={} verdict={:?} rule={}",
                f.service_name, f.process.exe, f.user, f.hostname, f.count, f.verdict, f.rule
            );
        }
    }
    if let Some(w) = jsonl {
        w.write_all(lines.as_bytes())
            .map_err(|source| AgentError::Io {
                what: "writing findings JSONL".into(),
                source,
            })?;
    }
    Ok(())
}
