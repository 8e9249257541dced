//! Helpers for shadowai's end-to-end tests: network namespaces, the real agent binary,
//! real servers and clients. Everything here runs as root (CI is root) and sends traffic
//! only inside namespaces the test created.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub mod naming;
pub mod sessions;
pub mod usage;

/// Python for the tests' DNS clients: `q(id, name)` is the wire form of an A query for
/// `name` with transaction id `id` (the scripts send it on their own UDP sockets).
pub const PY_DNS_QUERY: &str = r#"
import struct
def q(i, name):
    wire = b"".join(bytes([len(l)]) + l for l in name.encode().split(b".")) + b"\x00"
    return struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"
"#;

/// A flooder (`python3 -c PY_FLOOD ADDR SECS`): as many junk events as one process can
/// make for SECS seconds — UDP DNS queries to ADDR:53, every name new (a counter, so the
/// kernel's de-dup passes each one up), and a connect to a random port of ADDR after every
/// 256 — then prints how many it made.
pub const PY_FLOOD: &str = r#"
import os, random, socket, sys, time
addr, secs = sys.argv[1], float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setblocking(False)
tail = b"\x08" + os.urandom(4).hex().encode() + b"\x04junk\x00\x00\x01\x00\x01"
head = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x08"
dst = (addr, 53)
end, n = time.monotonic() + secs, 0
while time.monotonic() < end:
    for _ in range(256):
        n += 1
        try:
            u.sendto(head + b"%08x" % n + tail, dst)
        except OSError:
            pass
    t = socket.socket()
    t.setblocking(False)
    try:
        t.connect((addr, random.randint(20000, 60000)))
    except OSError:
        pass
    t.close()
    n += 1
print(n, flush=True)
"#;

/// Tests that load eBPF programs or build namespaces take this lock so results stay
/// deterministic (one agent at a time, one topology at a time).
pub static SERIAL: Mutex<()> = Mutex::new(());

pub mod bpfmaps;
pub mod browser;
pub mod enforce;

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A workspace binary, next to the test executable's directory (`target/<profile>/`).
pub fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test exe has no grandparent")?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --bins` first (cargo xtask test does)",
            p.display()
        );
    }
    Ok(p)
}

/// The ids of the BPF objects of one kind process `pid` holds open: `key` is the fdinfo
/// field (`map_id`, `prog_id`; a link's descriptor names its program's). Empty when the
/// process is gone.
pub fn bpf_ids_of(pid: u32, key: &str) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = dir
        .filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Runs a command to completion, failing with its stderr.
