//! One human-readable line per event, for `watch` without `--json`.

use crate::event::{Event, EventKind};

pub fn render(e: &Event) -> String {
    let time = {
        let secs = e.time_ms.div_euclid(1000);
        let ms = e.time_ms.rem_euclid(1000);
        let day = secs.rem_euclid(86_400);
        format!(
            "{:02}:{:02}:{:02}.{ms:03}",
            day / 3600,
            (day / 60) % 60,
            day % 60
        )
    };
    let kind = match e.kind {
        EventKind::DnsQuery => "DNS?",
        EventKind::DnsResponse => "DNS!",
        EventKind::TlsClientHello => "TLS ",
        EventKind::QuicClientHello => "QUIC",
        EventKind::Connect => "CONN",
    };
    let who = match &e.process {
        Some(p) => {
            let mut s = format!("pid={} {} user={}", p.pid, p.exe, p.user);
            if let Some(c) = &p.container_id {
                s.push_str(&format!(" container={}", &c[..c.len().min(12)]));
            } else if let Some(u) = &p.systemd_unit {
                s.push_str(&format!(" unit={u}"));
            }
            s
        }
        None => "pid=?".to_string(),
    };
    let name = e.hostname.as_deref().unwrap_or("-");
    let mut line = format!(
        "{time} {kind} {:<4} {who} -> {} name={name}",
        e.protocol, e.dst
    );
    if let Some(d) = &e.dns
        && e.kind == EventKind::DnsResponse
    {
        let ans: Vec<&str> = d.answers.iter().map(|a| a.rdata.as_str()).collect();
        line.push_str(&format!(" answers=[{}]", ans.join(",")));
    }
    if let Some(t) = &e.tls {
        if !t.alpn.is_empty() {
            line.push_str(&format!(" alpn={}", t.alpn.join(",")));
        }
        line.push_str(&format!(" ja4={}", t.ja4));
    }
    if e.blocked {
        line.push_str(" BLOCKED");
    }
    for s in &e.signals {
        line.push_str(&format!(
            " !{}",
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ));
    }
    line
}
