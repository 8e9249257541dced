//! End-to-end naming: the real agent (`run`) on this kernel, real clients in network
//! namespaces, a real dnsmasq as the local caching resolver.
//! - Two processes use one shared address — one for an AI service, one for a benign site —
//!   and the address is also their resolver's: only the first yields an AI finding.
//! - A client behind dnsmasq on 127.0.0.1 yields its finding; dnsmasq, which looked the
//!   name up upstream for it, yields none.
//! - A client that sent no DNS packet of its own (as nss-resolve clients over varlink do)
//!   is named from the resolver's upstream answer, with medium confidence.
//!
//! Needs root (eBPF, namespaces) and dnsmasq (`.ci/deps/naming.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::time::Duration;

use shadowai_tests::naming::{Dnsmasq, JsonlAgent, exe, own_copy, service};
use shadowai_tests::{Topology, serial, sh, wait_until};

fn curl(t: &Topology, curl: &str, cert: &str, url: &str) {
    sh(t.cmd(&t.client, curl)
        .args(["-4", "-sS", "-o", "/dev/null", "--cacert", cert, url]))
    .unwrap();
}

/// python3 resolves `name` itself, then opens TLS to the address it got twice: once with
/// SNI `name`, once with no SNI at all (named only by DNS answers).
fn python_benign(t: &Topology, python: &str, name: &str) {
    let code = format!(
        "import socket,ssl\nc=ssl.create_default_context()\nc.check_hostname=False\nc.verify_mode=ssl.CERT_NONE\n\
         ip=socket.getaddrinfo('{name}',443,socket.AF_INET,socket.SOCK_STREAM)[0][4][0]\n\
         for sni in ['{name}', None]:\n  s=socket.create_connection((ip,443),timeout=5)\n  c.wrap_socket(s,server_hostname=sni).close()\n\
         print('ok', ip)\n"
    );
    let out = sh(t.cmd(&t.client, python).args(["-c", &code])).unwrap();
    assert!(out.starts_with("ok "), "{out}");
}

#[test]
fn on_a_shared_address_only_the_process_that_used_the_ai_service_yields_an_ai_finding() {
    let _g = serial();
    // One address serves DNS, api.openai.com and benign.example.
    let (t, cert) = Topology::with_servers(
        &["api.openai.com", "benign.example"],
        "api.openai.com A {v4}\nbenign.example A {v4}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let agent = JsonlAgent::start(work.path()).unwrap();
    let my_curl = own_copy("curl", work.path(), "shared").unwrap();
    let my_python = own_copy("python3", work.path(), "shared").unwrap();

    curl(&t, &my_curl, &cert, "https://api.openai.com/");
    // After curl, every shared scope names the address api.openai.com: python's own lookup
    // (to the same address, port 53) and its TLS connections must not inherit that name.
    python_benign(&t, &my_python, "benign.example");

    let f = agent
        .wait_finding("curl's OpenAI finding", |f| {
            exe(f) == my_curl && service(f) == "openai-api"
        })
        .unwrap();
    assert_eq!(f["confidence_id"], 3, "named by its own SNI/lookup: {f:#}");
    // Let later windows (held connects, the benign process's uses) close.
    std::thread::sleep(Duration::from_secs(4));
    let python: Vec<_> = agent
        .findings()
        .into_iter()
        .filter(|f| exe(f) == my_python)
        .collect();
    assert!(
        python.is_empty(),
        "the benign process got AI findings: {python:#?}"
    );
}

#[test]
fn a_local_caching_resolver_is_never_reported_as_the_user_and_its_client_is() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let agent = JsonlAgent::start(work.path()).unwrap();
    let dnsmasq = Dnsmasq::start(&t).unwrap();
    let my_curl = own_copy("curl", work.path(), "viaresolver").unwrap();
    let my_python = own_copy("python3", work.path(), "viaresolver").unwrap();

    curl(&t, &my_curl, &cert, "https://api.openai.com/");
    // A second client and a second AI name, both through dnsmasq.
    let out = sh(t.cmd(&t.client, &my_python).args([
        "-c",
        "import socket\nprint(socket.getaddrinfo('api.openai.com',443,socket.AF_INET)[0][4][0])",
    ]))
    .unwrap();
    assert_eq!(out.trim(), t.remote_v4);

    let f = agent
        .wait_finding("curl's OpenAI finding through dnsmasq", |f| {
            exe(f) == my_curl && service(f) == "openai-api"
        })
        .unwrap();
    assert_eq!(f["confidence_id"], 3, "{f:#}");
    agent
        .wait_finding("python's lookup through dnsmasq", |f| {
            exe(f) == my_python && service(f) == "openai-api"
        })
        .unwrap();
    // dnsmasq really went upstream for the client (not a cached answer)…
    let log = std::fs::read_to_string(&dnsmasq.log).unwrap();
    assert!(
        log.contains(&format!("forwarded api.openai.com to {}", t.remote_v4)),
        "{log}"
    );
    // …and is never the user.
    std::thread::sleep(Duration::from_secs(4));
    let by_resolver: Vec<_> = agent
        .findings()
        .into_iter()
        .filter(|f| exe(f) == "/usr/sbin/dnsmasq" || f["actor"]["process"]["name"] == "dnsmasq")
        .collect();
    assert!(
        by_resolver.is_empty(),
        "dnsmasq (pid {}) reported as a user: {by_resolver:#?}",
        dnsmasq.pid()
    );
}

