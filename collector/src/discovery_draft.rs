//! A discovery candidate as a draft catalogue file (`GET /api/v1/discovery/draft`), for
//! an analyst who maintains the shipped catalogue itself. The normal promotion is a
//! catalogue proposal (`catalogue_entry.rs`, `store/sql_catalogue.rs`): validated the same
//! way, approved by a different person, carried by the next bundle. The draft is written in the
//! catalogue's per-source provenance form (`[[provenance.sources]]`, each source with its own
//! `checked` day) and says plainly what is still unknown. Its one source is the host the fleet
//! contacted, with what the fleet saw in the source's note — never a made-up vendor page. A
//! `model_api` entry resting on its own host alone is refused by validation, so the draft
//! carries exactly that one error until the analyst adds the vendor's documentation.

use shadowai_api::discovery::CandidateView;

/// The catalogue id for a name: its labels joined by `-` (`api.newrelay.example` →
/// `api-newrelay-example`), cut to 64 bytes.
pub fn draft_id(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    id.truncate(64);
    id.trim_matches('-').to_string()
}

/// TOML string literal (basic string, escaped).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The draft entry for `c`, checked on `today` (`YYYY-MM-DD`).
pub fn draft(c: &CandidateView, today: &str) -> String {
    let id = draft_id(&c.name);
    let seen = format!(
        "shadowai discovery: {} on {} host(s) by {}{}, {} hit(s)",
        c.name,
        c.hosts.len(),
        c.processes.join(", "),
        if c.alongside.is_empty() {
            String::new()
        } else {
            format!(" (alongside {})", c.alongside.join(", "))
        },
        c.hits
    );
    format!(
        "# Draft from the discovery loop: complete vendor, category, description and risk, and\n\
         # add the vendor's API / endpoint documentation as a further [[provenance.sources]]\n\
         # (url + the day you read it) before adding it to the catalogue: validation refuses a\n\
         # model_api entry whose only source is its own host.\n\n\
         id = {id}\nname = {name}\nvendor = \"unknown\"\ncategory = \"model_api\"\n\
         description = {desc}\nhosts = [{name}]\n\n\
         [risk]\ntrains_on_user_data = \"unknown\"\nretention = \"unknown\"\njurisdiction = \"ZZ\"\n\
         enterprise_controls = []\n\n\
         [provenance]\nnote = \"Discovered on the fleet; vendor terms not yet researched.\"\n\n\
         [[provenance.sources]]\nurl = {url}\nchecked = {today}\nnote = {seen}\n\n\
         [examples]\nmatch = [{name}]\nno_match = [{nm}]\n",
        id = q(&id),
        name = q(&c.name),
        desc = q(&format!("Unknown AI service seen at {}.", c.name)),
        url = q(&format!("https://{}/", c.name)),
        seen = q(&format!("the host the fleet contacted: {seen}")),
        nm = q(&format!("not-{}", c.name)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use shadowai_api::discovery::DiscoveryReason;
    use shadowai_rules::catalogue::load_dir_report;

    fn candidate() -> CandidateView {
        CandidateView {
            name: "api.newrelay.example".into(),
            reasons: vec![DiscoveryReason::AiProcess],
            hits: 3,
            first_seen_ms: 1,
            last_seen_ms: 2,
            hosts: vec!["h1".into()],
            processes: vec!["/usr/bin/python3 \"quoted\"".into()],
            alongside: vec!["openai-api".into()],
            proposal: None,
        }
    }

    /// The catalogue loaded from a directory holding only the draft, and the diagnostics about
    /// the draft itself (not the directory-level notes on the absent support lists).
    fn load(
        text: &str,
    ) -> (
        shadowai_rules::Catalogue,
        shadowai_rules::Report,
        Vec<String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api-newrelay-example.toml");
        std::fs::write(&file, text).unwrap();
        let (cat, report) = load_dir_report(dir.path()).unwrap();
        let own = report
            .diagnostics
            .iter()
            .filter(|d| d.file == file)
            .map(ToString::to_string)
            .collect();
        (cat, report, own)
    }

    /// The draft uses the per-source provenance form (no old-form warning), dated the day it
    /// was written, citing the contacted host with what the fleet saw; its only problem is the
    /// one the analyst must fix: a model API resting on its own host alone.
    #[test]
    fn a_draft_is_in_the_per_source_form_and_names_what_is_missing() {
        let c = candidate();
        let text = draft(&c, "2026-11-26");
        let (_, report, problems) = load(&text);
        assert_eq!(problems.len(), 1, "{report}\n{text}");
        assert!(
            problems[0].contains("whose only source is its own home page"),
            "{report}"
        );
        assert!(
            !text.contains("sources = ["),
            "old provenance form:\n{text}"
        );
        assert!(text.contains("[[provenance.sources]]\nurl = \"https://api.newrelay.example/\"\nchecked = 2026-11-26\n"), "{text}");
        assert!(
            text.contains("by /usr/bin/python3 \\\"quoted\\\" (alongside openai-api), 3 hit(s)"),
            "{text}"
        );
    }

    /// Once the analyst adds the vendor's documentation (the step the header asks for), the
    /// draft is a valid catalogue entry matching the name, its date the newest source's.
    #[test]
    fn a_completed_draft_is_a_valid_catalogue_entry_that_matches_the_name() {
        let text = draft(&candidate(), "2026-11-25").replace(
            "\n[examples]",
            "[[provenance.sources]]\nurl = \"https://newrelay.example/docs/api\"\nchecked = 2026-11-26\n\n[examples]",
        );
        let (cat, report, own) = load(&text);
        assert!(report.is_ok(), "{report}\n{text}");
        assert!(own.is_empty(), "{own:?}");
        let s = &cat.services[0];
        assert_eq!(s.id, "api-newrelay-example");
        assert_eq!(s.hosts, vec!["api.newrelay.example"]);
        assert_eq!(s.provenance.checked, "2026-11-26");
        assert_eq!(s.provenance.sources.len(), 2);
    }
}
