//! The shipped catalogue: validates cleanly, every entry's inline examples hold, shared
//! infrastructure and a benign list of popular non-AI names never match.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::{Path, PathBuf};

use shadowai_rules::catalogue::{Category, load_dir_report};
use shadowai_rules::{Catalogue, Engine, Policy};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue")
}

#[test]
fn shipped_catalogue_validates_without_errors_or_warnings() {
    let (cat, report) = load_dir_report(&dir()).unwrap();
    assert!(
        report.diagnostics.is_empty(),
        "catalogue problems:\n{report}"
    );
    assert!(
        cat.services.len() >= 400,
        "only {} services",
        cat.services.len()
    );
}

#[test]
fn every_category_is_covered_and_regions_are_present() {
    let cat = Catalogue::load_dir(&dir()).unwrap();
    // `ai_agent` is the category of agent sessions (process hints), never of a service.
    for c in Category::ALL
        .into_iter()
        .filter(|c| *c != Category::AiAgent)
    {
        let n = cat.services.iter().filter(|s| s.category == c).count();
        assert!(n >= 5, "category {c} has only {n} services");
    }
    for j in ["CN", "FR", "DE", "KR", "JP", "RU", "IN", "LOCAL"] {
        assert!(
            cat.services.iter().any(|s| s.risk.jurisdiction == j),
            "no service in {j}"
        );
    }
}

fn engine() -> Engine {
    Engine::new(Catalogue::load_dir(&dir()).unwrap(), Policy::default()).unwrap()
}

/// Each entry's inline examples, run through the engine's public classify path (validation
/// checks them through the matcher too).
#[test]
fn every_entry_examples_hold_through_the_engine() {
    let e = engine();
    let mut checked = 0;
    for svc in &e.catalogue().services {
        let run = |item: &str| {
            let mut q = shadowai_rules::Query::default();
            if let Some(ip) = item.strip_prefix("ip:") {
                q.ip = Some(ip.parse().unwrap());
            } else if let Some(p) = item.strip_prefix("port:") {
                q.port = Some(p.parse().unwrap());
            } else if let Some(p) = item.strip_prefix("process:") {
                q.process = Some(p);
            } else {
                q.name = Some(item);
            }
            e.classify_at(&q, 0).map(|d| d.service.id.clone())
        };
        for m in &svc.examples.matches {
            assert_eq!(
                run(m).as_deref(),
                Some(svc.id.as_str()),
                "{}: example `{m}`",
                svc.id
            );
            checked += 1;
        }
        for m in &svc.examples.no_match {
            assert_ne!(
                run(m).as_deref(),
                Some(svc.id.as_str()),
                "{}: no_match `{m}`",
                svc.id
            );
            checked += 1;
        }
        if let Some(d) = svc.domains.first() {
            assert_eq!(
                e.match_name(d).map(|s| s.id.as_str()),
                Some(svc.id.as_str())
            );
        }
    }
    assert!(checked > 2000, "only {checked} examples");
}

#[test]
fn benign_popular_names_never_match() {
    let e = engine();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/benign.txt"),
    )
    .unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(names.len() >= 1000, "benign list has only {}", names.len());
    let hits: Vec<String> = names
        .iter()
        .filter_map(|n| e.match_name(n).map(|s| format!("{n} -> {}", s.id)))
        .collect();
    assert!(
        hits.is_empty(),
        "benign names matched AI services:\n{}",
        hits.join("\n")
    );
}

#[test]
fn shared_infrastructure_never_matches() {
    let e = engine();
    let cat = e.catalogue();
    assert!(cat.shared_infra.len() >= 50);
    for s in &cat.shared_infra {
        for n in [
            s.suffix.clone(),
            format!("zz-unrelated-customer.{}", s.suffix),
            format!("a.b.{}", s.suffix),
        ] {
            assert!(
                e.match_name(&n).is_none(),
                "shared host {n} matched {:?}",
                e.match_name(&n).map(|s| &s.id)
            );
        }
    }
}
