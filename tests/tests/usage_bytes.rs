//! End-to-end: bytes per AI use. The real agent (`run`) with its kernel byte counters, a
//! real collector, `curl` uploading a known-size body over TLS to a fake AI service in a
//! network namespace, and `tcpdump` capturing the same connection: the finding's
//! `bytes_out` / `bytes_in` must be within ±1 % of the TCP payload bytes in the capture,
//! and a use that uploads more than `large_upload_bytes` is flagged `large_upload`.
//!
//! Needs root (eBPF, namespaces) and tcpdump (`.ci/deps/usage.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shadowai_tests::usage::{Capture, tcp_payload_bytes};
use shadowai_tests::{Collector, Daemon, Topology, repo_root, serial, sh, wait_until};

/// 16 MiB + 1234 bytes: not a round number, so a count that happened to hit a buffer
/// size would not pass.
const BODY: usize = 16 * 1024 * 1024 + 1234;
/// The flag's threshold in this test (the default is 10 MiB).
const LARGE: u64 = 4 * 1024 * 1024;

/// Incompressible bytes (TLS does not compress, but nothing should depend on that).
fn body(path: &Path) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(BODY);
    while v.len() < BODY {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(BODY);
    std::fs::write(path, v).unwrap();
}

fn findings_of(c: &Collector, token: &str, service: &str) -> Vec<Value> {
    c.findings(token)
        .into_iter()
        .filter(|f| {
            f["service_id"] == service
                && f["process"]["exe"].as_str().unwrap_or("").ends_with("curl")
        })
        .collect()
}

fn sum(fs: &[Value], field: &str) -> u64 {
    fs.iter().map(|f| f[field].as_u64().unwrap_or(0)).sum()
}

fn within_one_percent(what: &str, measured: u64, captured: u64) {
    let diff = measured.abs_diff(captured) as f64;
    assert!(
        captured > 0 && diff <= captured as f64 * 0.01,
        "{what}: the finding says {measured} bytes, tcpdump counted {captured} ({:.3} % apart)",
        100.0 * diff / captured.max(1) as f64
    );
    eprintln!(
        "{what}: finding {measured} bytes, tcpdump {captured} bytes ({:.4} % apart)",
        100.0 * diff / captured as f64
    );
}

/// A second IPv4 address on the remote side of the topology's veth (`….3`).
fn service_address(t: &Topology) -> String {
    let addr = format!("{}.3", t.remote_v4.rsplit_once('.').unwrap().0);
    let shown = sh(Command::new("ip").args(["-n", &t.remote, "-o", "-4", "addr", "show"])).unwrap();
    let dev = shown
        .lines()
        .find(|l| l.contains(&format!("inet {}/", t.remote_v4)))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the remote's veth")
        .to_string();
    sh(Command::new("ip").args([
        "-n",
        &t.remote,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        &dev,
    ]))
    .unwrap();
    addr
}

