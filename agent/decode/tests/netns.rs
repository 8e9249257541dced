//! Real clients (curl, Python ssl, openssl s_client with a large ClientHello, aioquic, a DNS
//! query) talking to real servers across a veth pair between two network
//! namespaces this test creates; tcpdump records the client side; replaying the capture must
//! name every server. Needs root, tcpdump, curl, openssl, python3 with aioquic (installed by
//! .ci/deps/decode.sh). Skipped, loudly, when not root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shadowai_decode::replay::decode_file;
use shadowai_decode::{Decoded, Limits, Transport};

const SERVER_IP: &str = "10.77.0.1";
const CLIENT_IP: &str = "10.77.0.2";
const SERVER_IP6: &str = "fd77::1";
const CLIENT_IP6: &str = "fd77::2";
/// A QUIC Initial is >= 1200 bytes and must not be IP-fragmented; a ~2 KB ClientHello still
/// spans two segments at this MTU.
const MTU: &str = "1500";

/// Deletes the namespaces and kills the processes it was given, even when the test fails.
struct Guard {
    netns: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?} failed: {st}");
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Start a process that prints `ready` (on stdout) or `listening` (tcpdump, on stderr).
fn spawn_ready(mut cmd: Command, on_stderr: bool) -> Child {
    if on_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.spawn().unwrap();
    let mut r: Box<dyn BufRead + Send> = if on_stderr {
        Box::new(BufReader::new(child.stderr.take().unwrap()))
    } else {
        Box::new(BufReader::new(child.stdout.take().unwrap()))
    };
    // Skip warnings until the readiness line (EOF means the process died: fail).
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).unwrap();
        if line.contains("ready") || line.contains("listening") {
            break;
        }
        seen.push(line);
        assert!(n > 0 && seen.len() < 20, "not ready: {seen:?}");
    }
    // Keep draining so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in r.lines() {});
    child
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn real_clients_in_namespaces_replay_to_the_right_names() {
    if !is_root() {
        eprintln!("SKIPPED: real_clients_in_namespaces needs root (CI runs it as root)");
        return;
    }
    let tag = format!(
        "{}{}",
        std::process::id() % 100_000,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_micros()
            % 1000
    );
    let (ns_s, ns_c) = (format!("sdec{tag}s"), format!("sdec{tag}c"));
    let (if_s, if_c) = (format!("vd{tag}s"), format!("vd{tag}c"));
    let mut g = Guard {
        netns: Vec::new(),
        children: Vec::new(),
    };
    for ns in [&ns_s, &ns_c] {
        run(&["ip", "netns", "add", ns]);
        g.netns.push(ns.clone());
    }
    run(&[
        "ip", "link", "add", &if_s, "netns", &ns_s, "mtu", MTU, "type", "veth", "peer", "name",
        &if_c, "netns", &ns_c, "mtu", MTU,
    ]);
    for (ns, ifc, ip, ip6) in [
        (&ns_s, &if_s, SERVER_IP, SERVER_IP6),
        (&ns_c, &if_c, CLIENT_IP, CLIENT_IP6),
    ] {
        let v6 = format!("{ip6}/64");
        run(&["ip", "-n", ns, "addr", "add", &v6, "dev", ifc, "nodad"]);
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            ifc,
        ]);
        run(&["ip", "-n", ns, "link", "set", ifc, "up"]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let names = [
        "api.openai.com",
        "api.anthropic.com",
        "generativelanguage.googleapis.com",
        "api.mistral.ai",
        "chatgpt.com",
    ];
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=api.openai.com",
        "-addext",
        &format!("subjectAltName={san}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns_helper.py");
    let helper = helper.to_str().unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    g.children.push(spawn_ready(
        in_ns(
            &ns_s,
            &["python3", helper, "tls-server", cert, key, SERVER_IP],
        ),
        false,
    ));
    g.children.push(spawn_ready(
        in_ns(
            &ns_s,
            &["python3", helper, "tls-server", cert, key, SERVER_IP6],
        ),
        false,
    ));
    g.children.push(spawn_ready(
        in_ns(
            &ns_s,
            &["python3", helper, "quic-server", cert, key, SERVER_IP],
        ),
        false,
    ));
    let pcap = dir.path().join("client.pcap");
    let mut tcpdump = in_ns(
        &ns_c,
        &[
            "tcpdump",
            "--immediate-mode",
            "-i",
            &if_c,
            "-U",
            "-s",
            "0",
            "-Z",
            "root",
            "-w",
            pcap.to_str().unwrap(),
            "tcp or udp",
        ],
    );
    tcpdump.stdin(Stdio::null());
    let tcpdump = spawn_ready(tcpdump, true);
    let tcpdump_pid = tcpdump.id();
    g.children.push(tcpdump);

    let client = |args: &[&str]| {
        let out = in_ns(&ns_c, args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    client(&[
        "curl",
        "-sk",
        "--max-time",
        "5",
        "--resolve",
        &format!("api.openai.com:443:{SERVER_IP}"),
        "https://api.openai.com/",
    ]);
    client(&[
        "python3",
        helper,
        "tls-client",
        SERVER_IP,
        "api.anthropic.com",
    ]);
    // IPv6, which IPv4-only SNI tracers miss.
    let resolve6 = format!("chatgpt.com:443:[{SERVER_IP6}]");
    client(&[
        "curl",
        "-sk",
        "-6",
        "--max-time",
        "5",
        "--resolve",
        &resolve6,
        "https://chatgpt.com/",
    ]);
    // A ClientHello of ~2 KB (post-quantum size): dozens of long ALPN ids, many groups and signature algorithms.
    let alpn = (0..64)
        .map(|i| format!("shadowai-test-protocol-{i:02}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut s_client = in_ns(
        &ns_c,
        &[
            "openssl",
            "s_client",
            "-connect",
            &format!("{SERVER_IP}:443"),
            "-servername",
            names[2],
            "-alpn",
            &alpn,
            "-groups",
            "X25519:P-256:P-384:P-521:X448:ffdhe2048:ffdhe3072",
        ],
    );
    let s_out = s_client.stdin(Stdio::null()).output().unwrap();
    assert!(
        s_out.status.success(),
        "s_client: {}",
        String::from_utf8_lossy(&s_out.stderr)
    );
    client(&[
        "python3",
        helper,
        "quic-client",
        SERVER_IP,
        "api.mistral.ai",
    ]);
    client(&[
        "python3",
        helper,
        "dns-client",
        SERVER_IP,
        "chat.deepseek.com",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    run(&["kill", "-INT", &tcpdump_pid.to_string()]);
    std::thread::sleep(Duration::from_millis(500));

    let out = decode_file(&pcap, Limits::default()).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    let mut tcp_names = Vec::new();
    let mut quic_names = Vec::new();
    let mut dns_names = Vec::new();
    let mut big_hello = 0;
    for d in &out.decoded {
        match d {
            Decoded::ClientHello {
                transport: Transport::Tcp,
                hello,
                dst,
                ..
            } => {
                tcp_names.push(hello.sni.clone().unwrap());
                assert_eq!(dst.is_ipv6(), hello.sni.as_deref() == Some("chatgpt.com"));
                big_hello = big_hello.max(hello.hello_len);
                assert!(!hello.partial);
                assert!(hello.ja4.starts_with("t13d"), "{}", hello.ja4);
            }
            Decoded::ClientHello {
                transport: Transport::Quic { version },
                hello,
                ..
            } => {
                assert_eq!(*version, 1);
                assert!(hello.ja4.starts_with("q13d"), "{}", hello.ja4);
                quic_names.push(hello.sni.clone().unwrap());
            }
            Decoded::ClientHello {
                transport: Transport::Udp,
                ..
            } => panic!("hello over bare UDP"),
            Decoded::Dns { msg, .. } => dns_names.push(msg.questions[0].name.clone()),
        }
    }
    tcp_names.sort();
    let size = std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        tcp_names,
        vec![names[1], names[0], names[4], names[2]],
        "{size} bytes, {:?} {:?}",
        out.replay_stats,
        out.decode_stats
    );
    assert_eq!(quic_names, vec![names[3]]);
    assert_eq!(dns_names, vec!["chat.deepseek.com"]);
    // The large hello spanned two segments and was reassembled.
    assert!(big_hello > 1600, "{big_hello}");
    assert!(out.replay_stats.tls >= 7, "{:?}", out.replay_stats);
    assert_eq!(
        out.decode_stats.tls.error_total() + out.decode_stats.quic.error_total(),
        0,
        "{:?}",
        out.decode_stats
    );
}
