//! SIEM forwarding for the shadowai collector.
//!
//! Each configured forwarder owns a bounded queue and a delivery task: findings are handed
//! over without blocking ([`Siem::forward`]), cut into batches, rendered as OCSF 1.8 Detection
//! Findings (`shadowai_api::ocsf::finding_to_ocsf`, the same mapping the collector's
//! OCSF export uses) and sent — as a JSON array to a webhook, as RFC 5424 syslog over TCP or TLS, or
//! as Splunk HEC events — with retries, exponential backoff and counters for every outcome
//! ([`ForwarderStats`]). The store stays the durable record: the queue is in memory, so
//! findings queued when the collector stops are not forwarded (see README.md).

pub mod config;
pub mod event;
mod forwarder;
pub mod http;
pub mod syslog;
pub mod time;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

pub use config::{
    DeliveryConfig, Facility, ForwarderConfig, HecConfig, Secret, SiemConfig, SyslogConfig,
    SyslogTransport, TlsConfig, WebhookConfig,
};
pub use event::{Event, RiskedFinding, SiemEvent};
pub use forwarder::{Forwarder, ForwarderStats, SendError};
use shadowai_api::{Alert, Finding};

/// Everything that can go wrong setting up forwarders. Delivery failures are not errors of
/// this type: they are retried and counted in [`ForwarderStats`].
#[derive(Debug, thiserror::Error)]
pub enum SiemError {
    #[error("SIEM config {origin}: {reason}")]
    ConfigParse { origin: String, reason: String },
    #[error("SIEM forwarder {forwarder:?}: {field} {reason}")]
    InvalidConfig {
        forwarder: String,
        field: &'static str,
        reason: String,
    },
    #[error("SIEM forwarder {forwarder:?}: CA file {path}: {reason}")]
    CaFile {
        forwarder: String,
        path: PathBuf,
        reason: String,
    },
    #[error("SIEM forwarder {forwarder:?}: TLS setup: {source}")]
    Tls {
        forwarder: String,
        #[source]
        source: rustls::Error,
    },
    #[error("SIEM forwarder {forwarder:?}: HTTP client setup: {source}")]
    HttpClient {
        forwarder: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("SIEM forwarders must be started inside a tokio runtime")]
    NoRuntime,
}

/// All forwarders of one collector.
#[derive(Default)]
pub struct Siem {
    forwarders: Vec<Forwarder>,
}

impl Siem {
    /// Validates the config and starts every forwarder (inside a tokio runtime).
    pub fn start(config: &SiemConfig) -> Result<Self, SiemError> {
        config.validate()?;
        let forwarders = config
            .forwarders
            .iter()
            .map(Forwarder::start)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Siem { forwarders })
    }

    pub fn is_empty(&self) -> bool {
        self.forwarders.is_empty()
    }

    /// Hands findings to every forwarder; never blocks, never fails (drops are counted).
    pub fn forward(&self, findings: &[Finding]) {
        for forwarder in &self.forwarders {
            for finding in findings {
                forwarder.forward(finding);
            }
        }
    }

    /// Hands first-use alerts to every forwarder (same queue, filters and counters as findings).
    pub fn forward_alerts(&self, alerts: &[Alert]) {
        for forwarder in &self.forwarders {
            for alert in alerts {
                forwarder.forward_event(Event::Alert(Box::new(alert.clone())));
            }
        }
    }

    /// Hands findings with the collector catalogue's risk of their service to every forwarder
    /// (the OCSF objects carry the risk factors).
    pub fn forward_risked(&self, findings: &[event::RiskedFinding]) {
        for forwarder in &self.forwarders {
            for f in findings {
                forwarder.forward_event(Event::Risked(Box::new(f.clone())));
            }
        }
    }

    /// Hands security notices (identity conflicts, suppressed alerts) to every forwarder; the
    /// verdict filter does not apply to them.
    pub fn forward_notices(&self, notices: &[shadowai_api::Notice]) {
        for forwarder in &self.forwarders {
            for n in notices {
                forwarder.forward_event(Event::Notice(Box::new(n.clone())));
            }
        }
    }

    /// Hands the audit chain head to every forwarder.
    pub fn forward_audit_head(&self, head: &shadowai_api::AuditHead) {
        for forwarder in &self.forwarders {
            forwarder.forward_event(Event::AuditHead(Box::new(head.clone())));
        }
    }

    pub fn stats(&self) -> Vec<ForwarderStats> {
        self.forwarders.iter().map(Forwarder::stats).collect()
    }

    /// Stops intake and gives each forwarder up to `grace` to drain.
    pub async fn shutdown(self, grace: Duration) -> Vec<ForwarderStats> {
        let mut out = Vec::new();
        for forwarder in self.forwarders {
            out.push(forwarder.shutdown(grace).await);
        }
        out
    }
}
