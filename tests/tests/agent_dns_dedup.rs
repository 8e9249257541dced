//! The kernel de-duplicates repeated DNS messages: one process sending the same query over
//! and over (a new transaction ID each time) inside a test namespace yields one query
//! event per de-dup window, the repeats counted in
//! `shadowai_kernel_dns_deduplicated_total`, while a different name in the same burst —
//! even one of the same length — goes up at once; with `--dedup-secs 0` every query goes
//! up and nothing is counted. At its bound (8,192 entries), a flood of distinct names
//! evicts old entries: every name still goes up, and an evicted message's repeat goes up
//! again (eviction costs an event, never a name). Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shadowai_tests::{
    Agent, PY_DNS_QUERY, Topology, n, of_pid, parse_exposition, s, sample, serial, sh,
};

/// Repeats of the same query.
const N: usize = 40;

/// What every client script starts with (after [`PY_DNS_QUERY`]'s `q(id, name)`): `u` is a
/// UDP socket connected to the DNS server (argv[1]); `n` is argv[2].
const PRELUDE: &str = r#"
import socket, struct, sys, time
dns, n = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((dns, 53))
u.settimeout(10)
"#;

/// Sends `api.openai.com` N times on one socket (IDs 1..=N), with `api.openai.org` (same
/// length) and `api.anthropic.com` once each in the middle of the burst, reading every
/// answer; prints "done".
const CLIENT: &str = r#"
for i in range(1, n + 1):
    u.send(q(i, "api.openai.com"))
    u.recv(512)
    if i == n // 2:
        u.send(q(60000, "api.openai.org"))
        u.recv(512)
        u.send(q(60001, "api.anthropic.com"))
        u.recv(512)
print("done", flush=True)
"#;

const T: Duration = Duration::from_secs(20);

fn topology() -> Topology {
    Topology::with_servers(
        &["api.openai.com"],
        "api.openai.com A {v4}\napi.anthropic.com A {v4}\n",
    )
    .unwrap()
    .0
}

