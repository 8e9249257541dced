//! Forwarder configuration: serde types with `deny_unknown_fields`, defaults in one place
//! ([`DeliveryConfig::default`]) and [`SiemConfig::validate`] to check everything that serde
//! cannot (URLs, addresses, names, limits) before anything starts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shadowai_api::Verdict;

use crate::SiemError;

/// Every SIEM forwarder of one collector (`[[forwarder]]` tables in TOML).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    #[serde(default, rename = "forwarder")]
    pub forwarders: Vec<ForwarderConfig>,
}

/// One forwarder; `kind` selects the transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForwarderConfig {
    /// OCSF JSON array POSTed to an HTTP(S) endpoint.
    Webhook(WebhookConfig),
    /// RFC 5424 syslog, octet-counting framing (RFC 6587 / RFC 5425), over TCP or TLS.
    Syslog(SyslogConfig),
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec(HecConfig),
}

/// A value that must never appear in logs or `Debug` output (tokens, auth headers).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name, used in stats and logs.
    pub name: String,
    /// `http://` or `https://` URL the batch is POSTed to.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`); values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Only findings with these verdicts are forwarded; empty means all.
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    #[default]
    Tcp,
    Tls,
}

/// Syslog facilities (RFC 5424 §6.2.1) that make sense for a security product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facility {
    Auth,
    Authpriv,
    Daemon,
    Security,
    #[default]
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The numeric facility code.
    pub fn code(self) -> u8 {
        match self {
            Facility::Auth => 4,
            Facility::Daemon => 3,
            Facility::Security => 13,
            Facility::Authpriv => 10,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    pub name: String,
    /// `host:port` of the receiver (`[::1]:6514` for IPv6).
    pub address: String,
    #[serde(default)]
    pub transport: SyslogTransport,
    /// TLS server name to verify; defaults to the host part of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub facility: Facility,
    /// RFC 5424 APP-NAME (1–48 printable ASCII characters).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// SD-ID of the structured-data element (`name@enterprise-number`). The default uses
    /// 32473, the enterprise number RFC 5612 reserves for documentation: set your own.
    #[serde(default = "default_sd_id")]
    pub sd_id: String,
    /// Prefix MSG with the UTF-8 BOM, as RFC 5424 §6.4 asks for UTF-8 messages.
    #[serde(default = "default_true")]
    pub utf8_bom: bool,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    pub name: String,
    /// Base URL of the HEC endpoint (`https://splunk.example:8088`); the path
    /// `/services/collector/event` is appended.
    pub url: String,
    /// HEC token, sent as `Authorization: Splunk <token>`.
    pub token: Secret,
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default = "default_app_name")]
    pub source: String,
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
}

/// Which certificate authorities a TLS connection trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with extra CA certificates (a private SIEM CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Also trust the Mozilla root set (webpki-roots). Turn off to pin to `ca_file`.
    #[serde(default = "default_true")]
    pub public_roots: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            public_roots: true,
        }
    }
}

/// Batching, queueing and retry policy of one forwarder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most findings in one batch (one HTTP request, one write).
    pub batch_max_events: usize,
    /// Longest a finding waits for its batch to fill, milliseconds.
    pub batch_max_wait_ms: u64,
    /// Findings held in memory per forwarder; beyond that new findings are dropped and counted.
    pub queue_capacity: usize,
    /// Tries per batch (first send included) before the batch is given up and counted.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Connect + request timeout per attempt.
    pub timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            batch_max_events: 100,
            batch_max_wait_ms: 1_000,
            queue_capacity: 10_000,
            max_attempts: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            timeout_ms: 10_000,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_app_name() -> String {
    "shadowai".to_owned()
}
fn default_sd_id() -> String {
    "shadowai@32473".to_owned()
}
fn default_sourcetype() -> String {
    "ocsf:detection_finding".to_owned()
}

