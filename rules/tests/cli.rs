//! The `shadowai rules …` subcommand, driven through `cli::run` (as the admin CLI does).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use shadowai_rules::cli::{RulesCommand, run};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: RulesCommand,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn exec(args: &[&str]) -> (ExitCode, String) {
    let cli = Cli::try_parse_from(std::iter::once("rules").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let code = run(&cli.cmd, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn validate_shipped_catalogue_and_example_policy() {
    let cat = s(&root().join("catalogue"));
    let pol = s(&root().join("policy.example.toml"));
    let (code, out) = exec(&["validate", "--catalogue", &cat, "--policy", &pol]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
}

#[test]
fn validate_reports_file_and_line_and_fails() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("x.toml"),
        "id = \"x\"\nname = \"X\"\nbogus = 1\n",
    )
    .unwrap();
    let (code, out) = exec(&["validate", "--catalogue", &s(d.path())]);
    assert_eq!(code, ExitCode::from(1));
    assert!(
        out.contains("x.toml:3:1: error: unknown field `bogus`"),
        "{out}"
    );
}

#[test]
fn explain_names_service_verdict_and_reason() {
    let cat = s(&root().join("catalogue"));
    let pol = s(&root().join("policy.example.toml"));
    let (_, out) = exec(&[
        "explain",
        "API.DeepSeek.com.",
        "--user",
        "carol",
        "--catalogue",
        &cat,
        "--policy",
        &pol,
    ]);
    assert!(
        out.starts_with("deepseek-api (DeepSeek API) -> blocked"),
        "{out}"
    );
    assert!(out.contains("rule: rule:high-risk-jurisdictions"), "{out}");
    let (_, out) = exec(&[
        "explain",
        "--process",
        "/opt/ollama/bin/ollama",
        "--port",
        "11434",
        "--host-tag",
        "laptop",
        "--catalogue",
        &cat,
        "--policy",
        &pol,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["match"]["service"], "ollama");
    assert_eq!(v["verdict"], "tolerated");
    assert_eq!(v["rule"], "rule:local-runtimes");
    let (_, out) = exec(&["explain", "www.wikipedia.org", "--catalogue", &cat]);
    assert_eq!(out.trim(), "no AI service matches");
}

#[test]
fn keygen_compile_sign_verify_explain_diff() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| s(&d.path().join(n));
    let cat = s(&root().join("catalogue"));
    let pol = s(&root().join("policy.example.toml"));
    let (code, out) = exec(&["keygen", "--secret", &p("k.sec"), "--public", &p("k.pub")]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");

    let (_, out) = exec(&[
        "compile",
        "--catalogue",
        &cat,
        "--policy",
        &pol,
        "--version",
        "1.0.0",
        "--issued-at",
        "2026-11-20T00:00:00Z",
        "--valid-days",
        "3650",
        "-o",
        &p("b1.json"),
    ]);
    assert!(out.contains("unsigned"), "{out}");
    let (code, out) = exec(&["verify", &p("b1.json"), "--pubkey", &p("k.pub")]);
    assert_eq!(code, ExitCode::from(1));
    assert!(out.contains("REFUSED: bundle is not signed"), "{out}");
    let (code, _) = exec(&["sign", &p("b1.json"), "--key", &p("k.sec")]);
    assert_eq!(code, ExitCode::SUCCESS);
    let (code, out) = exec(&["verify", &p("b1.json"), "--pubkey", &p("k.pub")]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("OK: version 1.0.0"), "{out}");
    let (code, out) = exec(&[
        "verify",
        &p("b1.json"),
        "--pubkey",
        &p("k.pub"),
        "--in-use-version",
        "1.0.1",
    ]);
    assert_eq!(code, ExitCode::from(1));
    assert!(out.contains("rollback refused"), "{out}");
    let (code, out) = exec(&[
        "verify",
        &p("b1.json"),
        "--pubkey",
        &p("k.pub"),
        "--at",
        "2040-01-01T00:00:00Z",
    ]);
    assert_eq!(code, ExitCode::from(1));
    assert!(out.contains("expired"), "{out}");

    let (_, out) = exec(&[
        "explain",
        "chatgpt.com",
        "--bundle",
        &p("b1.json"),
        "--pubkey",
        &p("k.pub"),
    ]);
    assert!(out.contains("-> tolerated"), "{out}");

    // A new policy: block ChatGPT for sales, enforce.
    let new_pol = std::fs::read_to_string(&pol)
        .unwrap()
        .replace("mode = \"monitor\"", "mode = \"enforce\"")
        + "\n[[exceptions]]\nid = \"sales-no-chatgpt\"\nverdict = \"blocked\"\nservices = [\"openai-chatgpt\"]\nunix_groups = [\"sales\"]\nreason = \"leak\"\napprover = \"ciso\"\nexpires = 2099-01-01T00:00:00Z\n";
    std::fs::write(d.path().join("new.toml"), new_pol).unwrap();
    let (code, out) = exec(&[
        "compile",
        "--catalogue",
        &cat,
        "--policy",
        &p("new.toml"),
        "--version",
        "1.1.0",
        "--issued-at",
        "2026-11-21T00:00:00Z",
        "--valid-days",
        "3650",
        "--key",
        &p("k.sec"),
        "-o",
        &p("b2.json"),
    ]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("signed"), "{out}");
    let (_, out) = exec(&["diff", &p("b1.json"), &p("b2.json")]);
    assert!(out.contains("mode: Monitor -> Enforce"), "{out}");
    assert!(out.contains("openai-chatgpt: for unix group sales: tolerated -> blocked (rule:chat-tolerated -> exception:sales-no-chatgpt)"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("openai-chatgpt"))
            .count(),
        1,
        "{out}"
    );
    let (_, out) = exec(&["diff", &pol, &p("new.toml"), "--catalogue", &cat, "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verdict_changes"].as_array().unwrap().len(), 1, "{out}");
    let (_, out) = exec(&["diff", &p("b1.json"), &p("b1.json")]);
    assert_eq!(out.trim(), "no differences");
}

#[test]
fn io_errors_are_errors_not_panics() {
    let cli = Cli::try_parse_from([
        "rules",
        "verify",
        "/nonexistent/b.json",
        "--pubkey",
        "/nonexistent/k.pub",
    ])
    .unwrap();
    assert!(run(&cli.cmd, &mut Vec::new()).is_err());
    let cli = Cli::try_parse_from([
        "rules",
        "compile",
        "--policy",
        "/nonexistent/p.toml",
        "--version",
        "x",
        "-o",
        "/tmp/never",
    ])
    .unwrap();
    assert!(run(&cli.cmd, &mut Vec::new()).is_err());
}

/// `explain` shows the service risk of every plan with its factor breakdown, and the pages it
/// was read from; the JSON carries the same per plan.
#[test]
fn explain_shows_risk_per_plan_with_breakdown() {
    let cat = s(&root().join("catalogue"));
    let pol = s(&root().join("policy.example.toml"));
    let (_, out) = exec(&[
        "explain",
        "chatgpt.com",
        "--catalogue",
        &cat,
        "--policy",
        &pol,
    ]);
    let risk: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("service risk: "))
        .collect();
    assert_eq!(risk.len(), 3, "{out}");
    assert!(
        risk[0].contains(
            "on the free plan: training opt_out +25, retention extended +20, jurisdiction US +10"
        ),
        "{out}"
    );
    assert!(
        risk.iter()
            .any(|l| l.contains("on the enterprise plan: training no +0")),
        "{out}"
    );
    assert!(out.contains("risk evidence: https://"), "{out}");

    let (_, out) = exec(&[
        "explain",
        "eu.api.openai.com",
        "--catalogue",
        &cat,
        "--policy",
        &pol,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["match"]["service"], "openai-api");
    let plan = &v["risk"]["plans"][0];
    assert_eq!(plan["plan"], "api");
    let points: u64 = plan["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["points"].as_u64().unwrap())
        .sum();
    assert_eq!(points, plan["score"].as_u64().unwrap());
    assert_eq!(v["risk"]["score"], plan["score"]);
    assert_eq!(v["risk"]["band"], "low");
    // The verdict stays separate from the service's risk.
    assert_eq!(v["verdict"], "unsanctioned");
}
