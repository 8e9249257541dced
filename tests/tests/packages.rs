//! End-to-end: the packages a fleet installs. `cargo xtask dist` builds the .deb and .rpm
//! of the agent, the collector and the admin CLI (release build once, then a version-bumped
//! rebuild of the packages from the same binaries); their metadata and contents are
//! inspected; the .rpm is installed into a scratch root; the .deb are installed on this
//! machine; the INSTALLED collector runs as its unprivileged user, the INSTALLED agent runs
//! with only the capabilities its unit grants, enrolls, attributes real clients, spools
//! while the collector is down, survives an upgrade with config and spool intact, and is
//! then removed (config kept) and purged (nothing left). Needs root; leaves the machine as
//! it found it, and refuses to run on a machine where shadowai is already installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

#[path = "packages/caps.rs"]
mod caps;
#[path = "packages/inspect.rs"]
mod inspect;
#[path = "packages/installed.rs"]
mod installed;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shadowai_tests::{Topology, serial, sh};

use inspect::{dist, inspect_debs, inspect_rpms, pick};
use installed::{
    InstalledCollector, cli, curl_findings, curl_in, secret_from, start_agent, status, unit_caps,
    validate_refuses,
};

const PACKAGES: [&str; 3] = ["shadowai-agent", "shadowai-collector", "shadowai"];
const AGENT_UNIT: &str = "/lib/systemd/system/shadowai-agent.service";
const COLLECTOR_UNIT: &str = "/lib/systemd/system/shadowai-collector.service";
/// Everything the packages or `enroll` create outside /usr.
const FOOTPRINT: [&str; 3] = [
    "/etc/shadowai",
    "/var/lib/shadowai",
    "/var/lib/shadowai-collector",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).starts_with("un"))
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Purges whatever the test installed and stops what it started, even when it fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").arg("--purge").args(PACKAGES).status();
        for p in FOOTPRINT {
            let _ = std::fs::remove_dir_all(p);
        }
        if user_exists("shadowai") {
            let _ = Command::new("userdel").arg("shadowai").status();
        }
        let _ = Command::new("groupdel")
            .arg("shadowai")
            .stderr(Stdio::null())
            .status();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn packages_build_install_enroll_upgrade_remove_and_purge() {
    let _g = serial();
    machine_is_clean();
    let _cleanup = Cleanup;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Build: one release build, then the same binaries packaged as a newer version.
    let v = env!("CARGO_PKG_VERSION");
    let v1 = dist(&w.join("v1"), None);
    let v2 = dist(&w.join("v2"), Some("99.0.1"));
    assert_eq!(v1.len(), 6, "{v1:?}");
    inspect_debs(&v1, v);
    inspect_rpms(&v1, v, w);
    inspect_debs(&v2, "99.0.1");

    install(&v1);
    let (collector, admin, enroll_secret) = collector_first_start();
    validate_refuses_what_cannot_enroll(w);
    let agent_id = enroll(&collector, &admin, &enroll_secret);
    let cfg_text = edit_config();
    let (t, cert) = Topology::with_servers(
        &["api.openai.com", "api.anthropic.com"],
        "api.openai.com A {v4}\napi.anthropic.com A {v4}\n",
    )
    .unwrap();
    let caps = unit_caps(AGENT_UNIT);
    caps::capabilities_are_the_minimum(&caps, &t, &cert, w);
    let port = collector.port;
    let curl = attribute_then_spool(collector, &admin, &agent_id, &caps, &t, &cert);
    upgrade(&v2, &cfg_text, port, &admin, &caps, &curl);
    drop(t);
    remove_then_purge();
}

fn machine_is_clean() {
    for p in PACKAGES {
        assert!(
            !installed(p),
            "refusing to run: package {p} is installed on this machine"
        );
    }
    for p in FOOTPRINT {
        assert!(
            !Path::new(p).exists(),
            "refusing to run: {p} exists on this machine"
        );
    }
    assert!(
        !user_exists("shadowai"),
        "refusing to run: user shadowai exists"
    );
}

