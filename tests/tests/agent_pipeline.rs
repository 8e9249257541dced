//! End-to-end: the daemon cannot be stalled or blinded from the host it watches. The real
//! agent (`run`) against a real collector and real clients in network namespaces:
//! - a process with control characters in its exe name and a ClientHello with a 254-byte
//!   SNI (both refused by the collector's checks as they are) do not stop other findings
//!   from arriving; their findings arrive cleaned and cut;
//! - a full disk under traffic keeps the agent alive, the loss counted in `/metrics`;
//! - `/metrics` is a valid exposition (strict parser).
//!
//! Needs root (eBPF, namespaces, tmpfs mounts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shadowai_tests::{
    Collector, Daemon, Topology, bin, parse_exposition, repo_root, sample, serial, sh, wait_until,
};

/// 254 bytes: a 253-byte name under platform.openai.com (catalogue service `openai-api`)
/// with its root dot, which the rules ignore and the collector's 253-byte limit does not.
fn long_sni() -> String {
    let n = format!(
        "{a}.{a}.{a}.{b}.platform.openai.com.",
        a = "a".repeat(63),
        b = "b".repeat(41)
    );
    assert_eq!(n.len(), 254);
    n
}

fn write_config(path: &Path, state: &Path, collector: Option<(&Collector, &Path)>, metrics: &str) {
    let mut text = format!(
        "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\nhostname = \"pipeline-host\"\nhost_id = \"pipeline-host-id\"\nspool_max_mib = 1\n\n\
         [rules]\ncatalogue = \"{}\"\n\n[output]\nmetrics = \"{metrics}\"\n",
        state.display(),
        repo_root().join("rules/catalogue").display(),
    );
    if let Some((c, secret)) = collector {
        text.push_str(&format!(
            "\n[collector]\nurl = \"{}\"\nca = \"{}\"\nenroll_secret_file = \"{}\"\nupload_secs = 1\n",
            c.url,
            c.ca.display(),
            secret.display()
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn scrape(addr: &str) -> String {
    sh(Command::new("curl").args(["-sS", &format!("http://{addr}/metrics")])).unwrap()
}

#[test]
fn hostile_names_do_not_stop_other_findings_from_arriving() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(
        &["api.anthropic.com", "api.openai.com"],
        "api.anthropic.com A {v4}\napi.openai.com A {v4}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = 19500 + (std::process::id() % 400) as u16;
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let token = collector
        .admin_token
        .clone()
        .expect("admin token on first start");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let config = work.path().join("agent.toml");
    let metrics = format!("127.0.0.1:{}", port + 400);
    write_config(
        &config,
        &work.path().join("state"),
        Some((&collector, &secret)),
        &metrics,
    );
    let _agent = Daemon::agent_run(&config).unwrap();
    std::thread::sleep(Duration::from_secs(3)); // attach + enrollment

    // An exe whose name carries a terminal escape and a newline.
    let curl = sh(Command::new("sh").args(["-c", "readlink -f \"$(command -v curl)\""]))
        .unwrap()
        .trim()
        .to_string();
    let evil_dir = work.path().join("bin");
    std::fs::create_dir_all(&evil_dir).unwrap();
    let evil = evil_dir.join("cu\u{1b}[31m\nrl");
    std::fs::copy(&curl, &evil).unwrap();
    // All three in the same window, so they would share one batch.
    let ok = t
        .cmd(&t.client, "curl")
        .args([
            "-4",
            "-sS",
            "-o",
            "/dev/null",
            "--cacert",
            &cert,
            "https://api.anthropic.com/",
        ])
        .spawn()
        .unwrap();
    let bad_exe = t
        .cmd(&t.client, evil.to_str().unwrap())
        .args([
            "-4",
            "-sS",
            "-o",
            "/dev/null",
            "--cacert",
            &cert,
            "https://api.openai.com/",
        ])
        .spawn()
        .unwrap();
    let code = format!(
        "import socket,ssl\nc=ssl.create_default_context()\nc.check_hostname=False\nc.verify_mode=ssl.CERT_NONE\n\
         s=socket.create_connection(('{}',443),timeout=5)\n\
         try:\n  c.wrap_socket(s,server_hostname='{}').close()\nexcept Exception as e:\n  print('handshake:',e)\n",
        t.remote_v4,
        long_sni()
    );
    let long = t
        .cmd(&t.client, "python3")
        .args(["-c", &code])
        .spawn()
        .unwrap();
    for c in [ok, bad_exe, long] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    let of = |fs: &[Value], pred: &dyn Fn(&Value) -> bool| fs.iter().find(|f| pred(f)).cloned();
    let last = std::cell::RefCell::new(Vec::new());
    let fs = wait_until(
        "all three findings at the collector",
        Duration::from_secs(40),
        || {
            let fs = collector.findings(&token);
            *last.borrow_mut() = fs.clone();
            let ok = of(&fs, &|f| f["service_id"] == "anthropic-api")?;
            let evil = of(&fs, &|f| {
                f["process"]["exe"]
                    .as_str()
                    .is_some_and(|e| e.contains("\\x1b[31m\\x0arl"))
            })?;
            let long = of(&fs, &|f| {
                f["evidence"]["sni"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|s| s.as_str().is_some_and(|s| s.starts_with("aaaa")))
                })
            })?;
            Some((ok, evil, long))
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:#?}", last.borrow()));
    let (_, evil, long) = fs;
    assert_eq!(evil["service_id"], "openai-api", "{evil}");
    let sni = long["evidence"]["sni"][0].as_str().unwrap().to_string();
    assert!(
        sni.len() <= 253 && sni.ends_with('…'),
        "cut with a marker: {sni}"
    );
    assert_eq!(long["service_id"], "openai-api", "{long}");

    let text = scrape(&metrics);
    let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        sample(&samples, "shadowai_findings_truncated_total", &[]).unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(&samples, "shadowai_uplink_quarantined_batches_total", &[]),
        Some(0.0),
        "nothing needed quarantine: {text}"
    );
}

/// A tmpfs of `mib` MiB mounted at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir))
        .unwrap();
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_the_agent_alive_and_the_loss_reported() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let _fs = Tmpfs::mount(&state, 8);
    let config = work.path().join("agent.toml");
    let metrics = format!("127.0.0.1:{}", 19900 + (std::process::id() % 90) as u16);
    write_config(&config, &state, None, &metrics);
    let mut agent = Daemon::agent_run(&config).unwrap();
    std::thread::sleep(Duration::from_secs(3));

    // Fill the disk to the last byte, then make AI traffic across several windows.
    let filler = state.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let curl = |n: u32| {
        for _ in 0..n {
            let _ = t
                .cmd(&t.client, "curl")
                .args([
                    "-4",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--cacert",
                    &cert,
                    "https://api.openai.com/",
                ])
                .status();
            std::thread::sleep(Duration::from_millis(400));
        }
    };
    curl(8);
    let (lost, held) = wait_until(
        "the loss counted in /metrics",
        Duration::from_secs(20),
        || {
            let text = scrape(&metrics);
            let s = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let failures = sample(&s, "shadowai_spool_write_failures_total", &[])?;
            let lost = sample(&s, "shadowai_spool_lost_findings_total", &[])?;
            let held = sample(&s, "shadowai_spool_batches", &[])?;
            (failures > 0.0 && lost > 0.0).then_some((lost, held))
        },
    )
    .unwrap();
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent is still running"
    );

    // Room again: findings are spooled again.
    std::fs::remove_file(&filler).unwrap();
    curl(4);
    wait_until(
        "the spool holding batches again",
        Duration::from_secs(20),
        || {
            let text = scrape(&metrics);
            let s = parse_exposition(&text).ok()?;
            (sample(&s, "shadowai_spool_batches", &[])? > held).then_some(())
        },
    )
    .unwrap();
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "still running after the disk recovered"
    );
    let text = scrape(&metrics);
    let s = parse_exposition(&text).unwrap();
    assert!(sample(&s, "shadowai_spool_lost_findings_total", &[]).unwrap() >= lost);
    assert!(
        sample(&s, "shadowai_hook_attached", &[("hook", "connect4")]) == Some(1.0),
        "{text}"
    );
    drop(agent);
    let _ = bin("shadowai-agent");
}

