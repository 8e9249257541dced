//! End-to-end: the real agent on the real kernel attributes real clients' DNS, TLS and
//! connections in namespaces this test creates (IPv4 and IPv6), including a process that
//! exits right after connecting, and counts garbage instead of crashing. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shadowai_tests::{Agent, Topology, n, of_pid, repo_root, s, serial, sh};

const T: Duration = Duration::from_secs(20);

/// The file the kernel runs for `cmd` (through symlinks and version-manager shims).
fn realpath(cmd: &str) -> String {
    let script = if cmd == "python3" {
        "python3 -c 'import os,sys; print(os.path.realpath(sys.executable))'".to_string()
    } else {
        format!("readlink -f \"$(command -v {cmd})\"")
    };
    sh(Command::new("sh").args(["-c", &script]))
        .unwrap()
        .trim()
        .to_string()
}

fn topology() -> (Topology, String) {
    Topology::with_servers(
        &["api.openai.com", "api.anthropic.com"],
        "api.openai.com CNAME openai-edge.cdn.test\n\
         openai-edge.cdn.test A {v4}\n\
         openai-edge.cdn.test AAAA {v6}\n\
         api.anthropic.com A {v4}\n\
         api.anthropic.com AAAA {v6}\n",
    )
    .unwrap()
}

/// Runs a client in the client namespace to completion; returns its pid.
fn client(t: &Topology, program: &str, args: &[&str]) -> u32 {
    let mut c = t.cmd(&t.client, program);
    c.args(args);
    let child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

fn kind(v: &Value) -> (u64, u64) {
    (n(v, &["class_uid"]), n(v, &["activity_id"]))
}

/// Waits for an event of `pid` of one OCSF (class, activity).
fn event_of(agent: &Agent, what: &str, pid: u32, class: (u64, u64)) -> Value {
    agent
        .wait_for(what, T, |v| of_pid(pid)(v) && kind(v) == class)
        .unwrap()
}

#[test]
fn attributes_dns_tls_and_connections_over_ipv4_and_ipv6() {
    let _g = serial();
    let (t, cert) = topology();
    let agent = Agent::start(&["--poll-ms", "20"]).unwrap();

    // curl: DNS (CNAME chain) → connect named from the DNS cache → ClientHello with SNI.
    let curl = client(
        &t,
        "curl",
        &["-4", "-sS", "--cacert", &cert, "https://api.openai.com/"],
    );
    let p = of_pid(curl);
    let q = agent
        .wait_for("curl DNS query", T, |v| {
            p(v) && kind(v) == (4003, 1) && s(v, &["query", "hostname"]) == "api.openai.com"
        })
        .unwrap();
    assert_eq!(
        s(&q, &["actor", "process", "file", "path"]),
        realpath("curl")
    );
    assert_eq!(s(&q, &["actor", "user", "name"]), "root");
    assert!(s(&q, &["actor", "process", "cmd_line"]).contains("https://api.openai.com/"));
    let r = agent
        .wait_for("curl DNS answer", T, |v| {
            p(v) && kind(v) == (4003, 2) && s(v, &["query", "hostname"]) == "api.openai.com"
        })
        .unwrap();
    let answers = r["answers"].as_array().unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a["rdata"] == "openai-edge.cdn.test" && a["type"] == "CNAME"),
        "{r}"
    );
    let conn = agent
        .wait_for("curl connect", T, |v| {
            p(v) && kind(v) == (4001, 1) && n(v, &["dst_endpoint", "port"]) == 443
        })
        .unwrap();
    assert_eq!(s(&conn, &["dst_endpoint", "ip"]), t.remote_v4);
    assert_eq!(
        s(&conn, &["dst_endpoint", "hostname"]),
        "api.openai.com",
        "named through the CNAME chain: {conn}"
    );
    assert_eq!(s(&conn, &["unmapped", "name_source"]), "dns_cache_process");
    let hello = agent
        .wait_for("curl ClientHello", T, |v| p(v) && kind(v) == (4001, 6))
        .unwrap();
    assert_eq!(s(&hello, &["tls", "sni"]), "api.openai.com");
    assert_eq!(s(&hello, &["connection_info", "protocol_name"]), "tcp");
    assert!(
        hello["tls"]["ja4_fingerprint_list"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("t13"),
        "{hello}"
    );

    // openssl s_client resolves through getaddrinfo and sends SNI.
    let ossl = client(
        &t,
        "sh",
        &[
            "-c",
            "exec openssl s_client -connect api.anthropic.com:443 -servername api.anthropic.com -brief </dev/null",
        ],
    );
    let h = event_of(&agent, "openssl ClientHello", ossl, (4001, 6));
    assert_eq!(s(&h, &["tls", "sni"]), "api.anthropic.com");
    assert_eq!(
        s(&h, &["actor", "process", "file", "path"]),
        realpath("openssl")
    );

    // python over IPv6, straight to an address, TLS with SNI.
    let code = format!(
        "import socket,ssl\nctx=ssl.create_default_context(cafile='{cert}')\n\
         s=socket.create_connection(('{v6}',443))\nt=ctx.wrap_socket(s,server_hostname='api.anthropic.com')\n\
         t.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\nt.recv(16)\n",
        v6 = t.remote_v6
    );
    let py = client(&t, "python3", &["-c", &code]);
    let h6 = event_of(&agent, "python IPv6 ClientHello", py, (4001, 6));
    assert_eq!(s(&h6, &["tls", "sni"]), "api.anthropic.com");
    assert_eq!(s(&h6, &["dst_endpoint", "ip"]), t.remote_v6);
    assert_eq!(
        s(&h6, &["actor", "process", "file", "path"]),
        realpath("python3")
    );
    let c6 = event_of(&agent, "python IPv6 connect", py, (4001, 1));
    assert_eq!(s(&c6, &["dst_endpoint", "ip"]), t.remote_v6);

    // Another user: curl as nobody over IPv6 (AAAA through the CNAME chain).
    let nobody = client(
        &t,
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-6",
            "-sS",
            "--cacert",
            &cert,
            "https://api.openai.com/",
        ],
    );
    let hn = event_of(&agent, "nobody's ClientHello", nobody, (4001, 6));
    assert_eq!(s(&hn, &["actor", "user", "name"]), "nobody");
    assert_eq!(s(&hn, &["actor", "user", "uid"]), "65534");
    assert_eq!(s(&hn, &["dst_endpoint", "ip"]), t.remote_v6);
    assert_eq!(s(&hn, &["tls", "sni"]), "api.openai.com");

    // DNS over TCP from python (length-prefixed), an AAAA question.
    let code = format!(
        "import socket,struct\nq=struct.pack('!HHHHHH',0x4242,0x0100,1,0,0,0)+b'\\x03api\\x09anthropic\\x03com\\x00'+struct.pack('!HH',28,1)\n\
         s=socket.create_connection(('{v4}',53))\ns.sendall(struct.pack('!H',len(q))+q)\nn=struct.unpack('!H',s.recv(2))[0]\n\
         b=b''\nwhile len(b)<n: b+=s.recv(n-len(b))\n",
        v4 = t.remote_v4
    );
    let tcpdns = client(&t, "python3", &["-c", &code]);
    let d = event_of(&agent, "DNS-over-TCP answer", tcpdns, (4003, 2));
    assert_eq!(s(&d, &["connection_info", "protocol_name"]), "tcp");
    assert_eq!(s(&d, &["query", "type"]), "AAAA");
    assert!(
        d["answers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rdata"] == t.remote_v6.as_str()),
        "{d}"
    );
}

