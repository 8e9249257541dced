//! A UDP socket that sends again and again to one destination, unconnected (a resolver, a
//! QUIC client on `sendto()`): the kernel reports the destination once per de-dup window
//! for the process — the repeats are decided from the socket's own storage — while a new
//! destination goes up at once, the window's end brings a new report, and another process
//! sending on the same socket (a forked child) is reported and owns the packets it sends,
//! as the parent does again after it; when the parent drops to another uid, its next
//! packets carry the new uid though their destination is a repeat. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::time::Duration;

use serde_json::Value;
use shadowai_tests::{Agent, PY_DNS_QUERY, Topology, n, of_pid, s, serial};

/// After [`PY_DNS_QUERY`]'s `q(id, name)`. One unconnected UDP socket: 20 queries for api.openai.com to the DNS server (argv[1]),
/// a datagram to port 9, one more query (the server is the socket's last destination
/// again), a query for api.anthropic.com from a forked child on the same socket, one more
/// from the parent, then — the parent as nobody now — one for api.anthropic.com: each time
/// the server is the socket's last destination, all inside the window. After the window
/// (argv[2] seconds) one more query from the parent. Prints the parent's pid and the
/// child's.
const CLIENT: &str = r#"
import os, socket, struct, sys, time
dns, window = sys.argv[1], float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
start = time.monotonic()
for i in range(1, 21):
    u.sendto(q(i, "api.openai.com"), (dns, 53))
    u.recv(512)
u.sendto(b"x", (dns, 9))
u.sendto(q(21, "api.openai.com"), (dns, 53))
u.recv(512)
child = os.fork()
if child == 0:
    u.sendto(q(100, "api.anthropic.com"), (dns, 53))
    u.recv(512)
    os._exit(0)
os.waitpid(child, 0)
u.sendto(q(22, "api.openai.com"), (dns, 53))
u.recv(512)
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
u.sendto(q(102, "api.anthropic.com"), (dns, 53))
u.recv(512)
assert time.monotonic() - start < window / 2, "too slow for the window"
time.sleep(window + 0.5)
u.sendto(q(101, "api.openai.com"), (dns, 53))
u.recv(512)
print(os.getpid(), child, flush=True)
"#;

const WINDOW_SECS: u64 = 3;

fn kind(v: &Value) -> (u64, u64) {
    (n(v, &["class_uid"]), n(v, &["activity_id"]))
}

#[test]
fn a_resending_udp_socket_is_reported_once_per_window_and_its_packets_follow_the_sender() {
    let _g = serial();
    let (t, _cert) = Topology::with_servers(
        &["api.openai.com"],
        "api.openai.com A {v4}\napi.anthropic.com A {v4}\n",
    )
    .unwrap();
    let window = WINDOW_SECS.to_string();
    let agent = Agent::start(&["--poll-ms", "20", "--dedup-secs", &window]).unwrap();
    let out = t
        .cmd(&t.client, "python3")
        .args([
            "-c",
            &format!("{PY_DNS_QUERY}{CLIENT}"),
            &t.remote_v4,
            &window,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (parent, child) = (of_pid(pids[0]), of_pid(pids[1]));
    let query =
        |v: &Value, name: &str| kind(v) == (4003, 1) && s(v, &["query", "hostname"]) == name;

    let wait = Duration::from_secs(20);
    // The child's query, on the parent's socket, inside the parent's window: the child's.
    agent
        .wait_for("the child's query, attributed to it", wait, |v| {
            child(v) && query(v, "api.anthropic.com")
        })
        .unwrap();
    // The parent, nobody now, to the same server inside the window: a repeat destination,
    // but the packets' owner has the new uid.
    let dropped = agent
        .wait_for("the parent's query as nobody", wait, |v| {
            parent(v) && query(v, "api.anthropic.com")
        })
        .unwrap();
    assert_eq!(s(&dropped, &["actor", "user", "uid"]), "65534", "{dropped}");
    assert_eq!(s(&dropped, &["actor", "user", "name"]), "nobody");
    // The parent's query after the window: reported again, and the packets the parent's
    // again.
    let events = agent.events();
    let openai_by_parent = || {
        agent
            .events()
            .iter()
            .filter(|v| parent(v) && query(v, "api.openai.com"))
            .count()
    };
    let deadline = std::time::Instant::now() + wait;
    while openai_by_parent() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        openai_by_parent(),
        2,
        "the parent's queries: one per window"
    );
    assert!(
        !events.iter().any(|v| !parent(v)
            && query(v, "api.openai.com")
            && s(v, &["dst_endpoint", "ip"]) == t.remote_v4),
        "a query of the parent's attributed to another process"
    );

    let events = agent.events();
    let sends_to = |who: &dyn Fn(&Value) -> bool, port: u64| {
        events
            .iter()
            .filter(|v| {
                who(v)
                    && kind(v) == (4001, 1)
                    && s(v, &["dst_endpoint", "ip"]) == t.remote_v4
                    && n(v, &["dst_endpoint", "port"]) == port
            })
            .count()
    };
    // The parent: 23 sends to :53 inside the window, one after it; the child: one.
    assert_eq!(
        sends_to(&parent, 53),
        2,
        "the parent's reports of the DNS server"
    );
    assert_eq!(
        sends_to(&child, 53),
        1,
        "the child's reports of the DNS server"
    );
    assert_eq!(sends_to(&parent, 9), 1, "the parent's reports of port 9");
}