impl SiemConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SiemError> {
        let config: SiemConfig = toml_parse(text).map_err(|reason| SiemError::ConfigParse {
            origin: origin.to_owned(),
            reason,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: unique names, URL schemes, addresses, RFC 5424 limits.
    pub fn validate(&self) -> Result<(), SiemError> {
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.forwarders {
            let name = f.name();
            if name.is_empty() || name.len() > 64 {
                return Err(invalid(name, "name", "must be 1 to 64 characters"));
            }
            if !seen.insert(name) {
                return Err(invalid(name, "name", "is used by two forwarders"));
            }
            f.delivery().validate(name)?;
            match f {
                ForwarderConfig::Webhook(w) => {
                    check_http_url(name, "url", &w.url)?;
                    for (header, value) in &w.headers {
                        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                            return Err(invalid(
                                name,
                                "headers",
                                "a header name is not a valid HTTP token",
                            ));
                        }
                        if reqwest::header::HeaderValue::from_str(&value.0).is_err() {
                            return Err(invalid(
                                name,
                                "headers",
                                "a header value has control characters",
                            ));
                        }
                    }
                }
                ForwarderConfig::SplunkHec(h) => {
                    check_http_url(name, "url", &h.url)?;
                    if h.token.0.is_empty() || h.token.0.chars().any(|c| c.is_control()) {
                        return Err(invalid(
                            name,
                            "token",
                            "must be non-empty without control characters",
                        ));
                    }
                }
                ForwarderConfig::Syslog(s) => {
                    crate::syslog::split_host_port(&s.address)
                        .map_err(|reason| invalid(name, "address", reason))?;
                    if !is_print_ascii(&s.app_name, 48) {
                        return Err(invalid(
                            name,
                            "app_name",
                            "must be 1 to 48 printable ASCII characters",
                        ));
                    }
                    if !is_sd_name(&s.sd_id) {
                        return Err(invalid(
                            name,
                            "sd_id",
                            "must be 1 to 32 printable ASCII characters without '=', ' ', ']' or '\"'",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ForwarderConfig {
    pub fn name(&self) -> &str {
        match self {
            ForwarderConfig::Webhook(c) => &c.name,
            ForwarderConfig::Syslog(c) => &c.name,
            ForwarderConfig::SplunkHec(c) => &c.name,
        }
    }

    /// `webhook`, `syslog` or `splunk_hec`.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwarderConfig::Webhook(_) => "webhook",
            ForwarderConfig::Syslog(_) => "syslog",
            ForwarderConfig::SplunkHec(_) => "splunk_hec",
        }
    }

    pub fn delivery(&self) -> &DeliveryConfig {
        match self {
            ForwarderConfig::Webhook(c) => &c.delivery,
            ForwarderConfig::Syslog(c) => &c.delivery,
            ForwarderConfig::SplunkHec(c) => &c.delivery,
        }
    }

    pub fn verdicts(&self) -> &[Verdict] {
        match self {
            ForwarderConfig::Webhook(c) => &c.verdicts,
            ForwarderConfig::Syslog(c) => &c.verdicts,
            ForwarderConfig::SplunkHec(c) => &c.verdicts,
        }
    }
}

impl DeliveryConfig {
    fn validate(&self, name: &str) -> Result<(), SiemError> {
        if self.batch_max_events == 0 || self.batch_max_events > 10_000 {
            return Err(invalid(
                name,
                "delivery.batch_max_events",
                "must be 1 to 10000",
            ));
        }
        if self.queue_capacity < self.batch_max_events || self.queue_capacity > 10_000_000 {
            return Err(invalid(
                name,
                "delivery.queue_capacity",
                "must be at least batch_max_events and at most 10000000",
            ));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(invalid(name, "delivery.max_attempts", "must be 1 to 100"));
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(invalid(
                name,
                "delivery.initial_backoff_ms",
                "must not exceed max_backoff_ms",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid(name, "delivery.timeout_ms", "must be positive"));
        }
        Ok(())
    }
}

fn invalid(forwarder: &str, field: &'static str, reason: &str) -> SiemError {
    SiemError::InvalidConfig {
        forwarder: forwarder.to_owned(),
        field,
        reason: reason.to_owned(),
    }
}

fn check_http_url(name: &str, field: &'static str, url: &str) -> Result<(), SiemError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(name, field, &format!("not a URL: {e}")))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(invalid(name, field, "scheme must be http or https"));
    }
    if parsed.host_str().is_none() {
        return Err(invalid(name, field, "has no host"));
    }
    Ok(())
}

fn is_print_ascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

pub(crate) fn is_sd_name(s: &str) -> bool {
    is_print_ascii(s, 32) && !s.bytes().any(|b| matches!(b, b'=' | b']' | b'"'))
}

fn toml_parse(text: &str) -> Result<SiemConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}
