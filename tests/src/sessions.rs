//! Helpers for tests/tests/sessions_*.rs: the real AI CLI and MCP server installed by
//! `.ci/deps/sessions.sh`, a daemon configuration with a fast inventory, and reading the
//! inventory the daemon writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{Collector, repo_root, wait_until};

/// Where `.ci/deps/sessions.sh` installed the npm packages.
pub fn agents_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("SHADOWAI_AGENTS_DIR").unwrap_or_else(|_| "/opt/shadowai-test-agents".into()),
    )
}

/// An npm bin of the installed packages (`gemini`, `mcp-server-everything`).
pub fn npm_bin(name: &str) -> Result<PathBuf> {
    let p = agents_dir().join("node_modules/.bin").join(name);
    anyhow::ensure!(
        p.exists(),
        "{} missing: run .ci/deps/sessions.sh",
        p.display()
    );
    Ok(p)
}

/// Writes an agent configuration: repository catalogue, 1 s windows and inventory scans,
/// the collector (if any) with its enrollment secret.
pub fn write_config(
    path: &Path,
    state: &Path,
    collector: Option<(&Collector, &Path)>,
) -> Result<()> {
    let mut text = format!(
        "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\nhostname = \"sessions-host\"\nhost_id = \"sessions-host-id\"\n\n\
         [rules]\ncatalogue = \"{}\"\n\n[inventory]\nscan_secs = 1\n",
        state.display(),
        repo_root().join("rules/catalogue").display(),
    );
    if let Some((c, secret)) = collector {
        text.push_str(&format!(
            "\n[collector]\nurl = \"{}\"\nca = \"{}\"\nenroll_secret_file = \"{}\"\nupload_secs = 1\n",
            c.url,
            c.ca.display(),
            secret.display()
        ));
    }
    std::fs::write(path, text).context("writing the agent configuration")
}

/// The daemon's latest inventory report (`STATE/inventory.json`), if written.
pub fn inventory(state: &Path) -> Option<Value> {
    let text = std::fs::read(state.join("inventory.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Waits until the daemon's inventory satisfies `pred`, returning it.
pub fn wait_inventory(
    state: &Path,
    what: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let r = wait_until(what, Duration::from_secs(secs), || {
        inventory(state).filter(|v| pred(v))
    });
    if r.is_err() {
        eprintln!(
            "last inventory: {}",
            inventory(state).map(|v| v.to_string()).unwrap_or_default()
        );
    }
    r
}

/// The items of one list of the inventory.
pub fn items<'a>(v: &'a Value, list: &str) -> Vec<&'a Value> {
    v[list]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Does a JSON array field contain this string?
pub fn has(v: &Value, field: &str, s: &str) -> bool {
    v[field]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(s)))
}

/// Adds `policy = PATH` to the `[rules]` section of a configuration [`write_config`] wrote.
pub fn set_policy(config: &Path, policy: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config).context("reading the agent configuration")?;
    anyhow::ensure!(text.contains("[rules]\n"), "no [rules] section in {text}");
    let text = text.replacen(
        "[rules]\n",
        &format!("[rules]\npolicy = \"{}\"\n", policy.display()),
        1,
    );
    std::fs::write(config, text).context("writing the agent configuration")
}

/// `shadowai-agent run` draining its ring buffer only every `poll_ms` (a busy agent: what
/// ran briefly has left /proc by the time its exec is read), until it says it runs.
pub fn agent_run_slow(config: &Path, poll_ms: u64) -> Result<crate::Daemon> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::bin("shadowai-agent")?)
        .args(["run", "--poll-ms", &poll_ms.to_string(), "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting shadowai-agent run")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[agent run] {line}");
            if !sent && line.contains("agent running") {
                let _ = tx.send(());
                sent = true;
            }
        }
    });
    let daemon = crate::Daemon(child);
    rx.recv_timeout(Duration::from_secs(90))
        .context("shadowai-agent run did not say \"agent running\" within 90 s")?;
    Ok(daemon)
}
