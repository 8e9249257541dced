//! The packet programs skip TCP segments without payload (SYN, SYN-ACK, bare ACK, FIN, RST)
//! before any map work. They must decide on the payload length, never on the flags: with TCP
//! Fast Open the ClientHello travels in the SYN itself, and a client that wants to slip past
//! an observer that skips SYNs only has to turn it on (one sysctl in its own namespace).
//! Here a client in a test namespace sends a real ClientHello (Python's ssl, SNI
//! `api.openai.com`) as the SYN's payload to a Fast Open server, checks with `TCP_INFO` that
//! the SYN's data was acknowledged (so the hello never went out again in a later segment),
//! and the agent must still name it and attribute it to the client. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shadowai_tests::{Agent, Topology, n, of_pid, s, serial, sh};

const T: Duration = Duration::from_secs(20);

const PORT: &str = "8443";

/// Fast Open on both ends, without cookies: client (1) + server (2) + a client's data in
/// its first SYN without a cookie (4) + a server accepting it without one (0x200). Written
/// to /proc/sys inside each namespace (the knob is per network namespace).
const TFO_NO_COOKIES: &str = "echo 519 > /proc/sys/net/ipv4/tcp_fastopen";

/// A listener with Fast Open that reads what the client sent and answers "ok".
const SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"ok")
    c.close()
"#;

/// Builds a ClientHello for api.openai.com, connects with TCP_FASTOPEN_CONNECT (connect()
/// sends nothing; the first send() goes out in the SYN), sends the hello, waits for the
/// server's "ok", and prints whether the SYN's data was acknowledged (TCPI_OPT_SYN_DATA).
const CLIENT: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ssl.create_default_context().wrap_bio(inc, out, server_hostname="api.openai.com")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_TCP, 30, 1)  # TCP_FASTOPEN_CONNECT
s.settimeout(10)
s.connect((host, port))
s.sendall(hello)
assert s.recv(16) == b"ok"
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
print("syn_data" if info[5] & 0x20 else "no_syn_data", flush=True)
"#;

fn kind(v: &Value) -> (u64, u64) {
    (n(v, &["class_uid"]), n(v, &["activity_id"]))
}

#[test]
fn a_client_hello_in_the_syn_itself_is_named_and_attributed() {
    let _g = serial();
    let mut t = Topology::new().unwrap();
    for ns in [t.client.clone(), t.remote.clone()] {
        sh(Command::new("ip").args(["netns", "exec", &ns, "sh", "-c", TFO_NO_COOKIES])).unwrap();
    }
    let v4 = t.remote_v4.clone();
    t.start_server("python3", &["-c", SERVER, &v4, PORT])
        .unwrap();
    let agent = Agent::start(&["--poll-ms", "20"]).unwrap();

    let child = t
        .cmd(&t.client, "python3")
        .args(["-c", CLIENT, &v4, PORT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        said.trim(),
        "syn_data",
        "the ClientHello must have travelled in the SYN alone for this test to mean anything"
    );

    let p = of_pid(pid);
    let h = agent
        .wait_for("the ClientHello carried by the SYN", T, |v| {
            p(v) && kind(v) == (4001, 6)
        })
        .unwrap();
    assert_eq!(s(&h, &["tls", "sni"]), "api.openai.com", "{h}");
    assert_eq!(n(&h, &["dst_endpoint", "port"]), 8443, "{h}");
}
