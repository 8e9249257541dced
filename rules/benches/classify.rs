//! Name classification throughput against the shipped catalogue padded to 10,000 patterns.
//! Target: >= 5 million classifications per second per core.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowai_rules::{Catalogue, Engine, Policy, Query};

fn engine_10k() -> Engine {
    let mut cat =
        Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue")).unwrap();
    let real: usize = cat
        .services
        .iter()
        .map(|s| s.domains.len() + s.hosts.len() + s.sni.len())
        .sum();
    // Pad with synthetic services (50 patterns each) until 10,000 name patterns.
    let template = cat
        .services
        .iter()
        .find(|s| s.id == "openai-chatgpt")
        .unwrap()
        .clone();
    let mut n = 0;
    let mut total = real;
    while total < 10_000 {
        let mut s = template.clone();
        s.id = format!("zz-synthetic-{n:04}");
        s.domains = (0..50)
            .map(|i| format!("svc{n}-{i}.synthetic-ai{}.test", n % 97))
            .collect();
        s.hosts.clear();
        s.sni.clear();
        s.cidrs.clear();
        total += s.domains.len();
        cat.services.push(s);
        n += 1;
    }
    cat.services.sort_by(|a, b| a.id.cmp(&b.id));
    // The example policy: 9 rules, host groups, one exception, so classify does real work.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = Policy::load(&root.join("policy.example.toml"), &cat).unwrap();
    let e = Engine::new(cat, policy).unwrap();
    assert!(e.matcher().pattern_count() >= 10_000);
    e
}

const NAMES: &[&str] = &[
    // hits
    "api.openai.com",
    "chatgpt.com",
    "cdn.oaistatic.com",
    "claude.ai",
    "contoso.openai.azure.com",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "us-central1-aiplatform.googleapis.com",
    "svc42-7.synthetic-ai42.test",
    // misses (most DNS traffic is not AI)
    "www.google.com",
    "fonts.gstatic.com",
    "s3.us-west-2.amazonaws.com",
    "d1234abcd.cloudfront.net",
    "en.wikipedia.org",
    "registry.npmjs.org",
    "a.very.deep.subdomain.of.some.example.co.uk",
    "WWW.EXAMPLE.COM.",
];

fn bench(c: &mut Criterion) {
    let e = engine_10k();
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(NAMES.len() as u64));
    g.bench_function("match_name_mixed_16", |b| {
        b.iter(|| {
            let mut hits = 0usize;
            for n in NAMES {
                hits += usize::from(e.match_name(black_box(n)).is_some());
            }
            hits
        })
    });
    g.bench_function("classify_with_policy_mixed_16", |b| {
        let groups = ["engineering"];
        let tags = ["laptop"];
        b.iter(|| {
            let mut hits = 0usize;
            for n in NAMES {
                let q = Query {
                    name: Some(black_box(n)),
                    user: Some("alice"),
                    unix_groups: &groups,
                    host_tags: &tags,
                    ..Query::default()
                };
                hits += usize::from(e.classify_at(&q, 0).is_some());
            }
            hits
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
