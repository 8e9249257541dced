//! End-to-end: a standalone HTTP MCP server — started by hand, not by any AI agent — is
//! found from its command line and its listener by the real daemon and inventoried with
//! its bind address. The server is the reference `@modelcontextprotocol/server-everything`
//! (pinned in `.ci/deps/sessions.sh`) on its Streamable HTTP transport, in a network
//! namespace of the test's own.
//!
//! Needs root (eBPF, namespaces), Node.js and `.ci/deps/sessions.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use shadowai_tests::sessions::{agents_dir, items, wait_inventory, write_config};
use shadowai_tests::{Daemon, Topology, serial};

const PACKAGE: &str = "@modelcontextprotocol/server-everything";

#[test]
fn a_standalone_streamable_http_mcp_server_is_inventoried_with_its_bind_address() {
    let _g = serial();
    let script = agents_dir()
        .join("node_modules")
        .join(PACKAGE)
        .join("dist/index.js");
    assert!(
        script.exists(),
        "{} missing: run .ci/deps/sessions.sh",
        script.display()
    );
    let t = Topology::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    write_config(&config, &state, None).unwrap();
    let _agent = Daemon::agent_run(&config).unwrap();
    wait_inventory(&state, "the daemon's first inventory", 60, |_| true).unwrap();

    let port = 3001 + (std::process::id() % 500) as u16;
    let mut server = t
        .cmd(&t.client, "env")
        .arg(format!("PORT={port}"))
        .arg("node")
        .arg(&script)
        .arg("streamableHttp")
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let found = wait_inventory(
        &state,
        "the standalone MCP server and its listener",
        90,
        |v| {
            items(v, "mcp_servers").iter().any(|m| {
                m["package"] == PACKAGE
                    && m["listeners"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|l| l["port"] == port))
            })
        },
    );
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", server.id())])
        .status();
    let _ = server.wait();
    let inv = found.unwrap();
    let m = items(&inv, "mcp_servers")
        .into_iter()
        .find(|m| m["package"] == PACKAGE)
        .unwrap();
    assert_eq!(m["transport"], "http", "{m}");
    assert_eq!(m["launcher"], "local", "{m}");
    assert!(
        m.get("session_id").is_none_or(|s| s.is_null()),
        "no agent started it: {m}"
    );
    let l = m["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == port)
        .unwrap();
    // Node listens on every interface (`::`, dual stack): reachable from the network.
    assert_eq!(l["addr"], "::", "{m}");
    assert_eq!(l["exposed"], true, "{m}");
}
