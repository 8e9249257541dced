//! Delivery of alerts (issue 15) and security notices (issue 13) to a webhook, durably.
//!
//! The store raises a first-use alert in the ingest transaction the first time a service is
//! used with an unsanctioned or blocked verdict in the fleet, on a host or by a user — at most
//! once per (service, fleet | host | user) — within each host's budget (`per_batch`,
//! `per_host_per_hour`; the hour's first suppression raises one `alerts_suppressed` notice).
//! A refused claim of a bound host id raises a `host_identity_conflict` notice (one per host
//! per hour). Each is written to the store's outbox in the same transaction that raises it.
//!
//! One task delivers the outbox: it claims the oldest due row (a short lease, so replicas never
//! send one row at the same time), POSTs it (JSON with the drill-down link and an
//! `Idempotency-Key`) and settles it — delivered, failed (a permanent refusal or
//! `max_attempts` spent) or due again after a capped exponential back-off. Rows survive a
//! restart and are retried after it; a webhook that is down holds them, never the ingest path.
//! Every outcome is a counter in `/metrics` (`shadowai_collector_alerts_{raised,sent,failed,
//! dropped,suppressed}_total`, `…_alert_send_failures_total`, `…_notices_raised_total`) and the
//! outbox with its states is `GET /api/v1/alerts/outbox` (`shadowai alerts --outbox`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use shadowai_api::{Alert, Notice, NoticeKind, OutboxItem};
use tokio::sync::Notify;

use crate::store::{DueItem, Settle, Store, StoreError};

/// `[alerts]` of the collector config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Base URL of the web UI, for the drill-down link of each alert
    /// (e.g. `https://collector.example:8443/ui`). Default: the collector's own listen address.
    #[serde(default)]
    pub ui_url: Option<String>,
    #[serde(default)]
    pub webhook: Option<AlertWebhookConfig>,
    /// Alerts one ingest batch may raise (the rest are recorded, counted, not raised).
    #[serde(default = "default_per_batch")]
    pub per_batch: u64,
    /// Alerts one host may raise per clock hour: a host holding an agent token cannot flood
    /// the SOC; its first suppression of the hour raises one `alerts_suppressed` notice.
    #[serde(default = "default_per_host_hour")]
    pub per_host_per_hour: u64,
    /// Most undelivered alerts kept in the outbox (the oldest are dropped beyond it, counted
    /// and logged); also how many delivered / failed ones are kept for the listing.
    #[serde(default = "default_outbox_cap")]
    pub outbox_cap: u64,
    /// Seconds between audit chain heads sent to the SIEM forwarders when nothing changed
    /// (a change is sent within `audit_head_poll_ms`).
    #[serde(default = "default_head_every")]
    pub audit_head_every_s: u64,
    /// How often the audit chain head is read to send a changed one.
    #[serde(default = "default_head_poll")]
    pub audit_head_poll_ms: u64,
}

fn default_per_batch() -> u64 {
    20
}
fn default_per_host_hour() -> u64 {
    60
}
fn default_outbox_cap() -> u64 {
    10_000
}
fn default_head_every() -> u64 {
    300
}
fn default_head_poll() -> u64 {
    2_000
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
    /// Unused since the outbox replaced the in-memory queue (`outbox_cap` bounds it); still
    /// accepted and checked so existing configs load.
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

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            ui_url: None,
            webhook: None,
            per_batch: default_per_batch(),
            per_host_per_hour: default_per_host_hour(),
            outbox_cap: default_outbox_cap(),
            audit_head_every_s: default_head_every(),
            audit_head_poll_ms: default_head_poll(),
        }
    }
}

