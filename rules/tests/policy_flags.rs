//! Rules scoped on risk flags (`flags = ["permission_bypass"]`) and on the `ai_agent`
//! category: what the policy says of a use from a flagged AI agent session and of the
//! session itself, and that the two-person rule sees a block such a rule adds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::sync::OnceLock;

use shadowai_rules::effective::block_changes;
use shadowai_rules::engine::DecidedBy;
use shadowai_rules::{Catalogue, Engine, Policy, Query, Verdict};

fn catalogue() -> &'static Catalogue {
    static C: OnceLock<Catalogue> = OnceLock::new();
    C.get_or_init(|| {
        Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue")).unwrap()
    })
}

const NOW: i64 = 1_800_000_000;

fn engine(text: &str) -> Engine {
    let (p, report) = Policy::parse(Path::new("policy.toml"), text, catalogue(), NOW);
    Engine::new(
        catalogue().clone(),
        p.unwrap_or_else(|| panic!("{report:?}")),
    )
    .unwrap()
}

const POLICY: &str = r#"
mode = "enforce"
default_verdict = "tolerated"

[[rules]]
id = "no-bypassing-agents"
verdict = "blocked"
categories = ["coding_assistant", "ai_agent"]
flags = ["permission_bypass", "agent_as_root"]

[[rules]]
id = "coding-ok"
verdict = "sanctioned"
categories = ["coding_assistant"]

[[rules]]
id = "agents-ok"
verdict = "sanctioned"
categories = ["ai_agent"]
"#;

fn gemini<'a>() -> Query<'a> {
    Query {
        name: Some("cloudcode-pa.googleapis.com"),
        user: Some("dev"),
        ..Query::default()
    }
}

#[test]
fn a_use_from_a_flagged_session_gets_the_flag_rule_and_others_do_not() {
    let e = engine(POLICY);
    let plain = e.classify_at(&gemini(), NOW).unwrap();
    assert_eq!(plain.verdict, Verdict::Sanctioned);
    assert_eq!(plain.rule_id(), "rule:coding-ok");
    let flagged = e
        .classify_flagged_at(&gemini(), &["permission_bypass"], None, NOW)
        .unwrap();
    assert_eq!(flagged.verdict, Verdict::Blocked);
    assert_eq!(flagged.rule_id(), "rule:no-bypassing-agents");
    assert!(flagged.enforce());
    assert!(
        flagged.explain().contains("no-bypassing-agents"),
        "{}",
        flagged.explain()
    );
    // A flag the rule does not name changes nothing.
    let other = e
        .classify_flagged_at(&gemini(), &["unpinned_mcp_server"], None, NOW)
        .unwrap();
    assert_eq!(other.verdict, Verdict::Sanctioned);
}

#[test]
fn the_session_itself_is_judged_by_rules_naming_ai_agent() {
    let e = engine(POLICY);
    let who = Query {
        user: Some("root"),
        ..Query::default()
    };
    let (v, by) = e.verdict_for_agent(&who, None, &["agent_as_root"], NOW);
    assert_eq!(v, Verdict::Blocked);
    assert!(matches!(by, DecidedBy::Rule(r) if r.id == "no-bypassing-agents"));
    let (v, by) = e.verdict_for_agent(&who, None, &[], NOW);
    assert_eq!(v, Verdict::Sanctioned);
    assert!(matches!(by, DecidedBy::Rule(r) if r.id == "agents-ok"));
    // No rule names ai_agent: the policy's default.
    let e = engine("mode = \"monitor\"\ndefault_verdict = \"unsanctioned\"\n");
    let (v, by) = e.verdict_for_agent(&who, None, &["permission_bypass"], NOW);
    assert_eq!((v, by), (Verdict::Unsanctioned, DecidedBy::Default));
}

