//! Policy semantics through the engine: scopes, order, exceptions, tenants, modes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use shadowai_rules::engine::{DecidedBy, MatchedBy};
use shadowai_rules::time::parse_rfc3339;
use shadowai_rules::{Catalogue, Engine, Mode, Policy, Query, Verdict};

fn catalogue() -> &'static Catalogue {
    static C: OnceLock<Catalogue> = OnceLock::new();
    C.get_or_init(|| {
        Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue")).unwrap()
    })
}

fn example_engine() -> Engine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.example.toml");
    Engine::new(
        catalogue().clone(),
        Policy::load(&path, catalogue()).unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    parse_rfc3339("2026-12-01T00:00:00Z").unwrap()
}

fn q<'a>(
    name: &'a str,
    user: Option<&'a str>,
    groups: &'a [&'a str],
    tags: &'a [&'a str],
) -> Query<'a> {
    Query {
        name: Some(name),
        user,
        unix_groups: groups,
        host_tags: tags,
        ..Query::default()
    }
}

#[test]
fn example_policy_loads_and_is_in_monitor_mode() {
    let e = example_engine();
    assert_eq!(e.mode(), Mode::Monitor);
    let d = e
        .classify_at(&q("api.deepseek.com", Some("carol"), &[], &[]), now())
        .unwrap();
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(!d.enforce(), "monitor mode never enforces");
    assert!(d.explain().contains("monitor mode"), "{}", d.explain());
}

#[test]
fn tenants_separate_our_azure_openai_from_others() {
    let e = example_engine();
    let ours = e
        .classify_at(&q("Contoso-Prod.openai.azure.com", None, &[], &[]), now())
        .unwrap();
    assert_eq!(ours.service.id, "azure-openai");
    assert_eq!(ours.tenant, Some("Contoso-Prod"));
    assert_eq!(ours.verdict, Verdict::Sanctioned);
    assert_eq!(ours.rule_id(), "rule:azure-openai-corp");
    let theirs = e
        .classify_at(&q("evilcorp.openai.azure.com", None, &[], &[]), now())
        .unwrap();
    assert_eq!(theirs.verdict, Verdict::Blocked);
    assert_eq!(theirs.rule_id(), "rule:azure-openai-foreign-tenants");
    assert!(matches!(
        theirs.matched_by,
        MatchedBy::Sni("*.openai.azure.com")
    ));
}

#[test]
fn scopes_need_every_given_list_to_match() {
    let e = example_engine();
    let dev = e
        .classify_at(
            &q(
                "api.githubcopilot.com",
                Some("dana"),
                &["engineering"],
                &["laptop"],
            ),
            now(),
        )
        .unwrap();
    assert_eq!(dev.verdict, Verdict::Sanctioned);
    // Right group, wrong host: falls through to the default (coding assistants have no rule).
    let ci = e
        .classify_at(
            &q(
                "api.githubcopilot.com",
                Some("dana"),
                &["engineering"],
                &["ci"],
            ),
            now(),
        )
        .unwrap();
    assert_eq!(ci.verdict, Verdict::Blocked, "{}", ci.explain());
    assert_eq!(ci.rule_id(), "rule:no-ai-on-servers");
    let other = e
        .classify_at(
            &q(
                "api.githubcopilot.com",
                Some("erin"),
                &["sales"],
                &["laptop"],
            ),
            now(),
        )
        .unwrap();
    assert_eq!(other.verdict, Verdict::Unsanctioned);
    assert!(matches!(other.decided_by, DecidedBy::Default));
}

#[test]
fn first_matching_rule_wins_and_categories_and_jurisdictions_target() {
    let e = example_engine();
    // ChatGPT is a chat assistant (US): tolerated.
    let d = e
        .classify_at(&q("chatgpt.com", None, &[], &["laptop"]), now())
        .unwrap();
    assert_eq!(
        (d.verdict, d.rule_id().as_str()),
        (Verdict::Tolerated, "rule:chat-tolerated")
    );
    // Kimi is a chat assistant too, but the jurisdiction rule comes first.
    let d = e
        .classify_at(&q("kimi.com", None, &[], &["laptop"]), now())
        .unwrap();
    assert_eq!(
        (d.verdict, d.rule_id().as_str()),
        (Verdict::Blocked, "rule:high-risk-jurisdictions")
    );
}

