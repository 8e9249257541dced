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
    #[serde(default)]
    pub inventory: crate::inventory::InventorySection,
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
    /// A finding whose process sent more payload bytes than this to its service in one
    /// window is flagged `large_upload` (0: never).
    #[serde(default = "default_large_upload")]
    pub large_upload_bytes: u64,
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
            large_upload_bytes: default_large_upload(),
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
    /// Trusted bundle keys: a file with one ed25519 public key per line (hex); a bundle
    /// must be signed by the key its envelope names. Several lines let keys rotate.
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
    /// Size of the kernel's events ring buffer in MiB: a power of two from 1 to 64. It
    /// counts twice in the agent's RSS (its pages are mapped twice); a larger one rides
    /// out longer bursts before events are lost (counted).
    #[serde(default = "default_ring_mib")]
    pub ring_buffer_mib: u32,
    /// The kernel reports a (process, destination) connection, and a DNS message identical
    /// (but its ID) to one of the same process and direction, once per this many seconds
    /// (0: every one). At most `agent.window_secs`: a longer one would keep a use that goes
    /// on out of the next findings window. Unset: 10, or the window when shorter (see
    /// [`AgentConfig::dedup_secs`]).
    #[serde(default)]
    pub dedup_secs: Option<u64>,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            dns_ports: default_dns_ports(),
            ring_buffer_mib: default_ring_mib(),
            dedup_secs: None,
        }
    }
}

impl SensorSection {
    /// The ring buffer's size in bytes, or why the configured one cannot be used.
    pub fn ring_bytes(&self) -> Result<u32, String> {
        let m = self.ring_buffer_mib;
        if !(1..=64).contains(&m) || !m.is_power_of_two() {
            return Err(format!(
                "sensor.ring_buffer_mib: {m} is not a power of two from 1 to 64"
            ));
        }
        Ok(m << 20)
    }
}

