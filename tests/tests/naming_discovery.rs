//! End-to-end discovery loop: a real agent (`run`) enrolled with a real collector; a
//! python process that uses the OpenAI API (a catalogue model API) and then an inference
//! relay the catalogue does not know. The collector lists the relay as a candidate with
//! the host and the process; a benign process's names are not candidates. Then the
//! promotion, with the real CLI: an analyst proposes the relay as a catalogue entry, the
//! proposer cannot approve it, a second person (approver) does, the admin publishes
//! (`shadowai rules publish`, signed locally, rolled out to the agent's group), the agent
//! loads the bundle — and the python process's next use of the relay is a finding of the
//! new service.
//!
//! Needs root (eBPF, namespaces).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::time::Duration;

use serde_json::Value;
use shadowai_tests::{Collector, Daemon, Topology, bin, repo_root, serial, sh, wait_until};

/// `shadowai ARGS` against the collector with `token`: stdout, or the error.
fn cli(c: &Collector, token: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new(bin("shadowai")?);
    cmd.args(args)
        .env("SHADOWAI_URL", &c.url)
        .env("SHADOWAI_CA", &c.ca)
        .env("SHADOWAI_TOKEN", token)
        .env("SHADOWAI_CONFIG", "/nonexistent/cli.toml");
    sh(&mut cmd)
}

/// A person token made with `shadowai-collector token create`.
fn person(data: &std::path::Path, role: &str, name: &str) -> String {
    let out = sh(
        std::process::Command::new(bin("shadowai-collector").unwrap())
            .args(["token", "create", "--role", role, "--name", name, "--data"])
            .arg(data),
    )
    .unwrap();
    out.lines()
        .find(|l| l.starts_with("sau_"))
        .unwrap()
        .to_owned()
}

fn tls_to(t: &Topology, names: &[&str]) {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let code = format!(
        "import socket,ssl\nc=ssl.create_default_context()\nc.check_hostname=False\nc.verify_mode=ssl.CERT_NONE\n\
         for n in [{list}]:\n  s=socket.create_connection((n,443),timeout=5)\n  c.wrap_socket(s,server_hostname=n).close()\n\
         print('ok')\n"
    );
    let out = sh(t.cmd(&t.client, "python3").args(["-c", &code])).unwrap();
    assert_eq!(out.trim(), "ok");
}

