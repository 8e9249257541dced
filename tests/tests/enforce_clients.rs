//! Enforcement against real clients, every name served from ONE address (the CDN case):
//! a blocked service fails fast (< 1 s) whichever way the client found the address — DNS
//! over UDP and TCP, `curl --resolve` over IPv4 and IPv6 (no DNS at all), Python's ssl, a
//! ClientHello whose SNI is in its second segment (decided in userspace), QUIC (aioquic)
//! over IPv4 and IPv6 —
//! while a sanctioned AI service and a benign site on the same address keep working.
//! Every refusal is a finding with `action: blocked`, the deciding rule and the layer;
//! monitor mode reports the same uses as `would_block` and refuses nothing; after SIGKILL
//! the agent's programs are gone and everything works again. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::time::Duration;

use shadowai_tests::enforce::{Outcome, Setup, curl, py_client};
use shadowai_tests::{Daemon, Topology, repo_root, serial};

const NAMES: [&str; 3] = ["api.deepseek.com", "api.openai.com", "www.example.org"];
const ZONE: &str = "api.deepseek.com A {v4}\napi.openai.com A {v4}\nwww.example.org A {v4}\n";
const FAST: Duration = Duration::from_secs(1);

fn policy(mode: &str) -> String {
    format!(
        "mode = \"{mode}\"\ndefault_verdict = \"unsanctioned\"\n\n\
         [[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\n\n\
         [[rules]]\nid = \"openai-ok\"\nverdict = \"sanctioned\"\nservices = [\"openai-api\"]\n"
    )
}

/// The topology with DNS + TLS servers for [`NAMES`] and aioquic servers on 4433 of the
/// remote's IPv4 and IPv6 addresses.
fn topology() -> (Topology, String) {
    let (mut t, cert) = Topology::with_servers(&NAMES, ZONE).unwrap();
    let key = t.dir.path().join("key.pem");
    let helper = repo_root().join("agent/decode/tests/netns_helper.py");
    for addr in [t.remote_v4.clone(), t.remote_v6.clone()] {
        t.start_server(
            "python3",
            &[
                helper.to_str().unwrap(),
                "quic-server",
                &cert,
                key.to_str().unwrap(),
                &addr,
            ],
        )
        .unwrap();
    }
    (t, cert)
}

fn refused_fast(what: &str, o: &Outcome) {
    assert!(!o.ok, "{what}: the blocked service was reachable");
    assert!(
        o.took < FAST,
        "{what}: failed after {:?} (must be < 1 s): {}",
        o.took,
        o.error
    );
    eprintln!("{what}: refused in {:?} ({})", o.took, o.error);
}

fn works(what: &str, o: &Outcome) {
    assert!(o.ok, "{what}: must work: {}", o.error);
}

fn resolve(name: &str, addr: &str) -> String {
    format!("{name}:443:{addr}")
}

