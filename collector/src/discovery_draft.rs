//! A discovery candidate as a draft catalogue file (`GET /api/v1/discovery/draft`), for
//! an analyst who maintains the shipped catalogue itself. The normal promotion is a
//! catalogue proposal (`catalogue_entry.rs`, `store/sql_catalogue.rs`): validated the same
//! way, approved by a different person, carried by the next bundle. The draft itself validates (so nothing in it is
//! malformed) but says plainly what is still unknown; its provenance cites what the fleet
//! saw, never a made-up vendor page.

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
        "# Draft from the discovery loop: complete vendor, category, description, risk and a\n\
         # vendor source (URL + checked date) before adding it to the catalogue.\n\n\
         id = {id}\nname = {name}\nvendor = \"unknown\"\ncategory = \"model_api\"\n\
         description = {desc}\nhosts = [{name}]\n\n\
         [risk]\ntrains_on_user_data = \"unknown\"\nretention = \"unknown\"\njurisdiction = \"ZZ\"\n\
         enterprise_controls = []\n\n\
         [provenance]\nsources = [{seen}]\nchecked = {today}\n\
         note = \"Discovered on the fleet; vendor terms not yet researched.\"\n\n\
         [examples]\nmatch = [{name}]\nno_match = [{nm}]\n",
        id = q(&id),
        name = q(&c.name),
        desc = q(&format!("Unknown AI service seen at {}.", c.name)),
        seen = q(&seen),
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

    #[test]
    fn a_draft_is_a_valid_catalogue_entry_that_matches_the_name() {
        let c = CandidateView {
            name: "api.newrelay.example".into(),
            reasons: vec![DiscoveryReason::AiProcess],
            hits: 3,
            first_seen_ms: 1,
            last_seen_ms: 2,
            hosts: vec!["h1".into()],
            processes: vec!["/usr/bin/python3 \"quoted\"".into()],
            alongside: vec!["openai-api".into()],
            proposal: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let text = draft(&c, "2026-11-26");
        std::fs::write(dir.path().join("api-newrelay-example.toml"), &text).unwrap();
        let (cat, report) = load_dir_report(dir.path()).unwrap();
        assert!(report.is_ok(), "{report}\n{text}");
        let s = &cat.services[0];
        assert_eq!(s.id, "api-newrelay-example");
        assert_eq!(s.hosts, vec!["api.newrelay.example"]);
    }
}
