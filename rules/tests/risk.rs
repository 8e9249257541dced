//! Risk that means something: explicit factors per plan, a score computed from them with its
//! breakdown, validation of the risk section, and how far the most-used services are
//! researched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;

use shadowai_rules::catalogue::{Plan, RiskBand, Training};
use shadowai_rules::{Catalogue, validate_dir};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> Catalogue {
    Catalogue::load_dir(&manifest().join("catalogue")).unwrap()
}

#[test]
fn score_is_the_sum_of_its_factors_and_plans_differ() {
    let cat = shipped();
    for s in &cat.services {
        let b = s.risk.breakdown();
        let sum: u32 = b.factors.iter().map(|f| u32::from(f.points)).sum();
        assert_eq!(u32::from(s.risk.score), sum, "{}", s.id);
        assert!(b.factors.iter().all(|f| f.points <= f.max), "{}", s.id);
        assert_eq!(b.factors.iter().map(|f| u32::from(f.max)).sum::<u32>(), 100);
        assert_eq!(b.band, RiskBand::of(s.risk.score));
        for (t, p) in s.risk.tiers.iter().zip(s.risk.plans().iter().skip(1)) {
            assert_eq!(t.score, p.score, "{} {}", s.id, t.plan);
        }
    }
    // ChatGPT: the free plan trains unless the user opts out and keeps chats; the business
    // plans do not train. The score says so, per plan.
    let chatgpt = cat.service("openai-chatgpt").unwrap();
    assert_eq!(chatgpt.risk.plan, Some(Plan::Free));
    let plans = chatgpt.risk.plans();
    let free = &plans[0];
    let ent = plans
        .iter()
        .find(|p| p.plan == Some(Plan::Enterprise))
        .unwrap();
    assert!(free.score >= 50, "free {free}");
    assert!(ent.score < free.score, "{ent} vs {free}");
    assert_eq!(free.factors[0].value, "opt_out");
    let text = free.to_string();
    assert!(text.contains("training opt_out +25"), "{text}");
    // DeepSeek's consumer chat (CN, trains unless the user turns it off): severe or high,
    // never low; its API (no training) scores lower than the chat app.
    let ds = cat.service("deepseek").unwrap();
    assert!(
        RiskBand::of(ds.risk.score) >= RiskBand::High,
        "{}",
        ds.risk.score
    );
    assert_eq!(ds.risk.trains_on_user_data, Training::OptOut);
    let ds_api = cat.service("deepseek-api").unwrap();
    assert!(ds_api.risk.score < ds.risk.score, "{}", ds_api.risk.score);
}

#[test]
fn bands_have_fixed_edges() {
    assert_eq!(RiskBand::of(0), RiskBand::Low);
    assert_eq!(RiskBand::of(24), RiskBand::Low);
    assert_eq!(RiskBand::of(25), RiskBand::Moderate);
    assert_eq!(RiskBand::of(49), RiskBand::Moderate);
    assert_eq!(RiskBand::of(50), RiskBand::High);
    assert_eq!(RiskBand::of(74), RiskBand::High);
    assert_eq!(RiskBand::of(75), RiskBand::Severe);
    assert_eq!(RiskBand::of(100), RiskBand::Severe);
}

#[test]
fn researched_entries_cite_what_was_read() {
    let cat = shipped();
    let researched: Vec<_> = cat
        .services
        .iter()
        .filter(|s| !s.risk.evidence.is_empty())
        .collect();
    assert!(researched.len() >= 22, "{}", researched.len());
    for s in researched {
        assert!(s.risk.plan.is_some(), "{}: researched without a plan", s.id);
        assert!(
            s.risk.evidence.iter().all(|e| e.starts_with("https://")),
            "{}",
            s.id
        );
        // Every page read for the risk factors is also a dated provenance source.
        for e in &s.risk.evidence {
            let src = s
                .provenance
                .sources
                .iter()
                .find(|x| x.text() == e)
                .unwrap_or_else(|| panic!("{}: evidence {e} is not a provenance source", s.id));
            assert!(src.checked(&s.provenance) >= "2026-11-22", "{}", s.id);
        }
    }
}

