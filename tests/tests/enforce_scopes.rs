//! Blocks scoped to who connects are enforced exactly as that process's verdict says: a
//! block for user `nobody` stops nobody's client and no one else's; a block for unix group
//! `dialout` stops a process that holds it as a *supplementary* group (not its primary
//! one) and not the same user without it. Both names are served from one address, the
//! clients connect by address (no DNS to refuse), and every refusal is fast (< 1 s) and a
//! finding with `action: blocked` at layer `sni` and the scoped rule. A scoped block is
//! not refused at DNS (the name filter is per host, and most lookups are made by a shared
//! resolver, not by the process the rule names): the scoped user resolves the name and
//! then fails fast at SNI/QUIC; everyone else's lookups and connections work. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::time::Duration;

use shadowai_tests::enforce::{Outcome, Setup, py_client, py_client_with};
use shadowai_tests::{Daemon, Topology, repo_root, serial};

const POLICY: &str = "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
    [[rules]]\nid = \"nobody-no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\nusers = [\"nobody\"]\n\n\
    [[rules]]\nid = \"dialout-no-anthropic\"\nverdict = \"blocked\"\nservices = [\"anthropic-api\"]\nunix_groups = [\"dialout\"]\n";

const NOBODY: [&str; 6] = ["--reuid", "65534", "--regid", "65534", "--groups", "65534"];
const NOBODY_IN_DIALOUT: [&str; 6] = [
    "--reuid", "65534", "--regid", "65534", "--groups", "65534,20",
];

fn refused_fast(what: &str, o: &Outcome) {
    assert!(!o.ok, "{what}: the blocked service was reachable");
    assert!(
        o.took < Duration::from_secs(1),
        "{what}: failed after {:?} (must be < 1 s): {}",
        o.took,
        o.error
    );
    eprintln!("{what}: refused in {:?} ({})", o.took, o.error);
}

fn works(what: &str, o: &Outcome) {
    assert!(o.ok, "{what}: must work: {}", o.error);
}

#[test]
fn user_and_supplementary_group_scopes_stop_exactly_their_processes() {
    let _g = serial();
    let (mut t, cert) = Topology::with_servers(
        &["api.deepseek.com", "api.anthropic.com"],
        "api.deepseek.com A {v4}\napi.anthropic.com A {v4}\n",
    )
    .unwrap();
    let v4 = t.remote_v4.clone();
    let key = t.dir.path().join("key.pem");
    let helper = repo_root().join("agent/decode/tests/netns_helper.py");
    t.start_server(
        "python3",
        &[
            helper.to_str().unwrap(),
            "quic-server",
            &cert,
            key.to_str().unwrap(),
            &v4,
        ],
    )
    .unwrap();
    let setup = Setup::new(POLICY).unwrap();
    let _agent = Daemon::agent_run(&setup.config).unwrap();

    let tls = |who: &[&str], name: &str| py_client(&t, who, "tls", &[&v4, name]).unwrap();
    refused_fast("nobody → DeepSeek", &tls(&NOBODY, "api.deepseek.com"));
    works("root → DeepSeek", &tls(&[], "api.deepseek.com"));
    refused_fast(
        "nobody with supplementary group dialout → Anthropic",
        &tls(&NOBODY_IN_DIALOUT, "api.anthropic.com"),
    );
    works(
        "nobody without dialout → Anthropic",
        &tls(&NOBODY, "api.anthropic.com"),
    );
    works("root → Anthropic", &tls(&[], "api.anthropic.com"));

    // By name: DNS is not scoped — the scoped user resolves, then fails fast at SNI;
    // everyone else works. DNS over TCP works for both.
    let by_name = |who: &[&str], name: &str| py_client(&t, who, "tls", &[name, name]).unwrap();
    refused_fast(
        "nobody → DeepSeek by name (DNS, then SNI)",
        &by_name(&NOBODY, "api.deepseek.com"),
    );
    works("root → DeepSeek by name", &by_name(&[], "api.deepseek.com"));
    for who in [&NOBODY[..], &[]] {
        works(
            "DNS over TCP for a scoped name",
            &py_client(&t, who, "dns-tcp", &[&v4, "api.deepseek.com"]).unwrap(),
        );
    }
    // QUIC: root with supplementary group dialout is refused, root without it is not
    // (root's interpreter: it has aioquic).
    let quic = |who: &[&str]| {
        py_client_with(&t, who, "python3", "quic", &[&v4, "api.anthropic.com"]).unwrap()
    };
    refused_fast(
        "root in dialout → Anthropic over QUIC",
        &quic(&["--groups", "20"]),
    );
    works("root → Anthropic over QUIC", &quic(&[]));

    for (service, rule, user, layer) in [
        ("deepseek-api", "rule:nobody-no-deepseek", "nobody", "sni"),
        (
            "anthropic-api",
            "rule:dialout-no-anthropic",
            "nobody",
            "sni",
        ),
        ("anthropic-api", "rule:dialout-no-anthropic", "root", "quic"),
    ] {
        let f = setup
            .wait_finding_of(service, "blocked", layer, Some(user))
            .unwrap();
        assert_eq!(f["finding_info"]["analytic"]["name"], rule, "{f}");
        assert_eq!(f["actor"]["user"]["name"], user, "{f}");
    }
}
