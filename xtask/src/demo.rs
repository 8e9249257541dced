//! `cargo xtask run`: the main job on one machine — a local collector on its embedded store
//! and the agent streaming findings to it, both live. `--demo` adds AI traffic from real
//! clients inside two network namespaces this command creates (for closed machines where
//! nothing else talks to an AI service); they are removed when it stops.
//!
//! The policy loop is wired too: a bundle-signing key pair (`target/demo/bundle.sec`, the
//! collector and the agent trust `bundle.pub`), an approver token for a second person
//! (`approver.token`), and the agent enrolled in group `demo` — so propose → approve →
//! `shadowai rules publish --canary-group demo` reaches this agent, which then blocks.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const LISTEN: &str = "127.0.0.1:8443";
/// The demo agent's group: the canary group to publish to.
const GROUP: &str = "demo";
const DEMO_CLIENT: &str = "sademo-client";
const DEMO_REMOTE: &str = "sademo-remote";
const DEMO_NAMES: [&str; 6] = [
    "api.openai.com",
    "chatgpt.com",
    "api.anthropic.com",
    "api.mistral.ai",
    "api.deepseek.com",
    "huggingface.co",
];

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// The bundle-signing key pair of the demo (made once; the secret key is 0600).
fn bundle_keys(cli: &Path, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (sec, public) = (dir.join("bundle.sec"), dir.join("bundle.pub"));
    if !(sec.exists() && public.exists()) {
        let _ = std::fs::remove_file(&sec);
        let _ = std::fs::remove_file(&public);
        let st = Command::new(cli)
            .args(["rules", "keygen", "--secret"])
            .arg(&sec)
            .arg("--public")
            .arg(&public)
            .stdout(Stdio::null())
            .status()
            .context("running shadowai rules keygen")?;
        if !st.success() {
            bail!("shadowai rules keygen failed ({st})");
        }
    }
    Ok((sec, public))
}

/// A token for a second person (role approver), saved 0600 once.
fn approver_token(bin: &Path, data: &Path, dir: &Path) -> Result<PathBuf> {
    let file = dir.join("approver.token");
    if file.exists() {
        return Ok(file);
    }
    let out = Command::new(bin)
        .args([
            "token",
            "create",
            "--role",
            "approver",
            "--name",
            "demo-approver",
            "--data",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running shadowai-collector token create")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(token) = text.lines().find(|l| l.starts_with("sau_")) else {
        bail!(
            "shadowai-collector token create printed no token ({})",
            out.status
        );
    };
    write_private(&file, &format!("{token}\n"))?;
    Ok(file)
}

/// Starts the collector; on a first start saves the admin token and enrollment secret.
fn start_collector(
    bin: &Path,
    data: &Path,
    dir: &Path,
    catalogue: &Path,
    bundle_pub: &Path,
) -> Result<Child> {
    let mut child = Command::new(bin)
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", LISTEN])
        // proposals and bundles are checked against the repository's catalogue
        .arg("--catalogue")
        .arg(catalogue)
        .arg("--bundle-key")
        .arg(bundle_pub)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("collector.log"))?)
        .spawn()
        .context("starting shadowai-collector")?;
    let out = child.stdout.take().context("collector stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut listening = false;
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(if listening { 1500 } else { 200 }))
        else {
            if listening {
                break;
            }
            continue;
        };
        // First-start secrets are in 0600 files in the data dir: "… written to PATH".
        let file = line.rsplit(' ').next().unwrap_or("").trim().to_string();
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .with_context(|| format!("reading {p}"))
        };
        if line.contains("listening on") {
            listening = true;
        } else if line.contains("bootstrap admin token") {
            write_private(&dir.join("admin.token"), &read(&file)?)?;
        } else if line.contains("enrollment secret") {
            write_private(&dir.join("enroll.secret"), &read(&file)?)?;
        }
    }
    if !listening {
        bail!(
            "the collector did not start; see {}",
            dir.join("collector.log").display()
        );
    }
    Ok(child)
}

/// `ip ARGS…`, failing when it fails.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip")
        .args(args)
        .status()
        .context("running ip")?;
    if !st.success() {
        bail!("ip {args:?} failed");
    }
    Ok(())
}

fn teardown_demo() {
    for ns in [DEMO_CLIENT, DEMO_REMOTE] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(DEMO_CLIENT));
}

