//! End-to-end: lineage of short-lived descendants, from the kernel's fork hook
//! (`agent-ebpf/src/lineage.rs`), with the real daemon and real programs in a network
//! namespace.
//!
//! The session root is a process the catalogue's hints call Claude Code by its executable
//! name (`claude`: here a copy of the system shell, so the test needs no account and runs no
//! AI code). It runs `sh -c '(sleep 0; curl …)'`: a shell, a subshell that never execs, and
//! a curl that resolves the name, is refused at once (nothing listens on port 81) and exits
//! within milliseconds — before the daemon reads /proc for it (with the fork hook switched
//! off, this test fails). The connection must still belong to the session: the parent comes from the
//! kernel's child → parent map when /proc no longer has it, and the subshell that was never
//! exec'd is climbed through.
//!
//! Needs root (eBPF, namespaces), curl and python3.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::Stdio;

use shadowai_tests::sessions::{agent_run_slow, has, items, wait_inventory, write_config};
use shadowai_tests::{Topology, serial};

#[test]
fn a_grandchild_that_forks_execs_and_exits_at_once_stays_in_its_session() {
    let _g = serial();
    let (t, _cert) =
        Topology::with_servers(&["api.anthropic.com"], "api.anthropic.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    write_config(&config, &state, None).unwrap();
    // Drained once a second: the grandchild has left /proc when its exec is read.
    let _agent = agent_run_slow(&config, 1000).unwrap();
    // Wait until the daemon writes its first inventory (its programs are attached).
    wait_inventory(&state, "the daemon's first inventory", 60, |_| true).unwrap();

    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::fs::copy("/bin/sh", &claude).unwrap();
    let marker = format!("lineage-{}", std::process::id());
    let script = format!(
        "sh -c '(sleep 0; curl -s --max-time 2 -o /dev/null http://api.anthropic.com:81/{marker})'; sleep 3"
    );
    let status = t
        .cmd(&t.client, claude.to_str().unwrap())
        .args(["-c", &script])
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the session's script failed: {status}");
    let root = claude.display().to_string();
    let inv = wait_inventory(
        &state,
        "the session with the grandchild's contact",
        30,
        |v| {
            items(v, "sessions").iter().any(|s| {
                s["kind"] == "claude-code"
                    && s["exe"] == root.as_str()
                    && has(s, "destinations", "api.anthropic.com")
            })
        },
    )
    .unwrap();
    let s = items(&inv, "sessions")
        .into_iter()
        .find(|s| s["exe"] == root.as_str())
        .unwrap();
    assert!(
        s["processes"].as_u64().unwrap() >= 3,
        "the root, its shell, the subshell and curl joined the session: {s}"
    );
}