/// Runs `PRELUDE` + `script` with argument `n` to completion; returns its pid.
fn burst(t: &Topology, script: &str, n: usize) -> u32 {
    let child = t
        .cmd(&t.client, "python3")
        .args([
            "-c",
            &format!("{PY_DNS_QUERY}{PRELUDE}{script}"),
            &t.remote_v4,
            &n.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "done",
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

fn is_query(v: &Value, name: &str) -> bool {
    (n(v, &["class_uid"]), n(v, &["activity_id"])) == (4003, 1)
        && s(v, &["query", "hostname"]) == name
}

/// Query events of `pid` for `name`.
fn queries(agent: &Agent, pid: u32, name: &str) -> usize {
    let p = of_pid(pid);
    agent
        .events()
        .iter()
        .filter(|v| p(v) && is_query(v, name))
        .count()
}

/// The de-dup counter for `direction`, from the agent's /metrics.
fn deduplicated(addr: &str, direction: &str) -> f64 {
    let text = sh(Command::new("curl").args(["-sS", "-m", "5", &format!("http://{addr}/metrics")]))
        .unwrap();
    let samples = parse_exposition(&text).unwrap();
    sample(
        &samples,
        "shadowai_kernel_dns_deduplicated_total",
        &[("direction", direction)],
    )
    .unwrap_or_else(|| panic!("no dns de-dup counter for {direction}:\n{text}"))
}

/// Waits until the agent's metrics snapshot (published once a second) shows at least `min`.
fn wait_deduplicated(addr: &str, direction: &str, min: f64) -> f64 {
    let start = Instant::now();
    loop {
        let v = deduplicated(addr, direction);
        if v >= min || start.elapsed() > T {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn repeated_queries_go_up_once_and_are_counted_new_names_at_once() {
    let _g = serial();
    let t = topology();
    let addr = "127.0.0.1:19471";
    let agent =
        Agent::start(&["--poll-ms", "20", "--metrics", addr, "--dedup-secs", "60"]).unwrap();
    let pid = burst(&t, CLIENT, N);

    let p = of_pid(pid);
    for name in ["api.openai.com", "api.openai.org", "api.anthropic.com"] {
        agent
            .wait_for(&format!("the client's query for {name}"), T, |v| {
                p(v) && is_query(v, name)
            })
            .unwrap();
    }
    // Repeats must be counted before the event count is final: the counter is read from
    // the kernel once a second.
    let egress = wait_deduplicated(addr, "egress", (N - 1) as f64);
    let ingress = wait_deduplicated(addr, "ingress", (N - 1) as f64);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        queries(&agent, pid, "api.openai.com"),
        1,
        "the same query {N} times in one window goes up once"
    );
    assert_eq!(queries(&agent, pid, "api.openai.org"), 1);
    assert_eq!(queries(&agent, pid, "api.anthropic.com"), 1);
    // Other DNS on this host (the agent sees all of it) can only add to the counters.
    assert!(
        egress >= (N - 1) as f64,
        "{N} identical queries: {egress} de-duplicated"
    );
    assert!(
        ingress >= (N - 1) as f64,
        "{N} identical answers: {ingress} de-duplicated"
    );
}

#[test]
fn dedup_secs_0_sends_every_query_up() {
    let _g = serial();
    let t = topology();
    let addr = "127.0.0.1:19472";
    let agent = Agent::start(&["--poll-ms", "20", "--metrics", addr, "--dedup-secs", "0"]).unwrap();
    let pid = burst(&t, CLIENT, N);

    let p = of_pid(pid);
    let start = Instant::now();
    while queries(&agent, pid, "api.openai.com") < N && start.elapsed() < T {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        queries(&agent, pid, "api.openai.com"),
        N,
        "with --dedup-secs 0 every query goes up"
    );
    agent
        .wait_for("the client's query for api.anthropic.com", T, |v| {
            p(v) && is_query(v, "api.anthropic.com")
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(deduplicated(addr, "egress"), 0.0);
    assert_eq!(deduplicated(addr, "ingress"), 0.0);
}

/// Distinct names in the flood: more than twice the kernel's 8,192-entry de-dup table
/// counting queries alone (each answer takes an entry too).
const FLOOD: usize = 10_000;

/// Asks `api.openai.com`, then FLOOD distinct names, then `api.openai.com` again (a new
/// ID: a repeat of the first); prints "done".
const FLOOD_CLIENT: &str = r#"
u.send(q(1, "api.openai.com")); u.recv(512)
for i in range(n):
    u.send(q(i % 65536, "n%d.flood.test" % i)); u.recv(512)
    if i % 100 == 99:
        time.sleep(0.05)  # paced for the test's debug agent: ring-buffer loss is not the point
u.send(q(2, "api.openai.com")); u.recv(512)
print("done", flush=True)
"#;

#[test]
fn a_flood_of_distinct_names_fills_the_table_and_only_makes_a_repeat_go_up_again() {
    let _g = serial();
    let t = topology();
    let addr = "127.0.0.1:19473";
    let agent =
        Agent::start(&["--poll-ms", "20", "--metrics", addr, "--dedup-secs", "60"]).unwrap();
    let pid = burst(&t, FLOOD_CLIENT, FLOOD);
    let p = of_pid(pid);
    let flood_seen = |agent: &Agent| {
        agent
            .events()
            .iter()
            .filter(|v| {
                p(v) && (n(v, &["class_uid"]), n(v, &["activity_id"])) == (4003, 1)
                    && s(v, &["query", "hostname"]).ends_with(".flood.test")
            })
            .count()
    };
    let start = Instant::now();
    while (flood_seen(&agent) < FLOOD || queries(&agent, pid, "api.openai.com") < 2)
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every distinct name goes up: a full table never hides a new message.
    let metrics =
        sh(Command::new("curl").args(["-sS", "-m", "5", &format!("http://{addr}/metrics")]))
            .unwrap_or_default();
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            !l.starts_with('#') && (l.contains("lost") || l.contains("dedup") || l.contains("drop"))
        })
        .collect();
    assert_eq!(
        flood_seen(&agent),
        FLOOD,
        "distinct names seen by the agent; its loss and de-dup counters: {counters:#?}"
    );
    // The first query's entry was evicted by the flood, so its repeat, inside the window,
    // goes up again: eviction costs an event, never a name.
    assert_eq!(
        queries(&agent, pid, "api.openai.com"),
        2,
        "the repeat after the flood goes up again"
    );
}

/// Sends one query for `api.anthropic.com` to port 5301 (not configured), then one for
/// `api.openai.com` to port 5300 (configured), then one for `api.openai.org` to 53 (the
/// other configured port); no server answers on 5300/5301, the capture is the sender's.
const PORTS_CLIENT: &str = r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(q(7, "api.anthropic.com"), (dns, 5301))
s.sendto(q(8, "api.openai.com"), (dns, 5300))
u.send(q(9, "api.openai.org")); u.recv(512)
print("done", flush=True)
"#;

/// `--dns-port` (the kernel's one-bit-per-port table): every configured port is captured,
/// 53 among them, and a port next to one is not.
#[test]
fn configured_dns_ports_are_captured_and_others_are_not() {
    let _g = serial();
    let t = topology();
    let agent =
        Agent::start(&["--poll-ms", "20", "--dns-port", "53", "--dns-port", "5300"]).unwrap();
    let pid = burst(&t, PORTS_CLIENT, 0);

    let p = of_pid(pid);
    for (name, port) in [("api.openai.com", 5300), ("api.openai.org", 53)] {
        let v = agent
            .wait_for(&format!("the query for {name} to port {port}"), T, |v| {
                p(v) && is_query(v, name)
            })
            .unwrap();
        assert_eq!(n(&v, &["dst_endpoint", "port"]), port, "{v}");
    }
    // The unconfigured port's query left first: the later ones went up, it did not.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        queries(&agent, pid, "api.anthropic.com"),
        0,
        "a query to port 5301 is not DNS here"
    );
}
