//! Bad catalogue and policy files: every problem is reported with file:line and a clear
//! message; nothing panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;

use shadowai_rules::catalogue::load_dir_report;
use shadowai_rules::{Catalogue, Diagnostic, Policy, Report, Severity, validate_dir};

const GOOD: &str = r#"id = "acme-chat"
name = "Acme Chat"
vendor = "Acme"
category = "chat_assistant"
domains = ["acmechat.example"]
hosts = ["api.acme-ai.example"]
cidrs = ["192.0.2.0/24"]

[risk]
trains_on_user_data = "unknown"
retention = "unknown"
jurisdiction = "ZZ"

[[provenance.sources]]
url = "https://acmechat.example/"
checked = 2026-11-22

[examples]
match = ["acmechat.example", "www.acmechat.example", "ip:192.0.2.9"]
no_match = ["notacmechat.example"]
"#;

const SHARED: &str = r#"[[shared]]
suffix = "cdn.example"
kind = "cdn"
[[shared]]
suffix = "telemetry.example"
kind = "telemetry"
[[shared]]
suffix = "cloud.example"
kind = "cloud"
children_allowed = true
"#;

const BENIGN: &str = r#"[[benign]]
name = "shop.acme-ai.example"
what = "Acme's storefront"
"#;

fn setup(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("_shared-infra.toml"), SHARED).unwrap();
    std::fs::write(d.path().join("_benign.toml"), BENIGN).unwrap();
    std::fs::write(d.path().join("_local-resolvers.toml"), "").unwrap();
    std::fs::write(d.path().join("_agents.toml"), "").unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn find<'a>(r: &'a Report, needle: &str) -> &'a Diagnostic {
    r.diagnostics
        .iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| panic!("no diagnostic containing {needle:?} in:\n{r}"))
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn good_file_is_clean() {
    let d = setup(&[("acme-chat.toml", GOOD)]);
    let r = validate_dir(d.path()).unwrap();
    assert!(r.diagnostics.is_empty(), "{r}");
    let cat = Catalogue::load_dir(d.path()).unwrap();
    assert_eq!(cat.services[0].risk.score, 20 + 15 + 15 + 20);
}

#[test]
fn unknown_field_is_reported_at_its_line() {
    let text = GOOD.replace("vendor = \"Acme\"", "vendor = \"Acme\"\nhomepage = \"x\"");
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    let diag = find(&r, "homepage");
    assert_eq!(diag.line, line_of(&text, "homepage"));
    assert!(diag.file.ends_with("acme-chat.toml"));
    assert!(
        diag.to_string()
            .starts_with(&format!("{}:{}:", diag.file.display(), diag.line)),
        "{diag}"
    );
    assert!(Catalogue::load_dir(d.path()).is_err());
}

#[test]
fn unknown_enum_value_names_the_choices() {
    let text = GOOD.replace("\"chat_assistant\"", "\"chatbot\"");
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    let diag = find(&r, "chatbot");
    assert_eq!(diag.line, line_of(&text, "chatbot"));
    assert!(diag.message.contains("chat_assistant"), "{diag}");
}

#[test]
fn duplicate_ids_are_reported() {
    let d = setup(&[
        ("acme-chat.toml", GOOD),
        (
            "acme-copy.toml",
            &GOOD
                .replace("acmechat.example", "other.example")
                .replace("api.acme-ai.example", "api.other.example")
                .replace("192.0.2.0/24", "198.51.100.0/24")
                .replace("192.0.2.9", "198.51.100.9"),
        ),
    ]);
    let r = validate_dir(d.path()).unwrap();
    let diag = find(&r, "duplicate id `acme-chat`");
    assert_eq!(diag.line, 1);
    assert!(diag.message.contains("acme-chat.toml:1"), "{diag}");
    find(&r, "does not match the file name");
}

