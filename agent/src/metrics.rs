//! Prometheus text exposition on a local address (`/metrics`).
//!
//! The event loop publishes a [`Snapshot`] once a second; the HTTP side only formats the
//! latest one, so scrapes never touch the hot path. Labels are bounded (hook, program,
//! reason, protocol, kind): never a domain or a pid.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use shadowai_decode::DecodeStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Events emitted, by kind.
    pub events: Vec<(&'static str, u64)>,
    /// Ring-buffer records that could not be read.
    pub record_errors: u64,
    /// Kernel-side drops: (program, reason, count).
    pub drops: Vec<(&'static str, &'static str, u64)>,
    /// Hooks and whether they are attached.
    pub hooks: Vec<(&'static str, bool)>,
    pub decode: DecodeStats,
    pub processes: usize,
    pub dns_cache_entries: usize,
    /// Pre-formatted extra families (e.g. `run`'s uplink and findings counters).
    pub extra: String,
}

pub type Shared = Arc<Mutex<Snapshot>>;

/// Formats a snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP shadowai_events_total Events emitted by kind.\n# TYPE shadowai_events_total counter"
    );
    for (k, v) in &s.events {
        let _ = writeln!(o, "shadowai_events_total{{kind=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP shadowai_kernel_drops_total Events lost or cut in the kernel, by program and reason.\n# TYPE shadowai_kernel_drops_total counter"
    );
    for (p, r, v) in &s.drops {
        let _ = writeln!(
            o,
            "shadowai_kernel_drops_total{{program=\"{p}\",reason=\"{r}\"}} {v}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP shadowai_record_errors_total Ring-buffer records that could not be read.\n# TYPE shadowai_record_errors_total counter\nshadowai_record_errors_total {}",
        s.record_errors
    );
    let _ = writeln!(
        o,
        "# HELP shadowai_hook_attached Whether an eBPF hook is attached (1) or unavailable (0).\n# TYPE shadowai_hook_attached gauge"
    );
    for (h, a) in &s.hooks {
        let _ = writeln!(o, "shadowai_hook_attached{{hook=\"{h}\"}} {}", u8::from(*a));
    }
    let _ = writeln!(
        o,
        "# HELP shadowai_decode_packets_total Packets handed to each decoder.\n# TYPE shadowai_decode_packets_total counter"
    );
    let _ = writeln!(
        o,
        "# HELP shadowai_decode_errors_total Decode errors by protocol and kind.\n# TYPE shadowai_decode_errors_total counter"
    );
    for (name, p) in [
        ("dns", &s.decode.dns),
        ("tls", &s.decode.tls),
        ("quic", &s.decode.quic),
    ] {
        let _ = writeln!(
            o,
            "shadowai_decode_packets_total{{proto=\"{name}\"}} {}",
            p.packets
        );
        let _ = writeln!(
            o,
            "shadowai_decode_messages_total{{proto=\"{name}\"}} {}",
            p.decoded
        );
        let _ = writeln!(
            o,
            "shadowai_decode_truncated_total{{proto=\"{name}\"}} {}",
            p.truncated_input
        );
        let _ = writeln!(
            o,
            "shadowai_decode_expired_total{{proto=\"{name}\"}} {}",
            p.expired
        );
        for (kind, v) in &p.errors {
            let _ = writeln!(
                o,
                "shadowai_decode_errors_total{{proto=\"{name}\",kind=\"{}\"}} {v}",
                kind.as_str()
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP shadowai_processes Processes in the attribution table.\n# TYPE shadowai_processes gauge\nshadowai_processes {}",
        s.processes
    );
    let _ = writeln!(
        o,
        "# HELP shadowai_dns_cache_entries Address-to-name entries cached.\n# TYPE shadowai_dns_cache_entries gauge\nshadowai_dns_cache_entries {}",
        s.dns_cache_entries
    );
    // The daemon's uplink and spool families (`run`); they were collected but never served.
    o.push_str(&s.extra);
    o
}

/// Serves `GET /metrics` on `addr` until the task is dropped. Anything else gets 404;
/// requests are read with a size cap and a timeout.
pub async fn serve(addr: SocketAddr, shared: Shared) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let shared = shared.clone();
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
            let (status, body) = match path {
                Some("/metrics") => {
                    let snap = match shared.lock() {
                        Ok(s) => s.clone(),
                        Err(p) => p.into_inner().clone(),
                    };
                    ("200 OK", render(&snap))
                }
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bounded_labels() {
        let s = Snapshot {
            events: vec![("dns_query", 3)],
            drops: vec![("skb_egress", "ringbuf_full", 2)],
            hooks: vec![("connect4", true), ("sched_process_exec", false)],
            extra: "shadowai_spool_batches 4\n".into(),
            ..Snapshot::default()
        };
        let t = render(&s);
        assert!(t.contains("shadowai_events_total{kind=\"dns_query\"} 3"));
        assert!(t.contains(
            "shadowai_kernel_drops_total{program=\"skb_egress\",reason=\"ringbuf_full\"} 2"
        ));
        assert!(t.contains("shadowai_hook_attached{hook=\"sched_process_exec\"} 0"));
        assert!(t.contains("shadowai_decode_packets_total{proto=\"quic\"} 0"));
        assert!(t.ends_with("shadowai_spool_batches 4\n"), "{t}");
    }
}