#[test]
fn a_client_without_dns_packets_is_named_from_the_resolver_answer_with_medium_confidence() {
    let _g = serial();
    let (t, _cert) =
        Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let agent = JsonlAgent::start(work.path()).unwrap();
    let dnsmasq = Dnsmasq::start_on(&t, &[&t.client_v4]).unwrap();
    // The lookup reaches dnsmasq from outside the namespace, not over loopback: no client
    // query in the namespace asked for it (how systemd-resolved serves nss-resolve).
    // Sent by bash (not python: the client below is python, and findings key on the exe).
    let ask = format!(
        "exec 3<>/dev/udp/{}/53; printf '\\276\\357\\001\\000\\000\\001\\000\\000\\000\\000\\000\\000\\003api\\006openai\\003com\\000\\000\\001\\000\\001' >&3",
        t.client_v4
    );
    sh(t.cmd(&t.remote, "bash").args(["-c", &ask])).unwrap();
    wait_until("dnsmasq's upstream answer", Duration::from_secs(20), || {
        std::fs::read_to_string(&dnsmasq.log)
            .ok()
            .filter(|l| l.contains("reply api.openai.com"))
    })
    .unwrap();
    // A client in the namespace connects by address, without DNS and without SNI.
    let code = format!(
        "import socket,ssl\nc=ssl.create_default_context()\nc.check_hostname=False\nc.verify_mode=ssl.CERT_NONE\n\
         s=socket.create_connection(('{}',443),timeout=5)\nc.wrap_socket(s,server_hostname=None).close()\nprint('ok')\n",
        t.remote_v4
    );
    let my_python = own_copy("python3", work.path(), "nss").unwrap();
    let out = sh(t.cmd(&t.client, &my_python).args(["-c", &code])).unwrap();
    assert_eq!(out.trim(), "ok");
    let f = agent
        .wait_finding(
            "the SNI-less client named from the resolver's answer",
            |f| exe(f) == my_python && service(f) == "openai-api",
        )
        .unwrap();
    assert_eq!(f["confidence_id"], 2, "{f:#}");
    assert_eq!(
        f["unmapped"]["shadowai"]["naming_source"], "resolver_answer",
        "{f:#}"
    );
    let log = std::fs::read_to_string(&dnsmasq.log).unwrap();
    assert!(log.contains("forwarded api.openai.com"), "{log}");
}
