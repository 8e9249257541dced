//! Helpers for the enforcement tests: an agent config around a policy, real clients that
//! report how they failed and how fast, and the findings the agent wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{Topology, repo_root};

/// A working directory with `agent.toml` (local catalogue, `policy`, findings to JSONL
/// in 1-s windows) ready for `Daemon::agent_run`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub jsonl: PathBuf,
    /// Where the agent serves `/metrics` (loopback, a port derived from the test's pid).
    pub metrics: String,
}

impl Setup {
    pub fn new(policy: &str) -> Result<Self> {
        let metrics = format!("127.0.0.1:{}", 21000 + (std::process::id() % 2000) as u16);
        let dir = tempfile::tempdir()?;
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(&policy_path, policy)?;
        let jsonl = dir.path().join("findings.jsonl");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\n\n[rules]\ncatalogue = \"{}\"\npolicy = \"{}\"\n\n[output]\nfindings_jsonl = \"{}\"\nmetrics = \"{metrics}\"\n",
                dir.path().join("state").display(),
                repo_root().join("rules/catalogue").display(),
                policy_path.display(),
                jsonl.display()
            ),
        )?;
        Ok(Self {
            dir,
            config,
            jsonl,
            metrics,
        })
    }

    /// A counter or gauge the agent serves, `None` when absent.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<Option<f64>> {
        let text = crate::sh(Command::new("curl").args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://{}/metrics", self.metrics),
        ]))?;
        Ok(crate::sample(
            &crate::parse_exposition(&text)?,
            name,
            labels,
        ))
    }

    /// The agent's kernel drops for `reason` (`ringbuf_full`, `throttled`, …), summed over
    /// the programs that capture and report.
    pub fn kernel_drops(&self, reason: &str) -> Result<f64> {
        let mut total = 0.0;
        for p in ["skb_egress", "skb_ingress", "connect4", "sendmsg4"] {
            total += self
                .metric(
                    "shadowai_kernel_drops_total",
                    &[("program", p), ("reason", reason)],
                )?
                .unwrap_or(0.0);
        }
        Ok(total)
    }

    /// Every finding written so far.
    pub fn findings(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to 20 s) for a finding (OCSF 2004, as the agent writes them) of
    /// `service` with `action` (`allowed` / `would_block` / `blocked`) and `layer`.
    pub fn wait_finding(&self, service: &str, action: &str, layer: &str) -> Result<Value> {
        self.wait_finding_of(service, action, layer, None)
    }

    /// [`Setup::wait_finding`] of one user's use (`None`: anyone's).
    pub fn wait_finding_of(
        &self,
        service: &str,
        action: &str,
        layer: &str,
        user: Option<&str>,
    ) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(f) = self.findings().into_iter().find(|f| {
                let x = &f["unmapped"]["shadowai"];
                x["service_id"] == service
                    && x["action"] == action
                    && x["layer"] == layer
                    && user.is_none_or(|u| f["actor"]["user"]["name"] == u)
            }) {
                return Ok(f);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "no {service} finding with action {action} at layer {layer} (user {user:?}) in:\n{}",
                    std::fs::read_to_string(&self.jsonl).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What a client got.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    pub error: String,
    /// From the client's first connection attempt to its result.
    pub took: Duration,
}

/// Runs `tests/fixtures/enforce_client.py MODE ARGS` in the client namespace, optionally
/// under `setpriv` arguments (`--reuid 65534 …`).
pub fn py_client(t: &Topology, setpriv: &[&str], mode: &str, args: &[&str]) -> Result<Outcome> {
    // Another user cannot reach root's pyenv: the system interpreter then.
    let python = if setpriv.is_empty() {
        "python3"
    } else {
        "/usr/bin/python3"
    };
    py_client_with(t, setpriv, python, mode, args)
}

