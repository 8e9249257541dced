//! The discovery page in Debian's Chromium (playwright-core, `tests/ui/naming.test.mjs`)
//! against the real collector binary: an agent reports an unknown relay; an analyst opens
//! Discovery, clicks "Propose entry", sees an invalid entry refused with the field named,
//! proposes a valid one and sees its impact; on the Rules page the proposer cannot approve
//! it, a second person (approver) can; Discovery then shows the candidate promoted and the
//! catalogue page lists the new service. Needs `bash .ci/deps/collector-ui.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shadowai_api::client::Client;
use shadowai_api::discovery::{DiscoveryCandidate, DiscoveryReason, DiscoveryReport};
use shadowai_api::wire::EnrollRequest;
use shadowai_tests::browser::{Run, chromium, run_script};
use shadowai_tests::{Collector, bin, repo_root};

fn person(data: &Path, role: &str, name: &str) -> String {
    let out = Command::new(bin("shadowai-collector").unwrap())
        .args(["token", "create", "--role", role, "--name", name, "--data"])
        .arg(data)
        .env("SHADOWAI_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "token create: {stdout}");
    stdout
        .lines()
        .find(|l| l.starts_with("sau_"))
        .unwrap()
        .to_owned()
}

#[test]
fn an_analyst_promotes_a_candidate_in_the_web_ui_and_an_approver_approves_it() {
    chromium().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let catalogue = repo_root().join("rules/catalogue");
    let c =
        Collector::start_with(&data, port, &["--catalogue", catalogue.to_str().unwrap()]).unwrap();
    let carol = person(&data, "analyst", "carol");
    let bob = person(&data, "approver", "bob");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let anon = Client::builder(&c.url)
            .ca_pem(&std::fs::read(&c.ca).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let enrolled = anon
            .enroll(&EnrollRequest {
                secret: c.enroll_secret.clone().unwrap(),
                host_id: "ui-host".into(),
                hostname: "ui-host".into(),
                group: None,
                agent_version: "0.1.0".into(),
                host_key: "cd".repeat(32),
            })
            .await
            .unwrap();
        anon.with_token(enrolled.token)
            .report_discovery(&DiscoveryReport {
                candidates: vec![DiscoveryCandidate {
                    name: "api.newrelay.example".into(),
                    reason: DiscoveryReason::AiProcess,
                    exe: "/usr/bin/python3".into(),
                    alongside: Some("openai-api".into()),
                    count: 4,
                    first_seen_ms: 1,
                    last_seen_ms: 2,
                }],
                dropped: 0,
            })
            .await
            .unwrap();
    });

    let fixture = serde_json::json!({
        "analyst_token": carol,
        "approver_token": bob,
        "candidate": "api.newrelay.example",
        "host": "ui-host",
    });
    let shots = dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let Run { status, out, err } = run_script(
        "naming.test.mjs",
        &c.url,
        &fixture,
        &shots,
        &[],
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("the browser test: {e:#}"));
    println!("{out}");
    assert!(
        status.success() && out.contains(" passed, 0 failed"),
        "browser test failed ({status}):\n{out}\n{err}\nscreenshots in {}",
        shots.display()
    );
    // What the browser did is what the collector holds.
    let list = c
        .get(&bob, "/api/v1/discovery/proposals?status=approved")
        .unwrap();
    let p = &list.as_array().unwrap()[0];
    assert_eq!(p["entry"]["id"], "newrelay-api", "{p:#}");
    assert_eq!(p["proposed_by"], "carol");
    assert_eq!(p["decided_by"], "bob");
}
