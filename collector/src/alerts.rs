//! Delivery of first-use alerts (issue 15) to a webhook.
//!
//! The store raises an alert in the ingest transaction the first time a service is used with an
//! unsanctioned or blocked verdict in the fleet, on a host or by a user — at most once per
//! (service, fleet | host | user), so alerts are de-duplicated across batches, retries and
//! replicas. The ingest path hands new alerts to [`AlertWebhook::send`], which never waits: a
//! bounded queue feeds one task that POSTs each alert (JSON, with the drill-down link) with
//! bounded retries and exponential backoff. Every outcome is a counter in `/metrics`
//! (`shadowai_collector_alerts_{raised,sent,failed,dropped}_total`,
//! `…_alert_send_failures_total`); the alert itself stays in the store (`GET /api/v1/alerts`)
//! whatever happens to the delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use shadowai_api::Alert;
use tokio::sync::mpsc;

/// `[alerts]` of the collector config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Base URL of the web UI, for the drill-down link of each alert
    /// (e.g. `https://collector.example:8443/ui`). Default: the collector's own listen address.
    #[serde(default)]
    pub ui_url: Option<String>,
    #[serde(default)]
    pub webhook: Option<AlertWebhookConfig>,
}

/// Where alerts are POSTed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWebhookConfig {
    /// `https://…`, or `http://` to a loopback address only.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub tls: shadowai_siem::TlsConfig,
}

fn default_queue() -> usize {
    1_000
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> u64 {
    500
}
fn default_max_backoff() -> u64 {
    30_000
}
fn default_timeout() -> u64 {
    10_000
}

#[derive(Debug, thiserror::Error)]
pub enum AlertConfigError {
    #[error("[alerts.webhook] url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("[alerts.webhook] {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("[alerts.webhook] tls: {source}")]
    Tls {
        #[source]
        source: shadowai_siem::SiemError,
    },
    #[error("[alerts.webhook] HTTP client: {source}")]
    Client {
        #[source]
        source: reqwest::Error,
    },
    #[error("[alerts] ui_url {url:?}: must start with https:// or http://")]
    UiUrl { url: String },
}

impl AlertsConfig {
    /// Checks what can be checked without contacting anything.
    pub fn validate(&self) -> Result<(), AlertConfigError> {
        if let Some(u) = &self.ui_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(AlertConfigError::UiUrl { url: u.clone() });
        }
        if let Some(w) = &self.webhook {
            w.validate()?;
        }
        Ok(())
    }
}

impl AlertWebhookConfig {
    fn validate(&self) -> Result<reqwest::Url, AlertConfigError> {
        let bad = |reason: &str| AlertConfigError::Url {
            url: self.url.clone(),
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("user info in the URL is refused (use headers)"));
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = url.host_str().is_some_and(|h| {
                    h == "localhost"
                        || h.trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|a| a.is_loopback())
                });
                if !loopback {
                    return Err(bad("plain http is allowed to a loopback address only"));
                }
            }
            other => return Err(bad(&format!("scheme {other:?} is not http(s)"))),
        }
        let checks: [(&'static str, bool, &str); 5] = [
            (
                "queue_capacity",
                (1..=100_000).contains(&self.queue_capacity),
                "1..=100000",
            ),
            (
                "max_attempts",
                (1..=20).contains(&self.max_attempts),
                "1..=20",
            ),
            (
                "initial_backoff_ms",
                (1..=600_000).contains(&self.initial_backoff_ms),
                "1..=600000",
            ),
            (
                "max_backoff_ms",
                (self.initial_backoff_ms..=3_600_000).contains(&self.max_backoff_ms),
                "initial_backoff_ms..=3600000",
            ),
            (
                "timeout_ms",
                (100..=600_000).contains(&self.timeout_ms),
                "100..=600000",
            ),
        ];
        for (field, ok, range) in checks {
            if !ok {
                return Err(AlertConfigError::Invalid {
                    field,
                    reason: format!("must be in {range}"),
                });
            }
        }
        Ok(url)
    }

    fn headers(&self) -> Result<HeaderMap, AlertConfigError> {
        let mut out = HeaderMap::new();
        for (k, v) in &self.headers {
            let invalid = || AlertConfigError::Invalid {
                field: "headers",
                reason: format!("{k:?} is not a valid HTTP header name and value"),
            };
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(v).map_err(|_| invalid())?;
            value.set_sensitive(true);
            out.insert(name, value);
        }
        Ok(out)
    }
}