#[test]
fn invalid_patterns_and_cidrs_are_reported_at_their_lines() {
    let text = GOOD
        .replace(
            "domains = [\"acmechat.example\"]",
            "domains = [\"acmechat.example\",\n  \"Bad..Name\",\n  \"ai\"]",
        )
        .replace(
            "cidrs = [\"192.0.2.0/24\"]",
            "cidrs = [\"192.0.2.0/24\",\n  \"192.0.2.1/16\",\n  \"10.0.0.0/33\",\n  \"not-an-ip\"]",
        )
        .replace(
            "hosts = [\"api.acme-ai.example\"]",
            "hosts = [\"api.acme-ai.example\"]\nsni = [\"*.com\", \"a**.acme.example\"]",
        );
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    assert_eq!(find(&r, "`Bad..Name`").line, line_of(&text, "Bad..Name"));
    assert_eq!(
        find(&r, "invalid domain `ai`").line,
        line_of(&text, "\"ai\"]")
    );
    let host_bits = find(&r, "192.0.2.1/16");
    assert_eq!(host_bits.line, line_of(&text, "192.0.2.1/16"));
    assert!(host_bits.message.contains("host bits"), "{host_bits}");
    assert_eq!(find(&r, "10.0.0.0/33").line, line_of(&text, "10.0.0.0/33"));
    assert_eq!(find(&r, "not-an-ip").line, line_of(&text, "not-an-ip"));
    assert_eq!(find(&r, "`*.com`").line, line_of(&text, "*.com"));
    find(&r, "a**.acme.example");
    assert!(
        r.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Error && d.line > 0)
    );
}

#[test]
fn a_name_claimed_by_two_services_is_an_error_naming_both() {
    let other = GOOD
        .replace("acme-chat", "beta-chat")
        .replace(
            "hosts = [\"api.acme-ai.example\"]",
            "hosts = [\"acmechat.example\"]",
        )
        .replace(
            "domains = [\"acmechat.example\"]",
            "domains = [\"beta.example\"]",
        )
        .replace(
            "match = [\"acmechat.example\", \"www.acmechat.example\", \"ip:192.0.2.9\"]",
            "match = [\"beta.example\"]",
        );
    let d = setup(&[("acme-chat.toml", GOOD), ("beta-chat.toml", &other)]);
    let r = validate_dir(d.path()).unwrap();
    let name = find(
        &r,
        "`acmechat.example` is already claimed by service `acme-chat`",
    );
    assert!(name.file.ends_with("beta-chat.toml"));
    assert_eq!(name.line, line_of(&other, "hosts ="));
    let cidr = find(
        &r,
        "`192.0.2.0/24` is already claimed by service `acme-chat`",
    );
    assert!(cidr.file.ends_with("beta-chat.toml"));
}

#[test]
fn shared_infrastructure_cannot_be_claimed() {
    let text = GOOD.replace(
        "domains = [\"acmechat.example\"]",
        "domains = [\"acmechat.example\", \"cdn.example\", \"example\"]\nsni = [\"acme-*.telemetry.example\"]",
    );
    let text = text.replace(
        "hosts = [\"api.acme-ai.example\"]",
        "hosts = [\"api.acme-ai.example\", \"o1.telemetry.example\", \"acme.cdn.example\"]",
    );
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    find(&r, "`cdn.example` is shared infrastructure");
    find(
        &r,
        "`o1.telemetry.example` lies under shared infrastructure `telemetry.example`",
    );
    find(
        &r,
        "`acme.cdn.example` lies under shared infrastructure `cdn.example`",
    );
    find(
        &r,
        "`acme-*.telemetry.example` lies under shared infrastructure",
    );
    find(&r, "invalid domain `example`");
}

#[test]
fn examples_that_do_not_hold_are_errors() {
    let text = GOOD
        .replace(
            "no_match = [\"notacmechat.example\"]",
            "no_match = [\"sub.acmechat.example\", \"ip:nope\"]",
        )
        .replace(
            "\"ip:192.0.2.9\"]",
            "\"ip:192.0.2.9\", \"unrelated.example\"]",
        );
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    find(
        &r,
        "no_match example `sub.acmechat.example` matches `acme-chat`",
    );
    find(
        &r,
        "example `unrelated.example` should match `acme-chat` but matches nothing",
    );
    find(&r, "`nope` is not an IP address");
}

#[test]
fn malformed_toml_is_reported_with_its_line() {
    let text = GOOD.replace("vendor = \"Acme\"", "vendor = \"Acme");
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    assert_eq!(r.error_count(), 1, "{r}");
    assert_eq!(r.diagnostics[0].line, line_of(&text, "vendor"));
}

