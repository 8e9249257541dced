//! `cargo xtask bench-overhead`: what the agent costs the host. A loopback
//! connect()+accept()+close() loop (the worst case for per-connection hooks) runs bare and
//! then with `shadowai-agent watch` attached; the report gives connects/s for both, the
//! ratio, and the agent's CPU time and peak RSS while it watched.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench::agent::{cpu_secs, rss_mib};
use crate::bench::traffic::connect_rate;

/// Connect rates with the agent attached (`extra` args for `watch`), its CPU % and peak RSS.
fn with_agent(
    agent: &Path,
    extra: &[&str],
    secs: f64,
    trials: u32,
) -> Result<(Vec<f64>, f64, f64)> {
    let mut child = Command::new(agent)
        .args(["watch", "--json"])
        .args(extra)
        .env("SHADOWAI_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the agent")?;
    std::thread::sleep(Duration::from_secs(3)); // load + attach
    let t0 = cpu_secs(child.id());
    let wall = Instant::now();
    let mut with = Vec::new();
    for _ in 0..trials {
        with.push(connect_rate(secs)?);
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let (t1, hwm) = (cpu_secs(child.id()), rss_mib(child.id()).1);
    let _ = child.kill();
    let _ = child.wait();
    let cpu = (t1 - t0) / elapsed * 100.0;
    Ok((with, cpu, hwm))
}

/// Medians of one agent binary: (default rate, CPU, RSS), (every-connect rate, CPU, RSS).
type Side = ((f64, f64, f64), (f64, f64, f64));

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure(agent: &Path, secs: f64, trials: u32) -> Result<Side> {
    let (mut with, cpu, hwm) = with_agent(agent, &[], secs, trials)?;
    let (mut every, cpu_every, hwm_every) =
        with_agent(agent, &["--dedup-secs", "0"], secs, trials)?;
    Ok((
        (median(&mut with), cpu, hwm),
        (median(&mut every), cpu_every, hwm_every),
    ))
}

fn report(label: &str, side: &Side, bare: f64) {
    let ((w, cpu, hwm), (e, cpu_every, hwm_every)) = *side;
    println!(
        "  {label} agent (default, in-kernel de-dup): {w:>9.0} connects/s ({:.2}x), agent CPU {cpu:.1}% of a core, peak RSS {hwm:.0} MiB",
        w / bare
    );
    println!(
        "  {label} agent, every connect reported:     {e:>9.0} connects/s ({:.2}x), agent CPU {cpu_every:.1}% of a core, peak RSS {hwm_every:.0} MiB",
        e / bare
    );
}

/// Bare, then this agent, then the `peer` binary if given (same run, same machine state).
pub fn run(agent: &Path, peer: Option<&Path>, secs: f64, trials: u32) -> Result<()> {
    let mut bare = Vec::new();
    for _ in 0..trials {
        bare.push(connect_rate(secs)?);
    }
    let this = measure(agent, secs, trials)?;
    let other = match peer {
        Some(p) => Some(measure(p, secs, trials)?),
        None => None,
    };
    let b = median(&mut bare);
    println!("loopback connect+accept+close, {trials} trials of {secs} s, median:");
    println!("  bare:                              {b:>9.0} connects/s");
    report("this", &this, b);
    if let (Some(o), Some(p)) = (other, peer) {
        println!("  peer: {}", p.display());
        report("peer", &o, b);
    }
    Ok(())
}
