//! The inventory stage of the daemon: seeds the tracker from /proc (agents older than the
//! agent), reads listeners on a timer, expires what ended, and whenever the inventory
//! changed writes it to `STATE_DIR/inventory.json` (mode 0600; what
//! `shadowai-agent inventory` shows). All file and /proc I/O runs on the blocking pool; the
//! tracker's lock is held only to copy or apply state, never across I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shadowai_api::inventory::InventoryReport;
use shadowai_rules::Engine;
use tokio::sync::watch;

use super::health::Health;

/// The inventory file is rewritten at least this often (ms).
const REFRESH_MS: i64 = 10_000;
use crate::inventory::cli::REPORT_FILE;
use crate::inventory::feed::SharedTracker;
use crate::inventory::scan;

pub struct InventoryStage {
    pub tracker: SharedTracker,
    pub engine_rx: watch::Receiver<Arc<Engine>>,
    pub host_id: String,
    pub hostname: String,
    pub state_dir: PathBuf,
    pub period: Duration,
    pub health: Health,
    /// The collector (without a token), when one is configured: each changed inventory is
    /// reported to it with the token the uplink keeps in the state dir — read per report, so
    /// a background first enrollment or a re-enrollment after a 401 is picked up at once.
    pub client: Option<shadowai_api::client::Client>,
    /// Sessions as findings of their own (`ai_agent`), into the output stage.
    pub findings: super::sink::WindowSender,
    pub policy_version: watch::Receiver<Option<String>>,
    pub host_tags: Vec<String>,
}

fn write_report(dir: &Path, r: &InventoryReport) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{REPORT_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(REPORT_FILE))
}

impl InventoryStage {
    /// Reports to the collector; false when it failed (counted, logged once per outage).
    async fn upload(&self, r: &InventoryReport, failing: &mut bool) -> bool {
        let Some(base) = &self.client else {
            return true;
        };
        let Some(token) = super::enroll::saved_token(&self.state_dir) else {
            // Not enrolled yet: the report stays due and goes with the first token.
            return false;
        };
        let c = base.with_token(token);
        match tokio::time::timeout(Duration::from_secs(30), c.inventory_report(r)).await {
            Ok(Ok(_)) => {
                if *failing {
                    tracing::info!("inventory reports reach the collector again");
                }
                *failing = false;
                true
            }
            res => {
                self.health
                    .output_failures
                    .get_or_create(&vec![("output", "inventory_upload")])
                    .inc();
                if !*failing {
                    let error = match res {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out after 30 s".to_string(),
                    };
                    tracing::warn!(%error, "reporting the inventory to the collector failed (counted; retried next round)");
                }
                *failing = true;
                false
            }
        }
    }

    /// Runs until the daemon stops.
    pub async fn run(self) {
        let mut sessions = super::agent_findings::SessionFindings::new(
            self.host_id.clone(),
            self.hostname.clone(),
        );
        let mut dest_dropped = 0u64;
        // The hints in use came with this engine; a verified bundle brings new ones.
        let mut hints_of = self.engine_rx.borrow().clone();
        let proc_root = Path::new("/proc");
        let rows = tokio::task::spawn_blocking(move || scan::processes(proc_root))
            .await
            .unwrap_or_default();
        {
            let mut t = self.tracker.lock();
            for row in &rows {
                t.on_exec(&row.facts());
            }
        }
        let mut tick = tokio::time::interval(self.period);
        let (mut uploaded, mut last_write_ms) = (u64::MAX, 0i64);
        let (mut failing, mut write_failing) = (false, false);
        loop {
            tick.tick().await;
            let engine = self.engine_rx.borrow().clone();
            if !Arc::ptr_eq(&engine, &hints_of) {
                let hints = &engine.catalogue().inventory_hints;
                if *hints != hints_of.catalogue().inventory_hints {
                    tracing::info!(
                        agents = hints.agent.len(),
                        launchers = hints.launcher.len(),
                        runtimes = hints.runtime.len(),
                        "inventory process hints replaced by the bundle's"
                    );
                    self.tracker.lock().set_hints(Arc::new(hints.clone()));
                }
                hints_of = engine;
            }
            // New sessions' cwd, version and tenant: read here, never on the event path.
            let (pending, reader) = {
                let mut t = self.tracker.lock();
                (t.take_pending(), t.reader())
            };
            if !pending.is_empty() {
                let read = tokio::task::spawn_blocking(move || {
                    pending
                        .into_iter()
                        .map(|p| {
                            let f = reader.read(&p);
                            (p.id, f)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                let mut t = self.tracker.lock();
                for (id, f) in read {
                    t.complete(&id, f);
                }
            }
            let (ports, pids) = {
                let t = self.tracker.lock();
                (t.runtime_ports(), t.listening_candidates())
            };
            let found = tokio::task::spawn_blocking(move || scan::gather(proc_root, &ports, &pids))
                .await
                .unwrap_or_default();
            let now = super::now_ms();
            let (report, generation) = {
                let mut t = self.tracker.lock();
                scan::apply(&mut t, found);
                t.expire(now);
                // The file is refreshed at least every REFRESH_MS (the CLI trusts a fresh
                // one); the collector hears of changes only.
                if t.generation == uploaded && now - last_write_ms < REFRESH_MS {
                    continue;
                }
                let engine = self.engine_rx.borrow().clone();
                let r = t.report(&self.host_id, &self.hostname, now, &|n| {
                    engine.match_name(n).is_some()
                });
                let tags: Vec<&str> = self.host_tags.iter().map(String::as_str).collect();
                let due = sessions.due(
                    &r,
                    &super::agent_findings::Context {
                        engine: &engine,
                        host_tags: &tags,
                        policy_version: self.policy_version.borrow().clone(),
                        now_ms: now,
                        beyond: &|id| t.destinations_beyond(id),
                    },
                );
                if !due.is_empty() {
                    // Session findings carry no per-window exec record: the sink hashes
                    // their executables from the path (merge fix: pipeline × sessions).
                    self.findings
                        .send(super::sink::Window(due, std::collections::HashMap::new()));
                }
                if t.dest_dropped > dest_dropped {
                    self.health
                        .drop_at("inventory", "destinations", t.dest_dropped - dest_dropped);
                    if dest_dropped == 0 {
                        tracing::warn!(
                            max = shadowai_api::inventory::MAX_DESTINATIONS,
                            "an AI agent session contacted more destinations than its inventory keeps; further ones are counted, not kept"
                        );
                    }
                    dest_dropped = t.dest_dropped;
                }
                (r, t.generation)
            };
            let dir = self.state_dir.clone();
            let r = Arc::new(report);
            let r2 = Arc::clone(&r);
            match tokio::task::spawn_blocking(move || write_report(&dir, &r2)).await {
                Ok(Ok(())) => {
                    write_failing = false;
                    last_write_ms = now;
                }
                Ok(Err(e)) => {
                    self.health
                        .output_failures
                        .get_or_create(&vec![("output", "inventory")])
                        .inc();
                    if !write_failing {
                        tracing::error!(error = %e, dir = %self.state_dir.display(), "writing the inventory failed (counted; retried next round)");
                    }
                    write_failing = true;
                }
                Err(e) => tracing::error!(error = %e, "the inventory writer panicked"),
            }
            if generation != uploaded && self.upload(&r, &mut failing).await {
                uploaded = generation;
            }
        }
    }
}
