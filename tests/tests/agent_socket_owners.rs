//! Socket ownership lives in the socket's own storage (SK_STORAGE), so a local user cannot
//! flood it away: a process connects a UDP and a TCP socket, another process then opens,
//! connects and closes 150,000 sockets (more than twice the 65,536 owners the old LRU table
//! held, every one a new owner record), and only then does the first process send its DNS
//! query and its ClientHello on the sockets it connected before the flood. Both must still
//! be attributed to it — packets carry no process context, so the owner can only come from
//! what its connect() recorded. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
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

/// Opens, connects (UDP: no packet leaves) and closes `n` sockets; prints the count.
const FLOOD: &str = r#"
import socket, sys
n = int(sys.argv[1])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", 9))
    s.close()
print(n, flush=True)
"#;

const FLOOD_SOCKETS: u32 = 150_000;

fn kind(v: &Value) -> (u64, u64) {
    (n(v, &["class_uid"]), n(v, &["activity_id"]))
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

    let started = Instant::now();
    let flood = t
        .cmd(&t.client, "python3")
        .args(["-c", FLOOD, &FLOOD_SOCKETS.to_string()])
        .output()
        .unwrap();
    assert!(
        flood.status.success(),
        "the flood failed: {}",
        String::from_utf8_lossy(&flood.stderr)
    );
    eprintln!(
        "flood: {} sockets in {:.1} s",
        String::from_utf8_lossy(&flood.stdout).trim(),
        started.elapsed().as_secs_f64()
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
