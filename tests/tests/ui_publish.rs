//! The policy loop through the web UI in a real headless Chromium, ending in a real block:
//! a real collector that trusts a bundle key, a real agent enrolled in the canary group, and
//! a real client in a network namespace. In the browser (`tests/ui/publish.test.mjs`) the
//! admin proposes blocking a service and switching to enforce, cannot approve their own
//! proposals, a second person approves, and the admin signs the policy *in the browser*
//! (WebCrypto Ed25519 over a key file picked in the page; the test checks the seed is in no
//! request) and starts a canary rollout that shows its agents per stage. Then the agent loads
//! the bundle, the client's next request to the service fails while another service works,
//! and the findings page shows the use as `blocked`. Last the admin rolls the rollout back in
//! the browser (stop, compose the replaced bundle's content under a higher version, sign in
//! the page, upload, roll out to 100 %): the agent returns to the earlier bundle (published
//! before with the CLI and rolled out to every agent), the client reaches the service again,
//! and the audit log shows the rollback. Needs root, `cargo build --bins` and
//! `.ci/deps/collector-ui.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use shadowai_tests::browser::{Run, run_script};
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

/// `major.minor.patch` as numbers, for ordering.
fn semver(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

/// Waits until the agent reports running bundle `version` in `mode`.
fn wait_for_bundle(c: &Collector, admin: &str, version: &str, mode: &str) {
    wait_until(
        &format!("the agent to load bundle {version} ({mode})"),
        Duration::from_secs(60),
        || {
            let agents = c.get(admin, "/api/v1/agents").ok()?;
            agents
                .as_array()?
                .iter()
                .any(|a| {
                    a["host_id"] == "ui-loop-host-id"
                        && a["bundle_version"] == version
                        && a["mode"] == mode
                })
                .then_some(())
        },
    )
    .unwrap();
}

/// Runs one phase of the browser script; panics with its output when a step fails.
fn browser(url: &str, fixture: &Value, phase: &str, shots: &Path) {
    let Run { status, out, err } = run_script(
        "publish.test.mjs",
        url,
        fixture,
        shots,
        &[("PHASE", phase)],
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("browser phase {phase}: {e:#}"));
    println!("{out}");
    assert!(
        status.success() && out.contains(" passed, 0 failed"),
        "browser phase {phase} failed ({status}):\n{out}\n{err}\nscreenshots in {}",
        shots.display()
    );
}

#[test]
fn publish_and_rollout_from_the_browser_and_the_agent_blocks() {
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
    let seed = std::fs::read_to_string(path("bundle.sec"))
        .unwrap()
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap()
        .to_owned();
    let catalogue = repo_root().join("rules/catalogue");
    let port = 19100 + (std::process::id() % 400) as u16;
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
    let bob = sh(Command::new(bin("shadowai-collector").unwrap())
        .args([
            "token", "create", "--role", "approver", "--name", "bob", "--data",
        ])
        .arg(&data))
    .unwrap()
    .lines()
    .find(|l| l.starts_with("sau_"))
    .unwrap()
    .to_owned();

    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{state}\"\nwindow_secs = 2\ngroup = \"canary\"\n\
             hostname = \"ui-loop-host\"\nhost_id = \"ui-loop-host-id\"\n\n\
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
    wait_until(
        "the agent's first heartbeat",
        Duration::from_secs(60),
        || {
            let agents = c.get(&admin, "/api/v1/agents").ok()?;
            agents
                .as_array()?
                .iter()
                .any(|a| a["host_id"] == "ui-loop-host-id" && a["group"] == "canary")
                .then_some(())
        },
    )
    .unwrap();
    assert_eq!(
        curl(&t, &cert, "https://api.deepseek.com/"),
        0,
        "monitor: allowed"
    );
    // The stable bundle a rollback returns to: monitor mode, published with the CLI and
    // rolled out to every agent.
    let key = path("bundle.sec");
    cli(
        &c,
        &admin,
        &[
            "rules",
            "publish",
            "--key",
            &key,
            "--mode",
            "monitor",
            "--canary-group",
            "canary",
        ],
    );
    let first = c.get(&admin, "/api/v1/rollouts").unwrap()[0].clone();
    assert_eq!(first["bundle_version"], "1.0.0", "{first}");
    let first_id = first["id"].to_string();
    cli(
        &c,
        &admin,
        &["rules", "rollout", "advance", &first_id, "--percent", "100"],
    );
    wait_for_bundle(&c, &admin, "1.0.0", "monitor");

    let shots = std::env::var("SHADOWAI_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| work.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    // The analyst who proposes the block (issue 10: an analyst proposes, a second person
    // approves, the admin publishes).
    let ana = sh(Command::new(bin("shadowai-collector").unwrap())
        .args([
            "token", "create", "--role", "analyst", "--name", "ana", "--data",
        ])
        .arg(&data))
    .unwrap()
    .lines()
    .find(|l| l.starts_with("sau_"))
    .unwrap()
    .to_string();
    let fixture = json!({
        "analyst_token": ana,
        "admin_token": admin,
        "approver_token": bob,
        "key_file": path("bundle.sec"),
        "key_seed": seed,
        "service": "deepseek-api",
        "canary_group": "canary",
    });
    browser(&c.url, &fixture, "publish", &shots);

    // The bundle the browser signed reaches the agent, which blocks the service, only that one.
    let agent = wait_until(
        "the agent to load the browser-signed bundle",
        Duration::from_secs(60),
        || {
            let agents = c.get(&admin, "/api/v1/agents").ok()?;
            let a = agents
                .as_array()?
                .iter()
                .find(|a| a["host_id"] == "ui-loop-host-id")?
                .clone();
            (a["bundle_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("1."))
                && a["mode"] == "enforce")
                .then_some(a)
        },
    )
    .unwrap();
    let bundles = c.get(&admin, "/api/v1/bundles").unwrap();
    let b = bundles
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["version"] == agent["bundle_version"])
        .unwrap();
    assert!(
        b["note"].as_str().unwrap().contains("web UI"),
        "the agent runs the bundle published from the browser: {b}"
    );
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
    wait_until(
        "a finding with action blocked",
        Duration::from_secs(60),
        || {
            c.findings(&admin)
                .into_iter()
                .find(|f| f["service_id"] == "deepseek-api" && f["action"] == "blocked")
        },
    )
    .unwrap();
    browser(&c.url, &fixture, "verify", &shots);

    // The admin rolls the rollout back in the browser; the agent returns to the content of
    // 1.0.0 under a higher version and the service works again.
    let bad = agent["bundle_version"].as_str().unwrap().to_owned();
    let mut fixture = fixture;
    fixture["bad_version"] = json!(bad);
    fixture["previous_version"] = json!("1.0.0");
    browser(&c.url, &fixture, "rollback", &shots);
    let rollouts = c.get(&admin, "/api/v1/rollouts").unwrap();
    let back = rollouts[0].clone();
    assert_eq!(back["stage"], "all", "{rollouts}");
    assert_eq!(back["previous_version"], "1.0.0", "{rollouts}");
    let back_version = back["bundle_version"].as_str().unwrap().to_owned();
    assert!(
        semver(&back_version) > semver(&bad),
        "the rollback goes out under a higher version than {bad}: {back_version}"
    );
    assert!(
        rollouts
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["bundle_version"] == bad.as_str() && r["stage"] == "rolled_back"),
        "{rollouts}"
    );
    wait_for_bundle(&c, &admin, &back_version, "monitor");
    wait_until(
        "the rolled-back service to work again",
        Duration::from_secs(30),
        || (curl(&t, &cert, "https://api.deepseek.com/") == 0).then_some(()),
    )
    .unwrap();
    // Same content as 1.0.0, newly signed: only version and dates differ.
    let strip = |v: &str| {
        let mut env = c.get(&admin, &format!("/api/v1/bundles/{v}/file")).unwrap();
        let body = env["body"].as_object_mut().unwrap();
        for k in ["version", "issued_at", "expires_at"] {
            body.remove(k);
        }
        env["body"].clone()
    };
    assert_eq!(strip(&back_version), strip("1.0.0"));
    let audit = c.get(&admin, "/api/v1/audit?limit=1000").unwrap();
    let stopped = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "rollout.rollback")
        .unwrap_or_else(|| panic!("no rollout.rollback in the audit log: {audit}"));
    assert!(
        stopped["details"].to_string().contains("breaks the build"),
        "{stopped}"
    );
}
