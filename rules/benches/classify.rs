//! Name classification throughput against the shipped catalogue padded to 10,000 patterns.
//! Target: >= 20 million names per second per core.
//!
//! Two groups run the same loops: `classify` timed by the wall clock (criterion's default),
//! `classify_cpu` by the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which on a shared
//! machine leaves out the time the bench thread waited for a core — the per-core figure.
//! `classify_cpu/match_name_long_16` feeds 253-byte names of ~123 labels (a DNS name has at
//! most 253 bytes and 127 labels), some below catalogue names, to show what a hostile name costs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowai_rules::{Catalogue, Engine, Policy, Query};

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Criterion measurement: CPU time of the bench thread.
struct ThreadCpu;

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like the wall clock's.
        WALL.formatter()
    }
}

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

/// Names of 253 bytes and ~123 one-letter labels: junk, and junk below catalogue names.
fn long_names() -> Vec<String> {
    let tails = [
        "openai.com",
        "amazonaws.com",
        "googleapis.com",
        "example.org",
    ];
    (0..16)
        .map(|i| {
            let tail = tails[i % tails.len()];
            let mut n = String::new();
            while n.len() + tail.len() + 2 <= 253 {
                n.push(char::from(b'a' + (i as u8 % 26)));
                n.push('.');
            }
            if n.len() + tail.len() < 253 {
                n.insert(0, 'x');
            }
            n + tail
        })
        .collect()
}

#[inline(never)]
fn match_all(e: &Engine, names: &[&str]) -> usize {
    names
        .iter()
        .filter(|n| e.match_name(black_box(n)).is_some())
        .count()
}

#[inline(never)]
fn classify_all(e: &Engine, names: &[&str]) -> usize {
    let groups = ["engineering"];
    let tags = ["laptop"];
    names
        .iter()
        .filter(|n| {
            let q = Query {
                name: Some(black_box(n)),
                user: Some("alice"),
                unix_groups: &groups,
                host_tags: &tags,
                ..Query::default()
            };
            e.classify_at(&q, 0).is_some()
        })
        .count()
}

fn loops<M: Measurement>(c: &mut Criterion<M>, group: &str, e: &Engine, long: bool) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(NAMES.len() as u64));
    g.bench_function("match_name_mixed_16", |b| b.iter(|| match_all(e, NAMES)));
    g.bench_function("classify_with_policy_mixed_16", |b| {
        b.iter(|| classify_all(e, NAMES))
    });
    if long {
        let names = long_names();
        assert!(names.iter().all(|n| n.len() == 253), "{names:?}");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        g.bench_function("match_name_long_16", |b| b.iter(|| match_all(e, &names)));
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    loops(c, "classify", &engine_10k(), false);
}

fn bench_cpu(c: &mut Criterion<ThreadCpu>) {
    loops(c, "classify_cpu", &engine_10k(), true);
}

criterion_group!(benches, bench);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_cpu
}
criterion_main!(benches, cpu);