/// Counters of alert delivery (registered in the collector's `/metrics`).
#[derive(Clone, Default)]
pub struct AlertCounters {
    pub sent: Counter,
    pub send_failures: Counter,
    pub failed: Counter,
    pub dropped: Counter,
}

/// What is POSTed for each alert.
#[derive(Serialize)]
struct Payload<'a> {
    kind: &'static str,
    alert: &'a Alert,
    /// The drill-down, absolute.
    url: String,
    summary: String,
}

/// A running webhook delivery: a bounded queue and one task.
pub struct AlertWebhook {
    tx: mpsc::Sender<Alert>,
    counters: AlertCounters,
}

impl AlertWebhook {
    /// Validates the config, builds the client and spawns the delivery task (needs a runtime).
    pub fn start(
        cfg: &AlertWebhookConfig,
        ui_url: String,
        counters: AlertCounters,
    ) -> Result<Self, AlertConfigError> {
        let url = cfg.validate()?;
        let tls = shadowai_siem::tls::client_config(&cfg.tls, "alerts.webhook")
            .map_err(|source| AlertConfigError::Tls { source })?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .user_agent(concat!("shadowai-collector/", env!("CARGO_PKG_VERSION")))
            .default_headers(cfg.headers()?)
            .build()
            .map_err(|source| AlertConfigError::Client { source })?;
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let task = Delivery {
            client,
            url,
            ui_url,
            max_attempts: cfg.max_attempts,
            initial_backoff: Duration::from_millis(cfg.initial_backoff_ms),
            max_backoff: Duration::from_millis(cfg.max_backoff_ms),
            counters: counters.clone(),
        };
        tokio::spawn(task.run(rx));
        Ok(AlertWebhook { tx, counters })
    }

    /// Queues alerts without waiting; a full queue drops (counted, logged once per call).
    pub fn send(&self, alerts: &[Alert]) {
        let mut dropped = 0u64;
        for a in alerts {
            if self.tx.try_send(a.clone()).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.counters.dropped.inc_by(dropped);
            tracing::warn!(
                dropped,
                "alert webhook queue full: alerts not delivered (they stay in GET /api/v1/alerts)"
            );
        }
    }
}

struct Delivery {
    client: reqwest::Client,
    url: reqwest::Url,
    ui_url: String,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    counters: AlertCounters,
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Alert>) {
        while let Some(alert) = rx.recv().await {
            self.deliver(&alert).await;
        }
    }

    async fn deliver(&self, alert: &Alert) {
        let payload = Payload {
            kind: "shadowai.first_use_alert",
            alert,
            url: format!("{}/{}", self.ui_url.trim_end_matches('/'), alert.link),
            summary: summary(alert),
        };
        let mut backoff = self.initial_backoff;
        for attempt in 1..=self.max_attempts {
            let res = self
                .client
                .post(self.url.clone())
                .header("Idempotency-Key", format!("shadowai-alert-{}", alert.id))
                .json(&payload)
                .send()
                .await;
            let (retryable, message) = match res {
                Ok(r) if r.status().is_success() => {
                    self.counters.sent.inc();
                    return;
                }
                Ok(r) => {
                    let s = r.status();
                    let retry = s.as_u16() == 408 || s.as_u16() == 429 || s.is_server_error();
                    (retry, format!("HTTP {s}"))
                }
                Err(e) => (true, error_chain(&e)),
            };
            self.counters.send_failures.inc();
            if !retryable || attempt == self.max_attempts {
                self.counters.failed.inc();
                tracing::warn!(alert = alert.id, attempt, error = %message, url = %self.url,
                    "alert webhook delivery given up (the alert stays in GET /api/v1/alerts)");
                return;
            }
            tracing::debug!(alert = alert.id, attempt, error = %message, "alert webhook failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// One line a person reads in a chat channel.
pub fn summary(a: &Alert) -> String {
    let why: Vec<&str> = a
        .reasons
        .iter()
        .map(|r| match r {
            shadowai_api::AlertReason::NewInFleet => "first use in the fleet",
            shadowai_api::AlertReason::NewHost => "first use on this host",
            shadowai_api::AlertReason::NewUser => "first use by this user",
        })
        .collect();
    format!(
        "{} {} ({}): {} by {} on {} ({})",
        a.verdict.as_str(),
        a.service_name,
        a.service_id,
        why.join(", "),
        a.user,
        a.hostname,
        a.exe
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
