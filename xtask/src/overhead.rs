//! `cargo xtask bench-overhead`: what the agent costs the host. A loopback
//! connect()+accept()+close() loop (the worst case for per-connection hooks) runs bare and
//! then with `shadowai-agent watch` attached; the report gives connects/s for both, the
//! ratio, and the agent's CPU time and peak RSS while it watched.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// SO_LINGER with a zero timeout: close() sends RST instead of entering TIME_WAIT.
fn rst_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and a pointer to a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Connects per second over `secs` seconds (single thread, loopback).
fn connect_rate(secs: f64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        // Close with RST (SO_LINGER 0) so TIME_WAIT sockets do not pile up over the run.
        rst_on_close(&c);
        drop(c);
        drop(s);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// (utime + stime in clock ticks, VmHWM in KiB) of a process.
fn usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    let mut status = String::new();
    if let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/status")) {
        let _ = f.read_to_string(&mut status);
    }
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks, hwm)
}

/// Connect rates with the agent attached (`extra` args for `watch`), its CPU % and peak RSS.
fn with_agent(
    agent: &Path,
    extra: &[&str],
    secs: f64,
    trials: u32,
) -> Result<(Vec<f64>, f64, u64)> {
    let mut child = Command::new(agent)
        .args(["watch", "--json"])
        .args(extra)
        .env("SHADOWAI_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the agent")?;
    std::thread::sleep(Duration::from_secs(3)); // load + attach
    let (t0, _) = usage(child.id());
    let wall = Instant::now();
    let mut with = Vec::new();
    for _ in 0..trials {
        with.push(connect_rate(secs)?);
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let (t1, hwm) = usage(child.id());
    let _ = child.kill();
    let _ = child.wait();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = (t1.saturating_sub(t0)) as f64 / hz / elapsed * 100.0;
    Ok((with, cpu, hwm))
}

/// Medians of one agent binary: (default rate, CPU, RSS), (every-connect rate, CPU, RSS).
type Side = ((f64, f64, u64), (f64, f64, u64));

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
        "  {label} agent (default, in-kernel de-dup): {w:>9.0} connects/s ({:.2}x), agent CPU {cpu:.1}% of a core, peak RSS {} MiB",
        w / bare,
        hwm / 1024
    );
    println!(
        "  {label} agent, every connect reported:     {e:>9.0} connects/s ({:.2}x), agent CPU {cpu_every:.1}% of a core, peak RSS {} MiB",
        e / bare,
        hwm_every / 1024
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
