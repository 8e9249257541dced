//! End-to-end, the policy loop `cargo xtask run --demo` sets up: a real collector that
//! trusts a bundle key and checks against the repository's catalogue, a real agent enrolled
//! in the canary group with that key, and a real client. An admin proposes blocking a
//! service and switching to enforce, a second person approves both, the admin publishes
//! with `shadowai rules publish` (signed locally, rolled out to the canary group) — and the
//! agent loads the bundle, the client's next request to that service fails while others
//! work, and the collector holds a finding with `action: blocked`. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use shadowai_tests::{Collector, Daemon, Topology, bin, repo_root, serial, sh, wait_until};

fn curl(t: &Topology, cert: &str, url: &str) -> i32 {
    t.cmd(&t.client, "curl")
        .args([
            "-4",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "8",
            "--cacert",
            cert,
            url,
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

/// `shadowai ARGS` against the collector with `token`; stdout on success.
fn cli(c: &Collector, token: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(bin("shadowai").unwrap());
    cmd.args(args)
        .env("SHADOWAI_URL", &c.url)
        .env("SHADOWAI_CA", &c.ca)
        .env("SHADOWAI_TOKEN", token)
        .env("SHADOWAI_CONFIG", "/nonexistent/cli.toml");
    sh(&mut cmd).unwrap_or_else(|e| panic!("shadowai {args:?}: {e:#}"))
}

fn proposal_id(out: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(out).unwrap();
    v["id"].to_string()
}

#[test]
fn propose_approve_publish_and_the_agent_blocks() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(
        &["api.deepseek.com", "api.openai.com"],
        "api.deepseek.com A {v4}\napi.openai.com A {v4}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = |n: &str| work.path().join(n).to_str().unwrap().to_owned();
    sh(Command::new(bin("shadowai").unwrap()).args([
        "rules",
        "keygen",
        "--secret",
        &path("bundle.sec"),
        "--public",
        &path("bundle.pub"),
    ]))
    .unwrap();
    let catalogue = repo_root().join("rules/catalogue");
    let port = 19500 + (std::process::id() % 400) as u16;
    let data = work.path().join("collector");
    let c = Collector::start_with(
        &data,
        port,
        &[
            "--catalogue",
            catalogue.to_str().unwrap(),
            "--bundle-key",
            &path("bundle.pub"),
        ],
    )
    .unwrap();
    let admin = c.admin_token.clone().expect("bootstrap admin token");
    std::fs::write(path("enroll.secret"), c.enroll_secret.clone().unwrap()).unwrap();
    let created = sh(Command::new(bin("shadowai-collector").unwrap())
        .args([
            "token", "create", "--role", "approver", "--name", "bob", "--data",
        ])
        .arg(&data))
    .unwrap();
    let bob = created
        .lines()
        .find(|l| l.starts_with("sau_"))
        .unwrap()
        .to_owned();

    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{state}\"\nwindow_secs = 2\ngroup = \"canary\"\n\
             hostname = \"loop-host\"\nhost_id = \"loop-host-id\"\n\n\
             [rules]\ncatalogue = \"{cat}\"\nbundle_key = \"{key}\"\n\n\
             [collector]\nurl = \"{url}\"\nca = \"{ca}\"\nenroll_secret_file = \"{secret}\"\nupload_secs = 1\n",
            state = path("agent-state"),
            cat = catalogue.display(),
            key = path("bundle.pub"),
            url = c.url,
            ca = c.ca.display(),
            secret = path("enroll.secret"),
        ),
    )
    .unwrap();
    let _agent = Daemon::agent_run(&config).unwrap();
    assert_eq!(
        curl(&t, &cert, "https://api.deepseek.com/"),
        0,
        "monitor: allowed"
    );

    // Alice proposes; she cannot approve her own proposals; Bob approves both.
    let block = cli(
        &c,
        &admin,
        &[
            "rules",
            "propose",
            "--service",
            "deepseek-api",
            "--verdict",
            "blocked",
            "--reason",
            "data residency",
            "--json",
        ],
    );
    let enforce = cli(
        &c,
        &admin,
        &[
            "rules",
            "propose",
            "--service",
            "mode:enforce",
            "--verdict",
            "blocked",
            "--reason",
            "go live",
            "--json",
        ],
    );
    let mut own = Command::new(bin("shadowai").unwrap());
    own.args(["rules", "approve", &proposal_id(&block)])
        .env("SHADOWAI_URL", &c.url)
        .env("SHADOWAI_CA", &c.ca)
        .env("SHADOWAI_TOKEN", &admin)
        .env("SHADOWAI_CONFIG", "/nonexistent/cli.toml");
    assert!(
        sh(&mut own).is_err(),
        "a proposer cannot approve their own proposal"
    );
    for p in [&block, &enforce] {
        cli(&c, &bob, &["rules", "approve", &proposal_id(p)]);
    }
    let published = cli(
        &c,
        &admin,
        &[
            "rules",
            "publish",
            "--key",
            &path("bundle.sec"),
            "--mode",
            "enforce",
            "--canary-group",
            "canary",
        ],
    );
    assert!(published.contains("published bundle 1.0.0"), "{published}");

    // The agent loads it (its heartbeat says so) and blocks the service, only that one.
    wait_until(
        "the agent to load bundle 1.0.0",
        Duration::from_secs(60),
        || {
            let agents = c.get(&admin, "/api/v1/agents").ok()?;
            let a = agents
                .as_array()?
                .iter()
                .find(|a| a["host_id"] == "loop-host-id")?
                .clone();
            (a["bundle_version"] == "1.0.0" && a["mode"] == "enforce").then_some(())
        },
    )
    .unwrap();
    wait_until(
        "the blocked request to fail",
        Duration::from_secs(30),
        || (curl(&t, &cert, "https://api.deepseek.com/") != 0).then_some(()),
    )
    .unwrap();
    assert_eq!(
        curl(&t, &cert, "https://api.openai.com/"),
        0,
        "other services still work"
    );
    let f = wait_until(
        "a finding with action blocked",
        Duration::from_secs(60),
        || {
            c.findings(&admin)
                .into_iter()
                .find(|f| f["service_id"] == "deepseek-api" && f["action"] == "blocked")
        },
    )
    .unwrap();
    assert_eq!(f["verdict"], "blocked", "{f}");
    assert_eq!(f["hostname"], "loop-host", "{f}");
}