/// Two namespaces, a DNS server answering the demo names and a TLS server presenting them,
/// and a thread that runs real clients against them every few seconds.
fn start_demo(root: &Path, dir: &Path, stop: Arc<AtomicBool>) -> Result<Killed> {
    teardown_demo();
    ip(&["netns", "add", DEMO_CLIENT])?;
    ip(&["netns", "add", DEMO_REMOTE])?;
    ip(&[
        "link", "add", "sademo-c", "type", "veth", "peer", "name", "sademo-r",
    ])?;
    ip(&["link", "set", "sademo-c", "netns", DEMO_CLIENT])?;
    ip(&["link", "set", "sademo-r", "netns", DEMO_REMOTE])?;
    for (ns, dev, addr) in [
        (DEMO_CLIENT, "sademo-c", "10.253.0.2/24"),
        (DEMO_REMOTE, "sademo-r", "10.253.0.1/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    let etc = Path::new("/etc/netns").join(DEMO_CLIENT);
    std::fs::create_dir_all(&etc)?;
    std::fs::write(etc.join("resolv.conf"), "nameserver 10.253.0.1\n")?;
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n")?;
    let zone = dir.join("demo-zone.txt");
    std::fs::write(
        &zone,
        DEMO_NAMES
            .iter()
            .map(|n| format!("{n} A 10.253.0.1\n"))
            .collect::<String>(),
    )?;
    let (cert, key) = (dir.join("demo-cert.pem"), dir.join("demo-key.pem"));
    let san: Vec<String> = DEMO_NAMES.iter().map(|n| format!("DNS:{n}")).collect();
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=shadowai-demo",
        ])
        .arg("-addext")
        .arg(format!("subjectAltName={}", san.join(",")))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("openssl could not make the demo certificate");
    }
    let fx = root.join("tests/fixtures");
    let mut servers = Killed(Vec::new());
    for args in [
        vec![
            fx.join("dns_server.py"),
            zone.clone(),
            PathBuf::from("10.253.0.1"),
        ],
        vec![
            fx.join("tls_server.py"),
            cert.clone(),
            key.clone(),
            PathBuf::from("10.253.0.1"),
        ],
    ] {
        let child = Command::new("ip")
            .args(["netns", "exec", DEMO_REMOTE, "python3"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        servers.0.push(child);
    }
    std::thread::spawn(move || {
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(3));
            let name = DEMO_NAMES[i % DEMO_NAMES.len()];
            i += 1;
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    DEMO_CLIENT,
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "3",
                    "--cacert",
                ])
                .arg(&cert)
                .arg(format!("https://{name}/"))
                .status();
        }
    });
    Ok(servers)
}

pub fn run(root: &Path, target: &Path, demo: bool) -> Result<()> {
    let bin = target.join("release");
    let dir = target.join("demo");
    let data = dir.join("collector");
    let state = dir.join("agent");
    if data.exists() && !(dir.join("admin.token").exists() && dir.join("enroll.secret").exists()) {
        // Secrets are shown only on a first start; without them, start afresh.
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_file(dir.join("approver.token"));
    }
    std::fs::create_dir_all(&dir)?;
    let cli = bin.join("shadowai");
    let (bundle_sec, bundle_pub) = bundle_keys(&cli, &dir)?;
    let collector = start_collector(
        &bin.join("shadowai-collector"),
        &data,
        &dir,
        &root.join("rules/catalogue"),
        &bundle_pub,
    )?;
    let mut children = Killed(vec![collector]);
    let approver = approver_token(&bin.join("shadowai-collector"), &data, &dir)?;
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{state}\"\nwindow_secs = 10\ngroup = \"{GROUP}\"\n\n\
             [rules]\ncatalogue = \"{cat}\"\npolicy = \"{policy}\"\nbundle_key = \"{bundle_pub}\"\n\n\
             [collector]\nurl = \"https://{LISTEN}\"\nca = \"{ca}\"\nenroll_secret_file = \"{secret}\"\nupload_secs = 2\n\n\
             [output]\nfindings_jsonl = \"{jsonl}\"\nmetrics = \"127.0.0.1:9464\"\n",
            state = state.display(),
            cat = root.join("rules/catalogue").display(),
            policy = root.join("rules/policy.example.toml").display(),
            bundle_pub = bundle_pub.display(),
            ca = data.join("tls/cert.pem").display(),
            secret = dir.join("enroll.secret").display(),
            jsonl = dir.join("findings.jsonl").display(),
        ),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let _servers = if demo {
        Some(start_demo(root, &dir, stop.clone())?)
    } else {
        None
    };
    println!(
        "\nshadowai is running on this host.\n  collector UI/API: https://{LISTEN}/  (CA: {ca}; admin token in {tok})\n  agent metrics:    http://127.0.0.1:9464/metrics\n  findings (OCSF):  {jsonl}\n  stop with Ctrl-C\n",
        ca = data.join("tls/cert.pem").display(),
        tok = dir.join("admin.token").display(),
        jsonl = dir.join("findings.jsonl").display(),
    );
    println!(
        "  the policy loop (this agent is in group {GROUP:?}; a second person approves):\n\
         \x20   export SHADOWAI_URL=https://{LISTEN} SHADOWAI_CA={ca}\n\
         \x20   A=$(cat {tok}) B=$(cat {appr})\n\
         \x20   SHADOWAI_TOKEN=$A {cli} rules propose --service deepseek-api --verdict blocked --reason demo\n\
         \x20   SHADOWAI_TOKEN=$A {cli} rules propose --service mode:enforce --verdict blocked --reason demo\n\
         \x20   SHADOWAI_TOKEN=$B {cli} rules approve 1; SHADOWAI_TOKEN=$B {cli} rules approve 2\n\
         \x20   SHADOWAI_TOKEN=$A {cli} rules publish --key {sec} --mode enforce --canary-group {GROUP}\n\
         \x20 then the demo's requests to api.deepseek.com fail, reported with action blocked.\n",
        ca = data.join("tls/cert.pem").display(),
        tok = dir.join("admin.token").display(),
        appr = approver.display(),
        cli = cli.display(),
        sec = bundle_sec.display(),
    );
    let mut agent = Command::new(bin.join("shadowai-agent"))
        .args(["run", "--print", "--config"])
        .arg(&config)
        .spawn()
        .context("starting shadowai-agent")?;
    // SAFETY: ignore Ctrl-C in this process only (children were already spawned with the
    // default disposition), so it can clean up after the agent exits.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = agent.wait()?;
    stop.store(true, Ordering::Relaxed);
    children.0.clear();
    if demo {
        teardown_demo();
    }
    if !status.success() && status.code().is_some() {
        bail!("shadowai-agent exited with {status}");
    }
    Ok(())
}
