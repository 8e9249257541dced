//! Socket ownership cannot be flooded away by a local user. A TCP socket's owner waits in
//! a slot of the kernel's `PARKED` table from its connect() to its first payload packet,
//! then lives in the socket's own storage (SK_STORAGE), as a UDP socket's does from its
//! first connect()/sendmsg(); nothing evicts either (`agent-ebpf/src/owners.rs`).
//!
//! - A process connects a UDP and a TCP socket; another process then opens, connects and
//!   closes 150,000 UDP sockets (more than twice the 65,536 owners the old LRU table held)
//!   and 40,000 TCP ones (more than twice the table's 16,384 slots), and only then does the
//!   first process send its DNS query and its ClientHello on the sockets it connected
//!   before the flood. Both must still be attributed to it, and the closed sockets' slots
//!   must be free again.
//! - A process holds 20,000 connected TCP sockets that never carry a byte (most slots
//!   taken); a client then makes 100 TLS connections, whose owners go to a free slot or,
//!   when theirs is taken, straight to the socket's storage: every ClientHello must be
//!   attributed to the client. When the holder exits, its slots are free.
//!
//! Packets carry no process context, so the owner can only come from what connect()
//! recorded. Needs root and bpftool.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use shadowai_tests::bpfmaps::{map_of, map_values};
use shadowai_tests::{Agent, Topology, n, of_pid, s, serial};

/// Connects both sockets, says so, waits for a line on stdin, then uses them.
const CLIENT: &str = r#"
import socket, ssl, struct, sys
dns, cafile = sys.argv[1], sys.argv[2]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((dns, 53))
t = socket.create_connection((dns, 443), timeout=10)
print("connected", flush=True)
sys.stdin.readline()
name = b"".join(bytes([len(l)]) + l for l in b"api.openai.com".split(b".")) + b"\x00"
u.send(struct.pack(">HHHHHH", 0x5a5a, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01")
u.settimeout(10)
u.recv(512)
ctx = ssl.create_default_context(cafile=cafile)
with ctx.wrap_socket(t, server_hostname="api.openai.com") as tls:
    pass
print("done", flush=True)
"#;

/// Opens, connects and closes `n` sockets of `kind` (UDP: no packet leaves; TCP: to a closed
/// port of `host`, refused); prints the count.
const FLOOD: &str = r#"
import socket, sys
kind, n, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", 9))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect_ex((host, 9))
    s.close()
print(n, flush=True)
"#;

/// Connects `n` TCP sockets to a closed port of `host` (refused) and keeps them open until
/// a line arrives on stdin (`n` within the open-file limit: several holders hold more).
const HOLD: &str = r#"
import resource, socket, sys
n, host = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect_ex((host, 9))
    held.append(s)
print("holding", flush=True)
sys.stdin.readline()
"#;

/// `n` TLS connections to `host`:443 as api.openai.com, one after another.
const TLS_CLIENT: &str = r#"
import socket, ssl, sys
host, cafile, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
for i in range(n):
    with socket.create_connection((host, 443), timeout=10) as t:
        with ctx.wrap_socket(t, server_hostname="api.openai.com"):
            pass
print("done", flush=True)
"#;

const TCP_FLOOD_SOCKETS: u32 = 40_000;
const HELD_SOCKETS: u32 = 20_000;
const TLS_CONNECTIONS: usize = 100;

const FLOOD_SOCKETS: u32 = 150_000;

fn kind(v: &Value) -> (u64, u64) {
    (n(v, &["class_uid"]), n(v, &["activity_id"]))
}

/// Slots of the agent's `PARKED` map (id `map`) that hold a socket: a non-zero first word.
fn held_slots(map: u64) -> usize {
    map_values(map)
        .unwrap()
        .iter()
        .filter(|v| v.len() >= 8 && v[..8].iter().any(|b| *b != 0))
        .count()
}

#[test]
fn a_socket_flood_cannot_evict_the_owner_of_a_live_socket() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let agent = Agent::start(&["--poll-ms", "20"]).unwrap();

    let mut client = t
        .cmd(&t.client, "python3")
        .args(["-c", CLIENT, &t.remote_v4, &cert])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = client.id();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected", "the client did not connect");

    let slots = map_of(agent.pid(), "PARKED").unwrap();
    let parked = held_slots(slots);
    assert!(
        parked >= 1,
        "the client's TCP socket is not parked: {parked} slots held"
    );
    for (kind, n) in [("udp", FLOOD_SOCKETS), ("tcp", TCP_FLOOD_SOCKETS)] {
        let started = Instant::now();
        let flood = t
            .cmd(&t.client, "python3")
            .args(["-c", FLOOD, kind, &n.to_string(), &t.remote_v4])
            .output()
            .unwrap();
        assert!(
            flood.status.success(),
            "the {kind} flood failed: {}",
            String::from_utf8_lossy(&flood.stderr)
        );
        eprintln!(
            "{kind} flood: {} sockets in {:.1} s",
            String::from_utf8_lossy(&flood.stdout).trim(),
            started.elapsed().as_secs_f64()
        );
    }
    // Closed sockets give their slots back; the client's (and whatever else on this host
    // is between connect and payload) stay. (A new socket at a closed one's address takes
    // its slot over as well, so this bound holds even without the release hook's free:
    // the holders' test below is the one that shows the release freeing slots.)
    let after = held_slots(slots);
    assert!(
        after < 64,
        "{after} slots still held after the floods closed their sockets (before: {parked})"
    );

    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "done",
        "the client's query or handshake failed"
    );
    assert!(client.wait().unwrap().success());

    let wait = Duration::from_secs(20);
    let p = of_pid(pid);
    let q = agent
        .wait_for("the client's DNS query, attributed to it", wait, |v| {
            p(v) && kind(v) == (4003, 1) && s(v, &["query", "hostname"]) == "api.openai.com"
        })
        .unwrap();
    assert_eq!(s(&q, &["actor", "user", "name"]), "root");
    let hello = agent
        .wait_for("the client's ClientHello, attributed to it", wait, |v| {
            p(v) && kind(v) == (4001, 6)
        })
        .unwrap();
    assert_eq!(s(&hello, &["tls", "sni"]), "api.openai.com");
}

