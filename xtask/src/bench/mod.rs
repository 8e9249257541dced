//! `cargo xtask bench`: every speed figure the project claims, measured beside its peer in one
//! run, written to `bench/REPORT.md`. Each figure is the median of several alternating
//! trials (min–max beside it); ratios are taken per trial, so load from other work on the
//! machine falls on both sides alike.
//!
//! Sections: (1) loopback connect and DNS loops — bare, `shadowai-agent run`, a bpftrace
//! counter; (2) event throughput and loss; (3) classification speed; (4) replay vs tshark on a
//! ≥ 1 M-packet capture from real clients; (5) durable collector ingest (SQLite, PostgreSQL)
//! and the fleet simulation (two replicas on one PostgreSQL, one killed mid-ingest).

pub mod agent;
pub mod bpfstats;
mod capture;
mod classify;
mod events;
mod fleet;
mod hookprof;
mod ingest;
mod loopback;
mod replay;
mod report;
pub mod stats;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// `cargo xtask bench` options (defaults fit the whole run in 15 minutes on the project's
/// 2-core machine).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Trials per figure (alternating between the sides compared).
    #[arg(long, default_value_t = 3)]
    pub trials: u32,
    /// Seconds per loopback / event-rate trial.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Only these sections (repeatable): loopback, events, classify, replay, ingest, fleet.
    #[arg(long = "only", value_name = "SECTION")]
    pub only: Vec<String>,
    /// Packets in the replay capture.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_packets: usize,
    /// Trials of the replay comparison (tshark takes minutes per million packets on a loaded
    /// machine).
    #[arg(long, default_value_t = 2)]
    pub replay_trials: u32,
    /// Simulated agents uploading at once in the ingest trials.
    #[arg(long, default_value_t = 32)]
    pub ingest_agents: u64,
    /// Seconds per ingest trial.
    #[arg(long, default_value_t = 8)]
    pub ingest_secs: u64,
    /// Rows of seeded history in the fleet simulation (the issue's tens of millions).
    #[arg(long, default_value_t = 10_000_000)]
    pub fleet_history: u64,
    /// Simulated agents in the fleet simulation.
    #[arg(long, default_value_t = 10_000)]
    pub fleet_agents: u64,
    /// Seconds of live ingest in the fleet simulation (replica A killed half-way); 0: until
    /// every agent has uploaded once (≈ 4 min at 10,000 agents here).
    #[arg(long, default_value_t = 60)]
    pub fleet_live_secs: u64,
    /// Use the release binaries already in target/ (skip the build step).
    #[arg(long)]
    pub no_build: bool,
    /// A `classify` bench executable built from an earlier commit: run beside this build's,
    /// alternating, to measure a matcher change before/after in the same run.
    #[arg(long, value_name = "EXE")]
    pub classify_before: Option<PathBuf>,
    /// A `shadowai-agent` release binary built from an earlier commit: the loopback section
    /// runs it as one more side of every trial, to measure an agent change before/after.
    #[arg(long, value_name = "EXE")]
    pub agent_before: Option<PathBuf>,
    /// A `shadowai-collector` release binary built from an earlier commit: the ingest
    /// section runs it as one more side of every trial on both stores, to measure a collector
    /// change before/after in the same run.
    #[arg(long, value_name = "EXE")]
    pub collector_before: Option<PathBuf>,
}

/// What every section needs.
pub struct Ctx {
    pub root: PathBuf,
    pub target: PathBuf,
    pub work: PathBuf,
    pub trials: u32,
    pub secs: f64,
    pub replay_packets: usize,
    pub replay_trials: u32,
    pub ingest_agents: u64,
    pub ingest_secs: u64,
    pub fleet_history: u64,
    pub fleet_agents: u64,
    pub fleet_live_secs: u64,
    pub classify_before: Option<PathBuf>,
    pub agent_before: Option<PathBuf>,
    pub collector_before: Option<PathBuf>,
}

const SECTIONS: [&str; 6] = [
    "loopback", "events", "classify", "replay", "ingest", "fleet",
];

