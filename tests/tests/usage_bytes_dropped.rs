//! Byte accounting at the kernel, packet by packet: the capture programs (`skb_egress` /
//! `skb_ingress`) count each packet's payload for its socket, the ones they drop too. In
//! enforce mode a client in a network namespace sends one DNS query for a blocked name
//! (the kernel drops it: EPERM) and one for an allowed name (answered), each from its own
//! UDP socket, and holds the sockets open while the test reads the agent's `SOCK_BYTES`
//! entry of each socket cookie with bpftool: the dropped query's bytes are counted as
//! sent (as they were when the count had cgroup programs of its own, which the kernel ran
//! whatever the capture program decided), the allowed one's bytes out and the answer's
//! bytes in exactly; a TCP connection's 1,000 bytes out too, and the 700 bytes an accepted
//! socket sends. Once the sockets are closed every entry is gone: `bytes_release` found
//! them all (it skips sockets whose owner storage says they never had counters, and
//! sockets without storage: the count creates an accepted socket's).
//!
//! Needs root (eBPF, namespaces) and bpftool (`.ci/deps/usage.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shadowai_tests::enforce::Setup;
use shadowai_tests::{Daemon, Topology, serial};

/// One UDP socket per name, connected to the resolver: one query each, the answer read;
/// one TCP connection that sends 1,000 bytes; the sockets' cookies and sizes printed, then
/// held open until stdin says so.
const CLIENT: &str = r#"
import errno, json, socket, struct, sys
SO_COOKIE = 57
resolver = sys.argv[1]
def query(name):
    q = struct.pack("!HHHHHH", 0x2a2a, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)
out, held = {}, []
for tag, name in (("blocked", "api.deepseek.com"), ("allowed", "api.openai.com")):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((resolver, 53))
    cookie = struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
    q = query(name)
    r = {"cookie": cookie, "sent": len(q), "received": 0}
    try:
        s.send(q)
        r["send"] = "ok"
        r["received"] = len(s.recv(4096))
    except OSError as e:
        r["send"] = errno.errorcode.get(e.errno, str(e.errno))
    out[tag] = r
    held.append(s)
t = socket.create_connection((resolver, 443), timeout=5)
t.sendall(b"\0" * 1000)
cookie = struct.unpack("<Q", t.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
out["tcp"] = {"cookie": cookie, "sent": 1000}
held.append(t)
# A server's side: a connection accepted here (loopback inside the namespace) that sends
# 700 bytes; no connect() or sendmsg() ran on the accepted socket.
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.bind(("127.0.0.1", 0))
l.listen(1)
c = socket.create_connection(l.getsockname(), timeout=5)
a, _ = l.accept()
a.sendall(b"\1" * 700)
got = 0
while got < 700:
    got += len(c.recv(4096))
cookie = struct.unpack("<Q", a.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
out["accepted"] = {"cookie": cookie, "sent": 700}
held += [l, c, a]
print(json.dumps(out), flush=True)
sys.stdin.readline()
"#;

/// The client, running, with what it printed.
struct Client {
    child: std::process::Child,
    out: Value,
}

impl Client {
    fn run(t: &Topology) -> Client {
        let mut child = t
            .cmd(&t.client, "python3")
            .args(["-c", CLIENT, &t.remote_v4])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let out = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the client printed {line:?}: {e}"));
        Client { child, out }
    }

    fn field(&self, tag: &str, f: &str) -> u64 {
        self.out[tag][f]
            .as_u64()
            .unwrap_or_else(|| panic!("{tag}.{f} in {}", self.out))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

/// (bytes out, bytes in) of a socket cookie, `None` when it has no entry.
fn sock_bytes(map: u64, cookie: u64) -> Option<(u64, u64)> {
    let mut args = vec![
        "map".to_string(),
        "lookup".into(),
        "id".into(),
        map.to_string(),
        "key".into(),
    ];
    args.extend(cookie.to_le_bytes().iter().map(|b| b.to_string()));
    args.push("-j".into());
    let out = Command::new("bpftool").args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A missing key: `null` (and exit status 254) with -j.
        assert_eq!(
            stdout.trim(),
            "null",
            "bpftool map lookup: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = shadowai_tests::bpfmaps::value_bytes(&v).unwrap();
    assert_eq!(bytes.len(), 16, "SockBytes is two u64: {v}");
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    Some((word(0), word(1)))
}

#[test]
fn dropped_and_delivered_datagrams_are_counted_exactly_per_socket() {
    let _g = serial();
    let (t, _cert) = Topology::with_servers(
        &["api.deepseek.com", "api.openai.com"],
        "api.deepseek.com A {v4}\napi.openai.com A {v4}\n",
    )
    .unwrap();
    let setup = Setup::new(
        "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
         [[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\n",
    )
    .unwrap();
    let agent = Daemon::agent_run(&setup.config).unwrap();
    let map = shadowai_tests::bpfmaps::map_of(agent.0.id(), "SOCK_BYTES").unwrap();

    // The block takes effect once the agent has loaded its policy into the kernel.
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let c = Client::run(&t);
        if c.out["blocked"]["send"] == "EPERM" {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the blocked name's query was never refused within 20 s: {}",
            c.out
        );
        drop(c);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(client.out["allowed"]["send"], "ok", "{}", client.out);
    assert!(client.field("allowed", "received") > 12, "{}", client.out);

    let blocked = client.field("blocked", "cookie");
    let allowed = client.field("allowed", "cookie");
    assert_eq!(
        sock_bytes(map, blocked),
        Some((client.field("blocked", "sent"), 0)),
        "the query the kernel dropped counts as sent, once: {}",
        client.out
    );
    assert_eq!(
        sock_bytes(map, allowed),
        Some((
            client.field("allowed", "sent"),
            client.field("allowed", "received")
        )),
        "the allowed query and its answer: {}",
        client.out
    );

    let tcp = client.field("tcp", "cookie");
    let (tcp_out, _) = sock_bytes(map, tcp).expect("the TCP socket's counters");
    assert_eq!(tcp_out, 1000, "{}", client.out);

    // The accepted socket's counters: the count made its storage (it had none), so that
    // its release finds them.
    let accepted = client.field("accepted", "cookie");
    assert_eq!(
        sock_bytes(map, accepted),
        Some((700, 0)),
        "the accepted socket's bytes out: {}",
        client.out
    );

    // Closed: every entry goes, its final counts to the agent's ring — the TCP socket's
    // too, whose release finds the counters through the mark in its owner storage, and
    // the accepted one's, through the storage its first counted packet made.
    drop(client);
    let gone = Instant::now() + Duration::from_secs(10);
    while [blocked, allowed, tcp, accepted]
        .iter()
        .any(|c| sock_bytes(map, *c).is_some())
    {
        assert!(
            Instant::now() < gone,
            "SOCK_BYTES still holds closed sockets after 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);
}
