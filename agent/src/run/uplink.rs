//! The agent's side of the collector: enrollment, upload of spooled batches (deleted only
//! once acknowledged), heartbeats, and signed-bundle updates (verified, never rolled back,
//! saved as the last good bundle before they are swapped in).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shadowai_api::client::{BundleFetch, Client};
use shadowai_api::{AgentMode, EnrollRequest, Heartbeat, IngestBatch};
use shadowai_rules::Engine;
use shadowai_rules::bundle::{InUse, VerifyOptions};
use tokio::sync::watch;

use super::spool::Spool;
use crate::error::AgentError;

/// What the uplink needs to know about this agent.
#[derive(Clone, Debug)]
pub struct Identity {
    pub host_id: String,
    pub hostname: String,
    pub group: Option<String>,
}

/// Counters the uplink keeps (for metrics and heartbeats).
#[derive(Clone, Debug, Default)]
pub struct UplinkStats {
    pub batches_sent: u64,
    pub findings_sent: u64,
    pub upload_failures: u64,
    pub bundle_updates: u64,
    pub bundle_rejected: u64,
    pub bundle_version: Option<String>,
}

pub struct Uplink {
    pub client: Client,
    pub spool: Arc<Mutex<Spool>>,
    pub identity: Identity,
    pub state_dir: PathBuf,
    pub bundle_key: Option<ed25519_dalek::VerifyingKey>,
    pub engine_tx: watch::Sender<Arc<Engine>>,
    pub in_use: Option<InUse>,
    pub period: Duration,
    pub stats: Arc<Mutex<UplinkStats>>,
    pub lost_events: Arc<std::sync::atomic::AtomicU64>,
    pub mode: AgentMode,
}

fn token_path(state: &Path) -> PathBuf {
    state.join("agent.token")
}

/// This host's per-host credential (hex of 32 random bytes, mode 0600 in the state dir),
/// created on first use. The collector binds the host id to it at enrollment, so the
/// fleet-wide enrollment secret alone cannot take over this host's identity.
pub fn host_key(state: &Path) -> Result<String, AgentError> {
    let path = state.join("host.key");
    match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() == 64 && k.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Ok(k.trim().to_string());
        }
        Ok(_) => {
            return Err(AgentError::Uplink {
                what: "host key".into(),
                reason: format!(
                    "{} is not 64 hex digits; remove it only if this host was released by an admin",
                    path.display()
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AgentError::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    }
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AgentError::Uplink {
        what: "host key".into(),
        reason: format!("the OS refused randomness: {e}"),
    })?;
    let key = hex::encode(b);
    write_private(&path, key.as_bytes())?;
    Ok(key)
}

/// Enrolls once (token kept 0600 in the state dir) and returns a client that carries it.
pub async fn enroll(
    base: &Client,
    id: &Identity,
    state: &Path,
    secret_file: Option<&Path>,
) -> Result<Client, AgentError> {
    let tp = token_path(state);
    if let Ok(t) = std::fs::read_to_string(&tp) {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(base.with_token(t));
        }
    }
    let secret_file = secret_file.ok_or_else(|| AgentError::Uplink {
        what: "enrollment".into(),
        reason: format!(
            "no token in {} and no collector.enroll_secret_file configured",
            tp.display()
        ),
    })?;
    let secret = std::fs::read_to_string(secret_file).map_err(|source| AgentError::Io {
        what: format!("reading enrollment secret {}", secret_file.display()),
        source,
    })?;
    let resp = base
        .enroll(&EnrollRequest {
            secret: secret.trim().to_string(),
            host_id: id.host_id.clone(),
            hostname: id.hostname.clone(),
            group: id.group.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            host_key: host_key(state)?,
        })
        .await
        .map_err(|e| AgentError::Uplink {
            what: "enrollment".into(),
            reason: e.to_string(),
        })?;
    write_private(&tp, resp.token.as_bytes())?;
    tracing::info!(agent_id = %resp.agent_id, "enrolled with the collector");
    Ok(base.with_token(resp.token))
}