#[test]
fn a_process_that_exits_right_after_connecting_keeps_its_identity() {
    let _g = serial();
    let (t, _cert) = topology();
    // Drain rarely, so the process is long gone when its events are read: its identity
    // must come from the exec event, not from /proc.
    let agent = Agent::start(&["--poll-ms", "1500"]).unwrap();
    let code = format!(
        "import socket\nsocket.create_connection(('{}',443)).close()\n",
        t.remote_v4
    );
    let pid = client(&t, "python3", &["-c", &code, "/short-lived-marker"]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the client has exited"
    );
    let c = event_of(&agent, "short-lived connect", pid, (4001, 1));
    let exe = s(&c, &["actor", "process", "file", "path"]);
    // /proc is gone: this is the path the kernel saw at execve().
    let py = realpath("python3");
    let shim = sh(Command::new("sh").args(["-c", "command -v python3"])).unwrap();
    assert!(
        exe == py || exe == shim.trim() || exe.ends_with("/python3"),
        "exe {exe} vs {py}"
    );
    // The argv read at exec (the process is gone before /proc could be read), written as
    // names only: the path argument, never the inline code (`output/cmdline.rs`).
    let cmd_line = s(&c, &["actor", "process", "cmd_line"]);
    assert!(cmd_line.contains("-c … /short-lived-marker"), "{c}");
    assert!(!cmd_line.contains("import socket"), "{c}");
    assert_eq!(s(&c, &["actor", "user", "name"]), "root");
    assert_eq!(s(&c, &["dst_endpoint", "ip"]), t.remote_v4);
    assert!(
        c["unmapped"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "never_resolved"),
        "a bare IP nobody resolved is flagged: {c}"
    );
}

fn scrape(addr: &str) -> String {
    sh(Command::new("curl").args(["-sS", &format!("http://{addr}/metrics")])).unwrap()
}