/// Installs the three .deb on this machine and checks the layout and the units.
fn install(v1: &[std::path::PathBuf]) {
    // Install the three .deb on this machine.
    let debs: Vec<&Path> = PACKAGES.iter().map(|p| pick(v1, p, ".deb")).collect();
    sh(Command::new("dpkg").arg("-i").args(&debs)).unwrap();
    assert!(user_exists("shadowai"));
    for unit in ["shadowai-agent.service", "shadowai-collector.service"] {
        let link = Path::new("/etc/systemd/system/multi-user.target.wants").join(unit);
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "{unit} not enabled on install"
        );
    }
    let data = std::fs::metadata("/var/lib/shadowai-collector").unwrap();
    assert_eq!(data.permissions().mode() & 0o777, 0o700);
    let conf = std::fs::metadata("/etc/shadowai/collector.toml").unwrap();
    assert_eq!(conf.permissions().mode() & 0o777, 0o640);
    assert_eq!(conf.uid(), 0);
    for unit in [AGENT_UNIT, COLLECTOR_UNIT] {
        let out = Command::new("systemd-analyze")
            .args(["verify", unit])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "systemd-analyze verify {unit}: {err}");
        assert!(
            !err.contains("shadowai"),
            "systemd-analyze verify {unit}: {err}"
        );
    }
    // systemd's own exposure score of the hardening (0 = locked down, 10 = none).
    for (unit, max) in [(AGENT_UNIT, 4.0), (COLLECTOR_UNIT, 2.0)] {
        let out =
            sh(Command::new("systemd-analyze").args(["security", "--offline=true", unit])).unwrap();
        let score: f64 = out
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level: {out}"));
        eprintln!("systemd-analyze security {unit}: {score}");
        assert!(score <= max, "{unit}: exposure {score} > {max}\n{out}");
    }
}

/// The installed collector, unprivileged, writes its first-start secrets to 0600 files.
fn collector_first_start() -> (InstalledCollector, String, String) {
    let mut collector = InstalledCollector::start(free_port());
    let admin = secret_from(&collector.wait_line("bootstrap admin token written to"));
    let enroll_secret = secret_from(&collector.wait_line("enrollment secret written to"));
    assert!(
        !collector
            .seen
            .iter()
            .any(|l| l.contains(&admin) || l.contains(&enroll_secret)),
        "a secret reached stdout/stderr"
    );

    (collector, admin, enroll_secret)
}

fn validate_refuses_what_cannot_enroll(w: &Path) {
    // `validate` refuses collector sections that cannot enroll.
    let ca = "/var/lib/shadowai-collector/tls/cert.pem";
    validate_refuses(
        w,
        "plain-http",
        "url = \"http://10.0.0.1:8443\"",
        "plain http only to loopback",
    );
    validate_refuses(
        w,
        "userinfo",
        "url = \"http://localhost@10.0.0.1:8443\"",
        "user info",
    );
    validate_refuses(
        w,
        "no-ca",
        "url = \"https://127.0.0.1:8443\"\nenroll_secret_file = \"/etc/hostname\"",
        "collector.ca: required",
    );
    validate_refuses(
        w,
        "no-secret",
        &format!(
            "url = \"https://127.0.0.1:8443\"\nca = \"{ca}\"\nenroll_secret_file = \"/nonexistent/secret\""
        ),
        "enroll_secret_file",
    );
}