#[test]
fn enforce_refuses_every_client_path_fast_and_only_the_blocked_service() {
    let _g = serial();
    let (t, cert) = topology();
    let cert = Path::new(&cert);
    let (v4, v6) = (t.remote_v4.clone(), t.remote_v6.clone());
    let v6b = format!("[{v6}]");
    let setup = Setup::new(&policy("enforce")).unwrap();

    // Baselines: without the agent every path reaches the server.
    works(
        "baseline curl",
        &curl(&t, &[], cert, &["https://api.deepseek.com/"]).unwrap(),
    );
    works(
        "baseline split hello",
        &py_client(&t, &[], "split-hello", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    works(
        "baseline DNS over TCP",
        &py_client(&t, &[], "dns-tcp", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    works(
        "baseline QUIC",
        &py_client(&t, &[], "quic", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    works(
        "baseline QUIC over IPv6",
        &py_client(&t, &[], "quic", &[&v6, "api.deepseek.com"]).unwrap(),
    );

    let agent = Daemon::agent_run(&setup.config).unwrap();

    let o = curl(&t, &[], cert, &["-4", "https://api.deepseek.com/"]).unwrap();
    refused_fast("curl (DNS over UDP)", &o);
    assert!(
        o.error.contains("exit Some(6)"),
        "could not resolve: {}",
        o.error
    );
    refused_fast(
        "DNS over TCP",
        &py_client(&t, &[], "dns-tcp", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    refused_fast(
        "curl --resolve IPv4",
        &curl(
            &t,
            &[],
            cert,
            &[
                "--resolve",
                &resolve("api.deepseek.com", &v4),
                "https://api.deepseek.com/",
            ],
        )
        .unwrap(),
    );
    refused_fast(
        "curl --resolve IPv6",
        &curl(
            &t,
            &[],
            cert,
            &[
                "--resolve",
                &resolve("api.deepseek.com", &v6b),
                "https://api.deepseek.com/",
            ],
        )
        .unwrap(),
    );
    refused_fast(
        "python ssl",
        &py_client(&t, &[], "tls", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    refused_fast(
        "ClientHello with the SNI in its second segment",
        &py_client(&t, &[], "split-hello", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    refused_fast(
        "QUIC (aioquic)",
        &py_client(&t, &[], "quic", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    refused_fast(
        "QUIC over IPv6 (aioquic)",
        &py_client(&t, &[], "quic", &[&v6, "api.deepseek.com"]).unwrap(),
    );
    refused_fast(
        "python ssl over IPv6",
        &py_client(&t, &[], "tls", &[&v6, "api.deepseek.com"]).unwrap(),
    );

    // Precision: the same address serves a sanctioned AI service and a benign site.
    for name in ["api.openai.com", "www.example.org"] {
        works(
            name,
            &curl(&t, &[], cert, &[&format!("https://{name}/")]).unwrap(),
        );
        works(
            &format!("{name} over IPv6"),
            &curl(
                &t,
                &[],
                cert,
                &[
                    "--resolve",
                    &resolve(name, &v6b),
                    &format!("https://{name}/"),
                ],
            )
            .unwrap(),
        );
        works(
            &format!("{name} split hello"),
            &py_client(&t, &[], "split-hello", &[&v4, name]).unwrap(),
        );
    }
    works(
        "QUIC to the sanctioned service",
        &py_client(&t, &[], "quic", &[&v4, "api.openai.com"]).unwrap(),
    );
    works(
        "QUIC over IPv6 to the sanctioned service",
        &py_client(&t, &[], "quic", &[&v6, "api.openai.com"]).unwrap(),
    );

    // Every refusal is a finding: action blocked, the deciding rule, the layer.
    for layer in ["dns", "dns_tcp", "sni", "quic"] {
        let f = setup
            .wait_finding("deepseek-api", "blocked", layer)
            .unwrap();
        assert_eq!(f["unmapped"]["shadowai"]["verdict"], "blocked", "{f}");
        assert_eq!(
            f["finding_info"]["analytic"]["name"], "rule:no-deepseek",
            "{f}"
        );
        assert_eq!(
            (&f["action_id"], &f["disposition_id"]),
            (&2.into(), &2.into()),
            "{f}"
        );
    }
    // Every refused TCP socket was destroyed (curl ×2, python ssl, DNS over TCP, the split
    // hello) and the QUIC client answered; none failed. (At least: the agent sees the
    // whole host.)
    let teardowns = |r| {
        setup
            .metric("shadowai_enforce_teardowns_total", &[("result", r)])
            .unwrap()
            .unwrap_or(0.0)
    };
    assert!(teardowns("destroyed") >= 6.0, "{}", teardowns("destroyed"));
    assert_eq!(teardowns("failed"), 0.0);
    assert_eq!(teardowns("queue_full"), 0.0);
    // (Other findings in the file may come from other tests' traffic on this host: the
    // agent sees every namespace. The sanctioned service's own requests worked above.)

    // Fail-open: SIGKILL leaves no chance to clean up, and still nothing stays blocked.
    let pid = agent.0.id();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    agent.stop();
    works(
        "after SIGKILL: curl",
        &curl(&t, &[], cert, &["https://api.deepseek.com/"]).unwrap(),
    );
    works(
        "after SIGKILL: split hello",
        &py_client(&t, &[], "split-hello", &[&v4, "api.deepseek.com"]).unwrap(),
    );
}

#[test]
fn monitor_mode_reports_would_block_and_refuses_nothing() {
    let _g = serial();
    let (t, cert) = topology();
    let cert = Path::new(&cert);
    let v4 = t.remote_v4.clone();
    let setup = Setup::new(&policy("monitor")).unwrap();
    let _agent = Daemon::agent_run(&setup.config).unwrap();

    works(
        "curl",
        &curl(&t, &[], cert, &["https://api.deepseek.com/"]).unwrap(),
    );
    works(
        "DNS over TCP",
        &py_client(&t, &[], "dns-tcp", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    works(
        "QUIC",
        &py_client(&t, &[], "quic", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    for layer in ["dns", "dns_tcp", "sni", "quic"] {
        let f = setup
            .wait_finding("deepseek-api", "would_block", layer)
            .unwrap();
        assert_eq!(f["unmapped"]["shadowai"]["verdict"], "blocked", "{f}");
        assert_eq!(
            f["finding_info"]["analytic"]["name"], "rule:no-deepseek",
            "{f}"
        );
        // OCSF: let through (action Allowed), detected (disposition 15), not blocked.
        assert_eq!(
            (&f["action_id"], &f["disposition_id"]),
            (&1.into(), &15.into()),
            "{f}"
        );
    }
    assert!(
        !setup
            .findings()
            .iter()
            .any(|f| f["unmapped"]["shadowai"]["action"] == "blocked"),
        "monitor mode refused something"
    );
}