fn default_queue() -> usize {
    1_000
}
fn default_attempts() -> u32 {
    20
}
fn default_backoff() -> u64 {
    500
}
fn default_max_backoff() -> u64 {
    300_000
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
    #[error("[alerts] {field}: must be in {range}, got {got}")]
    Range {
        field: &'static str,
        range: &'static str,
        got: u64,
    },
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
        for (field, got, lo, hi, range) in [
            ("per_batch", self.per_batch, 1, 10_000, "1..=10000"),
            (
                "per_host_per_hour",
                self.per_host_per_hour,
                1,
                100_000,
                "1..=100000",
            ),
            (
                "outbox_cap",
                self.outbox_cap,
                10,
                10_000_000,
                "10..=10000000",
            ),
            (
                "audit_head_every_s",
                self.audit_head_every_s,
                10,
                86_400,
                "10..=86400",
            ),
            (
                "audit_head_poll_ms",
                self.audit_head_poll_ms,
                100,
                600_000,
                "100..=600000",
            ),
        ] {
            if !(lo..=hi).contains(&got) {
                return Err(AlertConfigError::Range { field, range, got });
            }
        }
        Ok(())
    }

    /// What the store needs to raise alerts.
    pub fn policy(&self) -> crate::store::AlertPolicy {
        crate::store::AlertPolicy {
            per_batch: self.per_batch,
            per_host_per_hour: self.per_host_per_hour,
            webhook: self.webhook.is_some(),
            outbox_cap: self.outbox_cap,
        }
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
                if !shadowai_api::client::is_loopback(&url) {
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
                (1..=1000).contains(&self.max_attempts),
                "1..=1000",
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

/// What is POSTed for each outbox item.
#[derive(Serialize)]
struct Payload<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'a Alert>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<&'a Notice>,
    /// The drill-down, absolute.
    url: String,
    summary: String,
}

/// A running webhook delivery: one task over the store's outbox.
pub struct AlertWebhook {
    wake: Arc<Notify>,
}

impl AlertWebhook {
    /// Validates the config, builds the client and spawns the delivery task (needs a runtime).
    pub fn start(
        cfg: &AlertWebhookConfig,
        ui_url: String,
        counters: AlertCounters,
        store: Arc<dyn Store>,
        keep: u64,
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
        let wake = Arc::new(Notify::new());
        let task = Delivery {
            client,
            url,
            ui_url,
            max_attempts: cfg.max_attempts,
            initial_backoff_ms: cfg.initial_backoff_ms,
            max_backoff_ms: cfg.max_backoff_ms,
            lease_ms: i64::try_from(cfg.timeout_ms).unwrap_or(600_000) + 5_000,
            counters,
            store,
            keep,
            wake: wake.clone(),
        };
        tokio::spawn(task.run());
        Ok(AlertWebhook { wake })
    }

    /// Tells the delivery task that new rows are in the outbox (never waits).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Counts, logs and hands on what an ingest raised: alerts and notices to the SIEM forwarders,
/// a wake-up to the webhook task (the rows are in the outbox already).
pub fn raised(
    st: &crate::server::SharedState,
    host_id: &str,
    batch_id: &str,
    r: crate::store::Raised,
) {
    if r.suppressed > 0 {
        st.metrics.alerts_suppressed.inc_by(r.suppressed);
        tracing::warn!(host = %host_id, batch = %batch_id, raised = r.alerts.len(),
            suppressed = r.suppressed,
            "first-use alerts over the host's cap: the rest are recorded, not raised");
    }
    notices_raised(st, &r.notices, r.outbox_dropped);
    if !r.alerts.is_empty() {
        st.metrics.alerts_raised.inc_by(r.alerts.len() as u64);
        if let Some(sink) = &st.sink {
            sink.forward_alerts(&r.alerts);
        }
    }
    if let Some(w) = &st.alert_webhook
        && (!r.alerts.is_empty() || !r.notices.is_empty())
    {
        w.wake();
    }
}

/// Counts and forwards notices; counts and logs outbox rows dropped over the cap.
pub fn notices_raised(st: &crate::server::SharedState, notices: &[Notice], outbox_dropped: u64) {
    if outbox_dropped > 0 {
        st.metrics.alerts_dropped.inc_by(outbox_dropped);
        tracing::warn!(
            dropped = outbox_dropped,
            cap = st.alert_policy.outbox_cap,
            "alert outbox over its cap: the oldest undelivered alerts were dropped (is the webhook down?)"
        );
    }
    if notices.is_empty() {
        return;
    }
    st.metrics.notices_raised.inc_by(notices.len() as u64);
    for n in notices {
        tracing::warn!(kind = n.kind.as_str(), host = %n.host_id, count = n.count, "{}", n.summary);
    }
    if let Some(sink) = &st.sink {
        sink.forward_notices(notices);
    }
    if let Some(w) = &st.alert_webhook {
        w.wake();
    }
}

/// Raises the host-identity-conflict notice of a refused claim (one per host per hour) off the
/// request: the refusal is answered at once, the notice follows.
pub fn host_conflict(st: &crate::server::SharedState, seen: crate::store::ConflictSeen) {
    let st = st.clone();
    tokio::spawn(async move {
        let policy = st.alert_policy.clone();
        let host = seen.host_id.clone();
        match st
            .db(move |s| s.host_conflict_notice(&seen, &policy, now_ms()))
            .await
        {
            Ok((notice, dropped)) => notices_raised(&st, notice.as_slice(), dropped),
            Err(e) => tracing::error!(host = %host, error = %e,
                "host identity conflict: the notice could not be stored (the refusal stands, the conflict is counted and audited)"),
        }
    });
}

/// Longest sleep between looks at the outbox (rows of another replica, missed wakes).
const IDLE_MS: i64 = 30_000;
/// Settled rows are pruned this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

struct Delivery {
    client: reqwest::Client,
    url: reqwest::Url,
    ui_url: String,
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    lease_ms: i64,
    counters: AlertCounters,
    store: Arc<dyn Store>,
    keep: u64,
    wake: Arc<Notify>,
}

/// The back-off before attempt `attempts + 1`: initial × 2^(attempts−1), capped.
pub fn backoff_ms(attempts: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let shift = attempts.saturating_sub(1).min(40);
    initial_ms.saturating_mul(1u64 << shift).min(max_ms)
}

impl Delivery {
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let s = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&*s)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("store task failed: {e}")),
        }
    }

    async fn run(self) {
        let mut last_prune = tokio::time::Instant::now();
        let mut store_failing = false;
        loop {
            let wait_ms = match self.round().await {
                Ok(wait) => {
                    store_failing = false;
                    wait
                }
                Err(e) => {
                    // Logged once per outage, retried every few seconds.
                    if !store_failing {
                        tracing::error!(error = %e, "alert outbox: store error; alerts wait in the outbox");
                    }
                    store_failing = true;
                    5_000
                }
            };
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                let keep = self.keep;
                match self.db(move |s| s.outbox_housekeep(keep, now_ms())).await {
                    Ok(n) if n > 0 => {
                        tracing::debug!(pruned = n, "alert outbox: settled rows pruned")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "alert outbox: pruning failed"),
                }
            }
            let sleep =
                Duration::from_millis(u64::try_from(wait_ms.clamp(0, IDLE_MS)).unwrap_or(0));
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Delivers due rows one by one until none is due or the webhook fails; returns how long
    /// to wait for the next due row.
    async fn round(&self) -> Result<i64, String> {
        loop {
            let (lease, now) = (self.lease_ms, now_ms());
            let due = self.db(move |s| s.outbox_due(now, 1, lease)).await?;
            let Some(row) = due.into_iter().next() else {
                let next = self.db(|s| s.outbox_next_due()).await?;
                return Ok(next.map_or(IDLE_MS, |t| t.saturating_sub(now_ms())));
            };
            let outcome = self.deliver(&row).await;
            let retry_at = match &outcome {
                Settle::Retry { next_ms, .. } => Some(*next_ms),
                _ => None,
            };
            let (id, attempts) = (row.id, row.attempts.saturating_add(1));
            self.db(move |s| s.outbox_settle(id, attempts, &outcome, now_ms()))
                .await?;
            if let Some(t) = retry_at {
                // The webhook is failing: the rest of the queue waits with this row (one probe
                // per back-off step, not one attempt per row), unless woken by a new alert.
                return Ok(t.saturating_sub(now_ms()));
            }
        }
    }

    async fn deliver(&self, row: &DueItem) -> Settle {
        let base = self.ui_url.trim_end_matches('/');
        let (payload, key) = match &row.item {
            OutboxItem::Alert(a) => (
                Payload {
                    kind: "shadowai.first_use_alert",
                    alert: Some(a),
                    notice: None,
                    url: format!("{base}/{}", a.link),
                    summary: summary(a),
                },
                format!("shadowai-alert-{}", a.id),
            ),
            OutboxItem::Notice(n) => (
                Payload {
                    kind: match n.kind {
                        NoticeKind::HostIdentityConflict => "shadowai.host_identity_conflict",
                        NoticeKind::AlertsSuppressed => "shadowai.alerts_suppressed",
                    },
                    alert: None,
                    notice: Some(n),
                    url: format!("{base}/{}", n.link),
                    summary: n.summary.clone(),
                },
                format!("shadowai-outbox-{}", row.id),
            ),
        };
        let res = self
            .client
            .post(self.url.clone())
            .header("Idempotency-Key", key)
            .json(&payload)
            .send()
            .await;
        let (retryable, message) = match res {
            Ok(r) if r.status().is_success() => {
                self.counters.sent.inc();
                if row.attempts > 0 {
                    tracing::info!(
                        outbox = row.id,
                        attempt = row.attempts + 1,
                        "alert delivered after retries"
                    );
                }
                return Settle::Delivered;
            }
            Ok(r) => {
                let s = r.status();
                let retry = s.as_u16() == 408 || s.as_u16() == 429 || s.is_server_error();
                (retry, format!("HTTP {s}"))
            }
            Err(e) => (true, error_chain(&e)),
        };
        self.counters.send_failures.inc();
        let attempts = row.attempts.saturating_add(1);
        if !retryable || attempts >= self.max_attempts {
            self.counters.failed.inc();
            tracing::warn!(outbox = row.id, attempts, error = %message, url = %self.url,
                "alert webhook delivery given up (the row stays in GET /api/v1/alerts/outbox as failed)");
            return Settle::Failed { error: message };
        }
        let wait = backoff_ms(attempts, self.initial_backoff_ms, self.max_backoff_ms);
        tracing::debug!(outbox = row.id, attempts, error = %message, wait_ms = wait, "alert webhook failed; retrying");
        Settle::Retry {
            next_ms: now_ms().saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
            error: message,
        }
    }
}

fn now_ms() -> i64 {
    crate::server::now_ms()
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

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1, 500, 300_000), 500);
        assert_eq!(backoff_ms(2, 500, 300_000), 1_000);
        assert_eq!(backoff_ms(5, 500, 300_000), 8_000);
        assert_eq!(backoff_ms(30, 500, 300_000), 300_000);
        assert_eq!(backoff_ms(u32::MAX, u64::MAX, 300_000), 300_000);
    }
}
