//! (1) Loopback connect loop and DNS query loop: bare, with `shadowai-agent run`, and with a
//! bpftrace tracepoint counter (and, with `--agent-before`, an earlier agent build), in
//! alternating trials (bare, shadowai, [before,] bpftrace, bare, …) so
//! the shared machine's load drifts across every side alike. Then, per loop, where the
//! agent's extra time goes: its programs' run times (`bpfstats.rs`), and the hooks' own
//! dispatch against the programs' work for both observers (`hookprof.rs`) — the profile that
//! says why a missed target is missed.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::agent::{Agent, cpu_secs, free_port, rss_mib};
use super::report::table;
use super::stats::Trials;
use super::traffic::{connect_rate, dns_rate};
use super::{Ctx, hookprof};

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

/// One trial of both loops with `agent_bin` attached.
fn agent_trial(ctx: &Ctx, agent_bin: &Path, side: &mut Side) -> Result<()> {
    let agent = Agent::start(agent_bin, &ctx.root, &ctx.work, free_port()?)?;
    side.attach.push(agent.attach.as_secs_f64() * 1000.0);
    let (c0, t0) = (cpu_secs(agent.pid()), Instant::now());
    loops(ctx.secs, side)?;
    side.cpu_pct
        .push((cpu_secs(agent.pid()) - c0) / t0.elapsed().as_secs_f64() * 100.0);
    side.rss.push(rss_mib(agent.pid()).0);
    Ok(())
}

pub fn run(ctx: &Ctx, agent_bin: &Path) -> Result<String> {
    let secs = ctx.secs;
    let (mut bare, mut ours, mut peer) = (Side::default(), Side::default(), Side::default());
    let mut before = Side::default();
    for trial in 0..ctx.trials {
        eprintln!("[bench] loopback trial {}/{}", trial + 1, ctx.trials);
        loops(secs, &mut bare)?;
        agent_trial(ctx, agent_bin, &mut ours)?;
        if let Some(b) = &ctx.agent_before {
            agent_trial(ctx, b, &mut before)?;
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
         side (bare, shadowai, [shadowai before,] bpftrace, bare, …); median (min–max); the ratio is taken per \
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
        &rows_of(&[
            Some(row("bare", &bare)),
            Some(row("shadowai `run`", &ours)),
            ctx.agent_before.as_ref().map(|b| {
                row(
                    &format!("shadowai `run`, before (`{}`)", b.display()),
                    &before,
                )
            }),
            Some(row("bpftrace counter", &peer)),
        ]),
    ));
    let c = Trials::ratio(&ours.connects, &bare.connects).median();
    let d = Trials::ratio(&ours.dns, &bare.dns).median();
    let mut profiles = Vec::new();
    for (l, bare_rate) in [
        (&CONNECT_LOOP, bare.connects.median()),
        (&DNS_LOOP, bare.dns.median()),
    ] {
        profiles.push((l, "", kernel_profile(ctx, agent_bin, l, bare_rate)));
        profiles.push((l, HOOK_SPLIT, hook_split(ctx, agent_bin, l)));
    }
    if let Some(b) = &ctx.agent_before {
        profiles.push((
            &CONNECT_LOOP,
            " (before)",
            kernel_profile(ctx, b, &CONNECT_LOOP, bare.connects.median()),
        ));
        profiles.push((
            &DNS_LOOP,
            " (before)",
            kernel_profile(ctx, b, &DNS_LOOP, bare.dns.median()),
        ));
    }
    let pc = Trials::ratio(&peer.connects, &bare.connects).median();
    let pd = Trials::ratio(&peer.dns, &bare.dns).median();
    body.push_str(&format!(
        "\nTarget ≥ 0.95× bare and ahead of bpftrace: connect loop {c:.2}× vs bpftrace {pc:.2}× — {}; \
         DNS loop {d:.2}× vs bpftrace {pd:.2}× — {}.\n",
        verdict(c, pc),
        verdict(d, pd)
    ));
    if ctx.agent_before.is_some() {
        let bc = Trials::ratio(&before.connects, &bare.connects).median();
        let bd = Trials::ratio(&before.dns, &bare.dns).median();
        body.push_str(&format!(
            "Before/after in the same trials: connect loop {bc:.2}× → {c:.2}×, DNS loop \
             {bd:.2}× → {d:.2}× (after/before per trial: connect {}, DNS {}).\n",
            Trials::ratio(&ours.connects, &before.connects).show(2),
            Trials::ratio(&ours.dns, &before.dns).show(2),
        ));
    }
    for (l, which, profile) in profiles {
        match profile {
            Ok(p) => {
                if !which.is_empty() && which != HOOK_SPLIT {
                    body.push_str(&format!(
                        "\nThe {}'s profile with the earlier agent build{which}:\n",
                        l.name
                    ));
                }
                body.push_str(&p)
            }
            Err(e) => body.push_str(&format!(
                "\nThe {}'s kernel profile{which} failed: {e:#}\n",
                l.name
            )),
        }
    }
    Ok(body)
}

/// Marks a profile entry as the hooks-against-programs split (`hookprof.rs`).
const HOOK_SPLIT: &str = " split of hooks and programs";

