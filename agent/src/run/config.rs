//! The agent's configuration file (TOML). Unknown keys are errors; every error names the
//! file and line. Defaults live here and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::AgentError;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub rules: RulesSection,
    #[serde(default)]
    pub collector: Option<CollectorSection>,
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub sensor: SensorSection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Stable host id; default: /etc/machine-id.
    pub host_id: Option<String>,
    /// Default: the kernel's host name.
    pub hostname: Option<String>,
    /// Host group (policy scoping, rollout rings).
    pub group: Option<String>,
    /// Host tags (policy scoping).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Spool, credentials and the last good bundle live here.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Findings aggregate over windows of this many seconds.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Spool size cap in MiB (oldest batches are dropped, and counted, beyond it).
    #[serde(default = "default_spool_mib")]
    pub spool_max_mib: u64,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            host_id: None,
            hostname: None,
            group: None,
            tags: Vec::new(),
            state_dir: default_state_dir(),
            window_secs: default_window(),
            spool_max_mib: default_spool_mib(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// Catalogue directory (one TOML per service) used until a signed bundle arrives.
    pub catalogue: Option<PathBuf>,
    /// The organisation's policy file; default: monitor mode, unknown AI = unsanctioned.
    pub policy: Option<PathBuf>,
    /// ed25519 public key that signed bundles must verify against.
    pub bundle_key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// `https://collector:8443` (plain http only to loopback).
    pub url: String,
    /// PEM of the collector's certificate or CA.
    pub ca: Option<PathBuf>,
    /// File holding the enrollment secret (read once, at first enrollment).
    pub enroll_secret_file: Option<PathBuf>,
    /// Upload and heartbeat period.
    #[serde(default = "default_upload")]
    pub upload_secs: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Append every finding as an OCSF Detection Finding JSON line here.
    pub findings_jsonl: Option<PathBuf>,
    /// Print findings to stdout as they close (OCSF JSON lines).
    #[serde(default)]
    pub stdout: bool,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    #[serde(default = "default_dns_ports")]
    pub dns_ports: Vec<u16>,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            dns_ports: default_dns_ports(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/shadowai")
}
fn default_window() -> u64 {
    60
}
fn default_spool_mib() -> u64 {
    256
}
fn default_upload() -> u64 {
    10
}
fn default_dns_ports() -> Vec<u16> {
    vec![53]
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(0, |t| t.matches('\n').count())
        + 1
}

impl AgentConfig {
    pub fn parse(path: &Path, text: &str) -> Result<Self, AgentError> {
        let cfg: Self = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            AgentError::Config {
                path: path.to_path_buf(),
                reason: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_string(),
                },
            }
        })?;
        cfg.check(path)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            what: format!("reading config {}", path.display()),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn check(&self, path: &Path) -> Result<(), AgentError> {
        let bad = |reason: String| {
            Err(AgentError::Config {
                path: path.to_path_buf(),
                reason,
            })
        };
        if self.agent.window_secs == 0 || self.agent.window_secs > 86_400 {
            return bad(format!(
                "agent.window_secs: must be 1..=86400, got {}",
                self.agent.window_secs
            ));
        }
        if self.sensor.dns_ports.is_empty()
            || self.sensor.dns_ports.len() > 16
            || self.sensor.dns_ports.contains(&0)
        {
            return bad("sensor.dns_ports: 1 to 16 ports, none 0".into());
        }
        if let Some(c) = &self.collector {
            let ok_scheme = c.url.starts_with("https://")
                || ["http://127.", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|p| c.url.starts_with(p));
            if !ok_scheme {
                return bad(format!(
                    "collector.url: must be https:// (plain http only to loopback), got {:?}",
                    c.url
                ));
            }
            if c.upload_secs == 0 {
                return bad("collector.upload_secs: must be at least 1".into());
            }
        }
        if self.rules.catalogue.is_none() && self.rules.bundle_key.is_none() {
            return bad("rules: set `catalogue` (a local catalogue) or `bundle_key` (signed bundles from the collector)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    fn parse(t: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(Path::new("agent.toml"), t).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_and_defaults() {
        let c = parse("[rules]\ncatalogue = \"/usr/share/shadowai/catalogue\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.agent.window_secs, 60);
        assert_eq!(c.sensor.dns_ports, vec![53]);
        assert!(c.collector.is_none());
    }

    #[test]
    fn the_packaged_default_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config/agent.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.agent.state_dir, PathBuf::from("/var/lib/shadowai"));
        assert_eq!(
            c.output.metrics,
            Some("127.0.0.1:9464".parse().unwrap_or_else(|e| panic!("{e}")))
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("[rules]\ncatalogue = \"x\"\n\n[agent]\nwindow_secs = 60\nbogus = 1\n")
            .unwrap_err();
        assert!(
            e.contains("agent.toml") && e.contains("line 6") && e.contains("bogus"),
            "{e}"
        );
        let e =
            parse("[rules]\ncatalogue = \"x\"\n[agent]\nwindow_secs = \"sixty\"\n").unwrap_err();
        assert!(e.contains("line 4"), "{e}");
        let e = parse("[rules]\ncatalogue = \"x\"\n[collector]\nurl = \"http://10.1.2.3:80\"\n")
            .unwrap_err();
        assert!(e.contains("collector.url"), "{e}");
        let e = parse("").unwrap_err();
        assert!(e.contains("rules:"), "{e}");
        let e = parse("[rules]\ncatalogue = \"x\"\n[sensor]\ndns_ports = []\n").unwrap_err();
        assert!(e.contains("dns_ports"), "{e}");
    }
}
