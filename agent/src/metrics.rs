//! Prometheus metrics: one `prometheus-client` registry per process, served on a local
//! address at `/metrics` (OpenMetrics text).
//!
//! Two kinds of metric live in the registry: counters and gauges the pipeline stages
//! update as they go (atomics, registered by [`crate::run::health`]), and the sensor's
//! figures, which the event loop publishes as a [`Snapshot`] once a second and
//! [`SensorCollector`] encodes at scrape time, so a scrape never touches the hot path.
//! Labels are bounded (hook, program, reason, protocol, kind, stage): never a domain or a
//! pid.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use shadowai_decode::DecodeStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sensor's figures as of the last housekeeping tick.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Events emitted, by kind.
    pub events: Vec<(&'static str, u64)>,
    /// Ring-buffer records that could not be read.
    pub record_errors: u64,
    /// Kernel-side drops: (program, reason, count).
    pub drops: Vec<(&'static str, &'static str, u64)>,
    /// DNS messages the kernel did not send up as repeats within the de-dup window:
    /// (direction, count).
    pub dns_deduplicated: Vec<(&'static str, u64)>,
    /// Hooks and whether they are attached.
    pub hooks: Vec<(&'static str, bool)>,
    pub decode: DecodeStats,
    pub processes: usize,
    pub dns_cache_entries: usize,
    /// Refused sockets torn down, by result (`sensor::teardown::Stats::pairs`).
    pub teardowns: Vec<(&'static str, u64)>,
}

/// The latest snapshot, shared between the event loop (writer) and scrapes (readers).
pub type Shared = Arc<Mutex<Snapshot>>;

/// Encodes the latest [`Snapshot`] on each scrape.
#[derive(Debug)]
pub struct SensorCollector(pub Shared);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in samples {
        let e = m.encode_family(&labels)?;
        match ty {
            MetricType::Gauge => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(e)?,
            _ => ConstCounter::new(v).encode(e)?,
        }
    }
    Ok(())
}

impl Collector for SensorCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().clone();
        let c = MetricType::Counter;
        family(
            &mut enc,
            "shadowai_events",
            "Events emitted by kind.",
            c,
            s.events.iter().map(|(k, v)| (vec![("kind", *k)], *v)),
        )?;
        family(
            &mut enc,
            "shadowai_kernel_drops",
            "Events lost or cut in the kernel, by program and reason.",
            c,
            s.drops
                .iter()
                .map(|(p, r, v)| (vec![("program", *p), ("reason", *r)], *v)),
        )?;
        family(
            &mut enc,
            "shadowai_kernel_dns_deduplicated",
            "DNS messages not sent up because the same owner sent or received the same message (but its ID) within the de-dup window, by direction.",
            c,
            s.dns_deduplicated
                .iter()
                .map(|(d, v)| (vec![("direction", *d)], *v)),
        )?;
        family(
            &mut enc,
            "shadowai_record_errors",
            "Ring-buffer records that could not be read.",
            c,
            [(vec![], s.record_errors)],
        )?;
        family(
            &mut enc,
            "shadowai_enforce_teardowns",
            "Refused sockets destroyed so the client fails at once, by result (destroyed, gone, failed, queue_full).",
            c,
            s.teardowns.iter().map(|(r, v)| (vec![("result", *r)], *v)),
        )?;
        family(
            &mut enc,
            "shadowai_hook_attached",
            "Whether an eBPF hook is attached (1) or unavailable (0).",
            MetricType::Gauge,
            s.hooks
                .iter()
                .map(|(h, a)| (vec![("hook", *h)], u64::from(*a))),
        )?;
        let protos = [
            ("dns", &s.decode.dns),
            ("tls", &s.decode.tls),
            ("quic", &s.decode.quic),
        ];
        for (name, help, get) in [
            (
                "shadowai_decode_packets",
                "Packets handed to each decoder.",
                (|p| p.packets) as fn(&shadowai_decode::stats::ProtoStats) -> u64,
            ),
            (
                "shadowai_decode_messages",
                "Messages decoded, by protocol.",
                |p| p.decoded,
            ),
            (
                "shadowai_decode_truncated",
                "Inputs cut short (a message needed more bytes than arrived), by protocol.",
                |p| p.truncated_input,
            ),
            (
                "shadowai_decode_expired",
                "Partial flows given up on, by protocol.",
                |p| p.expired,
            ),
        ] {
            family(
                &mut enc,
                name,
                help,
                c,
                protos.iter().map(|(n, p)| (vec![("proto", *n)], get(p))),
            )?;
        }
        family(
            &mut enc,
            "shadowai_decode_errors",
            "Decode errors by protocol and kind.",
            c,
            protos.iter().flat_map(|(n, p)| {
                p.errors
                    .iter()
                    .map(|(k, v)| (vec![("proto", *n), ("kind", k.as_str())], *v))
            }),
        )?;
        family(
            &mut enc,
            "shadowai_processes",
            "Processes in the attribution table.",
            MetricType::Gauge,
            [(vec![], s.processes as u64)],
        )?;
        family(
            &mut enc,
            "shadowai_dns_cache_entries",
            "Address-to-name entries cached.",
            MetricType::Gauge,
            [(vec![], s.dns_cache_entries as u64)],
        )
    }
}

/// The registry in the text format, or the reason it could not be encoded.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// Serves `registry` at `http://addr/metrics` on a task of its own; a failure to bind is
/// logged (the agent keeps running without metrics).
pub fn spawn_server(addr: SocketAddr, registry: Registry) {
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        if let Err(e) = serve(addr, registry).await {
            tracing::error!(%addr, error = %e, "metrics server stopped");
        }
    });
}

/// Serves `GET /metrics` on `addr` until the task is dropped. Anything else gets 404;
/// requests are read with a size cap and a timeout.
pub async fn serve(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.lines().next().and_then(|l| {
                let mut it = l.split(' ');
                (it.next() == Some("GET")).then(|| it.next()).flatten()
            });
            let (status, ctype, body) = match path.map(|p| (p, render(&registry))) {
                Some(("/metrics", Ok(body))) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Some(("/metrics", Err(e))) => {
                    tracing::error!(error = %e, "encoding metrics");
                    (
                        "500 Internal Server Error",
                        "text/plain",
                        "metrics could not be encoded\n".into(),
                    )
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn renders_bounded_labels() {
        let s = Snapshot {
            events: vec![("dns_query", 3)],
            drops: vec![("skb_egress", "ringbuf_full", 2)],
            dns_deduplicated: vec![("egress", 39), ("ingress", 38)],
            hooks: vec![("connect4", true), ("sched_process_exec", false)],
            ..Snapshot::default()
        };
        let mut r = Registry::default();
        r.register_collector(Box::new(SensorCollector(Arc::new(Mutex::new(s)))));
        let t = render(&r).unwrap();
        assert!(
            t.contains("shadowai_events_total{kind=\"dns_query\"} 3"),
            "{t}"
        );
        assert!(t.contains(
            "shadowai_kernel_drops_total{program=\"skb_egress\",reason=\"ringbuf_full\"} 2"
        ));
        assert!(t.contains("shadowai_kernel_dns_deduplicated_total{direction=\"egress\"} 39"));
        assert!(t.contains("shadowai_kernel_dns_deduplicated_total{direction=\"ingress\"} 38"));
        assert!(t.contains("shadowai_hook_attached{hook=\"sched_process_exec\"} 0"));
        assert!(t.contains("shadowai_decode_packets_total{proto=\"quic\"} 0"));
        let types = t.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = t.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "every family has HELP and TYPE");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}