#[test]
fn bytes_out_of_an_upload_match_the_capture_within_one_percent() {
    let _g = serial();
    let mut t = Topology::new().unwrap();
    let (cert, key) = t.cert(&["api.openai.com", "api.anthropic.com"]).unwrap();
    // The service has an address of its own, not the resolver's (as on a real network: a
    // curl's DNS socket is not traffic to the service).
    let svc_v4 = service_address(&t);
    let zone = t.dir.path().join("zone.txt");
    // The upload goes over IPv4, the small request over IPv6: the capture tells them apart.
    std::fs::write(
        &zone,
        format!(
            "api.openai.com A {svc_v4}\napi.anthropic.com AAAA {}\n",
            t.remote_v6
        ),
    )
    .unwrap();
    let fx = repo_root().join("tests/fixtures");
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let (v4, v6) = (t.remote_v4.clone(), t.remote_v6.clone());
    t.start_server(
        "python3",
        &[&p(&fx.join("dns_server.py")), &p(&zone), &v4, &v6],
    )
    .unwrap();
    t.start_server(
        "python3",
        &[
            &p(&fx.join("upload_server.py")),
            &p(&cert),
            &p(&key),
            &svc_v4,
            &v6,
        ],
    )
    .unwrap();

    let work = tempfile::tempdir().unwrap();
    let port = 18500 + (std::process::id() % 400) as u16;
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let token = collector.admin_token.clone().expect("admin token");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\nwindow_secs = 5\nhostname = \"usage-host\"\nhost_id = \"usage-host-id\"\n\
             large_upload_bytes = {LARGE}\n\n[rules]\ncatalogue = \"{}\"\n\n\
             [collector]\nurl = \"{}\"\nca = \"{}\"\nenroll_secret_file = \"{}\"\nupload_secs = 1\n",
            work.path().join("state").display(),
            repo_root().join("rules/catalogue").display(),
            collector.url,
            collector.ca.display(),
            secret.display(),
        ),
    )
    .unwrap();
    let agent = Daemon::agent_run(&config).unwrap();

    let file = work.path().join("body.bin");
    body(&file);
    let mut cap =
        Capture::start(&t, &t.client.clone(), 443, &work.path().join("upload.pcap")).unwrap();
    let upload = sh(t.cmd(&t.client, "curl").args([
        "-4",
        "-sS",
        "--cacert",
        &p(&cert),
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        "https://api.openai.com/v1/files",
    ]))
    .unwrap();
    assert_eq!(
        upload,
        format!("{{\"received\":{BODY}}}"),
        "the server got the whole body"
    );
    let small = sh(t.cmd(&t.client, "curl").args([
        "-6",
        "-sS",
        "--cacert",
        &p(&cert),
        "--data-binary",
        "hello, model",
        "https://api.anthropic.com/v1/messages",
    ]))
    .unwrap();
    assert_eq!(small, "{\"received\":12}");
    cap.finish().unwrap();
    let (c4, r4) = (t.client_v4.clone(), svc_v4.clone());
    let cap_out = tcp_payload_bytes(&cap.file, &c4, &r4).unwrap();
    let cap_in = tcp_payload_bytes(&cap.file, &r4, &c4).unwrap();
    assert!(
        cap_out > BODY as u64,
        "the capture holds the upload: {cap_out}"
    );

    // Every window with bytes of the upload reaches the collector.
    let up = wait_until(
        "the upload's bytes in the collector",
        Duration::from_secs(60),
        || {
            let fs = findings_of(&collector, &token, "openai-api");
            (sum(&fs, "bytes_out") as f64 >= cap_out as f64 * 0.99).then_some(())
        },
    );
    // One more window and upload period, in case the last part is on its way.
    std::thread::sleep(Duration::from_secs(7));
    let fs = findings_of(&collector, &token, "openai-api");
    up.unwrap_or_else(|e| panic!("{e}: {fs:#?} (tcpdump: out {cap_out}, in {cap_in})"));
    within_one_percent("bytes_out", sum(&fs, "bytes_out"), cap_out);
    within_one_percent("bytes_in", sum(&fs, "bytes_in"), cap_in);
    assert!(
        fs.iter().any(|f| f["flags"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "large_upload"))),
        "a {BODY}-byte upload over a {LARGE}-byte threshold is flagged: {fs:#?}"
    );

    // The small request: counted too, never flagged.
    let small = wait_until(
        "the small request's finding",
        Duration::from_secs(30),
        || {
            let fs = findings_of(&collector, &token, "anthropic-api");
            (sum(&fs, "bytes_out") > 12).then_some(fs)
        },
    )
    .unwrap();
    let out = sum(&small, "bytes_out");
    assert!(
        out < 10_000,
        "a 12-byte body plus the TLS handshake and headers: {out}"
    );
    assert!(
        small.iter().all(|f| f["flags"]
            .as_array()
            .is_none_or(|a| a.iter().all(|x| x != "large_upload"))),
        "{small:#?}"
    );
    drop(agent);
}
