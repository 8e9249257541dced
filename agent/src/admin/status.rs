//! `shadowai-agent status [--json]`: is this host enrolled, can it reach its collector, which
//! rules and mode are in force, is the daemon running with its hooks attached, how much is
//! spooled or lost. Read from the configuration, the state directory, the collector (an
//! anonymous health check, then a read-only call with the agent's token) and the daemon's
//! Prometheus endpoint — never from the daemon's internals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use shadowai_api::client::Client;

use super::rules::RulesSummary;
use super::{AGENT_ID_FILE, AdminError, HOST_KEY_FILE, TOKEN_FILE};
use crate::run::config::AgentConfig;

/// `shadowai-agent status` arguments.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Agent configuration.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/shadowai/agent.toml"
    )]
    pub config: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the collector and the metrics endpoint.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// True when the agent is running, and (with a collector) enrolled with an accepted token.
    pub healthy: bool,
    pub enrolled: bool,
    pub agent_id: Option<String>,
    pub host_key: bool,
    pub collector: Option<CollectorStatus>,
    pub rules: Option<RulesSummary>,
    pub rules_error: Option<String>,
    pub daemon: DaemonStatus,
}

#[derive(Debug, Serialize)]
pub struct CollectorStatus {
    pub url: String,
    pub reachable: bool,
    /// Whether the collector accepts this host's token (None: not enrolled or unreachable).
    pub token_accepted: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct DaemonStatus {
    pub metrics: Option<SocketAddr>,
    /// The metrics endpoint answered.
    pub running: bool,
    pub hooks: BTreeMap<String, bool>,
    pub spool_batches: Option<u64>,
    pub spool_lost_batches: Option<u64>,
    /// Events the kernel programs could not hand over (all programs and reasons).
    pub kernel_drops: Option<u64>,
    pub record_errors: Option<u64>,
    pub upload_failures: Option<u64>,
    pub error: Option<String>,
}

pub async fn run(args: &StatusArgs) -> Result<Status, AdminError> {
    let cfg = AgentConfig::load(&args.config)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let state = &cfg.agent.state_dir;
    let token = std::fs::read_to_string(state.join(TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let agent_id = std::fs::read_to_string(state.join(AGENT_ID_FILE))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let (rules, rules_error) = match super::rules::summarise(&cfg) {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let collector = match &cfg.collector {
        Some(c) => Some(collector_status(c, token.as_deref(), timeout).await),
        None => None,
    };
    let daemon = match cfg.output.metrics {
        Some(addr) => daemon_status(addr, timeout).await,
        None => DaemonStatus {
            error: Some("no [output] metrics address configured: cannot see the daemon".into()),
            ..DaemonStatus::default()
        },
    };
    let collector_ok = collector
        .as_ref()
        .is_none_or(|c| c.reachable && c.token_accepted == Some(true));
    Ok(Status {
        config: args.config.clone(),
        state_dir: state.clone(),
        healthy: daemon.running && collector_ok && rules_error.is_none(),
        enrolled: token.is_some(),
        agent_id,
        host_key: state.join(HOST_KEY_FILE).is_file(),
        collector,
        rules,
        rules_error,
        daemon,
    })
}

async fn collector_status(
    c: &crate::run::config::CollectorSection,
    token: Option<&str>,
    timeout: Duration,
) -> CollectorStatus {
    let mut st = CollectorStatus {
        url: c.url.clone(),
        reachable: false,
        token_accepted: None,
        error: None,
    };
    let mut b = Client::builder(c.url.clone()).timeout(timeout);
    if let Some(ca) = &c.ca {
        match std::fs::read(ca) {
            Ok(pem) => b = b.ca_pem(&pem),
            Err(e) => {
                st.error = Some(format!("reading {}: {e}", ca.display()));
                return st;
            }
        }
    }
    let client = match b.build() {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    if let Err(e) = client.healthz().await {
        st.error = Some(e.to_string());
        return st;
    }
    st.reachable = true;
    let Some(token) = token else { return st };
    // Read-only and agent-only: the bundle route answers an enrolled agent, refuses others.
    match client.with_token(token).fetch_bundle(None).await {
        Ok(_) => st.token_accepted = Some(true),
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            st.token_accepted = Some(false);
            st.error = Some(e.to_string());
        }
        Err(e) => st.error = Some(e.to_string()),
    }
    st
}

async fn daemon_status(addr: SocketAddr, timeout: Duration) -> DaemonStatus {
    let mut d = DaemonStatus {
        metrics: Some(addr),
        ..DaemonStatus::default()
    };
    let text = match fetch_metrics(addr, timeout).await {
        Ok(t) => t,
        Err(e) => {
            d.error = Some(format!(
                "metrics at http://{addr}/metrics: {e} (is the agent running?)"
            ));
            return d;
        }
    };
    d.running = true;
    for s in parse_samples(&text) {
        let add = |slot: &mut Option<u64>| *slot = Some(slot.unwrap_or(0) + s.value as u64);
        match s.name {
            "shadowai_hook_attached" => {
                if let Some(h) = label(s.labels, "hook") {
                    d.hooks.insert(h.to_string(), s.value >= 1.0);
                }
            }
            "shadowai_spool_batches" => add(&mut d.spool_batches),
            "shadowai_spool_lost_batches_total" => add(&mut d.spool_lost_batches),
            "shadowai_kernel_drops_total" => add(&mut d.kernel_drops),
            "shadowai_record_errors_total" => add(&mut d.record_errors),
            "shadowai_uplink_failures_total" => add(&mut d.upload_failures),
            _ => {}
        }
    }
    d
}

async fn fetch_metrics(addr: SocketAddr, timeout: Duration) -> Result<String, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()?
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

/// One sample of the Prometheus text format.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

/// The samples of a Prometheus text exposition (comments, malformed lines and non-finite
/// values skipped). Label values here never contain `}` or spaces (bounded label sets).
fn parse_samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line[open..].find('}')? + open;
                (&line[..close + 1], &line[close + 1..])
            }
            None => line.split_once(' ')?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
        value.is_finite().then_some(Sample {
            name,
            labels,
            value,
        })
    })
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        writeln!(
            f,
            "health:     {}",
            if self.healthy { "ok" } else { "DEGRADED" }
        )?;
        writeln!(f, "config:     {}", self.config.display())?;
        writeln!(
            f,
            "enrolled:   {}{}",
            yn(self.enrolled),
            self.agent_id
                .as_deref()
                .map(|id| format!(" (agent id {id})"))
                .unwrap_or_default()
        )?;
        match &self.collector {
            None => writeln!(f, "collector:  none configured (findings stay local)")?,
            Some(c) => {
                let token = match c.token_accepted {
                    Some(true) => "token accepted",
                    Some(false) => "TOKEN REFUSED",
                    None => "token not checked",
                };
                writeln!(
                    f,
                    "collector:  {} — {}, {token}",
                    c.url,
                    if c.reachable {
                        "reachable"
                    } else {
                        "UNREACHABLE"
                    }
                )?;
                if let Some(e) = &c.error {
                    writeln!(f, "            {e}")?;
                }
            }
        }
        match (&self.rules, &self.rules_error) {
            (Some(r), _) => {
                writeln!(
                    f,
                    "rules:      {} ({} services){}, mode {}",
                    r.source,
                    r.services,
                    r.bundle_version
                        .as_deref()
                        .map(|v| format!(", bundle {v}"))
                        .unwrap_or_default(),
                    r.mode.as_str()
                )?;
                if let Some(k) = &r.bundle_key {
                    writeln!(f, "bundle keys: {k} (ids)")?;
                }
                if let Some(e) = &r.bundle_error {
                    writeln!(f, "            saved bundle refused: {e}")?;
                }
            }
            (None, Some(e)) => writeln!(f, "rules:      ERROR {e}")?,
            (None, None) => {}
        }
        let d = &self.daemon;
        if d.running {
            let attached = d.hooks.values().filter(|a| **a).count();
            writeln!(
                f,
                "daemon:     running; hooks {attached}/{} attached",
                d.hooks.len()
            )?;
            for (h, _) in d.hooks.iter().filter(|(_, a)| !**a) {
                writeln!(f, "            hook {h}: NOT attached")?;
            }
            writeln!(
                f,
                "spool:      {} batches waiting, {} lost to the size cap",
                n(d.spool_batches),
                n(d.spool_lost_batches)
            )?;
            writeln!(
                f,
                "lost:       {} kernel drops, {} unreadable records, {} failed uploads",
                n(d.kernel_drops),
                n(d.record_errors),
                n(d.upload_failures)
            )?;
        } else {
            writeln!(
                f,
                "daemon:     NOT RUNNING{}",
                d.error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            )?;
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

    #[test]
    fn prometheus_samples_are_read_and_junk_is_skipped() {
        let text = "# HELP x y\n# TYPE shadowai_hook_attached gauge\n\
            shadowai_hook_attached{hook=\"connect4\"} 1\n\
            shadowai_hook_attached{hook=\"exec\"} 0\n\
            shadowai_kernel_drops_total{program=\"skb\",reason=\"ringbuf_full\"} 7\n\
            shadowai_kernel_drops_total{program=\"sock\",reason=\"ringbuf_full\"} 3 1700000000\n\
            shadowai_spool_batches 2\n\
            garbage line\n{\nshadowai_x{a=\"b\" NaN\nshadowai_y NaN\n";
        let s: Vec<_> = parse_samples(text).collect();
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(label(s[0].labels, "hook"), Some("connect4"));
        assert_eq!(s[3].value, 3.0);
        assert_eq!(s[4].name, "shadowai_spool_batches");
    }
}
