//! (5a) Collector ingest over HTTPS, durable, SQLite and PostgreSQL alternating (the fleet
//! simulation, 5b, is `fleet.rs`). Both run the collector crate's `ingest` bench binary (the real
//! `shadowai-collector` binary, real HTTPS clients) and read the JSON line it prints.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Ctx;
use super::report::table;
use super::stats::{Trials, num};

/// The collector's `ingest` bench executable with `args` (run directly: a nested `cargo bench`
/// from inside `cargo xtask` may rebuild the dependency tree).
fn bench_cmd(ctx: &Ctx, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(super::bench_exe(&ctx.target, "ingest")?);
    cmd.args(args)
        .arg("--work")
        .arg(ctx.work.join("collector"))
        .current_dir(&ctx.root)
        .stderr(std::process::Stdio::inherit());
    Ok(cmd)
}

pub(super) fn bench(ctx: &Ctx, args: &[&str]) -> Result<Value> {
    let out = bench_cmd(ctx, args)?
        .output()
        .context("running the collector's ingest bench")?;
    if !out.status.success() {
        bail!("ingest bench {args:?} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("ingest bench {args:?} printed no result"))?;
    Ok(serde_json::from_str(line)?)
}

/// The pid of a child of `parent` whose command name is `comm`.
fn child_named(parent: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid …": comm may hold spaces, so split at the last ')'.
        let (head, rest) = stat.rsplit_once(") ")?;
        let name = head.split_once(" (")?.1;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && name == comm).then_some(pid)
    })
}

/// One more SQLite ingest trial with `perf record -g` attached to the collector for its
/// middle seconds: where the collector's time goes (self time by symbol).
fn profile_sqlite(ctx: &Ctx, common: &[&str]) -> Result<String> {
    let mut args = vec!["ingest", "--backend", "sqlite"];
    args.extend(common);
    let mut child = bench_cmd(ctx, &args)?
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting the ingest bench")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let pid = loop {
        // The kernel truncates command names to 15 bytes.
        if let Some(pid) = child_named(child.id(), "shadowai-collec") {
            break pid;
        }
        if std::time::Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no collector process under the ingest bench within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Enrollment and batch encoding come first; sample while uploads run.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let data = ctx.work.join("collector-sqlite.perf.data");
    let secs = ctx.ingest_secs.saturating_sub(2).max(2).to_string();
    let st = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string(), "--", "sleep", &secs])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("starting perf")?;
    let waited = child.wait()?;
    if !st.success() {
        bail!("perf record failed: {st}");
    }
    if !waited.success() {
        bail!("the profiled ingest trial failed: {waited}");
    }
    super::replay::perf_top(&data)
}

pub(super) fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let agents = ctx.ingest_agents.to_string();
    let secs = ctx.ingest_secs.to_string();
    let common = [
        "--agents",
        agents.as_str(),
        "--secs",
        secs.as_str(),
        "--batch",
        "500",
    ];
    let mut rows = Vec::new();
    let mut sides: Vec<(&str, Trials, Trials, Trials, bool, u64)> = vec![
        (
            "sqlite",
            Trials::default(),
            Trials::default(),
            Trials::default(),
            true,
            0,
        ),
        (
            "postgres",
            Trials::default(),
            Trials::default(),
            Trials::default(),
            true,
            0,
        ),
    ];
    for trial in 0..ctx.trials {
        for side in sides.iter_mut() {
            eprintln!(
                "[bench] ingest {} trial {}/{}",
                side.0,
                trial + 1,
                ctx.trials
            );
            let mut args = vec!["ingest", "--backend", side.0];
            args.extend(common);
            let v = bench(ctx, &args)?;
            side.1.push(f(&v, "findings_per_sec"));
            side.2.push(f(&v, "p50_ms"));
            side.3.push(f(&v, "p99_ms"));
            side.4 &= v["acked"] == v["stored"];
            side.5 += v["errors"].as_u64().unwrap_or(0);
        }
    }
    for (name, rate, p50, p99, exact, errors) in &sides {
        let target = if *name == "sqlite" {
            50_000.0
        } else {
            20_000.0
        };
        rows.push(vec![
            (*name).to_owned(),
            rate.show(0),
            p50.show(0),
            p99.show(0),
            errors.to_string(),
            if *exact { "yes" } else { "**no**" }.to_owned(),
            format!(
                "≥ {}: {}",
                num(target, 0),
                if rate.median() >= target {
                    "met"
                } else {
                    "**missed**"
                }
            ),
        ]);
    }
    let mut body = format!(
        "`cargo bench -p shadowai-collector --bench ingest -- ingest --backend sqlite|postgres {}` \
         (the bench executable run directly), \
         {} alternating trials (SQLite, PostgreSQL, …). The real `shadowai-collector` (release) \
         over HTTPS with its generated certificate; {agents} simulated agents, each enrolled with \
         its own host key from its own loopback address, uploading gzip batches of 500 findings \
         back to back for {secs} s (batches made before the clock starts). Durable: SQLite WAL \
         with `synchronous=FULL`; PostgreSQL 15 with `fsync=on`, `synchronous_commit=on`, pool 8. \
         Per-token/IP rate limits raised so the store is what is measured. *exact* = findings \
         stored equal findings acknowledged.\n\n",
        common.join(" "),
        ctx.trials
    );
    let sqlite_missed = sides.first().is_some_and(|s| s.1.median() < 50_000.0);
    let profile = sqlite_missed.then(|| profile_sqlite(ctx, &common));
    body.push_str(&table(
        &[
            "store",
            "findings/s",
            "request p50 ms",
            "request p99 ms",
            "errors",
            "exact",
            "target",
        ],
        &rows,
    ));
    match profile {
        Some(Ok(p)) => body.push_str(&format!(
            "\nSQLite target missed: where the collector spends an ingest (`perf record -g -p \
             <collector>` during the middle of one more SQLite trial, self time by symbol; the \
             collector's threads only):\n\n```\n{p}\n```\n"
        )),
        Some(Err(e)) => body.push_str(&format!("\nThe SQLite ingest profile failed: {e:#}\n")),
        None => {}
    }
    Ok(body)
}
