//! The agent's side of the collector: upload of spooled batches (deleted only once
//! acknowledged), heartbeats, signed-bundle updates (verified, never rolled back, saved as
//! the last good bundle before they are swapped in), and keeping this host's identity.
//!
//! Nothing here can stall the queue or spin:
//! - a batch the collector refuses for good (a 4xx other than 401/408/429) is quarantined,
//!   counted and reported, and the next batch goes up;
//! - transient failures (transport, 5xx, 429) back off exponentially up to
//!   [`MAX_BACKOFF`], and the spool keeps filling meanwhile;
//! - 401 (token revoked or rotated) re-enrolls with the per-host key, no secret needed; a
//!   403 `agent_revoked` or 409 `host_identity_conflict` answer is logged as an error once,
//!   shown in `/metrics` (`shadowai_identity_state`) and retried at the backoff ceiling, in
//!   case an admin releases the host.
//!
//! Spool calls block (fsync), so they run on the spool's own thread, with a deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shadowai_api::client::{BundleFetch, Client, ClientError};
use shadowai_api::{AgentMode, BundleRefused, Heartbeat, IngestBatch, ReenrollRequest};
use shadowai_rules::Engine;
use shadowai_rules::bundle::InUse;
use tokio::sync::watch;

use super::enroll::{self, Identity};
use super::health::{Health, IdentityState, Trouble};
use super::spool::{Batch, SpoolError};
use super::spool_worker::{CallError, SpoolWorker};
use crate::error::AgentError;

// Earlier home of these; kept so callers (e.g. an `enroll` subcommand) keep working.
pub use super::enroll::{Identity as UplinkIdentity, enroll, host_key, write_private};
pub use super::rules::load_bundle;

/// Longest wait between attempts while the collector is failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Batches read from the spool per round.
const PER_ROUND: usize = 8;

/// What a failed call means for the uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Try again later (transport error, 5xx, 408, 429).
    Transient,
    /// The token is not accepted (401): re-enroll.
    Unauthorized,
    /// The request itself is refused for good (other 4xx): do not send it again.
    Permanent(u16),
}

impl Failure {
    pub fn of(e: &ClientError) -> Self {
        Self::from_status(e.status())
    }

    /// The same, from the HTTP status (`None`: no answer at all).
    pub fn from_status(status: Option<u16>) -> Self {
        match status {
            Some(401) => Failure::Unauthorized,
            Some(408 | 429) => Failure::Transient,
            Some(s) if (400..500).contains(&s) => Failure::Permanent(s),
            _ => Failure::Transient,
        }
    }
}

/// The next wait after a round: the period after success, doubling up to the ceiling
/// after failures.
pub fn next_delay(current: Duration, period: Duration, ok: bool) -> Duration {
    if ok {
        period
    } else {
        current
            .max(period)
            .saturating_mul(2)
            .min(MAX_BACKOFF.max(period))
    }
}

pub struct Uplink {
    /// Carries the agent token once enrolled.
    pub client: Client,
    /// False until the first enrollment succeeded (it is retried in the background, so an
    /// unreachable collector at first start never stops the agent).
    pub enrolled: bool,
    /// The enrollment secret's file, for the first enrollment.
    pub enroll_secret: Option<PathBuf>,
    pub enroll_trouble: Trouble,
    /// The same collector without a token (re-enrollment).
    pub base: Client,
    pub spool: SpoolWorker,
    pub identity: Identity,
    pub state_dir: PathBuf,
    pub bundle_key: Option<shadowai_rules::keyset::KeySet>,
    pub engine_tx: watch::Sender<Arc<Engine>>,
    /// The version of the bundle behind `engine_tx`'s engine (stamped on findings).
    pub version_tx: watch::Sender<Option<String>>,
    pub in_use: Option<InUse>,
    pub period: Duration,
    pub health: Health,
    pub mode: AgentMode,
    pub bundle_version: Option<String>,
    /// The last bundle refused, reported in every heartbeat until a newer one loads (a
    /// rollout whose agents refuse its bundle halts).
    pub bundle_error: Option<BundleRefused>,
    pub spool_trouble: Trouble,
}

/// What one round achieved.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    Ok,
    Failed,
    Unauthorized,
}

impl Uplink {
    pub async fn run(mut self) {
        let mut etag: Option<String> = None;
        let mut delay = if self.enrolled {
            self.period
        } else {
            Duration::ZERO
        };
        loop {
            tokio::time::sleep(delay).await;
            if !self.enrolled && !self.first_enrollment().await {
                delay = next_delay(delay, self.period, false);
                continue;
            }
            let mut r = self.upload().await;
            if r == Round::Ok {
                r = self.heartbeat().await;
            }
            if r == Round::Unauthorized {
                r = self.reenroll().await;
            }
            if r == Round::Ok && self.bundle_key.is_some() {
                self.fetch_bundle(&mut etag).await;
            }
            delay = next_delay(delay, self.period, r == Round::Ok);
        }
    }