pub fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    sh(Command::new("ip").args(args))
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair: `client` and `remote`, IPv4 and IPv6.
/// The client's resolver is the remote (via /etc/netns/<client>/resolv.conf, which
/// `ip netns exec` bind-mounts over /etc/resolv.conf). Removed on drop.
pub struct Topology {
    pub client: String,
    pub remote: String,
    pub remote_v4: String,
    pub client_v4: String,
    pub remote_v6: String,
    pub client_v6: String,
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Topology {
    pub fn new() -> Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{}", std::process::id() % 10000, n);
        let subnet = 100 + (std::process::id() + n) % 100;
        let t = Self {
            client: format!("saic{id}"),
            remote: format!("sair{id}"),
            remote_v4: format!("10.231.{subnet}.1"),
            client_v4: format!("10.231.{subnet}.2"),
            remote_v6: format!("fd5a:{subnet:x}::1"),
            client_v6: format!("fd5a:{subnet:x}::2"),
            dir: tempfile::tempdir()?,
            children: Vec::new(),
        };
        let (c, r) = (t.client.clone(), t.remote.clone());
        ip(&["netns", "add", &c])?;
        ip(&["netns", "add", &r])?;
        let (vc, vr) = (format!("vc{id}"), format!("vr{id}"));
        ip(&["link", "add", &vc, "type", "veth", "peer", "name", &vr])?;
        ip(&["link", "set", &vc, "netns", &c])?;
        ip(&["link", "set", &vr, "netns", &r])?;
        for (ns, dev, v4, v6) in [
            (&c, &vc, &t.client_v4, &t.client_v6),
            (&r, &vr, &t.remote_v4, &t.remote_v6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let etc = PathBuf::from("/etc/netns").join(&c);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {}\noptions attempts:1 timeout:2\n", t.remote_v4),
        )?;
        // Only the zone's names resolve; nothing leaves the namespace.
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n")?;
        Ok(t)
    }

    /// A command to run inside a namespace.
    pub fn cmd(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Starts a server in the remote namespace and waits for it to print "ready".
    pub fn start_server(&mut self, program: &str, args: &[&str]) -> Result<()> {
        let mut child = self
            .cmd(&self.remote.clone(), program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let out = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        self.children.push(child);
        if line.trim() != "ready" {
            bail!("{program} did not start: {line:?}");
        }
        Ok(())
    }

    /// A topology whose remote side serves DNS (a zone of `records`: `name TYPE value`
    /// lines, `{v4}`/`{v6}` replaced by the remote's addresses) and TLS on port 443 with a
    /// self-signed certificate for `names`. Returns it and the certificate's path.
    pub fn with_servers(names: &[&str], records: &str) -> Result<(Self, String)> {
        let mut t = Self::new()?;
        let (cert, key) = t.cert(names)?;
        let zone = t.dir.path().join("zone.txt");
        std::fs::write(
            &zone,
            records
                .replace("{v4}", &t.remote_v4)
                .replace("{v6}", &t.remote_v6),
        )?;
        let fx = repo_root().join("tests/fixtures");
        let (v4, v6) = (t.remote_v4.clone(), t.remote_v6.clone());
        let path = |p: &Path| p.to_string_lossy().into_owned();
        t.start_server(
            "python3",
            &[&path(&fx.join("dns_server.py")), &path(&zone), &v4, &v6],
        )?;
        t.start_server(
            "python3",
            &[
                &path(&fx.join("tls_server.py")),
                &path(&cert),
                &path(&key),
                &v4,
                &v6,
            ],
        )?;
        Ok((t, path(&cert)))
    }

    /// Self-signed certificate for `names` (SANs), written to the temp dir.
    pub fn cert(&self, names: &[&str]) -> Result<(PathBuf, PathBuf)> {
        let cert = self.dir.path().join("cert.pem");
        let key = self.dir.path().join("key.pem");
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        sh(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={}", names[0]),
            "-addext",
            &format!("subjectAltName={}", san.join(",")),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]))?;
        Ok((cert, key))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client, &self.remote] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.client));
    }
}

/// The real agent (`shadowai-agent watch --json`), its JSON lines collected as they come.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    pub metrics: Option<String>,
}