#[test]
fn missing_required_sections_and_bad_values() {
    let no_examples = GOOD.split("[examples]").next().unwrap().to_string();
    let bad_jur = GOOD.replace("\"ZZ\"", "\"Germany\"");
    let d = setup(&[
        ("acme-chat.toml", &no_examples),
        ("acme-two.toml", &bad_jur.replace("acme-chat", "acme-two")),
    ]);
    let r = validate_dir(d.path()).unwrap();
    find(&r, "missing field `examples`");
    assert_eq!(
        find(&r, "jurisdiction `Germany`").line,
        line_of(&bad_jur, "Germany")
    );
}

#[test]
fn not_utf8_and_unreadable_dirs() {
    let d = setup(&[]);
    std::fs::write(d.path().join("bin.toml"), [0xff, 0xfe, 0x00]).unwrap();
    let r = validate_dir(d.path()).unwrap();
    find(&r, "not UTF-8");
    assert!(validate_dir(Path::new("/nonexistent/shadowai")).is_err());
}

#[test]
fn missing_shared_list_is_a_warning() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("acme-chat.toml"), GOOD).unwrap();
    let r = validate_dir(d.path()).unwrap();
    assert!(r.is_ok());
    assert_eq!(r.warning_count(), 4, "{r}");
    find(&r, "no shared-infrastructure list");
    find(&r, "no known-benign list");
    find(&r, "no local-resolver list");
    find(&r, "no process-hint list");
}

#[test]
fn known_benign_host_cannot_be_claimed() {
    // A suffix above the benign storefront would cover it.
    let text = GOOD.replace(
        "domains = [\"acmechat.example\"]",
        "domains = [\"acmechat.example\", \"acme-ai.example\"]",
    );
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    let diag = find(
        &r,
        "`acme-ai.example` (service `acme-chat`) claims known non-AI host `shop.acme-ai.example`: Acme's storefront",
    );
    assert!(diag.file.ends_with("acme-chat.toml"));
    assert_eq!(diag.line, line_of(&text, "domains ="));
    assert!(diag.message.contains("_benign.toml:1)"), "{diag}");
    // A glob is reported at its own line.
    let text = GOOD.replace(
        "hosts = [\"api.acme-ai.example\"]",
        "hosts = [\"api.acme-ai.example\"]\nsni = [\"s*.acme-ai.example\"]",
    );
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    let diag = find(
        &r,
        "`s*.acme-ai.example` (service `acme-chat`) claims known non-AI host",
    );
    assert_eq!(diag.line, line_of(&text, "sni ="));
    assert_eq!(r.error_count(), 1, "{r}");
}

#[test]
fn bad_benign_entries_are_reported_at_their_line() {
    let benign = r#"[[benign]]
name = "Shop.Example"
what = "x"
[[benign]]
name = "ok.example"
what = " "
[[benign]]
name = "twice.example"
what = "x"
[[benign]]
name = "twice.example"
what = "y"
[[benign]]
name = "x.example"
color = "red"
"#;
    let d = setup(&[("acme-chat.toml", GOOD)]);
    std::fs::write(d.path().join("_benign.toml"), benign).unwrap();
    let r = validate_dir(d.path()).unwrap();
    // Unknown field: the whole file is refused, at the field's line.
    let diag = find(&r, "color");
    assert!(diag.file.ends_with("_benign.toml"));
    assert_eq!(diag.line, line_of(benign, "color"));
    let benign = benign.replace("color = \"red\"", "what = \"z\"");
    std::fs::write(d.path().join("_benign.toml"), &benign).unwrap();
    let r = validate_dir(d.path()).unwrap();
    assert_eq!(find(&r, "invalid benign host `Shop.Example`").line, 1);
    assert_eq!(find(&r, "benign host `ok.example`: say what").line, 4);
    let diag = find(
        &r,
        "benign host `twice.example` is listed twice (also line 7)",
    );
    assert_eq!(diag.line, 10);
}

#[test]
fn bare_glob_below_shared_infrastructure_is_refused() {
    let text = GOOD.replace(
        "hosts = [\"api.acme-ai.example\"]",
        "hosts = [\"api.acme-ai.example\"]\nsni = [\"*.cloud.example\", \"acme-*.cloud.example\", \"*.*.cloud.example\"]",
    );
    let d = setup(&[("acme-chat.toml", &text)]);
    let r = validate_dir(d.path()).unwrap();
    let diag = find(
        &r,
        "`*.cloud.example` would claim every name below shared infrastructure `cloud.example`",
    );
    assert_eq!(diag.line, line_of(&text, "sni ="));
    find(&r, "`*.*.cloud.example` would claim every name below");
    assert!(
        !r.diagnostics
            .iter()
            .any(|d| d.message.contains("`acme-*.cloud.example`")),
        "{r}"
    );
}