fn metric(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn garbage_packets_are_counted_not_fatal_and_metrics_are_served() {
    let _g = serial();
    let (t, cert) = topology();
    let addr = "127.0.0.1:19464";
    let agent = Agent::start(&["--poll-ms", "20", "--metrics", addr]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let before = scrape(addr);
    for hook in [
        "connect4",
        "connect6",
        "sendmsg4",
        "sendmsg6",
        "skb_egress",
        "skb_ingress",
        "sched_process_exec",
        "exec_argv",
    ] {
        assert_eq!(
            metric(
                &before,
                &format!("shadowai_hook_attached{{hook=\"{hook}\"}}")
            ),
            1,
            "{hook}:\n{before}"
        );
    }
    assert!(
        before.contains(
            "shadowai_kernel_drops_total{program=\"skb_egress\",reason=\"ringbuf_full\"}"
        )
    );
    // argv is read at sched_process_exec: the agent loads no syscall tracepoint program,
    // so no process's syscalls take the traced entry path because of it.
    let ours: Vec<String> = shadowai_tests::bpf_ids_of(agent.pid(), "prog_id")
        .into_iter()
        .filter_map(|id| {
            let out = Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string(), "-j"])
                .output()
                .ok()?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["type"] == "tracepoint").then(|| v["name"].as_str().map(str::to_owned))?
        })
        .collect();
    assert!(ours.iter().any(|n| n == "sched_process_exec"), "{ours:?}");
    assert!(!ours.iter().any(|n| n.starts_with("sys_")), "{ours:?}");

    // Garbage to the DNS port, and a TLS record header that promises a ClientHello and
    // then carries junk.
    let code = format!(
        "import socket\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         u.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x05trunc',('{v4}',53))\n\
         u.sendto(b'\\xff'*3,('{v4}',53))\n\
         s=socket.create_connection(('{v4}',443))\ns.sendall(b'\\x16\\x03\\x01\\x00\\x30\\x01\\x00\\x00\\x2c'+b'\\xee'*44)\ns.close()\n",
        v4 = t.remote_v4
    );
    let pid = client(&t, "python3", &["-c", &code]);
    event_of(&agent, "garbage sender's connect", pid, (4001, 1));
    std::thread::sleep(Duration::from_millis(1500));
    let after = scrape(addr);
    let errors = |text: &str, proto: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("shadowai_decode_errors_total{{proto=\"{proto}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(
        errors(&after, "dns") > errors(&before, "dns"),
        "DNS garbage counted:\n{after}"
    );
    assert!(
        errors(&after, "tls") > errors(&before, "tls"),
        "TLS garbage counted:\n{after}"
    );

    // The agent is still alive and still attributing.
    let ok = client(
        &t,
        "curl",
        &["-4", "-sS", "--cacert", &cert, "https://api.anthropic.com/"],
    );
    let h = event_of(&agent, "ClientHello after garbage", ok, (4001, 6));
    assert_eq!(s(&h, &["tls", "sni"]), "api.anthropic.com");
    // The snapshot behind /metrics is refreshed every second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(
        &scrape(addr),
        "shadowai_events_total{kind=\"tls_client_hello\"}",
    ) < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "events counted:\n{}",
            scrape(addr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn quic_initials_and_client_hellos_split_across_segments_are_named_live() {
    let _g = serial();
    let (mut t, cert) = topology();
    let key = t.dir.path().join("key.pem");
    // A real QUIC server (aioquic) in the remote namespace, on UDP 4433.
    let helper = repo_root().join("agent/decode/tests/netns_helper.py");
    let v4 = t.remote_v4.clone();
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
    let agent = Agent::start(&["--poll-ms", "20"]).unwrap();

    let quic = client(
        &t,
        "python3",
        &[
            helper.to_str().unwrap(),
            "quic-client",
            &v4,
            "api.openai.com",
        ],
    );
    let q = event_of(&agent, "QUIC ClientHello", quic, (4001, 6));
    assert_eq!(s(&q, &["connection_info", "protocol_name"]), "quic");
    assert_eq!(s(&q, &["tls", "sni"]), "api.openai.com");
    assert_eq!(s(&q, &["unmapped", "quic_version"]), "0x00000001");
    assert_eq!(n(&q, &["dst_endpoint", "port"]), 4433);

    // Shrink the client's link so every ClientHello spans several TCP segments.
    let dev = sh(Command::new("ip").args(["-n", &t.client, "-o", "link", "show", "type", "veth"]))
        .unwrap();
    let dev = dev
        .split(':')
        .nth(1)
        .unwrap()
        .trim()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    sh(Command::new("ip").args(["-n", &t.client, "link", "set", &dev, "mtu", "300"])).unwrap();
    let ossl = client(
        &t,
        "sh",
        &[
            "-c",
            "exec openssl s_client -connect api.anthropic.com:443 -servername api.anthropic.com -brief </dev/null",
        ],
    );
    let h = event_of(&agent, "split openssl ClientHello", ossl, (4001, 6));
    assert_eq!(s(&h, &["tls", "sni"]), "api.anthropic.com");
    // MTU 300 leaves 260 bytes of TCP payload per segment: this hello needed several.
    assert!(n(&h, &["unmapped", "client_hello_len"]) > 260, "{h}");
    assert!(
        h["unmapped"]["client_hello_partial"].is_null(),
        "reassembled whole: {h}"
    );
    let curl = client(
        &t,
        "curl",
        &["-4", "-sS", "--cacert", &cert, "https://api.openai.com/"],
    );
    let h = event_of(&agent, "split curl ClientHello", curl, (4001, 6));
    assert_eq!(s(&h, &["tls", "sni"]), "api.openai.com");
    assert!(n(&h, &["unmapped", "client_hello_len"]) > 260, "{h}");
    assert!(
        h["unmapped"]["client_hello_partial"].is_null(),
        "reassembled whole: {h}"
    );
}