/// A wrong secret fails and keeps the secret file; the right one enrolls, checks the token
/// with a heartbeat and deletes the file. Returns the agent id.
fn enroll(collector: &InstalledCollector, admin: &str, enroll_secret: &str) -> String {
    let ca = "/var/lib/shadowai-collector/tls/cert.pem";
    // enroll: a wrong secret fails and keeps the secret file; the right one enrolls, checks
    // the token with a heartbeat and deletes the file.
    let secret_file = Path::new("/etc/shadowai/enroll.secret");
    std::fs::write(secret_file, "sae_wrong\n").unwrap();
    let enroll = |group: &str| {
        Command::new("/usr/bin/shadowai-agent")
            .args([
                "enroll",
                "--collector",
                &collector.url(),
                "--ca",
                ca,
                "--secret-file",
            ])
            .arg(secret_file)
            .args(["--group", group, "--tags", "ci,packaged"])
            .output()
            .unwrap()
    };
    let out = enroll("pkg-test");
    assert!(!out.status.success(), "enrolled with a wrong secret");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("enrollment"),
        "{out:?}"
    );
    assert!(
        secret_file.exists(),
        "the secret file was deleted after a failed enrollment"
    );
    assert!(!Path::new("/var/lib/shadowai/agent.token").exists());
    std::fs::write(secret_file, format!("{enroll_secret}\n")).unwrap();
    let out = enroll("pkg-test");
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("upload verified"),
        "{out:?}"
    );
    assert!(
        !secret_file.exists(),
        "the enrollment secret is still on disk"
    );
    let token = std::fs::metadata("/var/lib/shadowai/agent.token").unwrap();
    assert_eq!(token.permissions().mode() & 0o777, 0o600);
    let agent_id = std::fs::read_to_string("/var/lib/shadowai/agent.id").unwrap();
    let agents = cli(collector, admin, &["agents", "list", "--json"]);
    let me = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == agent_id.trim())
        .unwrap_or_else(|| panic!("{agent_id} not in {agents}"));
    assert_eq!(me["group"], "pkg-test", "{me}");
    assert!(
        me["last_seen_ms"].as_i64().unwrap_or(0) > 0,
        "no heartbeat recorded: {me}"
    );

    agent_id.trim().to_string()
}

/// The admin edits the conffile (faster windows, a free metrics port): upgrade keeps it.
fn edit_config() -> String {
    // The admin edits the conffile (faster windows, a free metrics port): upgrade keeps it.
    let metrics_port = free_port();
    let cfg_text = std::fs::read_to_string("/etc/shadowai/agent.toml").unwrap();
    assert!(
        cfg_text.contains("# shadowai agent configuration"),
        "comments kept: {cfg_text}"
    );
    let cfg_text = cfg_text
        .replace("window_secs = 60", "window_secs = 2")
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{metrics_port}"))
        .replace("\n[collector]\n", "\n[collector]\nupload_secs = 1\n");
    std::fs::write("/etc/shadowai/agent.toml", &cfg_text).unwrap();
    sh(Command::new("/usr/bin/shadowai-agent").args(["validate"])).unwrap();

    cfg_text
}

/// The installed agent with the unit's capabilities: healthy, attributes, uploads; then,
/// with the collector down, spools. Returns curl's path.
fn attribute_then_spool(
    collector: InstalledCollector,
    admin: &str,
    agent_id: &str,
    caps: &[String],
    t: &Topology,
    cert: &str,
) -> String {
    let agent = start_agent(caps);
    let st = wait_until("agent status healthy", Duration::from_secs(30), || {
        let s = status();
        s["healthy"].as_bool().unwrap_or(false).then_some(s)
    });
    assert_eq!(st["enrolled"], true, "{st}");
    assert_eq!(st["agent_id"], agent_id.trim(), "{st}");
    assert_eq!(st["collector"]["token_accepted"], true, "{st}");
    let hooks = st["daemon"]["hooks"].as_object().unwrap();
    assert!(
        !hooks.is_empty() && hooks.values().all(|a| a == true),
        "hooks: {st}"
    );
    curl_in(t, cert, "https://api.openai.com/");
    let curl = sh(Command::new("sh").args(["-c", "readlink -f \"$(command -v curl)\""]))
        .unwrap()
        .trim()
        .to_string();
    let found = wait_until(
        "the openai finding at the collector",
        Duration::from_secs(30),
        || {
            curl_findings(&collector, admin)
                .into_iter()
                .find(|f| f["service_id"] == "openai-api" && f["process"]["exe"] == curl.as_str())
        },
    );
    let sum = sh(Command::new("sha256sum").arg(&curl)).unwrap();
    assert_eq!(
        found["process"]["exe_sha256"],
        sum.split_whitespace().next().unwrap(),
        "{found}"
    );
    assert_eq!(found["user"], "root", "{found}");

    // Collector down: the next finding is spooled.
    let _ = collector.stop();
    curl_in(t, cert, "https://api.anthropic.com/");
    wait_until("a spooled batch", Duration::from_secs(30), || {
        let s = status();
        (s["daemon"]["spool_batches"].as_u64().unwrap_or(0) >= 1).then_some(())
    });
    agent.stop();

    curl
}