fn policy_report(text: &str) -> Report {
    let d = setup(&[("acme-chat.toml", GOOD)]);
    let (cat, _) = load_dir_report(d.path()).unwrap();
    Policy::parse(Path::new("policy.toml"), text, &cat, 1_800_000_000).1
}

const POLICY: &str = r#"mode = "enforce"
default_verdict = "unsanctioned"

[host_groups]
servers = ["prod"]

[[rules]]
id = "block-acme"
verdict = "blocked"
services = ["acme-chat"]
host_groups = ["servers"]

[[exceptions]]
id = "acme-for-alice"
verdict = "tolerated"
services = ["acme-chat"]
users = ["alice"]
reason = "pilot"
approver = "bob"
expires = 2030-01-01T00:00:00Z
"#;

#[test]
fn good_policy_is_clean() {
    let r = policy_report(POLICY);
    assert!(r.diagnostics.is_empty(), "{r}");
}

#[test]
fn bad_policies_are_reported_with_lines() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            POLICY.replace("mode = \"enforce\"", "mode = \"enforce\"\nstrict = true"),
            "strict",
            "unknown field",
        ),
        (
            POLICY.replace(
                "services = [\"acme-chat\"]\nhost_groups",
                "services = [\"nope-chat\"]\nhost_groups",
            ),
            "nope-chat",
            "unknown service `nope-chat`",
        ),
        (
            POLICY.replace("host_groups = [\"servers\"]", "host_groups = [\"ghosts\"]"),
            "ghosts",
            "host group `ghosts` is not defined",
        ),
        (
            POLICY.replace("verdict = \"blocked\"", "verdict = \"deny\""),
            "deny",
            "unknown variant `deny`",
        ),
        (
            POLICY.replace(
                "expires = 2030-01-01T00:00:00Z",
                "expires = 2030-01-01T00:00:00",
            ),
            "expires",
            "offset",
        ),
        (
            POLICY.replace("approver = \"bob\"\n", ""),
            "[[exceptions]]",
            "needs an `approver`",
        ),
        (
            POLICY.replace(
                "services = [\"acme-chat\"]\nhost_groups = [\"servers\"]",
                "host_groups = [\"servers\"]",
            ),
            "[[rules]]",
            "targets nothing",
        ),
        (
            POLICY.replace("id = \"acme-for-alice\"", "id = \"block-acme\""),
            "id = \"block-acme\"",
            "duplicate rule id",
        ),
        (
            POLICY.replace(
                "verdict = \"blocked\"",
                "verdict = \"blocked\"\nexpires = 2030-01-01",
            ),
            "expires = 2030-01-01\n",
            "rules do not expire",
        ),
        (
            POLICY.replace(
                "default_verdict = \"unsanctioned\"",
                "default_verdict = [unsanctioned",
            ),
            "[host_groups]",
            "expected",
        ),
    ];
    for (text, at, msg) in cases {
        let r = policy_report(&text);
        assert!(!r.is_ok(), "expected an error for {msg:?}:\n{text}");
        let d = r
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error && d.message.contains(msg))
            .unwrap_or_else(|| panic!("{msg:?} not in\n{r}"));
        let needle = at.trim_end_matches('\n');
        let lines: Vec<&str> = text.lines().collect();
        let expect = lines
            .iter()
            .rposition(|l| *l == needle)
            .or_else(|| lines.iter().rposition(|l| l.contains(needle)))
            .unwrap()
            + 1;
        assert_eq!(d.line, expect, "{msg:?}: {d}");
    }
}

#[test]
fn expired_exception_and_shadowed_rule_are_warnings() {
    let text = POLICY.replace("2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z")
        + "\n[[rules]]\nid = \"all\"\nverdict = \"tolerated\"\nservices = [\"acme-chat\"]\n\n[[rules]]\nid = \"never\"\nverdict = \"blocked\"\nservices = [\"acme-chat\"]\n";
    let r = policy_report(&text);
    assert!(r.is_ok(), "{r}");
    find(&r, "expired at 2020-01-01T00:00:00Z");
    let w = find(&r, "rule `never` can never apply");
    assert_eq!(w.line, line_of(&text, "id = \"never\""));
}