fn default_ring_mib() -> u32 {
    crate::sensor::RING_BYTES >> 20
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
fn default_large_upload() -> u64 {
    super::usage::DEFAULT_LARGE_UPLOAD
}
fn default_upload() -> u64 {
    10
}
fn default_dns_ports() -> Vec<u16> {
    vec![53]
}

impl CollectorSection {
    /// Refuses a collector section that cannot enroll or upload: a URL that is not
    /// `https://` (plain `http://` only to a loopback address), carries user info
    /// (`https://localhost@evil`), a query or fragment; https without a readable PEM `ca`;
    /// no agent token in `state_dir` and no readable enrollment secret.
    pub fn check(&self, state_dir: &Path) -> Result<(), String> {
        let url = check_collector_url(&self.url)?;
        if self.upload_secs == 0 {
            return Err("collector.upload_secs: must be at least 1".into());
        }
        match &self.ca {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("collector.ca: reading {}: {e}", ca.display()))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(format!(
                        "collector.ca: {} holds no PEM certificate",
                        ca.display()
                    ));
                }
            }
            None if url.scheme() == "https" => {
                return Err("collector.ca: required for https (the PEM certificate or CA that signed the collector's certificate)".into());
            }
            None => {}
        }
        let token = state_dir.join("agent.token");
        let enrolled = std::fs::read_to_string(&token).is_ok_and(|t| !t.trim().is_empty());
        if !enrolled {
            let Some(secret) = &self.enroll_secret_file else {
                return Err(format!(
                    "collector.enroll_secret_file: required until the agent is enrolled (no token in {})",
                    token.display()
                ));
            };
            match std::fs::read_to_string(secret) {
                Ok(s) if !s.trim().is_empty() => {}
                Ok(_) => {
                    return Err(format!(
                        "collector.enroll_secret_file: {} is empty",
                        secret.display()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "collector.enroll_secret_file: reading {}: {e} (not enrolled yet: no token in {})",
                        secret.display(),
                        token.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Parses a collector base URL and refuses what the agent must never send its secret to.
pub fn check_collector_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("collector.url: {raw:?}: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "collector.url: {raw:?} carries user info before '@'; give the collector's host only"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "collector.url: {raw:?}: no query or fragment, only scheme://host:port"
        ));
    }
    if url.host().is_none() {
        return Err(format!("collector.url: {raw:?} names no host"));
    }
    let loopback = shadowai_api::client::is_loopback(&url);
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "collector.url: must be https:// (plain http only to loopback), got {raw:?}"
        )),
    }
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

    /// The kernel's de-dup window: `sensor.dedup_secs`, else the sensor's default (10 s)
    /// or the findings window when that is shorter.
    pub fn dedup_secs(&self) -> u64 {
        self.sensor.dedup_secs.unwrap_or_else(|| {
            crate::sensor::SensorOptions::default()
                .dedup
                .as_secs()
                .min(self.agent.window_secs)
        })
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
        if let Err(reason) = self.sensor.ring_bytes() {
            return bad(reason);
        }
        if let Some(d) = self.sensor.dedup_secs
            && d > self.agent.window_secs
        {
            return bad(format!(
                "sensor.dedup_secs: {d} is longer than agent.window_secs ({}): a use that goes on would be missing from the next findings window",
                self.agent.window_secs
            ));
        }
        if let Some(c) = &self.collector
            && let Err(reason) = c.check(&self.agent.state_dir)
        {
            return bad(reason);
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
        assert_eq!(c.sensor.ring_bytes(), Ok(4 << 20));
        assert!(c.collector.is_none());
    }

    #[test]
    fn the_ring_buffer_is_a_power_of_two_mib_within_bounds() {
        let with = |m: &str| {
            parse(&format!(
                "[rules]\ncatalogue = \"/c\"\n[sensor]\nring_buffer_mib = {m}\n"
            ))
        };
        assert_eq!(with("8").unwrap().sensor.ring_bytes(), Ok(8 << 20));
        for bad in ["0", "3", "128"] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("sensor.ring_buffer_mib"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_dedup_window_defaults_to_the_sensors_and_fits_in_the_findings_window() {
        let with = |extra: &str| parse(&format!("[rules]\ncatalogue = \"/c\"\n{extra}"));
        assert_eq!(with("").unwrap().dedup_secs(), 10);
        assert_eq!(with("[sensor]\ndedup_secs = 0\n").unwrap().dedup_secs(), 0);
        assert_eq!(
            with("[agent]\nwindow_secs = 60\n[sensor]\ndedup_secs = 60\n")
                .unwrap()
                .dedup_secs(),
            60
        );
        // Unset, with a findings window shorter than the default: the window.
        assert_eq!(with("[agent]\nwindow_secs = 4\n").unwrap().dedup_secs(), 4);
        let e = with("[agent]\nwindow_secs = 30\n[sensor]\ndedup_secs = 31\n").unwrap_err();
        assert!(
            e.contains("sensor.dedup_secs: 31") && e.contains("(30)"),
            "{e}"
        );
        let e = with("[sensor]\ndedup_secs = -1\n").unwrap_err();
        assert!(e.contains("line 4") && e.contains("-1"), "{e}");
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
        let e = parse("[rules]\ncatalogue = \"x\"\n[collector]\nurl = \"https://10.1.2.3\"\n")
            .unwrap_err();
        assert!(e.contains("collector.ca: required"), "{e}");
        let e = parse("[rules]\ncatalogue = \"x\"\n[sensor]\ndns_ports = []\n").unwrap_err();
        assert!(e.contains("dns_ports"), "{e}");
    }

    #[test]
    fn collector_urls_that_cannot_be_trusted_are_refused() {
        for bad in [
            "http://10.1.2.3:8443",
            "http://localhost@evil.example",
            "https://user:pw@collector.example",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "https://collector.example/?x=1",
            "https://collector.example/#frag",
            "ftp://collector.example",
            "collector.example:8443",
            "https://",
        ] {
            assert!(check_collector_url(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "https://collector.example:8443",
            "http://127.0.0.1:8443",
            "http://localhost:8443",
            "http://[::1]:8443",
            "https://10.1.2.3",
        ] {
            assert!(check_collector_url(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn a_collector_section_must_be_able_to_enroll() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = d.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = d.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let secret = d.join("enroll.secret");
        let state = d.join("state");
        std::fs::create_dir(&state).unwrap();
        let section = |ca: &Path, secret: Option<&Path>| CollectorSection {
            url: "https://collector.example:8443".into(),
            ca: Some(ca.to_path_buf()),
            enroll_secret_file: secret.map(Path::to_path_buf),
            upload_secs: 10,
        };
        let e = section(&ca, Some(&secret)).check(&state).unwrap_err();
        assert!(
            e.contains("enroll_secret_file") && e.contains("not enrolled"),
            "{e}"
        );
        std::fs::write(&secret, "\n").unwrap();
        let e = section(&ca, Some(&secret)).check(&state).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        std::fs::write(&secret, "sae_abc\n").unwrap();
        section(&ca, Some(&secret)).check(&state).unwrap();
        let e = section(&not_pem, Some(&secret)).check(&state).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = section(&d.join("missing.pem"), Some(&secret))
            .check(&state)
            .unwrap_err();
        assert!(e.contains("collector.ca: reading"), "{e}");
        let e = section(&ca, None).check(&state).unwrap_err();
        assert!(e.contains("required until the agent is enrolled"), "{e}");
        // Once enrolled (a token in the state dir), the secret is no longer needed.
        std::fs::write(state.join("agent.token"), "saa_x").unwrap();
        section(&ca, None).check(&state).unwrap();
    }
}