/// Bytes free for unprivileged writers on the filesystem holding `dir`.
fn avail(dir: &Path) -> u64 {
    sh(Command::new("df").args(["-B1", "--output=avail"]).arg(dir))
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Everything `/metrics` says, within 5 s (an agent that stopped answering fails here).
fn metrics_now(addr: &str) -> Vec<shadowai_tests::Sample> {
    let text = sh(Command::new("curl").args(["-sS", "-m", "5", &format!("http://{addr}/metrics")]))
        .unwrap_or_else(|e| panic!("/metrics did not answer within 5 s: {e}"));
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The spool fills its own small disk under steady traffic (no collector, a spool cap far
/// above the disk): the agent keeps answering, the spool keeps taking each window's
/// batches by dropping the oldest (counted), no spool call misses its deadline, and the
/// agent still stops on SIGTERM within its deadline. Every wait here has a deadline, so a
/// regression (the hang this replaced) fails the test instead of stalling CI.
#[test]
fn a_spool_that_fills_its_own_disk_drops_the_oldest_and_never_stalls() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let _fs = Tmpfs::mount(&state, 8);
    let config = work.path().join("agent.toml");
    let metrics = format!("127.0.0.1:{}", 19990 + (std::process::id() % 8) as u16);
    write_config(&config, &state, None, &metrics);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("spool_max_mib = 1", "spool_max_mib = 256");
    std::fs::write(&config, text).unwrap();
    let mut agent = Daemon::agent_run(&config).unwrap();

    // Leave the spool 2.25 MiB: its 2 MiB reserve and a few windows of batches.
    let filler = state.join("filler");
    let leave = 9u64 << 18;
    let size = avail(&state).saturating_sub(leave);
    sh(Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(&filler))
    .unwrap();
    // Distinct executables: one finding each per window.
    let curl = sh(Command::new("sh").args(["-c", "readlink -f \"$(command -v curl)\""]))
        .unwrap()
        .trim()
        .to_string();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let clients: Vec<String> = (0..24)
        .map(|i| {
            let p = bin.join(format!("ai-client-{i}"));
            std::fs::copy(&curl, &p).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect();
    let round = || {
        let running: Vec<_> = clients
            .iter()
            .map(|c| {
                t.cmd(&t.client, c)
                    .args(["-4", "-sS", "-m", "5", "-o", "/dev/null", "--cacert", &cert])
                    .arg("https://api.openai.com/")
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in running {
            let _ = c.wait();
        }
    };
    let counter = |s: &[shadowai_tests::Sample], name: &str| sample(s, name, &[]).unwrap_or(0.0);

    // Traffic until the spool has dropped its oldest batches to make room for new ones.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut rounds = 0;
    let before = loop {
        round();
        rounds += 1;
        let s = metrics_now(&metrics);
        if counter(&s, "shadowai_spool_lost_batches_total") > 0.0 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spool never filled its disk in {rounds} rounds: {:?}",
            s.iter()
                .filter(|x| x.name.starts_with("shadowai_spool"))
                .collect::<Vec<_>>()
        );
    };
    // Keep it full for several more windows: each one is taken, the oldest dropped.
    for _ in 0..8 {
        round();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "the agent is running"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = metrics_now(&metrics);
    let lost = |s: &[shadowai_tests::Sample]| counter(s, "shadowai_spool_lost_batches_total");
    let failed = |s: &[shadowai_tests::Sample]| counter(s, "shadowai_spool_write_failures_total");
    assert!(
        lost(&after) > lost(&before),
        "the oldest kept going to make room: {} then {}",
        lost(&before),
        lost(&after)
    );
    assert!(
        counter(&after, "shadowai_spool_batches") > 0.0,
        "the spool holds batches"
    );
    assert!(
        failed(&after) - failed(&before) <= 2.0,
        "new batches were taken, not refused: {} write failures during the full phase",
        failed(&after) - failed(&before)
    );
    assert_eq!(
        counter(&after, "shadowai_spool_stalls_total"),
        0.0,
        "no spool call missed its deadline"
    );
    assert_eq!(
        sample(
            &after,
            "shadowai_pipeline_dropped_total",
            &[("stage", "spool"), ("unit", "findings")]
        ),
        None,
        "the spool thread kept up"
    );

    // SIGTERM: the agent stops within its deadline (the spool thread answers).
    let pid = agent.0.id().to_string();
    sh(Command::new("kill").args(["-TERM", &pid])).unwrap();
    let stop = wait_until(
        "the agent to stop on SIGTERM",
        Duration::from_secs(30),
        || agent.0.try_wait().unwrap(),
    )
    .unwrap();
    assert!(stop.success(), "{stop:?}");
}

fn admin_post(c: &Collector, token: &str, path: &str) -> Value {
    let body = sh(Command::new("curl").args([
        "-sS",
        "--fail-with-body",
        "--cacert",
        c.ca.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"note\":\"e2e\"}",
        &format!("{}{path}", c.url),
    ]))
    .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_agent_re_enrolls_after_its_token_is_rotated_and_says_so_when_revoked() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = 19100 + (std::process::id() % 300) as u16;
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let admin = collector.admin_token.clone().expect("admin token");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    let metrics = format!("127.0.0.1:{}", port + 300);
    write_config(&config, &state, Some((&collector, &secret)), &metrics);
    let agent = Daemon::agent_run(&config).unwrap();
    let curl = || {
        let _ = t
            .cmd(&t.client, "curl")
            .args([
                "-4",
                "-sS",
                "-o",
                "/dev/null",
                "--cacert",
                &cert,
                "https://api.openai.com/",
            ])
            .status();
    };
    let metric = |name: &str| -> f64 {
        let text = scrape(&metrics);
        let s = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        sample(&s, name, &[]).unwrap_or(-1.0)
    };
    std::thread::sleep(Duration::from_secs(3));
    curl();
    let first = wait_until("a first finding", Duration::from_secs(30), || {
        let fs = collector.findings(&admin);
        (!fs.is_empty()).then_some(fs.len())
    })
    .unwrap();
    let token_before = std::fs::read_to_string(state.join("agent.token")).unwrap();
    let agents = collector.get(&admin, "/api/v1/agents").unwrap();
    let agent_id = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["host_id"] == "pipeline-host-id"))
        .map(|a| a["agent_id"].as_str().unwrap().to_string())
        .expect("the agent is listed");

    // Token rotated by an admin: the old token gets 401, the agent re-enrolls with its
    // host key (no secret: remove it to be sure) and uploads resume.
    std::fs::remove_file(&secret).unwrap();
    admin_post(
        &collector,
        &admin,
        &format!("/api/v1/agents/{agent_id}/rotate-token"),
    );
    curl();
    wait_until(
        "findings after the rotation",
        Duration::from_secs(40),
        || (collector.findings(&admin).len() > first).then_some(()),
    )
    .unwrap();
    let token_after = std::fs::read_to_string(state.join("agent.token")).unwrap();
    assert_ne!(token_before, token_after, "a fresh token was saved");
    assert!(metric("shadowai_reenrollments_total") >= 1.0);
    assert_eq!(metric("shadowai_identity_state"), 0.0);

    // Revoked: re-enrollment is refused (403); the agent says so and keeps spooling.
    admin_post(
        &collector,
        &admin,
        &format!("/api/v1/agents/{agent_id}/revoke"),
    );
    for _ in 0..3 {
        curl();
        std::thread::sleep(Duration::from_millis(700));
    }
    wait_until(
        "identity state 'revoked' in /metrics",
        Duration::from_secs(30),
        || (metric("shadowai_identity_state") == 2.0).then_some(()),
    )
    .unwrap();
    wait_until(
        "findings kept in the spool",
        Duration::from_secs(20),
        || (metric("shadowai_spool_batches") >= 1.0).then_some(()),
    )
    .unwrap();
    let mut agent = agent;
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
}

#[test]
fn an_unreachable_collector_at_first_start_does_not_stop_the_agent() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("collector");
    let port = 19100 + (std::process::id() % 90) as u16;
    // A first start only makes the collector's certificate and enrollment secret; then it
    // is down while the agent starts for the first time.
    let collector = Collector::start(&data, port).unwrap();
    let token = collector.admin_token.clone().expect("admin token");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    let metrics = format!("127.0.0.1:{}", port + 90);
    write_config(&config, &state, Some((&collector, &secret)), &metrics);
    drop(collector);

    let mut agent = Daemon::agent_run(&config).unwrap();
    let metric = |name: &str| -> Option<f64> {
        let text = scrape(&metrics);
        let s = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        sample(&s, name, &[])
    };
    wait_until("identity state: enrolling", Duration::from_secs(20), || {
        (metric("shadowai_identity_state")? == 4.0).then_some(())
    })
    .unwrap();
    // AI use while the collector is unreachable: observed and spooled.
    for _ in 0..2 {
        let _ = t
            .cmd(&t.client, "curl")
            .args([
                "-4",
                "-sS",
                "-o",
                "/dev/null",
                "--cacert",
                &cert,
                "https://api.openai.com/",
            ])
            .status();
        std::thread::sleep(Duration::from_millis(1200));
    }
    wait_until("findings spooled", Duration::from_secs(20), || {
        (metric("shadowai_spool_batches")? >= 1.0).then_some(())
    })
    .unwrap();
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert!(!state.join("agent.token").exists(), "not enrolled yet");

    // The collector comes up: the agent enrolls on its own and the spooled findings arrive.
    let collector = Collector::start(&data, port).unwrap();
    let findings = wait_until(
        "the spooled findings in the collector",
        Duration::from_secs(120),
        || {
            let fs = collector.findings(&token);
            (!fs.is_empty()).then_some(fs)
        },
    )
    .unwrap();
    assert!(
        findings.iter().any(|f| f["service_id"] == "openai-api"),
        "{findings:#?}"
    );
    assert!(
        state.join("agent.token").exists(),
        "enrolled in the background"
    );
    assert_eq!(metric("shadowai_identity_state"), Some(0.0));
    assert!(agent.0.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn replay_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    // A capture of 5,000 DNS queries: far more output than a pipe buffers, so the agent
    // writes into a closed pipe.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("queries.pcap");
    let script = "import struct,sys\n\
q=b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03api\\x06openai\\x03com\\x00\\x00\\x01\\x00\\x01'\n\
udp=struct.pack('!HHHH',40000,53,8+len(q),0)+q\n\
ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),0,0,64,17,0,bytes([10,0,0,1]),bytes([10,0,0,2]))+udp\n\
eth=b'\\x00'*12+b'\\x08\\x00'+ip\n\
o=open(sys.argv[1],'wb')\n\
o.write(struct.pack('<IHHiIII',0xa1b2c3d4,2,4,0,0,65535,1))\n\
for i in range(5000): o.write(struct.pack('<IIII',1700000000+i,0,len(eth),len(eth))+eth)\n";
    sh(Command::new("python3").args(["-c", script]).arg(&pcap)).unwrap();
    let mut child = Command::new(bin("shadowai-agent").unwrap())
        .args(["replay", "--text"])
        .arg(&pcap)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is closed now.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("Error"), "{err}");
}

#[test]
fn a_batch_the_collector_refuses_for_good_is_quarantined_and_the_queue_moves_on() {
    let _g = serial();
    let (t, cert) = Topology::with_servers(&["api.openai.com"], "api.openai.com A {v4}\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = 19000 + (std::process::id() % 90) as u16;
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    let metrics = format!("127.0.0.1:{}", port + 90);
    write_config(&config, &state, Some((&collector, &secret)), &metrics);
    let first = Daemon::agent_run(&config).unwrap();
    wait_until("enrollment", Duration::from_secs(30), || {
        state.join("agent.token").exists().then_some(())
    })
    .unwrap();
    first.stop();
    // The host id changes under the same token: the collector refuses every finding of
    // this batch for good (403: not this agent's host).
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("pipeline-host-id", "renamed-host-id");
    std::fs::write(&config, text).unwrap();
    let mut agent = Daemon::agent_run(&config).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..3 {
        let _ = t
            .cmd(&t.client, "curl")
            .args([
                "-4",
                "-sS",
                "-o",
                "/dev/null",
                "--cacert",
                &cert,
                "https://api.openai.com/",
            ])
            .status();
        std::thread::sleep(Duration::from_millis(1200));
    }
    let metric = |name: &str| -> Option<f64> {
        let text = scrape(&metrics);
        let s = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        sample(&s, name, &[])
    };
    wait_until(
        "batches quarantined and the queue empty",
        Duration::from_secs(30),
        || {
            let q = metric("shadowai_uplink_quarantined_batches_total")?;
            let held = metric("shadowai_spool_batches")?;
            (q >= 2.0 && held == 0.0).then_some(())
        },
    )
    .unwrap();
    assert_eq!(
        metric("shadowai_uplink_failures_total"),
        Some(0.0),
        "a definite refusal is not retried"
    );
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    // The heartbeat reports it, the collector keeps it, the fleet API shows it.
    let token = collector.admin_token.clone().expect("admin token");
    let shown = wait_until(
        "the quarantine in the fleet API",
        Duration::from_secs(30),
        || {
            let agents = collector.get(&token, "/api/v1/agents").ok()?;
            agents
                .as_array()?
                .iter()
                .find(|a| a["pipeline"]["quarantined_batches"].as_u64().unwrap_or(0) >= 2)
                .cloned()
        },
    )
    .unwrap();
    assert_eq!(shown["pipeline"]["identity"], "ok", "{shown}");
    // Every hook attaches on the test kernels: the heartbeat names none missing (the SOC
    // would see this host as partly blind otherwise).
    assert!(shown["pipeline"].get("hooks_missing").is_none(), "{shown}");
}
