//! (3) Classification speed: the rules crate's criterion bench (`classify`), the shipped
//! catalogue padded to ≥ 10,000 name patterns, one core; several runs, each one trial.
//!
//! Only the loops timed by the bench thread's CPU time run (group `classify_cpu`): on a
//! shared machine the wall clock also counts the time the thread waited for a core, and the
//! CPU-time figure is the per-core rate the target is about. A peer built before the
//! CPU-time group existed shows `n/a`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::Ctx;
use super::report::table;
use super::stats::{Trials, num};

/// Names per criterion iteration in the bench (its `NAMES` list, or 16 long names).
const NAMES_PER_ITER: f64 = 16.0;
/// The criterion group measured: the bench thread's CPU time. (The bench file also has the
/// same loops timed by the wall clock, group `classify`; the report leaves them out — on a
/// shared machine they add the time the thread waited for a core, and they doubled the
/// section's run time.)
const GROUP: &str = "classify_cpu";
/// (criterion group, bench, what, judged against the target).
const BENCHES: [(&str, &str, &str, bool); 3] = [
    (
        GROUP,
        "match_name_mixed_16",
        "`match_name` (name → service), per core (thread CPU time)",
        true,
    ),
    (
        GROUP,
        "classify_with_policy_mixed_16",
        "`classify_at` (name → service → policy verdict), per core (thread CPU time)",
        true,
    ),
    (
        GROUP,
        "match_name_long_16",
        "`match_name` of 253-byte, ~123-label names, per core",
        false,
    ),
];

/// Median nanoseconds per iteration from criterion's estimates of the last run.
fn estimate(ctx: &Ctx, group: &str, bench: &str) -> Result<f64> {
    let path = ctx
        .target
        .join("criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}

pub const COMMAND: &str = "cargo bench -p shadowai-rules --bench classify -- --warm-up-time 1 \
     --measurement-time 3 classify_cpu/";

/// One criterion run of `exe`; names/s per bench in [`BENCHES`] order. The estimates of a
/// bench the executable does not have are removed first, so a peer without the CPU-time
/// group yields `None` there instead of an earlier run's figure; this build must have all.
fn one_run(ctx: &Ctx, exe: &Path, all: bool) -> Result<Vec<Option<f64>>> {
    for (group, bench, _, _) in BENCHES {
        let dir = ctx
            .target
            .join("criterion")
            .join(group)
            .join(bench)
            .join("new");
        let _ = std::fs::remove_file(dir.join("estimates.json"));
    }
    super::run_quiet(
        Command::new(exe)
            .args(["--bench", "--warm-up-time", "1", "--measurement-time", "3"])
            .arg(format!("{GROUP}/"))
            .current_dir(&ctx.root),
    )?;
    BENCHES
        .iter()
        .map(|(group, bench, _, _)| match estimate(ctx, group, bench) {
            Ok(ns) => Ok(Some(NAMES_PER_ITER / ns * 1e9)),
            Err(e) if all => Err(e),
            Err(_) => Ok(None),
        })
        .collect()
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let exe = super::bench_exe(&ctx.target, "classify")?;
    let before = ctx.classify_before.as_deref();
    let mut rates = vec![Trials::default(); BENCHES.len()];
    let mut rates_before = vec![Trials::default(); BENCHES.len()];
    for trial in 0..ctx.trials {
        eprintln!("[bench] classify trial {}/{}", trial + 1, ctx.trials);
        for (i, r) in one_run(ctx, &exe, true)?.into_iter().enumerate() {
            rates[i].push(r.unwrap_or(f64::NAN));
        }
        if let Some(b) = before {
            for (i, r) in one_run(ctx, b, false)?.into_iter().enumerate() {
                if let Some(r) = r {
                    rates_before[i].push(r);
                }
            }
        }
    }
    let m = |t: &Trials| Trials(t.0.iter().map(|v| v / 1e6).collect()).show(1);
    let rows: Vec<Vec<String>> = BENCHES
        .iter()
        .zip(rates.iter().zip(&rates_before))
        .map(|((_, _, what, judged), (r, b))| {
            let mut row = vec![(*what).to_owned(), m(r)];
            if before.is_some() {
                row.push(m(b));
                row.push(if b.0.len() == r.0.len() {
                    Trials::ratio(r, b).show(2)
                } else {
                    "n/a".to_owned()
                });
            }
            row.push(
                match (*judged, r.median() >= 20e6) {
                    (false, true) => "(≥ 20 M/s)",
                    (false, false) => "(< 20 M/s)",
                    (true, true) => "met",
                    (true, false) => "**missed**",
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
         the runs. Each loop is timed by the bench thread's CPU time, which leaves out waiting \
         for a core on a loaded machine: the per-core rate the target is about.{}\n\n",
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
    let judged = |i: usize| BENCHES.get(i).is_some_and(|b| b.3);
    if rates
        .iter()
        .enumerate()
        .any(|(i, r)| judged(i) && (r.median().is_nan() || r.median() < 20e6))
    {
        let exe_s = exe.to_string_lossy().into_owned();
        let prof = super::replay::profile(
            &ctx.work,
            "classify",
            &[
                exe_s.as_str(),
                "--bench",
                "--profile-time",
                "3",
                "classify_cpu/classify_with_policy",
            ],
        )?;
        body.push_str(&format!(
            "\nTarget missed: where `classify_at` spends its time (`perf record -g` of criterion's \
             `--profile-time 3` run, self time by symbol):\n\n```\n{prof}\n```\n"
        ));
    }
    let med = |i: usize| rates.get(i).map_or(f64::NAN, Trials::median);
    body.push_str(&format!(
        "\nMedians per core: `match_name` {} names/s, `classify_at` {} names/s; 253-byte names \
         {} names/s.\n",
        num(med(0), 0),
        num(med(1), 0),
        num(med(2), 0)
    ));
    Ok(body)
}
