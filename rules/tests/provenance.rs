//! Per-source provenance: each source is `{ url | list, checked }`; a model API (or cloud AI
//! tenant) may not rest on its own home page alone; the old string form is still read, with a
//! warning; every malformed source is reported at its line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use shadowai_rules::catalogue::{Provenance, Source, SourceRef, load_dir_report};
use shadowai_rules::{Catalogue, Report, Severity};

const HEAD: &str = r#"id = "acme-api"
name = "Acme API"
vendor = "Acme"
category = "model_api"
domains = ["acme-ai.example"]

[risk]
trains_on_user_data = "unknown"
retention = "unknown"
jurisdiction = "ZZ"

[examples]
match = ["api.acme-ai.example"]
no_match = ["notacme-ai.example"]
"#;

fn check(provenance: &str) -> (Option<Catalogue>, Report, String) {
    check_with(HEAD, provenance)
}

fn check_with(head: &str, provenance: &str) -> (Option<Catalogue>, Report, String) {
    let d = tempfile::tempdir().unwrap();
    for (f, text) in [
        ("_shared-infra.toml", "shared = []\n"),
        ("_benign.toml", "benign = []\n"),
        ("_local-resolvers.toml", ""),
        ("_agents.toml", ""),
    ] {
        std::fs::write(d.path().join(f), text).unwrap();
    }
    let text = format!("{head}\n{provenance}");
    std::fs::write(d.path().join("acme-api.toml"), &text).unwrap();
    let (cat, report) = load_dir_report(d.path()).unwrap();
    let cat = report.is_ok().then_some(cat);
    (cat, report, text)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn error_at(r: &Report, text: &str, msg: &str, line_needle: &str) {
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.message.contains(msg))
        .unwrap_or_else(|| panic!("no diagnostic containing {msg:?} in:\n{r}"));
    assert_eq!(d.severity, Severity::Error, "{d}");
    assert_eq!(d.line, line_of(text, line_needle), "{d}\n{text}");
}

#[test]
fn each_source_carries_its_own_date() {
    let (cat, r, _) = check(
        r#"[provenance]
note = "two sources, read on different days"

[[provenance.sources]]
url = "https://docs.acme-ai.example/api/reference"
checked = 2026-11-20

[[provenance.sources]]
list = "models.dev:anomalyco/models.dev@f3fc6922/providers/acme/provider.toml (MIT)"
checked = 2026-11-24
note = "api base URL"
"#,
    );
    assert!(r.diagnostics.is_empty(), "{r}");
    let cat = cat.unwrap();
    let p = &cat.services[0].provenance;
    assert_eq!(
        p.checked, "2026-11-24",
        "the entry's date is its newest source's"
    );
    assert_eq!(p.sources.len(), 2);
    assert_eq!(
        p.sources[0].reference(),
        SourceRef::Url("https://docs.acme-ai.example/api/reference")
    );
    assert_eq!(p.sources[0].checked(p), "2026-11-20");
    assert!(matches!(p.sources[1].reference(), SourceRef::List(_)));
    assert_eq!(p.sources[1].checked(p), "2026-11-24");
}

#[test]
fn a_model_api_resting_on_its_own_home_page_is_refused() {
    let only_home = r#"[[provenance.sources]]
url = "https://acme-ai.example/"
checked = 2026-11-26
"#;
    let (cat, r, text) = check(only_home);
    assert!(cat.is_none());
    error_at(
        &r,
        &text,
        "only source is its own home page",
        "[[provenance.sources]]",
    );
    // Also without the trailing slash, below the claimed domain, and in upper case.
    for home in ["https://acme-ai.example", "https://WWW.Acme-AI.example/"] {
        let (cat, r, _) = check(&only_home.replace("https://acme-ai.example/", home));
        assert!(cat.is_none(), "{home}: {r}");
    }
    // An enterprise tenant is held to the same rule.
    let tenant = HEAD.replace("\"model_api\"", "\"enterprise_tenant\"");
    assert!(check_with(&tenant, only_home).0.is_none());
    // A page of the vendor's documentation, or a pinned list, is enough ...
    let with_doc = format!(
        "{only_home}\n[[provenance.sources]]\nurl = \"https://acme-ai.example/docs/api\"\nchecked = 2026-11-26\n"
    );
    let (cat, r, _) = check(&with_doc);
    assert!(cat.is_some() && r.diagnostics.is_empty(), "{r}");
    // ... and a home page of a name the entry does not claim is not its own home page.
    let other = only_home.replace("https://acme-ai.example/", "https://other.example/");
    assert!(check(&other).0.is_some());
    // A consumer app may still rest on its own host (counted by the sources test).
    let chat = HEAD.replace("\"model_api\"", "\"chat_assistant\"");
    let (cat, r, _) = check_with(&chat, only_home);
    assert!(cat.is_some() && r.diagnostics.is_empty(), "{r}");
}