    /// Enrolls with the enrollment secret (or picks up a token saved meanwhile); true once
    /// enrolled. A failure is logged when a run of them starts and ends.
    async fn first_enrollment(&mut self) -> bool {
        self.health.set_identity(IdentityState::Enrolling);
        match enroll::enroll(
            &self.base,
            &self.identity,
            &self.state_dir,
            self.enroll_secret.as_deref(),
        )
        .await
        {
            Ok(client) => {
                self.client = client;
                self.enrolled = true;
                self.health.set_identity(IdentityState::Ok);
                if self.enroll_trouble.ok() {
                    tracing::info!(
                        "enrolled with the collector after retries; uploading the spooled findings"
                    );
                }
                true
            }
            Err(e) => {
                if self.enroll_trouble.fail() {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "enrolling with the collector failed; the agent keeps observing, findings are spooled, enrollment is retried with backoff");
                }
                false
            }
        }
    }

    /// A call on the spool thread, waited for at most its deadline: a disk that stops
    /// answering costs this round (counted, logged once), never the uplink's heartbeats.
    async fn spool_call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut super::spool::Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Option<T> {
        match self.spool.call(op, f).await {
            Ok(v) => {
                if self.spool_trouble.ok() {
                    tracing::info!("spool reads work again");
                }
                Some(v)
            }
            // A stall is counted and logged by the spool handle itself.
            Err(CallError::Stalled { .. }) => None,
            Err(e) => {
                if self.spool_trouble.fail() {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "spool access failed; retrying later");
                }
                None
            }
        }
    }

    async fn upload(&self) -> Round {
        loop {
            let Some(pending) = self.spool_call("pending", |s| s.pending(PER_ROUND)).await else {
                return Round::Failed;
            };
            if pending.is_empty() {
                return Round::Ok;
            }
            for (key, b) in pending {
                match self.send(key, b).await {
                    Round::Ok => {}
                    other => return other,
                }
            }
        }
    }

    /// One batch up; acknowledged → deleted, refused for good → quarantined.
    async fn send(&self, key: u64, b: Batch) -> Round {
        let n = b.findings.len() as u64;
        let id = b.batch_id.clone();
        let batch = IngestBatch {
            batch_id: b.batch_id,
            findings: b.findings,
        };
        match self.client.ingest(&batch).await {
            Ok(ack) => {
                tracing::debug!(batch = %ack.batch_id, accepted = ack.accepted, duplicates = ack.duplicates, "batch acknowledged");
                self.health.uplink_batches.inc();
                self.health.uplink_findings.inc_by(n);
                let left = self
                    .spool_call("ack", move |s| s.ack(key).map(|()| s.len()))
                    .await;
                if let Some(left) = left {
                    self.health.spool_batches.set(left as i64);
                }
                Round::Ok
            }
            Err(e) => match Failure::of(&e) {
                Failure::Permanent(status) => {
                    tracing::error!(batch = %id, status, findings = n, error = %e, "the collector refused this batch for good: quarantined (counted); the queue moves on");
                    self.health.quarantined_batches.inc();
                    self.health.quarantined_findings.inc_by(n);
                    match self
                        .spool_call("quarantine", move |s| s.quarantine(key).map(|()| s.len()))
                        .await
                    {
                        Some(left) => {
                            self.health.spool_batches.set(left as i64);
                            Round::Ok
                        }
                        None => Round::Failed,
                    }
                }
                Failure::Unauthorized => Round::Unauthorized,
                Failure::Transient => {
                    self.health.uplink_failures.inc();
                    tracing::warn!(error = %e, "upload failed; the batch stays spooled and is retried with backoff");
                    Round::Failed
                }
            },
        }
    }

    async fn heartbeat(&self) -> Round {
        let hb = Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            bundle_version: self.bundle_version.clone(),
            mode: self.mode,
            lost_events: self.health.lost_events(),
            group: self.identity.group.clone(),
            bundle_error: self.bundle_error.clone(),
            pipeline: Some(self.health.pipeline()),
        };
        match self.client.heartbeat(&hb).await {
            Ok(_) => Round::Ok,
            Err(e) => match Failure::of(&e) {
                Failure::Unauthorized => Round::Unauthorized,
                _ => {
                    tracing::warn!(error = %e, "heartbeat failed");
                    Round::Failed
                }
            },
        }
    }

    /// The token stopped working: prove this host with its host key and get a fresh one.
    async fn reenroll(&mut self) -> Round {
        let was = self.health.identity_state();
        if was == IdentityState::Ok {
            tracing::warn!(
                "the collector no longer accepts this agent's token (401); re-enrolling with the host key"
            );
        }
        self.health.set_identity(IdentityState::Reenrolling);
        let req = match enroll::host_key(&self.state_dir) {
            Ok(host_key) => ReenrollRequest {
                host_id: self.identity.host_id.clone(),
                host_key,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot re-enroll without the host key");
                return Round::Failed;
            }
        };
        match self.base.reenroll(&req).await {
            Ok(resp) => {
                if let Err(e) = enroll::save_token(&self.state_dir, &resp.token) {
                    tracing::error!(error = %e, "saving the new token failed; it is used until restart");
                }
                self.client = self.base.with_token(resp.token);
                self.health.reenrollments.inc();
                self.health.set_identity(IdentityState::Ok);
                tracing::info!(agent_id = %resp.agent_id, "re-enrolled with the host key; uploads resume");
                Round::Ok
            }
            Err(e) => {
                let state = match e.status() {
                    Some(403) => IdentityState::Revoked,
                    Some(409) => IdentityState::Conflict,
                    _ => IdentityState::Reenrolling,
                };
                self.health.set_identity(state);
                if state != was {
                    match state {
                        IdentityState::Revoked => {
                            tracing::error!(error = %e, "an admin revoked this host: nothing is uploaded; findings stay spooled until an admin releases it")
                        }
                        IdentityState::Conflict => {
                            tracing::error!(error = %e, "the collector binds this host id to another host key (409): nothing is uploaded; an admin must release the host")
                        }
                        _ => {
                            tracing::warn!(error = %e, "re-enrollment failed; retrying with backoff")
                        }
                    }
                }
                Round::Failed
            }
        }
    }

    async fn fetch_bundle(&mut self, etag: &mut Option<String>) {
        let Some(keys) = self.bundle_key.clone() else {
            return;
        };
        match self.client.fetch_bundle(etag.as_deref()).await {
            Ok(BundleFetch::Bundle {
                bytes,
                etag: new_etag,
                version,
            }) => match super::rules::load_bundle(&bytes, &keys, self.in_use.as_ref()) {
                Ok((engine, in_use)) => {
                    if let Err(e) =
                        enroll::write_private(&self.state_dir.join("bundle.json"), &bytes)
                    {
                        tracing::error!(error = %e, "saving the last good bundle");
                    }
                    tracing::info!(%version, "rule bundle verified and loaded");
                    self.mode = match engine.policy().mode {
                        shadowai_rules::Mode::Enforce => AgentMode::Enforce,
                        shadowai_rules::Mode::Monitor => AgentMode::Monitor,
                    };
                    self.bundle_error = None;
                    self.in_use = Some(in_use);
                    let _ = self.version_tx.send(Some(version.clone()));
                    let _ = self.engine_tx.send(Arc::new(engine));
                    self.health.bundle_updates.inc();
                    self.bundle_version = Some(version);
                    *etag = Some(new_etag);
                }
                Err(e) => {
                    tracing::error!(error = %e, %version, "rule bundle refused; keeping the one in use");
                    self.health.bundle_rejected.inc();
                    self.bundle_error = Some(BundleRefused::new(&version, &e.to_string()));
                    *etag = Some(new_etag);
                }
            },
            Ok(BundleFetch::NotModified | BundleFetch::NoBundle) => {}
            Err(e) => tracing::warn!(error = %e, "bundle fetch failed"),
        }
    }
}

