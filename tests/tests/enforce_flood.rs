//! A local user cannot flood the agent into letting a held ClientHello through: while one
//! process floods the host with junk (UDP DNS queries for random names and connects to
//! ever-new ports, every one an event for the agent), another's ClientHello whose SNI is
//! in its second segment — the case only the agent can decide, inside the kernel's hold —
//! to a blocked name is still refused, each time in < 1 s, and a sanctioned one still
//! works. Held hellos travel in their own ring buffer, drained before the bulk of events.
//! Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use shadowai_tests::enforce::{Setup, py_client};
use shadowai_tests::{Daemon, PY_FLOOD, Topology, serial};

#[test]
fn a_flood_of_junk_events_cannot_make_a_held_hello_fall_open() {
    let _g = serial();
    let (t, _cert) = Topology::with_servers(
        &["api.deepseek.com", "api.openai.com"],
        "api.deepseek.com A {v4}\napi.openai.com A {v4}\n",
    )
    .unwrap();
    let v4 = t.remote_v4.clone();
    let setup = Setup::new(
        "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
         [[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\n",
    )
    .unwrap();
    let _agent = Daemon::agent_run(&setup.config).unwrap();
    let before = (
        setup.kernel_drops("ringbuf_full").unwrap(),
        setup.kernel_drops("hold_expired").unwrap(),
    );

    let secs = 20.0;
    let flood = t
        .cmd(&t.client, "python3")
        .args(["-c", PY_FLOOD, &v4, &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(2)); // the flood is under way
    let mut refused = Vec::new();
    while start.elapsed() < Duration::from_secs_f64(secs - 4.0) {
        let o = py_client(&t, &[], "split-hello", &[&v4, "api.deepseek.com"]).unwrap();
        assert!(
            !o.ok,
            "a held hello to a blocked name got through the flood"
        );
        assert!(
            o.took < Duration::from_secs(1),
            "refused after {:?} under the flood (must be < 1 s): {}",
            o.took,
            o.error
        );
        refused.push(o.took);
    }
    let ok = py_client(&t, &[], "split-hello", &[&v4, "api.openai.com"]).unwrap();
    assert!(
        ok.ok,
        "the sanctioned service under the flood: {}",
        ok.error
    );
    let out = flood.wait_with_output().unwrap();
    let made: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let after = (
        setup.kernel_drops("ringbuf_full").unwrap(),
        setup.kernel_drops("hold_expired").unwrap(),
    );
    eprintln!(
        "flood: {made} junk packets/connects in {secs} s ({:.0}/s); {} blocked split hellos refused in {:?}; \
         kernel ring-buffer drops during the test: {}; holds expired undecided: {}",
        made as f64 / secs,
        refused.len(),
        refused,
        after.0 - before.0,
        after.1 - before.1
    );
    assert!(refused.len() >= 3, "too few attempts: {refused:?}");
    assert!(made > 10_000, "the flood was no flood: {made}");
    setup
        .wait_finding("deepseek-api", "blocked", "sni")
        .unwrap();
}