/// [`py_client`] with a chosen interpreter (root's `python3`, which has aioquic, for a
/// root process whose groups `setpriv` changed).
pub fn py_client_with(
    t: &Topology,
    setpriv: &[&str],
    python: &str,
    mode: &str,
    args: &[&str],
) -> Result<Outcome> {
    let script = repo_root().join("tests/fixtures/enforce_client.py");
    let mut c = client_cmd(t, setpriv, python);
    c.arg(&script).arg(mode).args(args);
    let start = Instant::now();
    let out = c.stderr(Stdio::inherit()).output().context("python3")?;
    let took = start.elapsed();
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value =
        serde_json::from_str(line.trim()).with_context(|| format!("{mode} printed {line:?}"))?;
    // The client's own clock: interpreter start-up (hundreds of ms on a loaded machine)
    // is not the time the refusal took.
    let inner = v["secs"].as_f64().map(Duration::from_secs_f64);
    Ok(Outcome {
        ok: v["ok"] == true,
        error: v["error"].as_str().unwrap_or_default().to_string(),
        took: inner.unwrap_or(took),
    })
}

/// `curl` in the client namespace (`--max-time 8`); ok on exit status 0, else the
/// status as the error.
pub fn curl(t: &Topology, setpriv: &[&str], cert: &Path, args: &[&str]) -> Result<Outcome> {
    let mut c = client_cmd(t, setpriv, "curl");
    c.args(["-sS", "-o", "/dev/null", "-w", "%{time_total}"])
        .args(["--max-time", "8", "--cacert"])
        .arg(cert)
        .args(args);
    let start = Instant::now();
    let out = c.output().context("curl")?;
    let outside = start.elapsed();
    // curl's own clock (name lookup to result): starting the process is not the refusal.
    let took = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .map_or(outside, Duration::from_secs_f64);
    Ok(Outcome {
        ok: out.status.success(),
        error: format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        took,
    })
}

fn client_cmd(t: &Topology, setpriv: &[&str], program: &str) -> Command {
    if setpriv.is_empty() {
        return t.cmd(&t.client, program);
    }
    let mut c = t.cmd(&t.client, "setpriv");
    c.args(setpriv).arg("--").arg(program);
    c
}

/// Puts `addr` (IPv4) on the remote namespace's loopback and routes the client to it via
/// the remote: an address inside a test namespace that lies in a catalogue service's
/// published network (the CIDR layer), e.g. `160.79.104.10` (Anthropic).
pub fn add_remote_v4(t: &Topology, addr: &str) -> Result<()> {
    crate::sh(Command::new("ip").args([
        "-n",
        &t.remote,
        "addr",
        "add",
        &format!("{addr}/32"),
        "dev",
        "lo",
    ]))?;
    crate::sh(Command::new("ip").args([
        "-n",
        &t.client,
        "route",
        "add",
        &format!("{addr}/32"),
        "via",
        &t.remote_v4,
    ]))?;
    Ok(())
}

/// The agent's stderr lines so far.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A copy of the lines so far (a poisoned lock still holds them).
pub fn lines_of(l: &Lines) -> Vec<String> {
    l.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// `shadowai-agent run --config CONFIG` started through `prefix` (e.g. `setpriv
/// --bounding-set …`), waiting (90 s at most) for "agent running"; its stderr lines are
/// kept for the test to read.
pub fn agent_under(prefix: &[String], config: &Path) -> Result<(crate::Daemon, Lines)> {
    use std::io::BufRead;
    let (program, args) = prefix.split_first().context("an empty prefix")?;
    let child = Command::new(program)
        .args(args)
        .arg(crate::bin("shadowai-agent")?)
        .args(["run", "--poll-ms", "50", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting shadowai-agent run")?;
    let mut daemon = crate::Daemon(child);
    let stderr = daemon.0.stderr.take().context("no stderr")?;
    let lines: Lines = Default::default();
    let kept = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[agent run] {line}");
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while !lines_of(&lines).iter().any(|l| l.contains("agent running")) {
        if let Ok(Some(st)) = daemon.0.try_wait() {
            anyhow::bail!("the agent exited ({st}) before it said \"agent running\"");
        }
        if Instant::now() > deadline {
            anyhow::bail!("shadowai-agent run did not say \"agent running\" within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((daemon, lines))
}