/// Builds the collector client from the configuration (CA file read here).
pub fn base_client(c: &super::config::CollectorSection) -> Result<Client, AgentError> {
    let mut b = Client::builder(c.url.clone());
    if let Some(ca) = &c.ca {
        let pem = std::fs::read(ca).map_err(|source| AgentError::Io {
            what: format!("reading collector CA {}", ca.display()),
            source,
        })?;
        b = b.ca_pem(&pem);
    }
    b.build().map_err(|source| AgentError::Client {
        what: "building the collector client",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_definite_refusal_quarantines_a_batch() {
        for s in [400, 403, 404, 409, 413, 415, 422] {
            assert_eq!(Failure::from_status(Some(s)), Failure::Permanent(s), "{s}");
        }
        assert_eq!(Failure::from_status(Some(401)), Failure::Unauthorized);
        for s in [Some(408), Some(429), Some(500), Some(502), Some(503), None] {
            assert_eq!(Failure::from_status(s), Failure::Transient, "{s:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets_on_success() {
        let p = Duration::from_secs(10);
        let mut d = p;
        let mut seen = Vec::new();
        for _ in 0..10 {
            d = next_delay(d, p, false);
            seen.push(d.as_secs());
        }
        assert_eq!(&seen[..5], &[20, 40, 80, 160, 300]);
        assert!(seen.iter().all(|s| *s <= 300), "bounded: {seen:?}");
        assert_eq!(next_delay(d, p, true), p);
        let long = Duration::from_secs(600);
        assert_eq!(
            next_delay(long, long, false),
            long,
            "a period above the ceiling stays"
        );
    }
}
