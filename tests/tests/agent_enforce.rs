//! End-to-end enforce mode: the policy blocks two services; the real agent makes the kernel
//! refuse a DNS query for a blocked name (EPERM before the query leaves the host) and a
//! connect() into a blocked service's published network, lets everything else through,
//! reports the blocked uses as findings with action `blocked`, and fails open when it
//! stops. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use shadowai_tests::{Daemon, Topology, repo_root, serial};

fn curl(t: &Topology, cert: &str, url: &str) -> (i32, Duration) {
    let start = Instant::now();
    let st = t
        .cmd(&t.client, "curl")
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
        .unwrap();
    (st.code().unwrap_or(-1), start.elapsed())
}

#[test]
fn enforce_mode_blocks_precisely_reports_and_fails_open() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(
        &["api.deepseek.com", "api.openai.com"],
        "api.deepseek.com A {v4}\napi.openai.com A {v4}\n",
    )
    .unwrap();

    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
         [[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\", \"anthropic-api\"]\n",
    )
    .unwrap();
    let jsonl = work.path().join("findings.jsonl");
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\nwindow_secs = 2\n\n[rules]\ncatalogue = \"{}\"\npolicy = \"{}\"\n\n[output]\nfindings_jsonl = \"{}\"\n",
            work.path().join("state").display(),
            repo_root().join("rules/catalogue").display(),
            policy.display(),
            jsonl.display()
        ),
    )
    .unwrap();

    // Before the agent runs, the blocked name resolves and connects.
    assert_eq!(
        curl(&t, &cert, "https://api.deepseek.com/").0,
        0,
        "baseline"
    );

    let agent = Daemon::agent_run(&config).unwrap();
    std::thread::sleep(Duration::from_secs(3));

    // The blocked name: the resolver's query fails with EPERM, so curl cannot resolve it,
    // at once (no timeout).
    let (code, took) = curl(&t, &cert, "https://api.deepseek.com/");
    assert_eq!(code, 6, "curl: could not resolve host");
    assert!(
        took < Duration::from_secs(3),
        "refused at once, took {took:?}"
    );
    // Precision: another AI service and the DNS server itself still work.
    assert_eq!(
        curl(&t, &cert, "https://api.openai.com/").0,
        0,
        "unblocked service still reachable"
    );
    // A blocked service's published network: connect() is refused with EPERM (the client
    // namespace has no route there, so without the block this would be ENETUNREACH).
    let out = t
        .cmd(&t.client, "python3")
        .args(["-c", "import socket,errno\ntry:\n    socket.create_connection(('160.79.104.10',443),timeout=3)\nexcept OSError as e:\n    print(errno.errorcode.get(e.errno))\n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EPERM");

    // The blocked uses are findings with action `blocked`.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut deepseek, mut anthropic) = (false, false);
    while Instant::now() < deadline && !(deepseek && anthropic) {
        std::thread::sleep(Duration::from_millis(500));
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let blob = v.to_string();
            let blocked = blob.contains("\"blocked\"") || blob.contains("Blocked");
            deepseek |= blob.contains("deepseek-api") && blocked;
            anthropic |=
                blob.contains("anthropic-api") && blocked && blob.contains("160.79.104.10");
        }
    }
    assert!(
        deepseek && anthropic,
        "blocked findings in {}:\n{}",
        jsonl.display(),
        std::fs::read_to_string(&jsonl).unwrap_or_default()
    );

    // Fail-open: when the agent stops, its programs detach and the name resolves again.
    agent.stop();
    assert_eq!(
        curl(&t, &cert, "https://api.deepseek.com/").0,
        0,
        "fail-open after the agent stops"
    );
}