/// One more trial of the loop per observer (shadowai, then bpftrace) under `perf record`:
/// the hooks' dispatch against the programs' work (`hookprof.rs`).
fn hook_split(ctx: &Ctx, agent_bin: &Path, l: &Loop) -> Result<String> {
    // ≈10,000 samples per side at perf's 4,999 Hz: enough for a share to ±1 %.
    let secs = ctx.secs.min(2.0);
    let ours = {
        let _agent = Agent::start(agent_bin, &ctx.root, &ctx.work, free_port()?)?;
        hookprof::record(&ctx.work, "shadowai", secs, l.rate)?
    };
    let peer = {
        let _bpftrace = Bpftrace::start()?;
        hookprof::record(&ctx.work, "bpftrace", secs, l.rate)?
    };
    Ok(hookprof::render(l.name, l.unit, secs, &ours, &peer))
}

/// A loop whose kernel side is profiled: its name, what one iteration is called, and how to
/// run it for `secs` (iterations per second).
struct Loop {
    name: &'static str,
    unit: &'static str,
    rate: fn(f64) -> Result<f64>,
}

const CONNECT_LOOP: Loop = Loop {
    name: "connect loop",
    unit: "connect",
    rate: connect_rate,
};

const DNS_LOOP: Loop = Loop {
    name: "DNS loop",
    unit: "round trip",
    rate: |secs| dns_rate(DNS_SERVER, secs),
};

/// One more shadowai trial of a loop with the kernel's BPF statistics on: what each of the
/// agent's programs costs per iteration, beside the bare iteration of the same run and the
/// other programs on this host that ran meanwhile.
fn kernel_profile(ctx: &Ctx, agent_bin: &Path, l: &Loop, bare_rate: f64) -> Result<String> {
    use super::bpfstats::{StatsOn, delta, snapshot};
    let loaded_before = snapshot(0, &Default::default())?;
    let agent = Agent::start(agent_bin, &ctx.root, &ctx.work, free_port()?)?;
    let on = StatsOn::enable()?;
    let before = snapshot(agent.pid(), &loaded_before)?;
    let (c0, t0) = (cpu_secs(agent.pid()), Instant::now());
    let rate = (l.rate)(ctx.secs)?;
    let cpu = (cpu_secs(agent.pid()) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let after = snapshot(agent.pid(), &loaded_before)?;
    drop(on);
    let d = delta(&before, &after);
    let iters = (rate * ctx.secs).max(1.0);
    let mut rows = Vec::new();
    let mut total = 0.0;
    for p in &d.ours {
        let per_iter = p.ns as f64 / iters;
        total += per_iter;
        rows.push(vec![
            format!("`{}`", p.name),
            p.kind.clone(),
            format!("{:.2}", p.runs as f64 / iters),
            format!("{:.0}", p.ns as f64 / p.runs.max(1) as f64),
            format!("{per_iter:.0}"),
        ]);
    }
    rows.push(vec![
        "all of the agent's programs".into(),
        String::new(),
        String::new(),
        String::new(),
        format!("**{total:.0}**"),
    ]);
    rows.push(vec![
        format!(
            "{} other programs on this host (other processes', or loaded during the trial)",
            d.others_count
        ),
        String::new(),
        format!("{:.2}", d.others_runs as f64 / iters),
        format!("{:.0}", d.others_ns as f64 / d.others_runs.max(1) as f64),
        format!("{:.0}", d.others_ns as f64 / iters),
    ]);
    let iter_ns = 1e9 / rate.max(1.0);
    let bare_ns = 1e9 / bare_rate.max(1.0);
    let (name, unit) = (l.name, l.unit);
    let (runs_head, ns_head) = (format!("runs per {unit}"), format!("ns per {unit}"));
    Ok(format!(
        "\nWhere the {name}'s time goes in the kernel: one more shadowai trial ({secs} s) \
         with `kernel.bpf_stats_enabled=1` (adds ~20–30 ns to every program run, ours and \
         others'), per-program `run_cnt`/`run_time_ns` deltas from `bpftool prog show -j` (the \
         agent's programs: those loaded after it started and before the trial). \
         This trial: {rate:.0} per second = {iter_ns:.0} ns per {unit} (the bare median above: \
         {bare_ns:.0} ns); agent userspace {cpu:.1} % of a core.\n\n{}\n\
         The agent's programs cost {total:.0} ns of each {iter_ns:.0} ns {unit}; the \
         {unit} is {gap:.0} ns slower than bare's median. The rest of that gap is outside \
         the programs: the hooks' own code around them (split below), ring-buffer wake-ups of \
         the agent, the agent's threads taking a core from the loop, and the machine's load \
         (bare's own min–max above).\n",
        table(
            &[
                "program",
                "type",
                runs_head.as_str(),
                "ns per run",
                ns_head.as_str(),
            ],
            &rows
        ),
        secs = ctx.secs,
        gap = iter_ns - bare_ns,
    ))
}

fn rows_of(rows: &[Option<Vec<String>>]) -> Vec<Vec<String>> {
    rows.iter().flatten().cloned().collect()
}

fn verdict(ours: f64, peer: f64) -> &'static str {
    match (ours >= 0.95, ours >= peer) {
        (true, true) => "**met**",
        (false, true) => "**missed** (ahead of bpftrace, under 0.95×)",
        (true, false) => "**missed** (≥ 0.95× but behind bpftrace)",
        (false, false) => "**missed**",
    }
}