#[test]
fn the_old_string_form_is_read_with_a_warning() {
    // Drafts from the discovery loop and catalogues written before per-source dates.
    let (cat, r, text) = check(
        r#"[provenance]
sources = ["shadowai discovery: api.acme-ai.example on 1 host(s)", "https://docs.acme-ai.example/"]
checked = 2026-11-25
"#,
    );
    assert!(r.is_ok(), "{r}");
    let w = &r.diagnostics[0];
    assert_eq!(w.severity, Severity::Warning, "{w}");
    assert!(w.message.contains("old provenance form"), "{w}");
    assert_eq!(w.line, line_of(&text, "sources = ["));
    let cat = cat.unwrap();
    let p = &cat.services[0].provenance;
    assert!(matches!(p.sources[0], Source::Legacy(_)));
    assert_eq!(p.sources[1].checked(p), "2026-11-25");
    // The old form needs the entry's date.
    let (cat, r, text) = check("[provenance]\nsources = [\"https://docs.acme-ai.example/\"]\n");
    assert!(cat.is_none());
    error_at(&r, &text, "provenance.checked is needed", "sources = [");
}

#[test]
fn malformed_sources_are_reported_at_their_lines() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[provenance.sources]]\nurl = \"http://acme-ai.example/docs\"\nchecked = 2026-11-26\n",
            "must be an https:// URL",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/a doc\"\nchecked = 2026-11-26\n",
            "must be an https:// URL",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\n",
            "needs `checked`",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\nchecked = \"last week\"\n",
            "must be a date",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\nchecked = 2026-11-26T10:00:00Z\n",
            "must be a date",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\nchecked = 2999-01-01\n",
            "in the future",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\nlist = \"v2fly:x@1/y (MIT)\"\nchecked = 2026-11-26\n",
            "not both",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nchecked = 2026-11-26\n",
            "needs `url` or `list`",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nlist = \"my notes\"\nchecked = 2026-11-26\n",
            "at a commit or version",
            "[[provenance.sources]]",
        ),
        (
            "[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\nchecked = 2026-11-26\nhomepage = true\n",
            "unknown field `homepage`",
            "[[provenance.sources]]",
        ),
        (
            "[provenance]\nchecked = 2026-11-01\n\n[[provenance.sources]]\nurl = \"https://acme-ai.example/docs\"\nchecked = 2026-11-26\n",
            "must be the newest source date",
            "checked = 2026-11-01",
        ),
        (
            "[provenance]\nsources = [42]\nchecked = 2026-11-26\n",
            "found integer",
            "sources = [42]",
        ),
        (
            "[provenance]\nsources = []\nchecked = 2026-11-26\n",
            "at least one source",
            "sources = []",
        ),
    ];
    for (prov, msg, at) in cases {
        let (cat, r, text) = check(prov);
        assert!(cat.is_none(), "accepted:\n{text}");
        error_at(&r, &text, msg, at);
    }
}

#[test]
fn both_forms_survive_a_bundle_round_trip_byte_for_byte() {
    // Bundles carry the catalogue as canonical JSON: a bundle signed before this change (plain
    // strings) and one signed after (tables) must both re-serialise to the bytes signed.
    for json in [
        r#"{"sources":["v2fly:domain-list-community@c975ccef/data/openai (MIT)"],"checked":"2026-11-22"}"#,
        r#"{"sources":[{"url":"https://docs.acme-ai.example/","checked":"2026-11-26","note":"api"},{"list":"pypi:litellm@1.110.2/x (MIT)","checked":"2026-11-25"}],"checked":"2026-11-26"}"#,
    ] {
        let p: Provenance = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
    }
    // A table with an unknown key is not silently taken for something else.
    let bad = r#"{"sources":[{"url":"https://x.example/","checked":"2026-11-26","extra":1}],"checked":"2026-11-26"}"#;
    assert!(serde_json::from_str::<Provenance>(bad).is_err());
}
