//! `shadowai-agent watch`: live events to stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::event::{Event, EventKind};
use crate::live::Live;
use crate::output::{ocsf, text};
use crate::sensor::SensorOptions;

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

pub async fn run(opts: WatchOptions) -> anyhow::Result<()> {
    let mut live = Live::start(&opts.sensor, opts.poll)?;
    if let Some(addr) = opts.metrics {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(live.collector()));
        crate::metrics::spawn_server(addr, registry);
    }
    let device = ocsf::Device {
        hostname: hostname(),
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut events = Vec::new();
    while live.next_batch(&mut events).await {
        for e in events.drain(..) {
            if wanted(&opts, &e) {
                let _ = write_event(&mut stdout, &e, opts.json, &device);
            }
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
    opts.pids.is_empty()
        || e.process
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
        ocsf::write(&mut *w, e, device)?;
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
