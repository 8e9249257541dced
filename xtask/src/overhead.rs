//! `cargo xtask bench-overhead`: what the agent costs the host. A loopback
//! connect()+accept()+close() loop (the worst case for per-connection hooks) runs bare and
//! with `shadowai-agent watch` attached (default in-kernel de-dup, and every connect
//! reported), and with a `--peer` agent binary in the same way. Every trial runs every side
//! once, in turn (bare, this, peer, this every-connect, peer every-connect), so the shared
//! machine's load drifts across all of them alike; each ratio is taken against the bare run
//! of the same trial. The report gives connects/s and the ratio (median, min–max), and the
//! agent's CPU time and peak RSS while it watched.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench::agent::{cpu_secs, rss_mib};
use crate::bench::stats::Trials;
use crate::bench::traffic::connect_rate;

/// One trial with the agent attached (`extra` args for `watch`): connects/s, CPU %, peak RSS.
fn with_agent(agent: &Path, extra: &[&str], secs: f64) -> Result<(f64, f64, f64)> {
    let mut child = Command::new(agent)
        .args(["watch", "--json"])
        .args(extra)
        .env("SHADOWAI_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    std::thread::sleep(Duration::from_secs(3)); // load + attach
    let t0 = cpu_secs(child.id());
    let wall = Instant::now();
    let rate = connect_rate(secs);
    let elapsed = wall.elapsed().as_secs_f64();
    let (t1, hwm) = (cpu_secs(child.id()), rss_mib(child.id()).1);
    let _ = child.kill();
    let _ = child.wait();
    Ok((rate?, (t1 - t0) / elapsed * 100.0, hwm))
}

/// One agent binary in one configuration, over all trials.
#[derive(Default)]
struct Side {
    rate: Trials,
    ratio: Trials,
    cpu: Trials,
    hwm: Trials,
}

impl Side {
    fn trial(&mut self, agent: &Path, extra: &[&str], secs: f64, bare: f64) -> Result<()> {
        let (rate, cpu, hwm) = with_agent(agent, extra, secs)?;
        self.rate.push(rate);
        self.ratio.push(rate / bare);
        self.cpu.push(cpu);
        self.hwm.push(hwm);
        Ok(())
    }

    fn print(&self, label: &str) {
        println!(
            "  {label:<44} {:>28} connects/s  {:>20}x  agent CPU {}% of a core, peak RSS {} MiB",
            self.rate.show(0),
            self.ratio.show(2),
            self.cpu.show(1),
            self.hwm.show(0),
        );
    }
}

/// Bare, this agent and the `peer` binary if given, each configuration once per trial.
pub fn run(agent: &Path, peer: Option<&Path>, secs: f64, trials: u32) -> Result<()> {
    let mut bare = Trials::default();
    let (mut this, mut this_every) = (Side::default(), Side::default());
    let (mut other, mut other_every) = (Side::default(), Side::default());
    let every = ["--dedup-secs", "0"];
    for trial in 0..trials {
        eprintln!("[bench-overhead] trial {}/{trials}", trial + 1);
        let b = connect_rate(secs)?;
        bare.push(b);
        this.trial(agent, &[], secs, b)?;
        if let Some(p) = peer {
            other.trial(p, &[], secs, b)?;
        }
        this_every.trial(agent, &every, secs, b)?;
        if let Some(p) = peer {
            other_every.trial(p, &every, secs, b)?;
        }
    }
    println!(
        "loopback connect+accept+close, {trials} trials of {secs} s, each side once per trial \
         (bare, this, peer, this every-connect, peer every-connect); median (min–max), ratio \
         against the same trial's bare run:"
    );
    println!("  {:<44} {:>28} connects/s", "bare", bare.show(0));
    this.print("this agent (default, in-kernel de-dup)");
    this_every.print("this agent, every connect reported");
    if let Some(p) = peer {
        println!("  peer: {}", p.display());
        other.print("peer agent (default, in-kernel de-dup)");
        other_every.print("peer agent, every connect reported");
        println!(
            "  this / peer in the same trial: default {}x, every connect reported {}x",
            Trials::ratio(&this.rate, &other.rate).show(2),
            Trials::ratio(&this_every.rate, &other_every.rate).show(2),
        );
    }
    Ok(())
}
