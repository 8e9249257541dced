//! The `shadowai` binary's offline behaviour: audit verification, login errors, exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::process::{Command, Output};

use serde_json::json;
use shadowai_api::audit::AuditEntry;

fn shadowai(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadowai"))
        .args(args)
        .env("SHADOWAI_CONFIG", config)
        .env_remove("SHADOWAI_URL")
        .env_remove("SHADOWAI_TOKEN")
        .env_remove("SHADOWAI_CA")
        .output()
        .unwrap()
}

fn chain(n: usize) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    for i in 0..n {
        let prev = out.last().map(|e| (e.hash.as_str(), e.seq));
        let e = AuditEntry::next(
            prev,
            1_763_800_000_000 + i as i64,
            if i % 2 == 0 { "alice" } else { "bob" },
            "proposal.create",
            &format!("proposal:{i}"),
            json!({ "service_id": "deepseek-chat", "verdict": "blocked" }),
        );
        out.push(e);
    }
    out
}

#[test]
fn audit_verify_accepts_an_intact_export_and_names_the_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cli.toml");
    let log = dir.path().join("audit.json");
    let entries = chain(5);
    std::fs::write(&log, serde_json::to_vec_pretty(&entries).unwrap()).unwrap();
    let out = shadowai(&["audit", "verify", log.to_str().unwrap()], &cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified: 5 entries"), "{stdout}");

    // Change who approved entry 3 (seq 3): verification fails there, exit code 7.
    let mut tampered = entries.clone();
    tampered[2].actor = "mallory".into();
    std::fs::write(&log, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let out = shadowai(&["audit", "verify", log.to_str().unwrap()], &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("entry #3 (seq 3)") && stderr.contains("does not match"),
        "{stderr}"
    );

    // Dropping an entry breaks the sequence at the gap.
    let mut gap = entries.clone();
    gap.remove(1);
    std::fs::write(&log, serde_json::to_vec(&gap).unwrap()).unwrap();
    let out = shadowai(&["audit", "verify", log.to_str().unwrap()], &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("entry #2") && stderr.contains("seq is 3, expected 2"),
        "{stderr}"
    );

    // JSON lines are read too, and a malformed line is reported with its line number.
    let lines: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&log, format!("{lines}{{\"seq\": \"x\"}}\n")).unwrap();
    let out = shadowai(&["audit", "verify", log.to_str().unwrap()], &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("audit.json:6: not an audit entry"),
        "{stderr}"
    );
}

#[test]
fn commands_that_need_a_login_say_so_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cli.toml");
    let out = shadowai(&["findings"], &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("not logged in") && stderr.contains("shadowai login"),
        "{stderr}"
    );

    let out = shadowai(&["login"], &cfg);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
    assert!(!cfg.exists(), "a failed login writes nothing");
}

#[test]
fn an_unreachable_collector_is_exit_code_6_and_login_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cli.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_shadowai"))
        .args(["login", "--url", &url])
        .env("SHADOWAI_CONFIG", &cfg)
        .env("SHADOWAI_TOKEN", "sau_x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("checking the token") && stderr.contains("/api/v1/whoami"),
        "{stderr}"
    );
    assert!(!cfg.exists());
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cli.toml");
    let out = shadowai(&["findings", "--verdict", "maybe"], &cfg);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maybe"));
    let out = shadowai(&["export", "--format", "xml"], &cfg);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn local_rules_tools_are_mounted_under_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = shadowai(&["rules", "--help"], &dir.path().join("cli.toml"));
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "propose", "approve", "rollout", "rollback", "validate", "explain", "sign", "verify",
    ] {
        assert!(
            help.contains(cmd),
            "`shadowai rules --help` lacks {cmd}:\n{help}"
        );
    }
}