/// Upgrade to the newer packages: config and spool stay, the binaries are replaced, the
/// spooled finding is delivered.
fn upgrade(
    v2: &[std::path::PathBuf],
    cfg_text: &str,
    port: u16,
    admin: &str,
    caps: &[String],
    curl: &str,
) {
    // Upgrade to the newer packages: config and spool stay, the binaries are replaced.
    let debs2: Vec<&Path> = PACKAGES.iter().map(|p| pick(v2, p, ".deb")).collect();
    sh(Command::new("dpkg").arg("-i").args(&debs2)).unwrap();
    let ver =
        sh(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "shadowai-agent"])).unwrap();
    assert!(ver.starts_with("99.0.1"), "{ver}");
    assert_eq!(
        std::fs::read_to_string("/etc/shadowai/agent.toml").unwrap(),
        cfg_text,
        "config changed by the upgrade"
    );
    assert!(Path::new("/var/lib/shadowai/agent.token").exists());
    let collector = InstalledCollector::start(port);
    let agent = start_agent(caps);
    wait_until(
        "the spooled anthropic finding delivered after the upgrade",
        Duration::from_secs(30),
        || {
            curl_findings(&collector, admin)
                .into_iter()
                .find(|f| f["service_id"] == "anthropic-api" && f["process"]["exe"] == curl)
        },
    );
    wait_until("the spool drained", Duration::from_secs(15), || {
        (status()["daemon"]["spool_batches"] == 0).then_some(())
    });
    agent.stop();
    drop(collector);
}

/// Remove: binaries go, configuration and state stay. Purge: nothing is left.
fn remove_then_purge() {
    // Remove: binaries go, configuration and state stay.
    sh(Command::new("dpkg").arg("--remove").args(PACKAGES)).unwrap();
    assert!(!Path::new("/usr/bin/shadowai-agent").exists());
    assert!(
        Path::new("/etc/shadowai/agent.toml").exists(),
        "remove deleted the config"
    );
    assert!(
        Path::new("/var/lib/shadowai/agent.token").exists(),
        "remove deleted the state"
    );
    // The two packages with conffiles stay known as "removed, config files remain".
    for p in ["shadowai-agent", "shadowai-collector"] {
        let st =
            sh(Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Abbrev}", p])).unwrap();
        assert_eq!(st.trim(), "rc", "{p}");
    }

    // Purge: nothing of shadowai is left.
    sh(Command::new("dpkg").arg("--purge").args(PACKAGES)).unwrap();
    for p in FOOTPRINT {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    assert!(!user_exists("shadowai"), "user shadowai left after purge");
    for unit in ["shadowai-agent.service", "shadowai-collector.service"] {
        for dir in [
            "/etc/systemd/system",
            "/etc/systemd/system/multi-user.target.wants",
            "/var/lib/systemd/deb-systemd-helper-enabled",
            "/var/lib/systemd/deb-systemd-helper-masked",
        ] {
            let p = Path::new(dir).join(unit);
            assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{} left after purge",
                p.display()
            );
        }
    }
    for p in PACKAGES {
        assert!(!installed(p), "{p} still known to dpkg");
    }
}