/// Writes a file readable by root only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |source| AgentError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Uplink {
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.period);
        let mut etag: Option<String> = None;
        loop {
            tick.tick().await;
            self.upload().await;
            self.heartbeat().await;
            if self.bundle_key.is_some() {
                self.fetch_bundle(&mut etag).await;
            }
        }
    }

    async fn upload(&self) {
        loop {
            let pending = match self.spool.lock() {
                Ok(mut s) => s.pending(8),
                Err(_) => return,
            };
            let pending = match pending {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "reading the spool");
                    return;
                }
            };
            if pending.is_empty() {
                return;
            }
            for (key, b) in pending {
                let n = b.findings.len() as u64;
                let batch = IngestBatch {
                    batch_id: b.batch_id,
                    findings: b.findings,
                };
                match self.client.ingest(&batch).await {
                    Ok(ack) => {
                        tracing::debug!(batch = %ack.batch_id, accepted = ack.accepted, duplicates = ack.duplicates, "batch acknowledged");
                        if let Ok(mut s) = self.spool.lock()
                            && let Err(e) = s.ack(key)
                        {
                            tracing::error!(error = %e, "deleting an acknowledged batch");
                        }
                        if let Ok(mut st) = self.stats.lock() {
                            st.batches_sent += 1;
                            st.findings_sent += n;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "upload failed; the batch stays spooled and is retried");
                        if let Ok(mut st) = self.stats.lock() {
                            st.upload_failures += 1;
                        }
                        return;
                    }
                }
            }
        }
    }

    async fn heartbeat(&self) {
        let bundle_version = self
            .stats
            .lock()
            .ok()
            .and_then(|s| s.bundle_version.clone());
        let hb = Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            bundle_version,
            mode: self.mode,
            lost_events: self.lost_events.load(std::sync::atomic::Ordering::Relaxed),
            group: self.identity.group.clone(),
        };
        if let Err(e) = self.client.heartbeat(&hb).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }

    async fn fetch_bundle(&mut self, etag: &mut Option<String>) {
        let Some(key) = self.bundle_key else { return };
        match self.client.fetch_bundle(etag.as_deref()).await {
            Ok(BundleFetch::Bundle {
                bytes,
                etag: new_etag,
                version,
            }) => match load_bundle(&bytes, &key, self.in_use.as_ref()) {
                Ok((engine, in_use)) => {
                    if let Err(e) = write_private(&self.state_dir.join("bundle.json"), &bytes) {
                        tracing::error!(error = %e, "saving the last good bundle");
                    }
                    tracing::info!(%version, "rule bundle verified and loaded");
                    self.in_use = Some(in_use);
                    let _ = self.engine_tx.send(Arc::new(engine));
                    if let Ok(mut st) = self.stats.lock() {
                        st.bundle_updates += 1;
                        st.bundle_version = Some(version);
                    }
                    *etag = Some(new_etag);
                }
                Err(e) => {
                    tracing::error!(error = %e, %version, "rule bundle refused; keeping the one in use");
                    if let Ok(mut st) = self.stats.lock() {
                        st.bundle_rejected += 1;
                    }
                    *etag = Some(new_etag);
                }
            },
            Ok(BundleFetch::NotModified | BundleFetch::NoBundle) => {}
            Err(e) => tracing::warn!(error = %e, "bundle fetch failed"),
        }
    }
}

/// Verifies a bundle (signature, expiry, rollback, agent version) and builds its engine.
pub fn load_bundle(
    bytes: &[u8],
    key: &ed25519_dalek::VerifyingKey,
    in_use: Option<&InUse>,
) -> Result<(Engine, InUse), AgentError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let agent = semver::Version::parse(env!("CARGO_PKG_VERSION")).ok();
    let verified = shadowai_rules::bundle::verify(
        bytes,
        key,
        &VerifyOptions {
            now,
            in_use,
            agent_version: agent.as_ref(),
        },
    )?;
    let engine = Engine::from_bundle(&verified)?;
    Ok((engine, verified.in_use()))
}
