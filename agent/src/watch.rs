//! `shadowai-agent watch`: the live pipeline from the ring buffer to stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::correlate::{Clock, Correlator, monotonic_ns};
use crate::error::AgentError;
use crate::event::{Event, EventKind};
use crate::metrics::{self, Shared, Snapshot};
use crate::output::{ocsf, text};
use crate::sensor::records::{self, KernelEvent};
use crate::sensor::{Sensor, SensorOptions};

#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub json: bool,
    pub metrics: Option<SocketAddr>,
    /// Only print events of these processes (all when empty).
    pub pids: Vec<u32>,
    /// Print connect events too (they are many on a busy host).
    pub connects: bool,
    pub sensor: SensorOptions,
    /// How often the ring buffer is drained when no wakeup came.
    pub poll: Duration,
}

/// Counts per event kind, in a fixed order for metrics.
#[derive(Default)]
struct Counts([u64; 5]);

impl Counts {
    const NAMES: [&'static str; 5] = [
        "dns_query",
        "dns_response",
        "tls_client_hello",
        "quic_client_hello",
        "connect",
    ];
    fn add(&mut self, k: &EventKind) {
        let i = match k {
            EventKind::DnsQuery => 0,
            EventKind::DnsResponse => 1,
            EventKind::TlsClientHello => 2,
            EventKind::QuicClientHello => 3,
            EventKind::Connect => 4,
        };
        self.0[i] += 1;
    }
    fn pairs(&self) -> Vec<(&'static str, u64)> {
        Self::NAMES
            .iter()
            .copied()
            .zip(self.0.iter().copied())
            .collect()
    }
}

pub async fn run(opts: WatchOptions) -> anyhow::Result<()> {
    let (sensor, ring) = Sensor::start(&opts.sensor)?;
    let attached: Vec<&str> = sensor
        .hooks
        .iter()
        .filter(|h| h.attached)
        .map(|h| h.name)
        .collect();
    tracing::info!(hooks = ?attached, "sensor started");
    let hooks: Vec<(&'static str, bool)> =
        sensor.hooks.iter().map(|h| (h.name, h.attached)).collect();

    let shared: Shared = Default::default();
    if let Some(addr) = opts.metrics {
        let s = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, s).await {
                tracing::error!(%addr, error = %e, "metrics server stopped");
            }
        });
    }

    // SAFETY: the ring buffer owns its map fd and moves into the AsyncFd, so the fd stays
    // open for exactly as long as it is registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| AgentError::Io {
        what: "registering the ring buffer with the event loop".into(),
        source: e.into(),
    })?;

    let device = ocsf::Device {
        hostname: hostname(),
    };
    let mut corr = Correlator::new(Clock::system());
    let mut counts = Counts::default();
    let mut record_errors = 0u64;
    let mut poll = tokio::time::interval(opts.poll);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut events = Vec::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            r = ring.readable_mut() => { if let Ok(mut g) = r { g.clear_ready(); } }
            _ = poll.tick() => {}
            _ = housekeeping.tick() => {
                corr.tick(monotonic_ns());
                let mut s = Snapshot {
                    events: counts.pairs(),
                    record_errors,
                    drops: sensor.drops(),
                    hooks: hooks.clone(),
                    decode: corr.decode_stats().clone(),
                    processes: corr.procs.len(),
                    dns_cache_entries: corr.dns.len(),
                };
                if let Ok(mut g) = shared.lock() {
                    std::mem::swap(&mut *g, &mut s);
                }
            }
        }
        let rb = ring.get_mut();
        while let Some(item) = rb.next() {
            match records::parse(&item) {
                Ok(KernelEvent::Exec(e)) => corr.on_exec(&e),
                Ok(KernelEvent::Exit { pid, ts_ns }) => corr.on_exit(pid, ts_ns),
                Ok(KernelEvent::Connect(c)) => {
                    let e = corr.on_connect(&c);
                    events.push(e);
                }
                Ok(KernelEvent::Packet(p)) => corr.on_kernel_packet(&p, &mut events),
                Err(err) => {
                    record_errors += 1;
                    tracing::debug!(?err, "unreadable ring-buffer record");
                }
            }
        }
        for e in events.drain(..) {
            counts.add(&e.kind);
            if !wanted(&opts, &e) {
                continue;
            }
            let _ = write_event(&mut stdout, &e, opts.json, &device);
        }
        if stdout.flush().is_err() {
            break; // stdout closed (e.g. piped into head): stop quietly
        }
    }
    tracing::info!("stopping; eBPF links detach with the agent");
    Ok(())
}

fn wanted(opts: &WatchOptions, e: &Event) -> bool {
    if e.kind == EventKind::Connect && !opts.connects {
        return false;
    }
    if opts.pids.is_empty() {
        return true;
    }
    e.process
        .as_ref()
        .is_some_and(|p| opts.pids.contains(&p.pid))
}

pub fn write_event(
    w: &mut impl Write,
    e: &Event,
    json: bool,
    device: &ocsf::Device,
) -> std::io::Result<()> {
    if json {
        let v = ocsf::render(e, device);
        serde_json::to_writer(&mut *w, &v).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    } else {
        writeln!(w, "{}", text::render(e))
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
