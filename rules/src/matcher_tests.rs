//! The name index under the worst hash an adversary could find (every edge in one probe
//! chain) and at its size bound.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;

use super::*;
use crate::catalogue::Catalogue;
use crate::suffix_index::MAX_SUFFIXES;

fn shipped() -> Vec<Service> {
    Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue"))
        .unwrap()
        .services
}

/// Names around every `step`-th pattern: the pattern, names below it, its parent, case and
/// trailing-dot variants, a glob's wildcards filled in, and near misses.
fn probes(services: &[Service], step: usize) -> Vec<String> {
    let pats: Vec<&String> = services
        .iter()
        .flat_map(|s| s.domains.iter().chain(&s.hosts).chain(&s.sni))
        .step_by(step)
        .collect();
    let mut out = Vec::new();
    for p in pats {
        for fill in ["x", "us-east-1", "a-b"] {
            let n = p.replace('*', fill);
            let parent = n.split_once('.').map_or("", |(_, r)| r).to_string();
            out.extend([
                n.clone(),
                format!("a.{n}"),
                format!("A.b.{}", n.to_ascii_uppercase()),
                format!("{n}."),
                format!("not{n}"),
                format!("{n}x"),
                format!("x.{parent}"),
                parent,
            ]);
        }
    }
    out
}

#[test]
fn a_hash_where_every_edge_collides_gives_the_same_answers() {
    let services = shipped();
    let normal = Matcher::build(&services).unwrap();
    let colliding = Matcher::build_with(&services, |b| b.finish_seeded(7, true)).unwrap();
    let names = probes(&services, 7);
    assert!(names.len() > 1000, "{}", names.len());
    let mut hits = 0;
    for n in &names {
        let want = normal.match_name(n);
        hits += usize::from(want.is_some());
        assert_eq!(colliding.match_name(n), want, "{n}");
    }
    assert!(hits > names.len() / 4, "{hits} of {}", names.len());
}

#[test]
fn two_seeds_give_the_same_answers() {
    let services = shipped();
    let a = Matcher::build_with(&services, |b| b.finish_seeded(1, false)).unwrap();
    let b = Matcher::build_with(&services, |b| b.finish_seeded(u64::MAX, false)).unwrap();
    for n in probes(&services, 1) {
        assert_eq!(a.match_name(&n), b.match_name(&n), "{n}");
    }
}

#[test]
fn past_the_suffix_bound_the_pattern_that_crosses_it_is_refused() {
    let mut services = shipped();
    services.truncate(1);
    let s = &mut services[0];
    s.hosts.clear();
    s.sni = vec!["*.glob.example".into()];
    // Root + `example` + one node each: the last two do not fit.
    s.domains = (0..MAX_SUFFIXES).map(|i| format!("d{i}.example")).collect();
    let problems = Matcher::build(&services).unwrap_err();
    let items: Vec<(Field, u32)> = problems.iter().map(|p| (p.field, p.item)).collect();
    let last = MAX_SUFFIXES as u32;
    assert_eq!(
        items,
        [
            (Field::Domains, last - 2),
            (Field::Domains, last - 1),
            (Field::Sni, 0)
        ]
    );
    assert!(
        problems[0].message.contains("too many name patterns")
            && problems[0].message.contains(&MAX_SUFFIXES.to_string()),
        "{}",
        problems[0].message
    );
}

#[test]
fn labels_told_apart_only_past_their_first_eight_bytes() {
    let mut services = shipped();
    services.truncate(2);
    for s in &mut services {
        s.hosts.clear();
        s.sni.clear();
        s.cidrs.clear();
        s.process_hints.clear();
        s.ports.clear();
    }
    services[0].domains = vec!["longlabel-one.example".into(), "x.same8byt.test".into()];
    services[1].domains = vec!["longlabel-two.example".into(), "y.same8byt.test".into()];
    for m in [
        Matcher::build(&services).unwrap(),
        Matcher::build_with(&services, |b| b.finish_seeded(0, true)).unwrap(),
    ] {
        let svc = |n: &str| m.match_name(n).map(|h| h.service);
        assert_eq!(svc("a.longlabel-one.example"), Some(0));
        assert_eq!(svc("LONGLABEL-TWO.example."), Some(1));
        assert_eq!(svc("longlabel-tre.example"), None);
        assert_eq!(svc("longlabel-one.examplf"), None);
        assert_eq!(svc("x.same8byt.test"), Some(0));
        assert_eq!(svc("y.same8byt.test"), Some(1));
        assert_eq!(svc("z.same8byt.test"), None);
    }
}