/// The most-used services (rules/tools/top-services.txt, how chosen is stated there): at most
/// 20 of the 100 may have unknown training, and a training value counts as known only when it
/// was researched — it comes with the evidence URLs of the pages read (a category profile is
/// not evidence). Every researched factor therefore has an evidence URL.
#[test]
fn most_used_services_research_coverage() {
    let cat = shipped();
    let text = std::fs::read_to_string(manifest().join("tools/top-services.txt")).unwrap();
    let ids: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(ids.len(), 100, "top-services.txt lists {}", ids.len());
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        100,
        "top-services.txt lists a service twice"
    );
    let mut unknown = Vec::new();
    let mut unevidenced = Vec::new();
    for id in &ids {
        let s = cat
            .service(id)
            .unwrap_or_else(|| panic!("top-services.txt: no service `{id}`"));
        let known = s.risk.trains_on_user_data != Training::Unknown;
        if known && s.risk.evidence.is_empty() {
            unevidenced.push(*id);
        }
        if !known || s.risk.evidence.is_empty() {
            unknown.push(*id);
        }
    }
    assert!(
        unevidenced.is_empty(),
        "top-100 entries with a training value but no evidence URL: {unevidenced:?}"
    );
    // The issue's target is unknown training for at most 20 of the 100 most-used services.
    // 73 were unresearched or unknown at first (35 `unknown`, 38 unevidenced profile values);
    // research reached 36, then 22 (14 more with a known value; Genspark and You.com are
    // researched but only their enterprise tiers are documented), then 19 (Doubao and Replicate
    // from their own terms as archived by Open Terms Archive, Jules from press reports of
    // Google's announcement). A ratchet: lower it as entries are researched, never raise it.
    const UNKNOWN_MAX: usize = 19;
    assert!(
        unknown.len() <= UNKNOWN_MAX,
        "{} of the top 100 have unknown (or unevidenced) training, at most {UNKNOWN_MAX} \
         (target 20): {unknown:?}",
        unknown.len()
    );
}

const BASE: &str = r#"id = "acme-chat"
name = "Acme Chat"
vendor = "Acme"
category = "chat_assistant"
domains = ["acmechat.example"]

[risk]
RISK
trains_on_user_data = "opt_out"
retention = "extended"
jurisdiction = "US"
TIERS
[[provenance.sources]]
url = "https://acmechat.example/"
checked = 2026-11-22

[examples]
match = ["acmechat.example"]
"#;

fn report(risk: &str, tiers: &str) -> (String, shadowai_rules::Report) {
    let text = BASE.replace("RISK", risk).replace("TIERS", tiers);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("acme-chat.toml"), &text).unwrap();
    (text, validate_dir(d.path()).unwrap())
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn bad_risk_sections_are_reported_at_their_line() {
    let tier = |p: &str| {
        format!(
            "[[risk.tiers]]\nplan = \"{p}\"\ntrains_on_user_data = \"no\"\nretention = \"limited\"\n"
        )
    };
    // A tier repeating the top-level plan.
    let (text, r) = report("plan = \"team\"", &tier("team"));
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.message.contains("risk tier `team` is given twice"))
        .unwrap_or_else(|| panic!("{r}"));
    let lines: Vec<&str> = text.lines().collect();
    let last_team = lines
        .iter()
        .rposition(|l| l.contains("plan = \"team\""))
        .unwrap()
        + 1;
    assert_eq!(d.line, last_team);
    // Tiers without saying which plan the top level describes.
    let (_, r) = report("", &tier("enterprise"));
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.message.contains("`risk.tiers` needs `risk.plan`")),
        "{r}"
    );
    // Evidence that is not a URL.
    let (text, r) = report("plan = \"free\"\nevidence = [\"their website\"]", "");
    let d = r
        .diagnostics
        .iter()
        .find(|d| {
            d.message
                .contains("risk evidence `their website` must be an https:// URL")
        })
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(d.line, line_of(&text, "evidence ="));
    // Unknown plan and certification names list the choices.
    let (_, r) = report("plan = \"gold\"", "");
    assert!(
        r.diagnostics.iter().any(|d| d.message.contains("gold")),
        "{r}"
    );
    let (text, r) = report("certifications = [\"iso9001\"]", "");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.message.contains("iso9001"))
        .unwrap();
    assert_eq!(d.line, line_of(&text, "certifications"));
    // A good one is clean, and its tier gets its own score.
    let (_, r) = report(
        "plan = \"free\"\ncertifications = [\"soc2\"]",
        &tier("enterprise"),
    );
    assert!(r.is_ok(), "{r}");
}
