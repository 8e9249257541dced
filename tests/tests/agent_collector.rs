//! End-to-end: the real agent (`run`) classifies real clients' AI use against the real
//! catalogue and policy, aggregates findings, and delivers them over TLS to a real
//! collector on its embedded store — exactly once, even across a collector `kill -9`.
//! Needs root (eBPF, namespaces).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shadowai_tests::{Daemon, Topology, bin, repo_root, secret_written, serial, sh};

struct Collector {
    child: Child,
    url: String,
    ca: PathBuf,
}

impl Collector {
    /// Starts (or restarts) the collector on `data`; returns it and, on a first start, the
    /// bootstrap admin token and the enrollment secret it printed.
    fn start(data: &Path, port: u16) -> (Self, Option<String>, Option<String>) {
        let mut child = Command::new(bin("shadowai-collector").unwrap())
            .args([
                "serve",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut token, mut secret, mut ca, mut listening) = (None, None, None, false);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !(listening && ca.is_some()) {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            eprintln!("[collector] {line}");
            let tail = |l: &str| l.rsplit(": ").next().unwrap().trim().to_string();
            if line.contains("bootstrap admin token") {
                token = Some(secret_written(&line).unwrap());
            } else if line.contains("enrollment secret") {
                secret = Some(secret_written(&line).unwrap());
            } else if line.contains("TLS certificate") {
                ca = Some(PathBuf::from(tail(&line)));
            } else if line.contains("listening on") {
                listening = true;
            }
        }
        // Token and secret come after the listening line on a first start.
        let wait_more = Instant::now() + Duration::from_secs(2);
        while Instant::now() < wait_more && (token.is_none() || secret.is_none()) {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if line.contains("bootstrap admin token") {
                    token = Some(secret_written(&line).unwrap());
                } else if line.contains("enrollment secret") {
                    secret = Some(secret_written(&line).unwrap());
                }
            }
        }
        assert!(listening, "collector did not start");
        let ca = ca.unwrap_or_else(|| data.join("tls/cert.pem"));
        (
            Self {
                child,
                url: format!("https://127.0.0.1:{port}"),
                ca,
            },
            token,
            secret,
        )
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn findings(&self, token: &str) -> Vec<Value> {
        let out = sh(Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            self.ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{}/api/v1/findings?limit=1000", self.url),
        ]));
        match out {
            Ok(body) => {
                let v: Value = serde_json::from_str(&body).unwrap();
                v["items"].as_array().cloned().unwrap_or_default()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// The collector prints only where a first-start secret went ("… written to PATH"): the
/// secret itself is in that 0600 file, never on stdout.
impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn curl_in(t: &Topology, cert: &str, url: &str) -> u32 {
    let child = t
        .cmd(&t.client, "curl")
        .args(["-4", "-sS", "-o", "/dev/null", "--cacert", cert, url])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    pid
}

#[test]
fn agent_findings_reach_the_collector_once_even_across_a_collector_kill() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(
        &["api.openai.com", "api.anthropic.com"],
        "api.openai.com A {v4}\napi.anthropic.com A {v4}\n",
    )
    .unwrap();

    let work = tempfile::tempdir().unwrap();
    let port = 19000 + (std::process::id() % 500) as u16;
    let (mut collector, token, secret) = Collector::start(&work.path().join("collector"), port);
    let token = token.expect("bootstrap admin token printed on first start");
    let secret_file = work.path().join("enroll.secret");
    std::fs::write(
        &secret_file,
        secret.expect("enrollment secret printed on first start"),
    )
    .unwrap();

    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"monitor\"\ndefault_verdict = \"unsanctioned\"\n\n[[rules]]\nid = \"anthropic-ok\"\nverdict = \"sanctioned\"\nservices = [\"anthropic-api\"]\nunix_groups = [\"root\"]\n",
    )
    .unwrap();
    let jsonl = work.path().join("findings.jsonl");
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{state}\"\nwindow_secs = 2\nhostname = \"e2e-host\"\nhost_id = \"e2e-host-id\"\n\n\
             [rules]\ncatalogue = \"{cat}\"\npolicy = \"{policy}\"\n\n\
             [collector]\nurl = \"{url}\"\nca = \"{ca}\"\nenroll_secret_file = \"{secret}\"\nupload_secs = 1\n\n\
             [output]\nfindings_jsonl = \"{jsonl}\"\n",
            state = work.path().join("agent-state").display(),
            cat = repo_root().join("rules/catalogue").display(),
            policy = policy.display(),
            url = collector.url,
            ca = collector.ca.display(),
            secret = secret_file.display(),
            jsonl = jsonl.display(),
        ),
    )
    .unwrap();
    let validated = sh(Command::new(bin("shadowai-agent").unwrap()).args([
        "validate",
        "--config",
        config.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(validated.contains(": ok ("), "{validated}");

    let _agent = Daemon::agent_run(&config).unwrap(); // returns once attached and enrolled

    let openai_pid = curl_in(&t, &cert, "https://api.openai.com/");
    let anthropic_pid = curl_in(&t, &cert, "https://api.anthropic.com/");
    let _ = (openai_pid, anthropic_pid);
    let curl = sh(Command::new("sh").args(["-c", "readlink -f \"$(command -v curl)\""]))
        .unwrap()
        .trim()
        .to_string();

    let of = |fs: &[Value], svc: &str| -> Vec<Value> {
        fs.iter()
            .filter(|f| f["service_id"] == svc && f["process"]["exe"] == curl.as_str())
            .cloned()
            .collect()
    };
    let fs = wait_until(
        "both findings at the collector",
        Duration::from_secs(30),
        || {
            let fs = collector.findings(&token);
            (!of(&fs, "openai-api").is_empty() && !of(&fs, "anthropic-api").is_empty())
                .then_some(fs)
        },
    );
    let o = &of(&fs, "openai-api")[0];
    assert_eq!(o["verdict"], "unsanctioned", "policy default: {o}");
    assert_eq!(o["user"], "root");
    assert_eq!(o["hostname"], "e2e-host");
    assert_eq!(o["host_id"], "e2e-host-id");
    let sum = sh(Command::new("sha256sum").arg(&curl)).unwrap();
    assert_eq!(
        o["process"]["exe_sha256"],
        sum.split_whitespace().next().unwrap(),
        "{o}"
    );
    assert!(
        o["evidence"]["sni"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "api.openai.com"),
        "{o}"
    );
    assert!(
        o["evidence"]["dns_names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "api.openai.com"),
        "{o}"
    );
    let a = &of(&fs, "anthropic-api")[0];
    assert_eq!(
        a["verdict"], "sanctioned",
        "policy rule anthropic-ok, scoped to unix group root: {a}"
    );
    assert_eq!(a["rule"], "rule:anthropic-ok");
    // Privacy: names, addresses, identity and counts only.
    let text = serde_json::to_string(&fs).unwrap();
    assert!(
        !text.contains("HTTP/1.1") && !text.contains("GET /"),
        "no payloads stored"
    );
    // The local OCSF copy has the same findings as Detection Finding 2004.
    let local = std::fs::read_to_string(&jsonl).unwrap();
    assert!(
        local
            .lines()
            .any(|l| l.contains("\"class_uid\":2004") && l.contains("openai")),
        "{local}"
    );

    // Collector dies hard; the agent keeps observing and spools.
    collector.kill9();
    let before = fs.len();
    let during = curl_in(&t, &cert, "https://api.openai.com/");
    let _ = during;
    std::thread::sleep(Duration::from_secs(5)); // the window closes; uploads fail and retry
    let (collector, again_token, _) = Collector::start(&work.path().join("collector"), port);
    assert!(again_token.is_none(), "no new bootstrap on restart");
    let fs = wait_until(
        "spooled finding delivered after restart",
        Duration::from_secs(30),
        || {
            let fs = collector.findings(&token);
            (fs.len() > before).then_some(fs)
        },
    );
    // Exactly once: ids are unique.
    let mut ids: Vec<&str> = fs.iter().map(|f| f["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no finding stored twice");
}
