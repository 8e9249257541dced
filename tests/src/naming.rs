//! Helpers for the naming tests: the real agent (`run`) writing findings as OCSF JSONL,
//! and a real dnsmasq as a local caching resolver inside a client namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Daemon, Topology, repo_root, wait_until};

/// `shadowai-agent run` on the shipped catalogue, 1-second windows, findings to a JSONL
/// file (OCSF Detection Finding per line), no collector.
pub struct JsonlAgent {
    pub daemon: Daemon,
    pub jsonl: PathBuf,
}

impl JsonlAgent {
    pub fn start(work: &Path) -> Result<Self> {
        let jsonl = work.join("findings.jsonl");
        let config = work.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\nhostname = \"naming-host\"\nhost_id = \"naming-host-id\"\n\n\
                 [rules]\ncatalogue = \"{}\"\n\n[output]\nfindings_jsonl = \"{}\"\n",
                work.join("state").display(),
                repo_root().join("rules/catalogue").display(),
                jsonl.display()
            ),
        )?;
        Ok(Self {
            daemon: Daemon::agent_run(&config)?,
            jsonl,
        })
    }

    /// Every finding written so far (OCSF 2004 objects).
    pub fn findings(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a finding that `pred` accepts.
    pub fn wait_finding(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        wait_until(what, Duration::from_secs(40), || {
            self.findings().into_iter().find(|f| pred(f))
        })
        .with_context(|| format!("findings so far: {:#?}", self.findings()))
    }
}

/// A finding's process executable path.
pub fn exe(f: &Value) -> &str {
    f["actor"]["process"]["file"]["path"].as_str().unwrap_or("")
}

/// A finding's catalogue service id.
pub fn service(f: &Value) -> &str {
    f["resources"][0]["uid"].as_str().unwrap_or("")
}

/// dnsmasq (the Debian binary, `/usr/sbin/dnsmasq`) on 127.0.0.1:53 inside the client
/// namespace, forwarding to the topology's DNS server, logging its queries to a file; the
/// client namespace's resolv.conf points at it. Killed (its own pid) when dropped.
pub struct Dnsmasq {
    child: Child,
    pub log: PathBuf,
}

impl Dnsmasq {
    pub fn start(t: &Topology) -> Result<Self> {
        Self::start_on(t, &[])
    }

    /// Also listening on `extra` addresses of the client namespace (so a client elsewhere
    /// can ask it without a loopback query).
    pub fn start_on(t: &Topology, extra: &[&str]) -> Result<Self> {
        let bin = Path::new("/usr/sbin/dnsmasq");
        if !bin.exists() {
            bail!(
                "/usr/sbin/dnsmasq is missing: run .ci/deps/naming.sh (Debian package dnsmasq-base)"
            );
        }
        let log = t.dir.path().join("dnsmasq.log");
        let child = t
            .cmd(&t.client, "/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                &format!(
                    "--listen-address={}",
                    std::iter::once("127.0.0.1")
                        .chain(extra.iter().copied())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "--port=53",
                "--cache-size=150",
                "--user=root",
                "--pid-file",
                "--log-queries",
            ])
            .arg(format!("--server={}", t.remote_v4))
            .arg(format!("--log-facility={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting dnsmasq")?;
        let me = Self { child, log };
        // Listening once it answers a query for a name outside every zone.
        wait_until(
            "dnsmasq answering on 127.0.0.1:53",
            Duration::from_secs(20),
            || {
                let code = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\n\
                        s.sendto(bytes.fromhex('abcd01000001000000000000046e6f6e650000010001'),('127.0.0.1',53))\n\
                        s.recv(512)\nprint('up')\n";
                t.cmd(&t.client, "python3")
                    .args(["-c", code])
                    .output()
                    .ok()
                    .filter(|o| String::from_utf8_lossy(&o.stdout).contains("up"))
            },
        )?;
        std::fs::write(
            PathBuf::from("/etc/netns")
                .join(&t.client)
                .join("resolv.conf"),
            "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n",
        )?;
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private copy of `program` (its resolved binary, e.g. `/usr/bin/python3.11`) under
/// `dir` with a name unique to this test run. Findings key on the executable, and other
/// tests on this host run the same programs: a copy tells this test's processes apart.
pub fn own_copy(program: &str, dir: &Path, tag: &str) -> Result<String> {
    let real = crate::sh(
        std::process::Command::new("sh")
            .args(["-c", &format!("readlink -f \"$(command -v {program})\"")]),
    )?;
    let real = real.trim();
    if real.is_empty() {
        bail!("{program} not found");
    }
    // pyenv shims are scripts: use the system binary then.
    let real = if real.contains("/.pyenv/") && program.starts_with("python") {
        "/usr/bin/python3"
    } else {
        real
    };
    let real = std::fs::canonicalize(real)?;
    let to = dir.join(format!("{tag}-{}-{}", std::process::id(), program));
    std::fs::copy(&real, &to).with_context(|| format!("copying {}", real.display()))?;
    Ok(to.to_string_lossy().into_owned())
}