/// Runs a command with its output discarded unless it fails.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The peers and tools, from Debian, when missing (bpftrace, tshark, perf, tcpdump).
fn install_peers() -> Result<()> {
    let missing: Vec<&str> = [
        ("bpftrace", "bpftrace"),
        ("tshark", "tshark"),
        ("perf", "linux-perf"),
        ("tcpdump", "tcpdump"),
    ]
    .into_iter()
    .filter(|(bin, _)| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(|(_, pkg)| pkg)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("[bench] installing {missing:?}");
    run_quiet(Command::new("apt-get").args(["update", "-qq"]))?;
    run_quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = version("uname", "-r");
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!(
        "{cores} cores ({cpu}), Linux {kernel}, load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The release agent and the two bench executables the sections run (the collector's
/// `ingest`, which starts the release collector built with it, and the rules' `classify`).
fn build(root: &Path) -> Result<()> {
    eprintln!("[bench] building release binaries");
    super::run(
        Command::new("cargo")
            .args(["build", "--release", "-p", "shadowai-agent"])
            .current_dir(root),
    )?;
    for (pkg, bench) in [
        ("shadowai-collector", "ingest"),
        ("shadowai-rules", "classify"),
    ] {
        super::run(
            Command::new("cargo")
                .args(["bench", "-p", pkg, "--bench", bench, "--no-run"])
                .current_dir(root),
        )?;
    }
    Ok(())
}

/// The newest built bench executable `name` (`target/release/deps/NAME-HASH`). The sections
/// run it directly: a nested `cargo bench` from inside `cargo xtask` sees other environment
/// variables and may rebuild the whole dependency tree.
pub fn bench_exe(target: &Path, name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let deps = target.join("release/deps");
    let prefix = format!("{name}-");
    std::fs::read_dir(&deps)
        .with_context(|| format!("reading {}", deps.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix)
                .is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
                && e.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .with_context(|| {
            format!(
                "no {name} bench executable in {}: build it (`cargo bench -p … --bench {name} \
                 --no-run`) or run without --no-build",
                deps.display()
            )
        })
}

pub fn run(root: &Path, target: &Path, args: &BenchArgs) -> Result<()> {
    for s in &args.only {
        if !SECTIONS.contains(&s.as_str()) {
            bail!("unknown section {s:?}: one of {}", SECTIONS.join(", "));
        }
    }
    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    install_peers()?;
    if !args.no_build {
        build(root)?;
    }
    let ctx = Ctx {
        root: root.to_path_buf(),
        target: target.to_path_buf(),
        work: agent::work_dir(target),
        trials: args.trials.max(1),
        secs: args.secs,
        replay_packets: args.replay_packets,
        replay_trials: args.replay_trials.max(1),
        ingest_agents: args.ingest_agents,
        ingest_secs: args.ingest_secs,
        fleet_history: args.fleet_history,
        fleet_agents: args.fleet_agents,
        fleet_live_secs: args.fleet_live_secs,
        classify_before: args.classify_before.clone(),
        agent_before: args.agent_before.clone(),
        collector_before: args.collector_before.clone(),
    };
    std::fs::create_dir_all(&ctx.work)?;
    let agent_bin = target.join("release/shadowai-agent");
    let started = Instant::now();
    let mut command = String::from("cargo xtask bench");
    for a in std::env::args().skip(2) {
        command.push(' ');
        command.push_str(&a);
    }
    let header = format!(
        "# shadowai bench report\n\n\
         Written by `{command}` (run as root) on {}. Machine: {}. Peers: {}, {}.\n\n\
         **Read the ratios, not the absolute figures.** This machine is shared with other \
         engineers compiling at the same time; absolute rates move with their load. Every figure \
         is the median of several trials with min–max, and each comparison alternates its sides \
         trial by trial (the ratio is taken within a trial), so the load falls on both alike.\n",
        super::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default(),
        machine(),
        version("bpftrace", "--version"),
        version("tshark", "--version"),
    );
    let mut report = report::Report::new(&root.join("bench/REPORT.md"), &header);
    report.flush()?;
    type Section<'a> = (&'a str, &'a str, Box<dyn Fn() -> Result<String> + 'a>);
    let sections: Vec<Section> = vec![
        (
            "loopback",
            "1. Loopback connect and DNS loops: bare vs shadowai vs bpftrace",
            Box::new(|| loopback::run(&ctx, &agent_bin)),
        ),
        (
            "events",
            "2. Event throughput and loss",
            Box::new(|| events::run(&ctx, &agent_bin)),
        ),
        (
            "classify",
            "3. Classification speed (≥ 10,000 patterns)",
            Box::new(|| classify::run(&ctx)),
        ),
        (
            "replay",
            "4. Replay vs tshark",
            Box::new(|| replay::run(&ctx, &agent_bin)),
        ),
        (
            "ingest",
            "5a. Collector ingest, durable, over HTTPS",
            Box::new(|| ingest::run(&ctx)),
        ),
        (
            "fleet",
            "5b. Fleet simulation: simulated agents, two replicas, one PostgreSQL",
            Box::new(|| fleet::run(&ctx)),
        ),
    ];
    let mut failed = Vec::new();
    for (name, title, f) in sections {
        if !want(name) {
            continue;
        }
        let t = Instant::now();
        eprintln!("[bench] section {name}");
        let body = match f() {
            Ok(b) => b,
            Err(e) => {
                failed.push(name);
                format!("**This section failed:** {e:#}\n")
            }
        };
        report.section(
            title,
            &format!(
                "{body}\n_(section took {:.0} s)_\n",
                t.elapsed().as_secs_f64()
            ),
        )?;
    }
    report.section(
        "Run",
        &format!(
            "Whole run: {:.1} minutes (target < 15).",
            started.elapsed().as_secs_f64() / 60.0
        ),
    )?;
    eprintln!("[bench] wrote {}", root.join("bench/REPORT.md").display());
    if !failed.is_empty() {
        bail!("sections failed: {}", failed.join(", "));
    }
    Ok(())
}
