//! Measuring the agent's minimum capabilities with the installed binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shadowai_tests::{Topology, sh};

use super::free_port;
use super::installed::setpriv;

/// What the installed agent saw of a private client under a capability set.
#[derive(Debug, Default)]
struct Seen {
    /// The agent refused to start (its stderr).
    failed: Option<String>,
    /// Hooks reported not attached.
    detached: Vec<String>,
    /// Executable path and SHA-256 of the client's finding.
    exe: Option<String>,
    sha256: Option<String>,
}

/// Runs the installed agent (`run`, local rules, 1 s windows, findings to a file) with
/// exactly `caps` while `nobody` runs a copy of curl kept in a 0700 directory it owns,
/// started BEFORE the agent (so the agent must find it in /proc) and requesting
/// https://api.openai.com/ every 2 s.
fn observe_with(
    caps: &[String],
    t: &Topology,
    private: &Path,
    cert: &Path,
    w: &Path,
    tag: &str,
) -> Seen {
    let dir = w.join(format!("caps-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("findings.jsonl");
    let metrics = free_port();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{}\"\nwindow_secs = 1\n[rules]\ncatalogue = \"/usr/share/shadowai/catalogue\"\n\
             [output]\nfindings_jsonl = \"{}\"\nmetrics = \"127.0.0.1:{metrics}\"\n",
            dir.join("state").display(),
            jsonl.display()
        ),
    )
    .unwrap();
    let url = "https://api.openai.com/";
    let mut client = t
        .cmd(&t.client, "setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(private)
        .args(["-4", "-sS", "-o", "/dev/null", "--cacert"])
        .arg(cert)
        .args(["--rate", "30/m"])
        .args(std::iter::repeat_n(url, 10))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut agent = setpriv(caps)
        .args([
            "/usr/bin/shadowai-agent",
            "run",
            "--poll-ms",
            "50",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = agent.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut err);
            seen.failed = Some(format!("{st}: {err}"));
            break;
        }
        let f = std::fs::read_to_string(&jsonl).unwrap_or_default();
        let hit = f
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["actor"]["user"]["name"] == "nobody" && v["resources"][0]["uid"] == "openai-api"
            });
        if let Some(v) = hit {
            let file = &v["actor"]["process"]["file"];
            seen.exe = file["path"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            seen.sha256 = file["hashes"][0]["value"].as_str().map(str::to_string);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if seen.failed.is_none() {
        let text =
            sh(Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{metrics}/metrics")]))
                .unwrap_or_default();
        seen.detached = text
            .lines()
            .filter(|l| l.starts_with("shadowai_hook_attached{") && l.ends_with(" 0"))
            .map(str::to_string)
            .collect();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let _ = client.kill();
    let _ = client.wait();
    eprintln!("capabilities {caps:?}: {seen:?}");
    seen
}

/// Each capability the agent's unit grants is needed: with all of them the agent attaches
/// every hook and attributes another user's pre-existing process, private binary and all;
/// without any one of them something a user would notice breaks.
pub fn capabilities_are_the_minimum(caps: &[String], t: &Topology, cert: &str, w: &Path) {
    // A copy of curl in a directory only `nobody` can enter; the parents stay traversable.
    std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o711)).unwrap();
    let home = w.join("nobody-home");
    std::fs::create_dir_all(&home).unwrap();
    let private = home.join("ai-client");
    std::fs::copy(
        sh(Command::new("sh").args(["-c", "readlink -f \"$(command -v curl)\""]))
            .unwrap()
            .trim(),
        &private,
    )
    .unwrap();
    let ca = w.join("client-ca.pem");
    std::fs::copy(cert, &ca).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    sh(Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&home))
    .unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sum = sh(Command::new("sha256sum").arg(&private)).unwrap();
    let sum = sum.split_whitespace().next().unwrap();

    let all = observe_with(caps, t, &private, &ca, w, "all");
    assert!(
        all.failed.is_none() && all.detached.is_empty(),
        "with the unit's capabilities: {all:?}"
    );
    assert_eq!(all.exe.as_deref(), private.to_str(), "{all:?}");
    assert_eq!(all.sha256.as_deref(), Some(sum), "{all:?}");
    // CAP_SYS_ADMIN serves enforce mode only (entering a refused socket's network
    // namespace to destroy it): tests/tests/enforce_unit_caps.rs shows what breaks
    // without it. It also stands in for CAP_BPF and CAP_PERFMON in the kernel's checks, so
    // the observing minimum is shown without it: an observe-only deployment may drop
    // CAP_SYS_ADMIN, and then needs every one of the others.
    let observe: Vec<String> = caps.iter().filter(|c| *c != "sys_admin").cloned().collect();
    for drop in &observe {
        let fewer: Vec<String> = observe.iter().filter(|c| *c != drop).cloned().collect();
        let s = observe_with(&fewer, t, &private, &ca, w, drop);
        let broke = s.failed.is_some()
            || !s.detached.is_empty()
            || s.exe.as_deref() != private.to_str()
            || s.sha256.as_deref() != Some(sum);
        assert!(
            broke,
            "CAP_{} is in the unit but nothing breaks without it: {s:?}",
            drop.to_uppercase()
        );
    }
}
