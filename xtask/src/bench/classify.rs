//! (3) Classification speed: the rules crate's criterion bench (`classify`), the shipped
//! catalogue padded to ≥ 10,000 name patterns, one core; several runs, each one trial.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::Ctx;
use super::report::table;
use super::stats::{Trials, num};

/// Names per criterion iteration in the bench (its `NAMES` list).
const NAMES_PER_ITER: f64 = 16.0;
const BENCHES: [(&str, &str); 2] = [
    ("match_name_mixed_16", "`match_name` (name → service)"),
    (
        "classify_with_policy_mixed_16",
        "`classify_at` (name → service → policy verdict)",
    ),
];

/// Median nanoseconds per iteration from criterion's estimates of the last run.
fn estimate(ctx: &Ctx, bench: &str) -> Result<f64> {
    let path = ctx
        .target
        .join("criterion/classify")
        .join(bench)
        .join("new/estimates.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}

pub const COMMAND: &str =
    "cargo bench -p shadowai-rules --bench classify -- --warm-up-time 1 --measurement-time 3";

/// One criterion run of `exe`; names/s per bench in [`BENCHES`] order.
fn one_run(ctx: &Ctx, exe: &Path) -> Result<Vec<f64>> {
    super::run_quiet(
        Command::new(exe)
            .args(["--bench", "--warm-up-time", "1", "--measurement-time", "3"])
            .current_dir(&ctx.root),
    )?;
    BENCHES
        .iter()
        .map(|(b, _)| Ok(NAMES_PER_ITER / estimate(ctx, b)? * 1e9))
        .collect()
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let exe = super::bench_exe(&ctx.target, "classify")?;
    let before = ctx.classify_before.as_deref();
    let mut rates = vec![Trials::default(); BENCHES.len()];
    let mut rates_before = vec![Trials::default(); BENCHES.len()];
    for trial in 0..ctx.trials {
        eprintln!("[bench] classify trial {}/{}", trial + 1, ctx.trials);
        for (i, r) in one_run(ctx, &exe)?.into_iter().enumerate() {
            rates[i].push(r);
        }
        if let Some(b) = before {
            for (i, r) in one_run(ctx, b)?.into_iter().enumerate() {
                rates_before[i].push(r);
            }
        }
    }
    let m = |t: &Trials| Trials(t.0.iter().map(|v| v / 1e6).collect()).show(1);
    let rows: Vec<Vec<String>> = BENCHES
        .iter()
        .zip(rates.iter().zip(&rates_before))
        .map(|((_, what), (r, b))| {
            let mut row = vec![(*what).to_owned(), m(r)];
            if before.is_some() {
                row.push(m(b));
                row.push(Trials::ratio(r, b).show(2));
            }
            row.push(
                if r.median() >= 20e6 {
                    "met"
                } else {
                    "**missed**"
                }
                .to_owned(),
            );
            row
        })
        .collect();
    let mut body = format!(
        "`{COMMAND}`, {} runs; the shipped catalogue padded with synthetic services to ≥ 10,000 \
         name patterns, the example policy loaded, 16 names per iteration (8 hits, 8 misses), \
         one core. Figure: names/s from criterion's median of each run; median (min–max) over \
         the runs.{}\n\n",
        ctx.trials,
        match before {
            Some(b) => format!(
                " *before*: the same bench built from the previous matcher (`{}`), run \
                 alternately with this build's (now, before, now, …); the ratio is per run pair.",
                b.display()
            ),
            None => String::new(),
        }
    );
    let mut head = vec!["operation", "M names/s"];
    if before.is_some() {
        head.extend(["before, M names/s", "now / before"]);
    }
    head.push("target ≥ 20 M/s");
    body.push_str(&table(&head, &rows));
    if rates.iter().any(|r| r.median() < 20e6) {
        let exe_s = exe.to_string_lossy().into_owned();
        let prof = super::replay::profile(
            &ctx.work,
            "classify",
            &[
                exe_s.as_str(),
                "--bench",
                "--profile-time",
                "3",
                "classify_with_policy",
            ],
        )?;
        body.push_str(&format!(
            "\nTarget missed: where `classify_at` spends its time (`perf record -g` of criterion's \
             `--profile-time 3` run, self time by symbol):\n\n```\n{prof}\n```\n"
        ));
    }
    body.push_str(&format!(
        "\nMedians: `match_name` {} names/s, `classify_at` {} names/s.\n",
        num(rates[0].median(), 0),
        num(rates[1].median(), 0)
    ));
    Ok(body)
}
