//! The packaged unit grants what enforcement's teardown needs: the agent run with exactly
//! the unit's `CapabilityBoundingSet` (`setpriv --bounding-set`, no inheritable caps, no
//! new privileges) destroys a refused socket that lives in another network namespace, so
//! the client fails fast. Without CAP_SYS_ADMIN (entering that namespace) the teardown is
//! refused: the agent says so once in its log and counts every refusal in
//! `shadowai_enforce_teardowns_total{result="denied"}` instead of failing open silently.
//! (The unit's seccomp side — `RestrictNamespaces=net`, `@system-service` — needs systemd
//! and is not exercised here.) Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::time::Duration;

use shadowai_tests::enforce::{Setup, agent_under, lines_of, py_client};
use shadowai_tests::{Topology, repo_root, serial};

/// `setpriv` arguments granting exactly `caps` (lower-case names without `CAP_`).
fn setpriv(caps: &[String]) -> Vec<String> {
    let set: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    [
        "setpriv",
        "--bounding-set",
        &set,
        "--inh-caps",
        "-all",
        "--no-new-privs",
        "--",
    ]
    .map(str::to_string)
    .to_vec()
}

/// The agent unit's `CapabilityBoundingSet`, as `setpriv` names them.
fn unit_caps() -> Vec<String> {
    let unit = repo_root().join("packaging/systemd/shadowai-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

fn teardowns(setup: &Setup, result: &str) -> f64 {
    setup
        .metric("shadowai_enforce_teardowns_total", &[("result", result)])
        .unwrap()
        .unwrap_or(0.0)
}

const POLICY: &str = "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
    [[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\n";

#[test]
fn the_units_capabilities_destroy_refused_sockets_in_other_namespaces() {
    let _g = serial();
    let (t, _cert) =
        Topology::with_servers(&["api.deepseek.com"], "api.deepseek.com A {v4}\n").unwrap();
    let v4 = t.remote_v4.clone();
    let caps = unit_caps();
    assert!(caps.iter().any(|c| c == "sys_admin"), "{caps:?}");

    // Exactly the unit's set: the client (in its own namespace) is aborted at once.
    let setup = Setup::new(POLICY).unwrap();
    let (agent, _lines) = agent_under(&setpriv(&caps), &setup.config).unwrap();
    let o = py_client(&t, &[], "tls", &[&v4, "api.deepseek.com"]).unwrap();
    assert!(!o.ok, "the blocked service was reachable");
    assert!(
        o.took < Duration::from_secs(1),
        "with the unit's capabilities the refusal took {:?}: {}",
        o.took,
        o.error
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while teardowns(&setup, "destroyed") < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(teardowns(&setup, "destroyed") >= 1.0);
    assert_eq!(teardowns(&setup, "denied"), 0.0);
    drop(agent);

    // One capability fewer: refused, not destroyed — said once, counted each time.
    let fewer: Vec<String> = caps.into_iter().filter(|c| c != "sys_admin").collect();
    let setup = Setup::new(POLICY).unwrap();
    let (agent, lines) = agent_under(&setpriv(&fewer), &setup.config).unwrap();
    for _ in 0..2 {
        let o = py_client(&t, &[], "tls", &[&v4, "api.deepseek.com"]).unwrap();
        assert!(!o.ok, "without CAP_SYS_ADMIN the block must still hold");
        eprintln!("without CAP_SYS_ADMIN: {:?} ({})", o.took, o.error);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while teardowns(&setup, "denied") < 2.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(teardowns(&setup, "denied") >= 2.0, "every refusal counted");
    let said = lines_of(&lines)
        .iter()
        .filter(|l| l.contains("refused sockets cannot be destroyed"))
        .count();
    assert_eq!(said, 1, "logged exactly once");
    drop(agent);
}
