//! Cost of the two-person check on upload (`twoperson::check`): the shipped catalogue, the
//! example policy as the last accepted bundle, the same policy plus a fleet-wide block and a
//! group-scoped category rule as the new one. Peer in the same run: building one `Engine`
//! (what every agent does per bundle) — the check builds two and evaluates every service ×
//! audience × moment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowai_rules::twoperson::{Approval, Scope, Target, check};
use shadowai_rules::{Catalogue, Engine, Policy, Verdict};

fn inputs() -> (Catalogue, Policy, Policy, Vec<Approval>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cat = Catalogue::load_dir(&root.join("catalogue")).unwrap();
    let old = Policy::load(&root.join("policy.example.toml"), &cat).unwrap();
    let mut new = old.clone();
    new.rules.insert(
        0,
        serde_json::from_value(
            serde_json::json!({"id": "b1", "verdict": "blocked", "services": ["deepseek"]}),
        )
        .unwrap(),
    );
    new.rules.push(
        serde_json::from_value(serde_json::json!({"id": "b2", "verdict": "blocked",
            "categories": ["image_generation"], "host_tags": ["kiosk"]}))
        .unwrap(),
    );
    let approvals = vec![
        Approval {
            proposal: 1,
            target: Target::Service("deepseek".into()),
            verdict: Verdict::Blocked,
            scope: Scope::Fleet,
        },
        Approval {
            proposal: 2,
            target: Target::Any,
            verdict: Verdict::Blocked,
            scope: Scope::HostTag("kiosk".into()),
        },
    ];
    (cat, old, new, approvals)
}

fn bench(c: &mut Criterion) {
    let (cat, old, new, approvals) = inputs();
    let now = 1_790_000_000;
    // The bench must measure an accepted upload, not an early refusal.
    let changes = check(&cat, Some((&cat, &old)), (&cat, &new), &approvals, now).unwrap();
    assert!(!changes.is_empty());
    let mut g = c.benchmark_group("two_person");
    g.sample_size(20);
    g.bench_function("engine_new (peer: one agent bundle load)", |b| {
        b.iter(|| Engine::new(black_box(cat.clone()), black_box(new.clone())).unwrap())
    });
    g.bench_function("check (upload: two engines + effective verdicts)", |b| {
        b.iter(|| {
            check(
                &cat,
                Some((&cat, &old)),
                (&cat, black_box(&new)),
                &approvals,
                now,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
