//! Driving what the packages installed: the collector as its service user, the agent with
//! its unit's capabilities, the admin CLI, `status` and `validate`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shadowai_tests::{Daemon, Topology, sh};

/// `setpriv` arguments granting exactly the unit's CapabilityBoundingSet.
pub fn unit_caps(unit: &str) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap_or_else(|| panic!("{unit}: no CapabilityBoundingSet"));
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

pub fn setpriv(caps: &[String]) -> Command {
    let mut set = String::from("-all");
    for c in caps {
        set.push_str(",+");
        set.push_str(c);
    }
    let mut c = Command::new("setpriv");
    c.args([
        "--bounding-set",
        &set,
        "--inh-caps",
        "-all",
        "--no-new-privs",
        "--",
    ]);
    c
}

pub struct InstalledCollector {
    child: Child,
    pub port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl InstalledCollector {
    /// `shadowai-collector serve` from the package, as user shadowai with no capabilities.
    pub fn start(port: u16) -> Self {
        let mut child = Command::new("setpriv")
            .args([
                "--reuid",
                "shadowai",
                "--regid",
                "shadowai",
                "--init-groups",
                "--bounding-set",
                "-all",
                "--inh-caps",
                "-all",
                "--no-new-privs",
                "--",
                "/usr/bin/shadowai-collector",
                "serve",
                "--config",
                "/etc/shadowai/collector.toml",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut c = Self {
            child,
            port,
            lines: rx,
            seen: Vec::new(),
        };
        c.wait_line("listening on");
        c
    }

    pub fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "collector never printed {needle:?}: {:?}",
                self.seen
            );
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                eprintln!("[collector] {l}");
                self.seen.push(l);
            }
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(l);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for InstalledCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A first-start secret: the file named on stdout, 0600 and owned by the service user.
pub fn secret_from(line: &str) -> String {
    let path = line.rsplit(' ').next().unwrap();
    assert!(path.starts_with("/var/lib/shadowai-collector/"), "{line}");
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path}");
    let owner = sh(Command::new("stat").args(["-c", "%U", path])).unwrap();
    assert_eq!(owner.trim(), "shadowai", "{path}");
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

pub fn cli(c: &InstalledCollector, token: &str, args: &[&str]) -> Value {
    let out = sh(Command::new("/usr/bin/shadowai")
        .args([
            "--url",
            &c.url(),
            "--ca",
            "/var/lib/shadowai-collector/tls/cert.pem",
        ])
        .env("SHADOWAI_TOKEN", token)
        .env("SHADOWAI_CONFIG", "/nonexistent/cli.toml")
        .args(args))
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

pub fn curl_findings(c: &InstalledCollector, token: &str) -> Vec<Value> {
    let page = cli(c, token, &["findings", "--json", "--limit", "1000"]);
    page["items"].as_array().cloned().unwrap_or_default()
}

/// The installed agent's daemon with the unit's capabilities only.
pub fn start_agent(caps: &[String]) -> Daemon {
    let child = setpriv(caps)
        .args([
            "/usr/bin/shadowai-agent",
            "run",
            "--poll-ms",
            "50",
            "--config",
            "/etc/shadowai/agent.toml",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Daemon(child)
}

pub fn status() -> Value {
    let out = Command::new("/usr/bin/shadowai-agent")
        .args(["status", "--json", "--timeout", "3"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

pub fn curl_in(t: &Topology, cert: &str, url: &str) {
    let out = t
        .cmd(&t.client, "curl")
        .args(["-4", "-sS", "-o", "/dev/null", "--cacert", cert, url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn validate_refuses(work: &Path, name: &str, collector: &str, needle: &str) {
    let cfg = work.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!("[agent]\nstate_dir = \"{}\"\n[rules]\ncatalogue = \"/usr/share/shadowai/catalogue\"\n[collector]\n{collector}\n", work.join("nostate").display()),
    )
    .unwrap();
    let out = Command::new("/usr/bin/shadowai-agent")
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name}: validate accepted it");
    assert!(err.contains(needle), "{name}: {err}");
}