#[test]
fn sockets_holding_most_slots_do_not_cost_another_socket_its_owner() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let agent = Agent::start(&["--poll-ms", "20"]).unwrap();
    let slots = map_of(agent.pid(), "PARKED").unwrap();

    // Two holders: the open-file limit here may be 20,000 per process.
    let mut holders: Vec<_> = (0..2)
        .map(|_| {
            let mut h = t
                .cmd(&t.client, "python3")
                .args(["-c", HOLD, &(HELD_SOCKETS / 2).to_string(), &t.remote_v4])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(h.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(
                line.trim(),
                "holding",
                "a holder did not connect its sockets"
            );
            h
        })
        .collect();
    let held = held_slots(slots);
    eprintln!("{HELD_SOCKETS} sockets hold {held} of the 16,384 slots");
    // 20,000 sockets hashed over 16,384 slots take about 70 % of them.
    assert!(
        held >= 10_000,
        "only {held} slots held by {HELD_SOCKETS} parked sockets"
    );

    let client = t
        .cmd(&t.client, "python3")
        .args([
            "-c",
            TLS_CLIENT,
            &t.remote_v4,
            &cert,
            &TLS_CONNECTIONS.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(client.status.success(), "the TLS client failed");
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "done");
    // `output()` has reaped the client: its pid is the one its events carry.
    let pid = client_pid(&agent, &t.remote_v4);
    let hellos = |pred: &dyn Fn(&Value) -> bool| {
        agent
            .events()
            .iter()
            .filter(|v| {
                kind(v) == (4001, 6)
                    && s(v, &["tls", "sni"]) == "api.openai.com"
                    && s(v, &["dst_endpoint", "ip"]) == t.remote_v4
                    && pred(v)
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while hellos(&|_| true) < TLS_CONNECTIONS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let p = of_pid(pid);
    assert_eq!(
        hellos(&|_| true),
        TLS_CONNECTIONS,
        "a ClientHello is missing"
    );
    assert_eq!(
        hellos(&|v| p(v)),
        TLS_CONNECTIONS,
        "a ClientHello lost its owner"
    );

    for h in &mut holders {
        h.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(h.wait().unwrap().success());
    }
    let after = held_slots(slots);
    assert!(
        after < 64,
        "{after} slots still held after the holders exited"
    );
}

/// The pid of the TLS client: the process of its first connect event to `remote`:443.
fn client_pid(agent: &Agent, remote: &str) -> u32 {
    let v = agent
        .wait_for("the TLS client's connect", Duration::from_secs(20), |v| {
            kind(v) == (4001, 1)
                && n(v, &["dst_endpoint", "port"]) == 443
                && s(v, &["dst_endpoint", "ip"]) == remote
        })
        .unwrap();
    u32::try_from(n(&v, &["actor", "process", "pid"])).unwrap()
}