#[test]
fn a_runtime_itself_is_judged_by_rules_naming_self_hosted_runtime_scoped_on_its_flags() {
    let e = engine(
        r#"
mode = "monitor"
default_verdict = "tolerated"

[[rules]]
id = "no-open-runtimes"
verdict = "unsanctioned"
categories = ["self_hosted_runtime"]
flags = ["runtime_exposed"]

[[rules]]
id = "agents-blocked"
verdict = "blocked"
categories = ["ai_agent"]
"#,
    );
    let who = Query {
        process: Some("/usr/bin/ollama"),
        user: Some("ollama"),
        ..Query::default()
    };
    let rt = shadowai_rules::Category::SelfHostedRuntime;
    let (v, by) = e.verdict_for_category(rt, &who, None, &["runtime_exposed"], NOW);
    assert_eq!(v, Verdict::Unsanctioned);
    assert!(matches!(by, DecidedBy::Rule(r) if r.id == "no-open-runtimes"));
    // Loopback only: the flag-scoped rule does not apply, nor does one naming `ai_agent`.
    let (v, by) = e.verdict_for_category(rt, &who, None, &[], NOW);
    assert_eq!((v, by), (Verdict::Tolerated, DecidedBy::Default));
    // And a rule naming runtimes does not judge agent sessions.
    let (v, _) = e.verdict_for_agent(&who, None, &["runtime_exposed"], NOW);
    assert_eq!(v, Verdict::Blocked);
}

#[test]
fn an_unknown_flag_is_refused_with_its_place() {
    let text = "mode = \"monitor\"\ndefault_verdict = \"tolerated\"\n\n[[rules]]\nid = \"x\"\nverdict = \"blocked\"\ncategories = [\"ai_agent\"]\nflags = [\"yolo\"]\n";
    let (p, report) = Policy::parse(Path::new("policy.toml"), text, catalogue(), NOW);
    assert!(p.is_none());
    let msg = format!("{report:?}");
    assert!(msg.contains("unknown flag `yolo`"), "{msg}");
    assert!(
        msg.contains("permission_bypass"),
        "lists the known flags: {msg}"
    );
    let d = &report.diagnostics[0];
    assert_eq!(d.line, 8, "{d:?}");
}

#[test]
fn a_block_scoped_on_a_flag_is_a_block_change_for_the_two_person_rule() {
    let old = engine(
        "mode = \"enforce\"\ndefault_verdict = \"tolerated\"\n\n[[rules]]\nid = \"coding-ok\"\nverdict = \"sanctioned\"\ncategories = [\"coding_assistant\"]\n",
    );
    let new = engine(POLICY);
    let changes = block_changes(&old, &new, &[], NOW).unwrap();
    let gemini: Vec<_> = changes
        .iter()
        .filter(|c| c.service == "google-gemini-code-assist")
        .collect();
    assert!(
        !gemini.is_empty(),
        "the flag-scoped block is seen: {changes:?}"
    );
    assert!(
        gemini.iter().all(|c| !c.audience.flags.is_empty()),
        "only flagged uses are blocked: {gemini:?}"
    );
    // Both flags sit in one rule: one representative stands for their class.
    assert!(
        gemini.iter().all(|c| c
            .audience
            .flags
            .iter()
            .all(|f| f == "permission_bypass" || f == "agent_as_root")),
        "{gemini:?}"
    );
    assert!(
        gemini
            .iter()
            .any(|c| c.audience.to_string().contains("uses flagged ")),
        "{gemini:?}"
    );
}

#[test]
fn a_service_sanctioned_only_for_the_corporate_tenant_a_session_records() {
    let e = engine(
        "mode = \"monitor\"\ndefault_verdict = \"unsanctioned\"\n\n[[rules]]\nid = \"corp-claude\"\n\
         verdict = \"sanctioned\"\nservices = [\"anthropic-api\"]\ntenants = [\"0b1c-corp\"]\n\n\
         [[rules]]\nid = \"personal-agents\"\nverdict = \"unsanctioned\"\ncategories = [\"ai_agent\"]\nflags = [\"personal_tenant\"]\n",
    );
    let q = Query {
        name: Some("api.anthropic.com"),
        ..Query::default()
    };
    let corp = e
        .classify_flagged_at(&q, &[], Some("0B1C-CORP"), NOW)
        .unwrap();
    assert_eq!(
        (corp.verdict, corp.tenant),
        (Verdict::Sanctioned, Some("0B1C-CORP"))
    );
    let personal = e
        .classify_flagged_at(&q, &["personal_tenant"], Some("9f9f-home"), NOW)
        .unwrap();
    assert_eq!(personal.verdict, Verdict::Unsanctioned);
    let unknown = e.classify_flagged_at(&q, &[], None, NOW).unwrap();
    assert_eq!(unknown.verdict, Verdict::Unsanctioned);
    let (v, _) = e.verdict_for_agent(
        &Query::default(),
        Some("9f9f-home"),
        &["personal_tenant"],
        NOW,
    );
    assert_eq!(v, Verdict::Unsanctioned);
}
