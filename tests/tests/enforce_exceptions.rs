//! Enforce mode with rules that do not refuse everyone: an observe-only rule (`enforce =
//! false`) reports `would_block` at every layer and refuses nothing, while an enforced
//! rule beside it still refuses; an exception for a user or a unix group lifts a host-wide
//! block for exactly that process at every layer — DNS, SNI, QUIC and a connect into the
//! service's published network — while everyone else stays refused, fast (< 1 s). Every
//! name is served from one address in a test namespace. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::time::Duration;

use shadowai_tests::enforce::{Outcome, Setup, add_remote_v4, curl, py_client, py_client_with};
use shadowai_tests::{Daemon, Topology, repo_root, serial};

const FAST: Duration = Duration::from_secs(1);
/// An address inside Anthropic's published network (catalogue CIDR 160.79.104.0/23),
/// put on the remote namespace's loopback.
const ANTHROPIC_NET_ADDR: &str = "160.79.104.10";

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

/// DNS + TLS for `names` on the remote's addresses, TLS also on [`ANTHROPIC_NET_ADDR`],
/// and an aioquic server on the remote's IPv4 address.
fn topology(names: &[&str]) -> (Topology, String) {
    let zone: String = names.iter().map(|n| format!("{n} A {{v4}}\n")).collect();
    let (mut t, cert) = Topology::with_servers(names, &zone).unwrap();
    add_remote_v4(&t, ANTHROPIC_NET_ADDR).unwrap();
    let key = t.dir.path().join("key.pem");
    let key = key.to_str().unwrap();
    let fx = repo_root().join("tests/fixtures/tls_server.py");
    t.start_server(
        "python3",
        &[fx.to_str().unwrap(), &cert, key, ANTHROPIC_NET_ADDR],
    )
    .unwrap();
    let helper = repo_root().join("agent/decode/tests/netns_helper.py");
    let v4 = t.remote_v4.clone();
    t.start_server(
        "python3",
        &[helper.to_str().unwrap(), "quic-server", &cert, key, &v4],
    )
    .unwrap();
    (t, cert)
}

