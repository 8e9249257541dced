//! (1) Loopback connect loop and DNS query loop: bare, with `shadowai-agent run`, and with a
//! bpftrace tracepoint counter, in alternating trials (bare, shadowai, bpftrace, bare, …) so
//! the shared machine's load drifts across all three alike.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Ctx;
use super::agent::{Agent, cpu_secs, free_port, rss_mib};
use super::report::table;
use super::stats::Trials;
use super::traffic::{connect_rate, dns_rate};

/// The peer: a bpftrace one-liner counting connect() and sendto() calls per command name.
pub const BPFTRACE_PROGRAM: &str = "tracepoint:syscalls:sys_enter_connect { @connects[comm] = count(); } \
     tracepoint:syscalls:sys_enter_sendto { @sends[comm] = count(); }";

/// A running bpftrace, stopped on drop.
struct Bpftrace(Child);

impl Bpftrace {
    fn start() -> Result<(Self, Duration)> {
        let started = Instant::now();
        let mut child = Command::new("bpftrace")
            .args(["-e", BPFTRACE_PROGRAM])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bpftrace")?;
        let out = child.stdout.take().context("bpftrace has no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("Attaching") {
                    let _ = tx.send(());
                }
            }
        });
        let me = Self(child);
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            bail!("bpftrace did not attach within 60 s");
        }
        // "Attaching N probes..." is printed just before the attach calls return.
        std::thread::sleep(Duration::from_millis(500));
        Ok((me, started.elapsed()))
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Side {
    connects: Trials,
    dns: Trials,
    attach: Trials,
    cpu_pct: Trials,
    rss: Trials,
}

const DNS_SERVER: Ipv4Addr = Ipv4Addr::new(127, 83, 0, 1);

fn loops(secs: f64, side: &mut Side) -> Result<()> {
    side.connects.push(connect_rate(secs)?);
    side.dns.push(dns_rate(DNS_SERVER, secs)?);
    Ok(())
}

pub fn run(ctx: &Ctx, agent_bin: &Path) -> Result<String> {
    let secs = ctx.secs;
    let (mut bare, mut ours, mut peer) = (Side::default(), Side::default(), Side::default());
    for trial in 0..ctx.trials {
        eprintln!("[bench] loopback trial {}/{}", trial + 1, ctx.trials);
        loops(secs, &mut bare)?;
        {
            let agent = Agent::start(agent_bin, &ctx.root, &ctx.work, free_port()?)?;
            ours.attach.push(agent.attach.as_secs_f64() * 1000.0);
            let (c0, t0) = (cpu_secs(agent.pid()), Instant::now());
            loops(secs, &mut ours)?;
            ours.cpu_pct
                .push((cpu_secs(agent.pid()) - c0) / t0.elapsed().as_secs_f64() * 100.0);
            ours.rss.push(rss_mib(agent.pid()).0);
        }
        {
            let (bt, attach) = Bpftrace::start()?;
            peer.attach.push(attach.as_secs_f64() * 1000.0);
            let (c0, t0) = (cpu_secs(bt.0.id()), Instant::now());
            loops(secs, &mut peer)?;
            peer.cpu_pct
                .push((cpu_secs(bt.0.id()) - c0) / t0.elapsed().as_secs_f64() * 100.0);
            peer.rss.push(rss_mib(bt.0.id()).0);
        }
    }
    let row = |name: &str, s: &Side| {
        vec![
            name.to_owned(),
            s.connects.show(0),
            Trials::ratio(&s.connects, &bare.connects).show(2),
            s.dns.show(0),
            Trials::ratio(&s.dns, &bare.dns).show(2),
            if s.cpu_pct.0.is_empty() {
                "—".into()
            } else {
                s.cpu_pct.show(1)
            },
            if s.rss.0.is_empty() {
                "—".into()
            } else {
                s.rss.show(1)
            },
            if s.attach.0.is_empty() {
                "—".into()
            } else {
                s.attach.show(0)
            },
        ]
    };
    let mut body = format!(
        "Single-threaded loops on loopback, {} alternating trials of {secs} s per loop and \
         side (bare, shadowai, bpftrace, bare, …); median (min–max); the ratio is taken per \
         trial against the bare run of the same trial. Connect loop: `connect()` + `accept()` + \
         RST `close()` to 127.0.0.1. DNS loop: one A query for `api.openai.com` to a socket on \
         127.83.0.1:53 and its answer, both sides played by the same thread (no hand-off \
         between threads) — the agent captures, decodes, attributes and classifies both. \
         shadowai: `shadowai-agent run` (release) on the shipped catalogue, no collector; \
         bpftrace: `bpftrace -e '{BPFTRACE_PROGRAM}'`. CPU is the observer's own user+system \
         time while the loops ran; attach = spawn → attached and running.\n\n",
        ctx.trials
    );
    body.push_str(&table(
        &[
            "side",
            "connects/s",
            "vs bare",
            "DNS round trips/s",
            "vs bare",
            "observer CPU % of a core",
            "observer RSS MiB",
            "attach ms",
        ],
        &[
            row("bare", &bare),
            row("shadowai `run`", &ours),
            row("bpftrace counter", &peer),
        ],
    ));
    let c = Trials::ratio(&ours.connects, &bare.connects).median();
    let d = Trials::ratio(&ours.dns, &bare.dns).median();
    let pc = Trials::ratio(&peer.connects, &bare.connects).median();
    let pd = Trials::ratio(&peer.dns, &bare.dns).median();
    body.push_str(&format!(
        "\nTarget ≥ 0.95× bare and ahead of bpftrace: connect loop {c:.2}× vs bpftrace {pc:.2}× — {}; \
         DNS loop {d:.2}× vs bpftrace {pd:.2}× — {}.\n",
        verdict(c, pc),
        verdict(d, pd)
    ));
    Ok(body)
}

fn verdict(ours: f64, peer: f64) -> &'static str {
    match (ours >= 0.95, ours >= peer) {
        (true, true) => "**met**",
        (false, true) => "**missed** (ahead of bpftrace, under 0.95×)",
        (true, false) => "**missed** (≥ 0.95× but behind bpftrace)",
        (false, false) => "**missed**",
    }
}
