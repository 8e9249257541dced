//! The Inventory page in a real headless Chromium against a real collector (issue 12).
//!
//! Starts `shadowai-collector serve` on loopback, enrolls two hosts through the real enroll
//! API and posts their inventories through the real agent API (`POST /api/v1/inventory`):
//! `dev-01` runs a Gemini CLI session started with `--yolo` as root and the unpinned MCP
//! server it launched, reported twice (first seen kept, last seen moved on); `dev-02` runs
//! an Ollama listening on all interfaces and a flag-free Claude Code session. Then
//! `tests/ui/inventory.test.mjs` (playwright-core driving Debian's /usr/bin/chromium) checks
//! the page fleet-wide and per host: first/last seen in the viewer's zone, flags, and the
//! flag filter.
//!
//! Needs: `cargo build --bins` (the collector binary), `.ci/deps/collector-ui.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shadowai_api::client::Client;
use shadowai_api::inventory::{AgentSession, InventoryReport, Listener, McpServer, Runtime};
use shadowai_api::wire::EnrollRequest;
use shadowai_api::{Flag, SessionRef};
use shadowai_tests::browser::{Run, run_script};

fn collector_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("shadowai-collector");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` before this test (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// Runs a collector admin command; returns its stdout line starting with `prefix`.
fn admin_line(data: &Path, args: &[&str], prefix: &str) -> String {
    let out = Command::new(collector_bin())
        .args(args)
        .args(["--data", data.to_str().unwrap()])
        .env("SHADOWAI_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{args:?} printed no {prefix}… line: {stdout}"))
        .to_owned()
}

/// The collector process, killed when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn session(
    id: &str,
    kind: &str,
    name: &str,
    user: &str,
    flags: Vec<Flag>,
    first: i64,
    last: i64,
) -> AgentSession {
    AgentSession {
        session: SessionRef {
            id: id.into(),
            kind: kind.into(),
            root_pid: 4242,
            started_ms: first,
            version: Some("0.61.0".into()),
        },
        name: name.into(),
        user: user.into(),
        uid: if user == "root" { 0 } else { 1000 },
        cwd: Some("/home/dev/project".into()),
        exe: "/usr/bin/node".into(),
        argv: vec!["node".into(), "gemini".into()],
        processes: 3,
        live_processes: 2,
        destinations: vec!["generativelanguage.googleapis.com".into()],
        off_catalogue: vec![],
        tenant: None,
        flags,
        first_seen_ms: first,
        last_seen_ms: last,
        ended: false,
    }
}

fn reports(now: i64) -> (InventoryReport, InventoryReport, InventoryReport) {
    let day = 86_400_000;
    let first = now - 2 * day;
    let gemini = |last| {
        session(
            "4242-1",
            "gemini-cli",
            "Gemini CLI",
            "root",
            vec![Flag::AgentAsRoot, Flag::PermissionBypass],
            first,
            last,
        )
    };
    let mcp = |last| McpServer {
        id: "4242-1/4300".into(),
        transport: "stdio".into(),
        launcher: "npx".into(),
        package: Some("@modelcontextprotocol/server-filesystem".into()),
        pinned: false,
        pid: 4300,
        argv: vec![
            "npx".into(),
            "-y".into(),
            "@modelcontextprotocol/server-filesystem".into(),
        ],
        session_id: Some("4242-1".into()),
        destinations: vec!["registry.npmjs.org".into()],
        listeners: vec![],
        flags: vec![Flag::UnpinnedMcpServer],
        first_seen_ms: first,
        last_seen_ms: last,
        ended: false,
    };
    let dev01 = |last| InventoryReport {
        host_id: "dev-01".into(),
        hostname: "dev-01".into(),
        time_ms: last,
        sessions: vec![gemini(last)],
        mcp_servers: vec![mcp(last)],
        runtimes: vec![],
    };
    let dev02 = InventoryReport {
        host_id: "dev-02".into(),
        hostname: "dev-02".into(),
        time_ms: now - 60_000,
        sessions: vec![session(
            "777-5",
            "claude-code",
            "Claude Code",
            "carol",
            vec![],
            now - day,
            now - 60_000,
        )],
        mcp_servers: vec![],
        runtimes: vec![Runtime {
            id: "ollama-900-1".into(),
            kind: "ollama".into(),
            name: "Ollama".into(),
            pid: 900,
            exe: "/usr/local/bin/ollama".into(),
            user: "ollama".into(),
            matched_by: "exe".into(),
            listeners: vec![Listener {
                addr: "0.0.0.0".into(),
                port: 11434,
                exposed: true,
            }],
            pull_hosts: vec!["registry.ollama.ai".into()],
            clients: vec![],
            flags: vec![Flag::RuntimeExposed],
            first_seen_ms: now - day,
            last_seen_ms: now - 60_000,
            ended: false,
        }],
    };
    (dev01(first + 3_600_000), dev01(now - 120_000), dev02)
}

fn run_node(script: &str, url: &str, fixture: &serde_json::Value, shots: &Path) -> String {
    let Run { status, out, err } =
        run_script(script, url, fixture, shots, &[], Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("the inventory browser test: {e:#}"));
    println!("{out}");
    assert!(
        status.success(),
        "browser test failed ({status}):\n{out}\n{err}\nscreenshots in {}",
        shots.display()
    );
    out
}

#[test]
fn the_inventory_page_shows_sessions_servers_and_runtimes_per_host_and_fleet_wide() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let admin = admin_line(
        &data,
        &["token", "create", "--role", "admin", "--name", "alice"],
        "sau_",
    );
    let secret = shadowai_tests::secret_written(&admin_line(
        &data,
        &["rotate-enrollment-secret"],
        "new enrollment secret written to",
    ))
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("collector.log")).unwrap();
    let _served = Served(
        Command::new(collector_bin())
            .args(["serve", "--insecure-http", "--data", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (dev01_early, dev01_late, dev02) = reports(now);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let anon = Client::builder(&url)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while anon.healthz().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the collector did not answer /healthz within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (host, sent) in [
            ("dev-01", vec![&dev01_early, &dev01_late]),
            ("dev-02", vec![&dev02]),
        ] {
            let enrolled = anon
                .enroll(&EnrollRequest {
                    secret: secret.clone(),
                    host_id: host.into(),
                    hostname: host.into(),
                    group: None,
                    agent_version: "0.1.0".into(),
                    host_key: "cd".repeat(32),
                })
                .await
                .unwrap();
            let agent = anon.with_token(enrolled.token);
            for r in sent {
                agent.inventory_report(r).await.unwrap();
            }
        }
    });
    let fixture = json!({
        "admin_token": admin,
        "timezone": "Asia/Kolkata",
        "total": 4,
        "dev01": {"items": 2, "first_seen_ms": dev01_early.sessions[0].first_seen_ms,
                  "last_seen_ms": dev01_late.sessions[0].last_seen_ms},
        "dev02": {"items": 2},
    });
    let shots = std::env::var("SHADOWAI_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = run_node("inventory.test.mjs", &url, &fixture, &shots);
    assert!(out.contains(" passed, 0 failed"), "{out}");
    for name in ["inventory-fleet", "inventory-host", "inventory-flag"] {
        let len = std::fs::metadata(shots.join(format!("{name}.png")))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "screenshot {name}.png is missing or empty");
    }
}
