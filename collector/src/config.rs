//! Collector configuration (TOML, unknown keys refused). Defaults live here and only here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("config {path}: `{key}`: {reason}")]
    Invalid {
        path: String,
        key: &'static str,
        reason: String,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database, generated TLS material.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub tls: Tls,
    /// Serve plain HTTP (only allowed on a loopback address; development and tests).
    #[serde(default)]
    pub insecure_http: bool,
    /// Fixed enrollment secret; generated and printed on first start when absent.
    #[serde(default)]
    pub enrollment_secret: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Path of the rules bundle public key file (one or more lines of 64 hex digits: several
    /// keys let publishers rotate with overlap); when set, uploaded bundles must carry a
    /// valid signature by the key they name.
    #[serde(default)]
    pub bundle_public_key: Option<PathBuf>,
    /// SIEM forwarders (`[[siem.forwarder]]` tables, see collector/siem/README.md).
    #[serde(default)]
    pub siem: shadowai_siem::SiemConfig,
    /// The AI-service catalogue directory the collector checks proposals and bundles
    /// against (the two-person rule is computed over it). A bundle must carry exactly this
    /// catalogue.
    #[serde(default = "default_catalogue")]
    pub catalogue: PathBuf,
    /// A rollout in progress is rolled back on its own when a canary agent that heartbeated
    /// during it has been silent this many seconds (0: never), and always when an agent
    /// reports refusing its bundle.
    #[serde(default = "default_rollout_halt")]
    pub rollout_halt_silent_secs: u64,
    /// First-use alerts: the web UI's URL for links, and the webhook they are POSTed to.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
}

fn default_rollout_halt() -> u64 {
    600
}

/// Where the packages install the catalogue.
pub const DEFAULT_CATALOGUE: &str = "/usr/share/shadowai/catalogue";

fn default_catalogue() -> PathBuf {
    PathBuf::from(DEFAULT_CATALOGUE)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum Database {
    /// `DATA/collector.db`.
    #[default]
    Sqlite,
    Postgres {
        /// `host=… port=… user=… dbname=…` or a `postgresql://` URL.
        url: String,
        #[serde(default = "default_pool")]
        pool: usize,
        /// PEM CA of the database server's certificate: connect over TLS and verify it.
        #[serde(default)]
        ca: Option<PathBuf>,
    },
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain and key; generated into DATA/tls/ when absent.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Extra DNS names / IPs for the generated certificate.
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body as sent.
    #[serde(default = "default_body")]
    pub body_bytes: usize,
    /// Largest ingest body once gzip-inflated.
    #[serde(default = "default_inflated")]
    pub inflated_bytes: usize,
    #[serde(default = "default_findings")]
    pub findings_per_batch: usize,
    /// Token bucket per token / client IP.
    #[serde(default = "default_rate")]
    pub rate_per_sec: f64,
    #[serde(default = "default_burst")]
    pub rate_burst: f64,
    /// Token bucket per client IP over all its requests, whatever token they carry (stops
    /// a client that rotates garbage tokens). Keep it well above what the agents behind one
    /// NAT address send together.
    #[serde(default = "default_ip_rate")]
    pub ip_rate_per_sec: f64,
    #[serde(default = "default_ip_burst")]
    pub ip_rate_burst: f64,
    /// Largest enroll / reenroll body (they are a few hundred bytes).
    #[serde(default = "default_enroll_body")]
    pub enroll_body_bytes: usize,
    /// Enroll and reenroll calls per client IP (token bucket), and per host id for reenroll.
    #[serde(default = "default_enroll_rate")]
    pub enroll_rate_per_sec: f64,
    #[serde(default = "default_enroll_burst")]
    pub enroll_rate_burst: f64,
    /// Most hosts bound at once; new hosts are refused beyond it (enrollment spam cannot
    /// grow the agents table without bound). Release or revoke hosts to make room.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: u64,
    /// Open connections in all (capped further by the descriptor limit, which start-up
    /// raises towards its hard limit) and per client IP.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_connections_per_ip")]
    pub connections_per_ip: u32,
    /// Seconds to receive a request's headers — on a new connection (TLS handshake included)
    /// or an idle keep-alive one — before it is closed; also how long a response may stay
    /// unread (no write progress) before the connection is cut.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_s: u64,
    /// A request body must arrive at this average rate once `body_grace_s` have passed (408).
    #[serde(default = "default_body_rate")]
    pub body_min_bytes_per_sec: u64,
    #[serde(default = "default_body_grace")]
    pub body_grace_s: u64,
    /// Ingest bodies inflated and parsed at once, off the async workers.
    #[serde(default = "default_parse_concurrency")]
    pub parse_concurrency: usize,
    /// Report queries and export pages running at once; the rest is ingest's.
    #[serde(default = "default_heavy_readers")]
    pub heavy_readers: usize,
    /// Exports a person may start per minute (burst up to 10).
    #[serde(default = "default_exports_per_min")]
    pub exports_per_min: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: default_body(),
            inflated_bytes: default_inflated(),
            findings_per_batch: default_findings(),
            rate_per_sec: default_rate(),
            rate_burst: default_burst(),
            ip_rate_per_sec: default_ip_rate(),
            ip_rate_burst: default_ip_burst(),
            enroll_body_bytes: default_enroll_body(),
            enroll_rate_per_sec: default_enroll_rate(),
            enroll_rate_burst: default_enroll_burst(),
            max_hosts: default_max_hosts(),
            max_connections: default_max_connections(),
            connections_per_ip: default_connections_per_ip(),
            header_timeout_s: default_header_timeout(),
            body_min_bytes_per_sec: default_body_rate(),
            body_grace_s: default_body_grace(),
            parse_concurrency: default_parse_concurrency(),
            heavy_readers: default_heavy_readers(),
            exports_per_min: default_exports_per_min(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_pool() -> usize {
    4
}
fn default_body() -> usize {
    8 << 20
}
fn default_inflated() -> usize {
    32 << 20
}
fn default_findings() -> usize {
    10_000
}
fn default_rate() -> f64 {
    50.0
}
fn default_burst() -> f64 {
    200.0
}
fn default_ip_rate() -> f64 {
    500.0
}
fn default_ip_burst() -> f64 {
    2000.0
}
fn default_enroll_body() -> usize {
    16 << 10
}
fn default_enroll_rate() -> f64 {
    2.0
}
fn default_enroll_burst() -> f64 {
    50.0
}
fn default_max_hosts() -> u64 {
    100_000
}
fn default_max_connections() -> usize {
    4096
}
fn default_connections_per_ip() -> u32 {
    128
}
fn default_header_timeout() -> u64 {
    10
}
fn default_body_rate() -> u64 {
    4096
}
fn default_body_grace() -> u64 {
    10
}
fn default_parse_concurrency() -> usize {
    2
}
fn default_heavy_readers() -> usize {
    2
}
fn default_exports_per_min() -> f64 {
    6.0
}

impl Config {
    /// A config for `--listen ADDR --data DIR` without a file.
    pub fn minimal(listen: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            listen,
            data_dir,
            database: Database::default(),
            tls: Tls::default(),
            insecure_http: false,
            enrollment_secret: None,
            limits: Limits::default(),
            bundle_public_key: None,
            siem: Default::default(),
            catalogue: default_catalogue(),
            rollout_halt_silent_secs: default_rollout_halt(),
            alerts: Default::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: p.clone(),
            source,
        })?;
        cfg.validate(&p)?;
        Ok(cfg)
    }

    /// Checks what serde cannot.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            reason,
        };
        if self.insecure_http && !self.listen.ip().is_loopback() {
            return Err(bad(
                "insecure_http",
                format!(
                    "plain HTTP is only allowed on a loopback address, not {}",
                    self.listen
                ),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(bad(
                "tls",
                "set both `cert` and `key`, or neither".to_owned(),
            ));
        }
        if let Some(s) = &self.enrollment_secret
            && s.len() < 16
        {
            return Err(bad(
                "enrollment_secret",
                "must be at least 16 characters".to_owned(),
            ));
        }
        if self.limits.body_bytes < 1024 || self.limits.inflated_bytes < self.limits.body_bytes {
            return Err(bad(
                "limits",
                "body_bytes must be >= 1024 and inflated_bytes >= body_bytes".to_owned(),
            ));
        }
        if !(self.limits.rate_per_sec > 0.0
            && self.limits.rate_burst >= 1.0
            && self.limits.ip_rate_per_sec > 0.0
            && self.limits.ip_rate_burst >= 1.0)
        {
            return Err(bad(
                "limits",
                "rate_per_sec and ip_rate_per_sec must be > 0, rate_burst and ip_rate_burst >= 1"
                    .to_owned(),
            ));
        }
        if !(256..=self.limits.body_bytes).contains(&self.limits.enroll_body_bytes) {
            return Err(bad(
                "limits.enroll_body_bytes",
                format!(
                    "must be 256..=body_bytes ({}), got {}",
                    self.limits.body_bytes, self.limits.enroll_body_bytes
                ),
            ));
        }
        if !(self.limits.enroll_rate_per_sec > 0.0 && self.limits.enroll_rate_burst >= 1.0) {
            return Err(bad(
                "limits",
                "enroll_rate_per_sec must be > 0 and enroll_rate_burst >= 1".to_owned(),
            ));
        }
        let l = &self.limits;
        if !(1..=1_000_000).contains(&l.max_connections)
            || !(1..=1_000_000).contains(&l.connections_per_ip)
        {
            return Err(bad(
                "limits",
                "max_connections and connections_per_ip must be 1..=1000000".to_owned(),
            ));
        }
        if !(1..=3600).contains(&l.header_timeout_s) || !(1..=3600).contains(&l.body_grace_s) {
            return Err(bad(
                "limits",
                "header_timeout_s and body_grace_s must be 1..=3600".to_owned(),
            ));
        }
        if l.body_min_bytes_per_sec == 0 {
            return Err(bad(
                "limits.body_min_bytes_per_sec",
                "must be at least 1".to_owned(),
            ));
        }
        if !(1..=64).contains(&l.parse_concurrency) || !(1..=64).contains(&l.heavy_readers) {
            return Err(bad(
                "limits",
                "parse_concurrency and heavy_readers must be 1..=64".to_owned(),
            ));
        }
        if !(l.exports_per_min > 0.0 && l.exports_per_min <= 6000.0) {
            return Err(bad(
                "limits.exports_per_min",
                format!("must be > 0 and <= 6000, got {}", l.exports_per_min),
            ));
        }
        if !(1..=shadowai_api::MAX_FINDINGS_PER_BATCH).contains(&l.findings_per_batch) {
            return Err(bad(
                "limits.findings_per_batch",
                format!(
                    "must be 1..={}, got {}",
                    shadowai_api::MAX_FINDINGS_PER_BATCH,
                    l.findings_per_batch
                ),
            ));
        }
        if self.limits.max_hosts == 0 {
            return Err(bad("limits.max_hosts", "must be at least 1".to_owned()));
        }
        self.siem
            .validate()
            .map_err(|e| bad("siem", e.to_string()))?;
        self.alerts
            .validate()
            .map_err(|e| bad("alerts", e.to_string()))?;
        if let Database::Postgres { pool, .. } = &self.database
            && !(1..=64).contains(pool)
        {
            return Err(bad("database.pool", format!("must be 1..=64, got {pool}")));
        }
        Ok(())
    }
}
