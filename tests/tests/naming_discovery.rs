//! End-to-end discovery loop: a real agent (`run`) enrolled with a real collector; a
//! python process that uses the OpenAI API (a catalogue model API) and then an inference
//! relay the catalogue does not know. The collector lists the relay as a candidate with
//! the host and the process; a benign process's names are not candidates.
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
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let token = collector.admin_token.clone().expect("admin token");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\nhostname = \"disc-host\"\nhost_id = \"disc-host-id\"\n\n\
             [rules]\ncatalogue = \"{}\"\n\n\
             [collector]\nurl = \"{}\"\nca = \"{}\"\nenroll_secret_file = \"{}\"\nupload_secs = 1\n",
            work.path().join("state").display(),
            repo_root().join("rules/catalogue").display(),
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

    // Promote: the draft entry validates with the shipped catalogue and names the relay.
    let draft = sh(std::process::Command::new("curl").args([
        "-sS",
        "--fail-with-body",
        "--cacert",
        collector.ca.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!(
            "{}/api/v1/discovery/draft?name=api.newrelay.example",
            collector.url
        ),
    ]))
    .unwrap();
    assert!(
        draft.contains("hosts = [\"api.newrelay.example\"]"),
        "{draft}"
    );
    let cat = work.path().join("catalogue");
    std::fs::create_dir_all(&cat).unwrap();
    for f in std::fs::read_dir(repo_root().join("rules/catalogue")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, cat.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(cat.join("api-newrelay-example.toml"), &draft).unwrap();
    let cli = bin("shadowai").unwrap();
    sh(std::process::Command::new(&cli).args([
        "rules",
        "validate",
        "--catalogue",
        cat.to_str().unwrap(),
    ]))
    .unwrap();
    let explained = sh(std::process::Command::new(&cli).args([
        "rules",
        "explain",
        "api.newrelay.example",
        "--catalogue",
        cat.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(explained.contains("api-newrelay-example"), "{explained}");

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
