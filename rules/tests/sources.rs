//! Provenance of the shipped catalogue: every entry cites sources of a known form with its
//! own check date, every models.dev provider is accounted for, and entries whose only source
//! is "the vendor's own host" may not grow in number.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::collections::BTreeSet;
use std::path::Path;

use shadowai_rules::Catalogue;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn catalogue() -> Catalogue {
    Catalogue::load_dir(&manifest().join("catalogue")).unwrap()
}

/// Entries whose only source is "https://<their host>/ (vendor-operated host)" on the day this
/// test was written. Lower it as entries get real sources; it must never rise.
const OWN_HOST_ONLY_MAX: usize = 322;

#[test]
fn every_source_has_a_known_form_and_a_date() {
    let cat = catalogue();
    let mut bad = Vec::new();
    let mut own_only = 0;
    for s in &cat.services {
        let p = &s.provenance;
        let date_ok = p.checked.len() == 10
            && p.checked.as_str() >= "2026-01-01"
            && p.checked.as_str() <= "2026-11-26";
        if !date_ok {
            bad.push(format!("{}: checked `{}`", s.id, p.checked));
        }
        for src in &p.sources {
            let ok = src.starts_with("https://")
                || (src.starts_with("v2fly:domain-list-community@") && src.ends_with("(MIT)"))
                || (src.starts_with("models.dev:anomalyco/models.dev@") && src.ends_with("(MIT)"))
                || (src.starts_with("pypi:litellm@") && src.ends_with("(MIT)"))
                || src.contains(" documentation: ")
                || src.starts_with("vendor endpoint naming (");
            if !ok {
                bad.push(format!("{}: source `{src}`", s.id));
            }
        }
        if p.sources
            .iter()
            .all(|x| x.ends_with("(vendor-operated host)"))
        {
            own_only += 1;
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        own_only <= OWN_HOST_ONLY_MAX,
        "{own_only} entries cite only their own host (at most {OWN_HOST_ONLY_MAX})"
    );
}

#[test]
fn every_models_dev_provider_is_in_the_catalogue_or_explained() {
    let cat = catalogue();
    let text = std::fs::read_to_string(manifest().join("tools/models-dev.tsv")).unwrap();
    let mut providers = BTreeSet::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let (provider, service) = (f[0], f.get(1).copied().unwrap_or(""));
        assert!(
            providers.insert(provider),
            "line {}: {provider} twice",
            i + 1
        );
        if service == "-" {
            if f.get(2).is_none_or(|why| why.trim().is_empty()) {
                problems.push(format!("line {}: {provider}: `-` needs a reason", i + 1));
            }
            continue;
        }
        let Some(svc) = cat.service(service) else {
            problems.push(format!(
                "line {}: {provider}: no service `{service}`",
                i + 1
            ));
            continue;
        };
        let cite = format!("/providers/{provider}/provider.toml");
        if !svc.provenance.sources.iter().any(|s| s.contains(&cite)) {
            problems.push(format!("{service} does not cite models.dev {provider}"));
        }
    }
    // models.dev had 147 providers at the pinned commit.
    assert_eq!(
        providers.len(),
        147,
        "models-dev.tsv lists {}",
        providers.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn api_key_env_names_come_with_a_models_dev_citation() {
    for s in &catalogue().services {
        if !s.api_key_env.is_empty() {
            assert!(
                s.provenance
                    .sources
                    .iter()
                    .any(|x| x.starts_with("models.dev:")),
                "{} lists key env names without citing models.dev",
                s.id
            );
        }
    }
    let cat = catalogue();
    let openai = cat.service("openai-api").unwrap();
    assert_eq!(openai.api_key_env, ["OPENAI_API_KEY"]);
}

#[test]
fn every_endpoint_litellm_ships_is_attributed() {
    let cat = catalogue();
    let engine = shadowai_rules::Engine::new(cat, shadowai_rules::Policy::default()).unwrap();
    let text = std::fs::read_to_string(manifest().join("tools/litellm-endpoints.tsv")).unwrap();
    let mut n = 0;
    let mut wrong = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (host, want) = line.split_once('\t').expect("host<TAB>service");
        n += 1;
        let got = engine.match_name(host).map(|s| s.id.as_str());
        if got != Some(want) {
            wrong.push(format!("{host}: want {want}, got {got:?}"));
        }
    }
    assert!(n >= 58, "only {n} endpoints");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