#[test]
fn an_unknown_relay_used_by_an_sdk_process_reaches_the_collector_as_a_candidate() {
    let _g = serial();
    let (t, _cert) = Topology::with_servers(
        &[
            "api.openai.com",
            "api.newrelay.example",
            "www.benign.example",
        ],
        "api.openai.com A {v4}\napi.newrelay.example A {v4}\nwww.benign.example A {v4}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = 21000 + (std::process::id() % 500) as u16;
    let path = |n: &str| work.path().join(n).to_str().unwrap().to_owned();
    sh(std::process::Command::new(bin("shadowai").unwrap()).args([
        "rules",
        "keygen",
        "--secret",
        &path("bundle.sec"),
        "--public",
        &path("bundle.pub"),
    ]))
    .unwrap();
    let data = work.path().join("collector");
    let collector = Collector::start_with(
        &data,
        port,
        &[
            "--catalogue",
            repo_root().join("rules/catalogue").to_str().unwrap(),
            "--bundle-key",
            &path("bundle.pub"),
        ],
    )
    .unwrap();
    let token = collector.admin_token.clone().expect("admin token");
    let carol = person(&data, "analyst", "carol");
    let bob = person(&data, "approver", "bob");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\nhostname = \"disc-host\"\nhost_id = \"disc-host-id\"\n\
             group = \"canary\"\n\n\
             [rules]\ncatalogue = \"{}\"\nbundle_key = \"{}\"\n\n\
             [collector]\nurl = \"{}\"\nca = \"{}\"\nenroll_secret_file = \"{}\"\nupload_secs = 1\n",
            work.path().join("state").display(),
            repo_root().join("rules/catalogue").display(),
            path("bundle.pub"),
            collector.url,
            collector.ca.display(),
            secret.display()
        ),
    )
    .unwrap();
    let _agent = Daemon::agent_run(&config).unwrap();

    // The SDK process: a catalogue model API, then an unknown relay.
    tls_to(&t, &["api.openai.com", "api.newrelay.example"]);
    // Another process, no AI use: its name is no candidate.
    sh(t.cmd(&t.client, "curl").args([
        "-4",
        "-sk",
        "-o",
        "/dev/null",
        "https://www.benign.example/",
    ]))
    .unwrap();

    let list: Vec<Value> = wait_until(
        "the relay listed as a discovery candidate",
        Duration::from_secs(60),
        || {
            let v = collector.get(&token, "/api/v1/discovery").ok()?;
            let items = v.as_array()?.clone();
            items
                .iter()
                .any(|c| c["name"] == "api.newrelay.example")
                .then_some(items)
        },
    )
    .unwrap();
    let c = list
        .iter()
        .find(|c| c["name"] == "api.newrelay.example")
        .unwrap();
    assert_eq!(c["hosts"], serde_json::json!(["disc-host-id"]), "{c:#}");
    assert!(
        c["processes"][0].as_str().unwrap().contains("python3"),
        "{c:#}"
    );
    assert_eq!(c["reasons"], serde_json::json!(["ai_process"]));
    assert_eq!(c["alongside"], serde_json::json!(["openai-api"]));
    assert!(
        !list.iter().any(|c| c["name"] == "www.benign.example"),
        "{list:#?}"
    );
    assert!(
        !list.iter().any(|c| c["name"] == "api.openai.com"),
        "catalogued names are never candidates"
    );

    // Promote through the proposal flow, with the real CLI. The analyst proposes the entry;
    // the answer shows what it would name.
    let proposed = cli(
        &collector,
        &carol,
        &[
            "discovery",
            "propose",
            "--candidate",
            "api.newrelay.example",
            "--id",
            "newrelay-api",
            "--name",
            "NewRelay API",
            "--vendor",
            "NewRelay",
            "--category",
            "model_api",
            "--host",
            "api.newrelay.example",
            "--trains",
            "unknown",
            "--retention",
            "extended",
            "--jurisdiction",
            "US",
            "--source",
            "https://newrelay.example/legal/privacy",
            "--checked",
            "2026-11-20",
            "--reason",
            "an inference relay used by SDK processes",
            "--json",
        ],
    )
    .unwrap();
    let p: Value = serde_json::from_str(&proposed).unwrap();
    let id = p["id"].to_string();
    assert_eq!(p["status"], "pending", "{p:#}");
    assert_eq!(
        p["impact"]["candidates"],
        serde_json::json!(["api.newrelay.example"])
    );
    assert_eq!(p["impact"]["hosts"], serde_json::json!(["disc-host-id"]));
    // An entry claiming a name of an existing service is refused, naming the field.
    let err = cli(
        &collector,
        &carol,
        &[
            "discovery",
            "propose",
            "--id",
            "copy",
            "--name",
            "Copy",
            "--vendor",
            "X",
            "--category",
            "model_api",
            "--host",
            "api.openai.com",
            "--trains",
            "no",
            "--retention",
            "none",
            "--jurisdiction",
            "US",
            "--source",
            "https://x.example/terms",
            "--checked",
            "2026-11-20",
            "--reason",
            "r",
        ],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("entry.hosts[0]"), "{err:#}");
    // Neither the proposer nor an admin approves; a different approver does.
    assert!(cli(&collector, &carol, &["discovery", "approve", &id]).is_err());
    assert!(cli(&collector, &token, &["discovery", "approve", &id]).is_err());
    cli(&collector, &bob, &["discovery", "approve", &id]).unwrap();
    let listed = cli(&collector, &token, &["discovery", "list", "--json"]).unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let relay = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "api.newrelay.example")
        .unwrap();
    assert_eq!(relay["proposal"]["status"], "approved", "{relay:#}");

    // Publish (monitor: nothing becomes blocked, so no other approval is needed) and wait
    // for the agent to load the bundle.
    let published = cli(
        &collector,
        &token,
        &[
            "rules",
            "publish",
            "--key",
            &path("bundle.sec"),
            "--mode",
            "monitor",
            "--canary-group",
            "canary",
        ],
    )
    .unwrap();
    assert!(published.contains("published bundle 1.0.0"), "{published}");
    wait_until(
        "the agent to load bundle 1.0.0",
        Duration::from_secs(60),
        || {
            let agents = collector.get(&token, "/api/v1/agents").ok()?;
            agents
                .as_array()?
                .iter()
                .any(|a| a["host_id"] == "disc-host-id" && a["bundle_version"] == "1.0.0")
                .then_some(())
        },
    )
    .unwrap();
    // The same process's next use of the relay is a finding of the new service.
    let f = wait_until(
        "a finding of the promoted service",
        Duration::from_secs(60),
        || {
            tls_to(&t, &["api.newrelay.example"]);
            collector
                .findings(&token)
                .into_iter()
                .find(|f| f["service_id"] == "newrelay-api")
        },
    )
    .unwrap();
    assert_eq!(f["host_id"], "disc-host-id", "{f}");
    assert!(
        f["process"]["exe"].as_str().unwrap().contains("python3"),
        "{f}"
    );
    assert!(
        f["evidence"]["sni"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "api.newrelay.example"),
        "{f}"
    );
    // A compromised host holding the agent token floods reports: its share of the table
    // fills, the rest is refused and counted, and the collector keeps answering.
    let agent_token = std::fs::read_to_string(work.path().join("state/agent.token")).unwrap();
    let mut refused = 0;
    for batch in 0..10 {
        let cands: Vec<Value> = (0..256)
            .map(|i| {
                serde_json::json!({
                    "name": format!("llm{batch}-{i}.flood.example"),
                    "reason": "name_pattern",
                    "exe": "/tmp/flood",
                    "count": 1,
                    "first_seen_ms": 1,
                    "last_seen_ms": 1
                })
            })
            .collect();
        let body = serde_json::json!({ "candidates": cands }).to_string();
        let ack = sh(std::process::Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            collector.ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {}", agent_token.trim()),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &format!("{}/api/v1/discovery/report", collector.url),
        ]))
        .unwrap();
        let ack: Value = serde_json::from_str(&ack).unwrap();
        refused += ack["refused"].as_u64().unwrap();
    }
    assert!(refused >= 10 * 256 - 2000, "refused {refused}");
    let metrics = sh(std::process::Command::new("curl").args([
        "-sS",
        "--cacert",
        collector.ca.to_str().unwrap(),
        &format!("{}/metrics", collector.url),
    ]))
    .unwrap();
    assert!(
        metrics.contains(&format!(
            "shadowai_collector_discovery_refused_total {refused}"
        )),
        "{metrics}"
    );
    // A report over the per-report cap is refused whole at parse time.
    let too_many: Vec<Value> = (0..257)
        .map(|i| serde_json::json!({"name": format!("x{i}.example"), "reason": "name_pattern", "exe": "/x", "count": 1, "first_seen_ms": 1, "last_seen_ms": 1}))
        .collect();
    let code = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            collector.ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {}", agent_token.trim()),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &serde_json::json!({ "candidates": too_many }).to_string(),
            &format!("{}/api/v1/discovery/report", collector.url),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&code.stdout), "400");
    assert!(collector.get(&token, "/api/v1/discovery").is_ok());

    // Agents only: an analyst token cannot report, and an agent cannot pick another host.
    let refused = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            collector.ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"candidates\":[]}",
            &format!("{}/api/v1/discovery/report", collector.url),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
}