#[test]
fn an_observe_only_rule_reports_would_block_in_enforce_mode_and_refuses_nothing() {
    let _g = serial();
    let (t, cert) = topology(&["api.deepseek.com", "api.anthropic.com"]);
    let cert = Path::new(&cert);
    let v4 = t.remote_v4.clone();
    let setup = Setup::new(
        "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
         [[rules]]\nid = \"watch-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\nenforce = false\n\n\
         [[rules]]\nid = \"no-anthropic\"\nverdict = \"blocked\"\nservices = [\"anthropic-api\"]\n",
    )
    .unwrap();
    let _agent = Daemon::agent_run(&setup.config).unwrap();

    works(
        "observed: curl (DNS + SNI)",
        &curl(&t, &[], cert, &["-4", "https://api.deepseek.com/"]).unwrap(),
    );
    works(
        "observed: DNS over TCP",
        &py_client(&t, &[], "dns-tcp", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    works(
        "observed: split hello",
        &py_client(&t, &[], "split-hello", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    works(
        "observed: QUIC",
        &py_client(&t, &[], "quic", &[&v4, "api.deepseek.com"]).unwrap(),
    );
    // The enforced rule beside it still refuses, in the same run.
    refused_fast(
        "enforced: curl",
        &curl(&t, &[], cert, &["-4", "https://api.anthropic.com/"]).unwrap(),
    );
    refused_fast(
        "enforced: QUIC",
        &py_client(&t, &[], "quic", &[&v4, "api.anthropic.com"]).unwrap(),
    );

    for layer in ["dns", "dns_tcp", "sni", "quic"] {
        let f = setup
            .wait_finding("deepseek-api", "would_block", layer)
            .unwrap();
        assert_eq!(f["unmapped"]["shadowai"]["verdict"], "blocked", "{f}");
        assert_eq!(
            f["finding_info"]["analytic"]["name"], "rule:watch-deepseek",
            "{f}"
        );
        assert_eq!(
            (&f["action_id"], &f["disposition_id"]),
            (&1.into(), &15.into()),
            "{f}"
        );
    }
    setup
        .wait_finding("anthropic-api", "blocked", "dns")
        .unwrap();
    assert!(
        !setup.findings().iter().any(|f| {
            let x = &f["unmapped"]["shadowai"];
            x["service_id"] == "deepseek-api" && x["action"] == "blocked"
        }),
        "an observe-only rule refused something"
    );
}

const NOBODY: [&str; 6] = ["--reuid", "65534", "--regid", "65534", "--groups", "65534"];
/// Root with unix group `dialout` (20) as its only supplementary group.
const ROOT_IN_DIALOUT: [&str; 2] = ["--groups", "20"];

#[test]
fn an_exception_lifts_a_host_wide_block_for_one_user_or_group_at_every_layer() {
    let _g = serial();
    let (t, cert) = topology(&["api.anthropic.com"]);
    let cert = Path::new(&cert);
    let v4 = t.remote_v4.clone();
    let setup = Setup::new(
        "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
         [[exceptions]]\nid = \"nobody-pilot\"\nverdict = \"tolerated\"\nservices = [\"anthropic-api\"]\nusers = [\"nobody\"]\n\
         reason = \"pilot\"\napprover = \"ciso\"\nexpires = 2099-01-01T00:00:00Z\n\n\
         [[exceptions]]\nid = \"dialout-pilot\"\nverdict = \"tolerated\"\nservices = [\"anthropic-api\"]\nunix_groups = [\"dialout\"]\n\
         reason = \"pilot\"\napprover = \"ciso\"\nexpires = 2099-01-01T00:00:00Z\n\n\
         [[rules]]\nid = \"no-anthropic\"\nverdict = \"blocked\"\nservices = [\"anthropic-api\"]\n",
    )
    .unwrap();
    let _agent = Daemon::agent_run(&setup.config).unwrap();
    let sni_at = |addr: &str| vec![addr.to_string(), "api.anthropic.com".to_string()];
    let args = |v: &[String]| -> Vec<String> { v.to_vec() };
    let run = |who: &[&str], python: &str, mode: &str, a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        py_client_with(&t, who, python, mode, &a).unwrap()
    };

    // The group's process: through at every layer.
    let g = &ROOT_IN_DIALOUT;
    works(
        "dialout: curl (DNS over UDP, then SNI)",
        &curl(&t, g, cert, &["-4", "https://api.anthropic.com/"]).unwrap(),
    );
    works(
        "dialout: DNS over TCP",
        &run(
            g,
            "python3",
            "dns-tcp",
            args(&[v4.clone(), "api.anthropic.com".into()]),
        ),
    );
    works("dialout: QUIC", &run(g, "python3", "quic", sni_at(&v4)));
    works(
        "dialout: connect into Anthropic's network + SNI",
        &run(g, "python3", "tls", sni_at(ANTHROPIC_NET_ADDR)),
    );
    // The user's process (system python: nobody cannot reach root's): DNS, SNI, CIDR.
    works(
        "nobody: resolve by name + SNI",
        &py_client(
            &t,
            &NOBODY,
            "tls",
            &["api.anthropic.com", "api.anthropic.com"],
        )
        .unwrap(),
    );
    works(
        "nobody: connect into Anthropic's network + SNI",
        &py_client(
            &t,
            &NOBODY,
            "tls",
            &[ANTHROPIC_NET_ADDR, "api.anthropic.com"],
        )
        .unwrap(),
    );

    // Everyone else: refused, fast, by the SNI (the name's DNS is no longer refused
    // host-wide: the kernel's name filter cannot tell processes apart).
    refused_fast(
        "root: curl",
        &curl(&t, &[], cert, &["-4", "https://api.anthropic.com/"]).unwrap(),
    );
    refused_fast("root: QUIC", &run(&[], "python3", "quic", sni_at(&v4)));
    refused_fast(
        "root: connect into Anthropic's network + SNI",
        &run(&[], "python3", "tls", sni_at(ANTHROPIC_NET_ADDR)),
    );
    refused_fast(
        "root without dialout: split hello",
        &run(&["--groups", "0"], "python3", "split-hello", sni_at(&v4)),
    );

    let excepted = |rule: &str| {
        setup.findings().into_iter().find(|f| {
            let x = &f["unmapped"]["shadowai"];
            x["service_id"] == "anthropic-api"
                && f["finding_info"]["analytic"]["name"] == rule
                && x["action"] == "allowed"
                && x["verdict"] == "tolerated"
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (excepted("exception:nobody-pilot").is_none()
        || excepted("exception:dialout-pilot").is_none())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    for rule in ["exception:nobody-pilot", "exception:dialout-pilot"] {
        assert!(
            excepted(rule).is_some(),
            "no allowed, tolerated finding by {rule}"
        );
    }
    for layer in ["sni", "quic"] {
        let f = setup
            .wait_finding("anthropic-api", "blocked", layer)
            .unwrap();
        assert_eq!(
            f["finding_info"]["analytic"]["name"], "rule:no-anthropic",
            "{f}"
        );
        assert_eq!(f["actor"]["user"]["name"], "root", "{f}");
    }
    // Nothing of the excepted processes was refused at any layer.
    assert!(
        !setup.findings().iter().any(|f| {
            f["unmapped"]["shadowai"]["action"] == "blocked"
                && f["finding_info"]["analytic"]["name"] != "rule:no-anthropic"
        }),
        "an excepted use was refused"
    );
}