#[test]
fn exceptions_apply_before_rules_until_they_expire() {
    let e = example_engine();
    let alice = q("api.deepseek.com", Some("alice"), &[], &[]);
    let d = e.classify_at(&alice, now()).unwrap();
    assert_eq!(d.verdict, Verdict::Tolerated);
    assert_eq!(d.rule_id(), "exception:research-deepseek-eval");
    assert!(d.explain().contains("ciso@example.com"), "{}", d.explain());
    let later = parse_rfc3339("2027-04-01T00:00:00Z").unwrap();
    let d = e.classify_at(&alice, later).unwrap();
    assert_eq!(
        d.verdict,
        Verdict::Blocked,
        "expired exception must not apply"
    );
}

#[test]
fn self_hosted_runtimes_match_by_process_and_port() {
    let e = example_engine();
    let tags = ["prod"];
    let by_proc = Query {
        process: Some("/usr/local/bin/vllm"),
        port: Some(8000),
        host_tags: &tags,
        ..Query::default()
    };
    let d = e.classify_at(&by_proc, now()).unwrap();
    assert_eq!(
        (d.service.id.as_str(), d.verdict),
        ("vllm", Verdict::Sanctioned)
    );
    assert_eq!(
        d.matched_by,
        MatchedBy::Process {
            hint: "vllm",
            port_too: true
        }
    );
    let by_port = Query {
        ip: Some(IpAddr::from([127, 0, 0, 1])),
        port: Some(11434),
        ..Query::default()
    };
    let d = e.classify_at(&by_port, now()).unwrap();
    assert_eq!(d.service.id, "ollama");
    assert_eq!(d.matched_by, MatchedBy::Port(11434));
    // 8000 alone is too common to mean vLLM.
    assert!(
        e.classify_at(
            &Query {
                port: Some(8000),
                ..Query::default()
            },
            now()
        )
        .is_none()
    );
    // A truncated comm still identifies TGI.
    let d = e
        .classify_at(
            &Query {
                process: Some("text-generation"),
                ..Query::default()
            },
            now(),
        )
        .unwrap();
    assert_eq!(d.service.id, "text-generation-inference");
}

#[test]
fn published_cidrs_identify_by_ip_when_no_name_matches() {
    let e = example_engine();
    for ip in [
        "160.79.104.10",
        "160.79.105.255",
        "2607:6bc0::1",
        "::ffff:160.79.104.7",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        let d = e
            .classify_at(
                &Query {
                    name: Some("cloudflare-ech.com"),
                    ip: Some(ip),
                    ..Query::default()
                },
                now(),
            )
            .unwrap();
        assert_eq!(d.service.id, "anthropic-api", "{ip}");
        assert!(matches!(d.matched_by, MatchedBy::Cidr(_)));
    }
    assert!(
        e.classify_at(
            &Query {
                ip: Some("160.79.106.1".parse().unwrap()),
                ..Query::default()
            },
            now()
        )
        .is_none()
    );
}

#[test]
fn enforce_mode_blocks_only_blocked() {
    let mut p = Policy::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.example.toml"),
        catalogue(),
    )
    .unwrap();
    p.mode = Mode::Enforce;
    let e = Engine::new(catalogue().clone(), p).unwrap();
    assert!(
        e.classify_at(&q("kimi.com", None, &[], &[]), now())
            .unwrap()
            .enforce()
    );
    assert!(
        !e.classify_at(&q("chatgpt.com", None, &[], &[]), now())
            .unwrap()
            .enforce()
    );
}

#[test]
fn policy_with_unknown_service_is_refused_by_the_engine() {
    let mut p = Policy::default();
    p.rules.push(shadowai_rules::policy::Rule {
        id: "x".into(),
        verdict: Verdict::Blocked,
        services: vec!["no-such-service".into()],
        categories: vec![],
        jurisdictions: vec![],
        host_groups: vec![],
        host_tags: vec![],
        unix_groups: vec![],
        users: vec![],
        tenants: vec![],
        flags: vec![],
        comment: String::new(),
        reason: String::new(),
        approver: String::new(),
        expires_at: None,
        enforce: true,
    });
    let err = Engine::new(catalogue().clone(), p).unwrap_err();
    assert!(err.to_string().contains("no-such-service"), "{err}");
}
