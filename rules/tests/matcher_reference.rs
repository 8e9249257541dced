//! The right-to-left label index against a plain reading of the matching rules: on random
//! catalogues and names drawn from a tiny label alphabet (so suffixes, exact hosts and glob
//! literals overlap all the time), `match_name` must pick exactly what the reference picks —
//! the longest matching literal suffix; at equal length exact > glob > suffix; among globs
//! on one literal suffix, the first listed. Queries are twisted the ways real traffic and
//! evaders twist them: any mix of upper case, a trailing dot, empty labels, non-ASCII and
//! over-long labels, names padded to 252–254 bytes, names of one label. (Hash collisions
//! are tested in `rules/src/matcher_tests.rs`, which can build a colliding index.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use shadowai_rules::matcher::Matcher;
use shadowai_rules::{Catalogue, Service};

/// A shipped service with its patterns cleared, to fill with random ones.
fn svc(id: &str) -> Service {
    static TEMPLATE: OnceLock<Service> = OnceLock::new();
    let mut s = TEMPLATE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
            let mut cat = Catalogue::load_dir(&dir).unwrap();
            let mut s = cat.services.swap_remove(0);
            s.domains.clear();
            s.hosts.clear();
            s.sni.clear();
            s.cidrs.clear();
            s.ports.clear();
            s.process_hints.clear();
            s.tenant_hints.clear();
            s
        })
        .clone();
    s.id = id.into();
    s
}

/// Pattern labels: short ones that overlap, the 8/9-byte edge of the index's one-word
/// labels (`abcdefgh`, `abcdefghi`, `abcdefghij` share their first 8 bytes), punycode.
const LABELS: &[&str] = &[
    "a",
    "b",
    "ab",
    "xa",
    "ax",
    "abcdefgh",
    "abcdefghi",
    "abcdefghij",
    "xn--bcher-kva",
];

/// Labels only queries carry: empty, non-ASCII (UTF-8 is not case-folded), the longest
/// legal label and one past it.
fn query_only() -> Vec<String> {
    vec![
        String::new(),
        "bü".into(),
        "ÄB".into(),
        "q".repeat(63),
        "q".repeat(64),
    ]
}

fn label() -> impl Strategy<Value = String> {
    prop::sample::select(LABELS).prop_map(str::to_string)
}

fn name(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(label(), min..max).prop_map(|v| v.join("."))
}

/// What a query does to a name: upper-case the characters whose bit is set, put a
/// query-only label in place of one, add a trailing dot, pad with labels on the left to
/// 252, 253 or 254 bytes.
#[derive(Clone, Debug)]
struct Twist {
    upper: u64,
    odd_label: Option<(usize, usize)>,
    dot: bool,
    pad_to: Option<usize>,
}

fn twist() -> impl Strategy<Value = Twist> {
    (
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        prop::option::weighted(0.2, (0..7usize, 0..5usize)),
        any::<bool>(),
        prop::option::weighted(0.15, prop::sample::select(vec![252usize, 253, 254])),
    )
        .prop_map(|(upper, odd_label, dot, pad_to)| Twist {
            upper,
            odd_label,
            dot,
            pad_to,
        })
}

fn apply(n: &str, t: &Twist) -> String {
    let mut labels: Vec<String> = n.split('.').map(str::to_string).collect();
    if let Some((i, which)) = t.odd_label {
        let at = i % labels.len();
        labels[at] = query_only()[which].clone();
    }
    let mut q = labels.join(".");
    if let Some(len) = t.pad_to {
        while q.len() + 2 <= len {
            q.insert_str(0, "z.");
        }
        if q.len() < len {
            q.insert(0, 'y');
        }
    }
    let mut q: String = q
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if t.upper >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    if t.dot {
        q.push('.');
    }
    q
}

fn glob() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just("*".to_string()),
        Just("x*".to_string()),
        Just("*a".to_string()),
        label(),
    ];
    (prop::collection::vec(head, 1..4), name(2, 3)).prop_map(|(mut h, lit)| {
        if !h.iter().any(|l| l.contains('*')) {
            h[0] = "*".into();
        }
        format!("{}.{lit}", h.join("."))
    })
}

fn glob_label_matches(g: &str, l: &str) -> bool {
    if g == "*" {
        !l.is_empty()
    } else if let Some(p) = g.strip_suffix('*') {
        l.len() > p.len() && l.starts_with(p)
    } else if let Some(s) = g.strip_prefix('*') {
        l.len() > s.len() && l.ends_with(s)
    } else {
        g == l
    }
}

/// (literal length, rank: suffix 0 < glob 1 < exact 2, -order) of every pattern that
/// matches; the greatest wins.
fn reference(services: &[Service], raw: &str) -> Option<u32> {
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 || !name.contains('.') {
        return None;
    }
    let mut best: Option<((usize, u8, i64), u32)> = None;
    let mut consider = |key: (usize, u8, i64), si: u32| {
        if best.is_none_or(|(b, _)| key > b) {
            best = Some((key, si));
        }
    };
    let labels: Vec<&str> = name.split('.').collect();
    for (si, s) in services.iter().enumerate() {
        let si = si as u32;
        for h in &s.hosts {
            if name == *h {
                consider((h.len(), 2, 0), si);
            }
        }
        for d in &s.domains {
            if name == *d || name.ends_with(&format!(".{d}")) {
                consider((d.len(), 0, 0), si);
            }
        }
        for (i, g) in s.sni.iter().enumerate() {
            let gl: Vec<&str> = g.split('.').collect();
            let last_wild = gl.iter().rposition(|l| l.contains('*')).unwrap();
            let literal = gl[last_wild + 1..].join(".");
            if gl.len() == labels.len()
                && gl
                    .iter()
                    .zip(&labels)
                    .all(|(g, l)| glob_label_matches(g, l))
            {
                let order = -(i64::from(si) * 1000 + i as i64);
                consider((literal.len(), 1, order), si);
            }
        }
    }
    best.map(|(_, si)| si)
}

fn catalogue() -> impl Strategy<Value = Vec<Service>> {
    let one = (
        prop::collection::vec(name(2, 4), 0..3),
        prop::collection::vec(name(2, 5), 0..3),
        prop::collection::vec(glob(), 0..3),
    );
    prop::collection::vec(one, 1..5).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (mut domains, mut hosts, mut sni))| {
                domains.sort();
                domains.dedup();
                hosts.sort();
                hosts.dedup();
                sni.sort();
                sni.dedup();
                let mut s = svc(&format!("s{i}"));
                s.domains = domains;
                s.hosts = hosts;
                s.sni = sni;
                s
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn index_walk_agrees_with_the_reference(
        services in catalogue(),
        names in prop::collection::vec((name(1, 7), twist()), 1..20),
    ) {
        let Ok(m) = Matcher::build(&services) else {
            // Conflicting patterns are refused at build time; nothing to compare.
            return Ok(());
        };
        for (n, t) in names {
            let q = apply(&n, &t);
            let got = m.match_name(&q).map(|h| h.service);
            prop_assert_eq!(got, reference(&services, &q), "name {:?} in {:?}", q, services.iter().map(|s| (&s.domains, &s.hosts, &s.sni)).collect::<Vec<_>>());
        }
    }
}