impl Agent {
    /// Starts the agent and waits until its sensor is attached.
    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin("shadowai-agent")?)
            .args(["watch", "--json"])
            .args(extra)
            .env("SHADOWAI_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting shadowai-agent")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => sink.lock().unwrap().push(v),
                    Err(e) => eprintln!("agent printed a non-JSON line ({e}): {line}"),
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                if !sent && line.contains("sensor started") {
                    let _ = tx.send(());
                    sent = true;
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            bail!("the agent did not report its sensor started within 60 s");
        }
        let metrics = extra
            .iter()
            .position(|a| *a == "--metrics")
            .and_then(|i| extra.get(i + 1))
            .map(|s| s.to_string());
        Ok(Self {
            child,
            lines,
            metrics,
        })
    }

    /// Waits until `pred` holds for some event, returning it.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let start = Instant::now();
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| pred(v)) {
                return Ok(v.clone());
            }
            if start.elapsed() > timeout {
                let all = self.lines.lock().unwrap();
                bail!(
                    "no event {what} within {timeout:?}; {} events seen:\n{}",
                    all.len(),
                    all.iter()
                        .rev()
                        .take(30)
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn events(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY-free: a plain SIGTERM through the kill command, then reap.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A long-running child (agent, collector) stopped with SIGTERM — then SIGKILL after 10 s —
/// when dropped, so a failing test never leaves it behind.
pub struct Daemon(pub Child);

impl Daemon {
    /// Starts `shadowai-agent run --config CONFIG` (stdout discarded, stderr relayed) and
    /// waits until it says "agent running" (programs attached, enrolled): on a loaded
    /// machine attaching takes seconds, so a fixed sleep would race it.
    pub fn agent_run(config: &Path) -> Result<Self> {
        let mut child = Command::new(bin("shadowai-agent")?)
            .args(["run", "--poll-ms", "50", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting shadowai-agent run")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent run] {line}");
                if !sent && line.contains("agent running") {
                    let _ = tx.send(());
                    sent = true;
                }
            }
        });
        let mut daemon = Self(child);
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            let _ = daemon.0.kill();
            bail!("shadowai-agent run did not say \"agent running\" within 90 s");
        }
        Ok(daemon)
    }

    /// Stops it now (SIGTERM, wait).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `v[a][b]...` as a string, or "".
pub fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// `v[a][b]...` as a u64, or 0.
pub fn n(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

/// Events of one process.
pub fn of_pid(pid: u32) -> impl Fn(&Value) -> bool {
    move |v| n(v, &["actor", "process", "pid"]) == u64::from(pid)
}

/// The secret behind a collector line "… written to PATH": never the secret itself on
/// stdout, and the file is mode 0600.
pub fn secret_written(line: &str) -> Result<String> {
    if line.contains("sau_") || line.contains("sae_") {
        bail!("a secret was printed to stdout: {line}");
    }
    let path = line
        .split_once(" written to ")
        .map(|(_, p)| p.trim())
        .with_context(|| format!("no \"written to PATH\" in {line:?}"))?;
    let meta = std::fs::metadata(path).with_context(|| format!("stat {path}"))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    if mode != 0o600 {
        bail!("{path} has mode {mode:o}, not 600");
    }
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_string())
}

/// A real collector (`shadowai-collector serve` on its embedded store, TLS with its own
/// certificate), stopped with SIGKILL when dropped.
pub struct Collector {
    pub child: Child,
    pub url: String,
    pub ca: PathBuf,
    /// Bootstrap admin token and enrollment secret, printed on a first start.
    pub admin_token: Option<String>,
    pub enroll_secret: Option<String>,
}

impl Collector {
    /// Starts the collector on `data`, listening on 127.0.0.1:`port`.
    pub fn start(data: &Path, port: u16) -> Result<Self> {
        Self::start_with(data, port, &[])
    }

    /// [`Collector::start`] with more `serve` arguments (`--catalogue`, `--bundle-key` …).
    pub fn start_with(data: &Path, port: u16, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin("shadowai-collector")?)
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting shadowai-collector")?;
        let out = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let tail = |l: &str| l.rsplit(": ").next().unwrap_or("").trim().to_string();
        let (mut token, mut secret, mut ca, mut listening) = (None, None, None, false);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut settle: Option<Instant> = None;
        while Instant::now() < deadline {
            if settle.is_some_and(|s| Instant::now() > s) {
                break;
            }
            let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            eprintln!("[collector] {line}");
            if line.contains("bootstrap admin token") {
                token = Some(secret_written(&line)?);
            } else if line.contains("enrollment secret") {
                secret = Some(secret_written(&line)?);
            } else if line.contains("TLS certificate") {
                ca = Some(PathBuf::from(tail(&line)));
            } else if line.contains("listening on") {
                listening = true;
            }
            if listening && settle.is_none() {
                // Token and secret follow the listening line on a first start.
                settle = Some(Instant::now() + Duration::from_secs(2));
            }
            if listening && token.is_some() && secret.is_some() {
                break;
            }
        }
        if !listening {
            let _ = child.kill();
            bail!("the collector did not start within 60 s");
        }
        Ok(Self {
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca: ca.unwrap_or_else(|| data.join("tls/cert.pem")),
            admin_token: token,
            enroll_secret: secret,
        })
    }

    /// `GET path` with `token`, as JSON (curl against the collector's own CA).
    pub fn get(&self, token: &str, path: &str) -> Result<Value> {
        let body = sh(Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            self.ca.to_str().context("CA path")?,
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{}{path}", self.url),
        ]))?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Findings stored so far (first 1000).
    pub fn findings(&self, token: &str) -> Vec<Value> {
        self.get(token, "/api/v1/findings?limit=1000")
            .ok()
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 300 ms until it returns `Some`, failing after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One sample of a metrics exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses a Prometheus/OpenMetrics text exposition strictly: every sample belongs to a
/// family announced by `# TYPE` (with `# HELP`), a family's samples are contiguous and
/// never reopened, names and labels follow the grammar, values are numbers, and an
/// OpenMetrics body ends with `# EOF`. Errors name the line.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>> {
    let ident = |s: &str| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    };
    let mut out = Vec::new();
    let mut families: Vec<(String, String, bool)> = Vec::new(); // (name, type, has help)
    let mut closed: std::collections::HashSet<String> = Default::default();
    let mut current: Option<String> = None;
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let at = i + 1;
        if eof {
            bail!("line {at}: content after # EOF");
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let arg = parts.next().unwrap_or("");
            if !ident(name) {
                bail!("line {at}: bad metric name {name:?}");
            }
            if current.as_deref() != Some(name) {
                if let Some(c) = current.take() {
                    closed.insert(c);
                }
                if closed.contains(name) {
                    bail!("line {at}: family {name} reopened (interleaved families)");
                }
                current = Some(name.to_string());
                families.push((name.to_string(), String::new(), false));
            }
            let fam = families.last_mut().context("family")?;
            match kw {
                "TYPE" => {
                    if !fam.1.is_empty() {
                        bail!("line {at}: second TYPE for {name}");
                    }
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                        "untyped",
                        "gaugehistogram",
                    ]
                    .contains(&arg)
                    {
                        bail!("line {at}: unknown type {arg:?}");
                    }
                    fam.1 = arg.to_string();
                }
                "HELP" => {
                    if fam.2 {
                        bail!("line {at}: second HELP for {name}");
                    }
                    fam.2 = true;
                }
                "UNIT" => {}
                _ => bail!("line {at}: unknown directive {kw:?}"),
            }
            continue;
        }
        if line.trim().is_empty() {
            bail!("line {at}: empty line");
        }
        // name{labels} value [timestamp]
        let (name_labels, rest) = match line.find('{') {
            Some(_) => {
                let e = line
                    .rfind('}')
                    .with_context(|| format!("line {at}: no closing brace"))?;
                (&line[..=e], line[e + 1..].trim_start())
            }
            None => line
                .split_once(' ')
                .with_context(|| format!("line {at}: no value"))?,
        };
        let (name, labels_src) = match name_labels.find('{') {
            Some(b) => (
                &name_labels[..b],
                &name_labels[b + 1..name_labels.len() - 1],
            ),
            None => (name_labels, ""),
        };
        if !ident(name) {
            bail!("line {at}: bad sample name {name:?}");
        }
        let fam = families
            .last()
            .with_context(|| format!("line {at}: sample {name} before any TYPE"))?;
        let suffix_ok = match fam.1.as_str() {
            "counter" => {
                name == format!("{}_total", fam.0)
                    || name == format!("{}_created", fam.0)
                    || name == fam.0
            }
            "histogram" | "gaugehistogram" => {
                ["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"]
                    .iter()
                    .any(|s| name == format!("{}{s}", fam.0))
            }
            "summary" => {
                name == fam.0
                    || ["_sum", "_count", "_created"]
                        .iter()
                        .any(|s| name == format!("{}{s}", fam.0))
            }
            "info" => name == format!("{}_info", fam.0),
            _ => name == fam.0,
        };
        if !suffix_ok || current.as_deref() != Some(fam.0.as_str()) {
            bail!(
                "line {at}: sample {name} does not belong to family {} ({})",
                fam.0,
                fam.1
            );
        }
        if fam.1.is_empty() || !fam.2 {
            bail!("line {at}: family {} lacks TYPE or HELP", fam.0);
        }
        let mut labels = Vec::new();
        let mut rest_l = labels_src;
        while !rest_l.is_empty() {
            let (k, v) = rest_l
                .split_once("=\"")
                .with_context(|| format!("line {at}: bad label in {labels_src:?}"))?;
            if !ident(k) {
                bail!("line {at}: bad label name {k:?}");
            }
            let mut val = String::new();
            let mut chars = v.char_indices();
            let mut end = None;
            while let Some((j, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, '\\')) => val.push('\\'),
                        Some((_, '"')) => val.push('"'),
                        other => bail!("line {at}: bad escape {other:?}"),
                    },
                    '"' => {
                        end = Some(j);
                        break;
                    }
                    '\n' => bail!("line {at}: raw newline in a label value"),
                    c => val.push(c),
                }
            }
            let end = end.with_context(|| format!("line {at}: unterminated label value"))?;
            labels.push((k.to_string(), val));
            rest_l = &v[end + 1..];
            rest_l = rest_l.strip_prefix(',').unwrap_or(rest_l);
        }
        let mut fields = rest.split(' ');
        let value = fields.next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .with_context(|| format!("line {at}: bad value {v:?}"))?,
        };
        if let Some(ts) = fields.next()
            && ts.parse::<f64>().is_err()
        {
            bail!("line {at}: bad timestamp {ts:?}");
        }
        if fields.next().is_some() {
            bail!("line {at}: trailing fields");
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    if text.contains("# EOF") != eof {
        bail!("# EOF is not a line of its own");
    }
    Ok(out)
}

/// The value of `name` with exactly `labels` (order-insensitive), if present.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}
