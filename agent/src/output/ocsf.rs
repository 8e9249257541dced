//! OCSF 1.8 rendering: DNS Activity (4003) and Network Activity (4001).
//!
//! Typed serialisation: [`write`] writes each field of the event straight to the output
//! ([`super::json`]): no JSON tree, no per-field `String`, no map inserts, keys as static
//! bytes. Fields go out in alphabetical order: the bytes are the same as the sorted-map
//! rendering this replaced (the golden tests pin them).

use std::io::{self, Write};
use std::net::SocketAddr;

use super::json::Obj;
use crate::correlate::dns_cache::NameScope;
use crate::enrich::ProcInfo;
use crate::event::{Event, EventKind, NameSource, Signal, TlsInfo};

/// Host facts stamped on every event.
#[derive(Clone, Debug)]
pub struct Device {
    pub hostname: String,
}

pub fn qtype_name(t: u16) -> &'static str {
    match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => "OTHER",
    }
}

fn rcode_name(r: u16) -> &'static str {
    match r {
        0 => "NoError",
        1 => "FormErr",
        2 => "ServFail",
        3 => "NXDomain",
        4 => "NotImp",
        5 => "Refused",
        _ => "Other",
    }
}

fn name_source(src: NameSource) -> &'static str {
    match src {
        NameSource::Sni => "sni",
        NameSource::Dns => "dns",
        NameSource::DnsCache(NameScope::Process) => "dns_cache_process",
        NameSource::DnsCache(NameScope::Resolver) => "dns_cache_resolver",
        NameSource::DnsCache(NameScope::Namespace) => "dns_cache_namespace",
        NameSource::DnsCache(NameScope::Host) => "dns_cache_host",
    }
}

fn signal(s: Signal) -> &'static str {
    match s {
        Signal::EncryptedDns => "encrypted_dns",
        Signal::Ech => "ech",
        Signal::NeverResolved => "never_resolved",
        Signal::LocalResolver => "local_resolver",
    }
}

fn tls_version(w: &mut impl Write, v: u16) -> io::Result<()> {
    match v {
        0x0304 => w.write_all(b"\"1.3\""),
        0x0303 => w.write_all(b"\"1.2\""),
        0x0302 => w.write_all(b"\"1.1\""),
        0x0301 => w.write_all(b"\"1.0\""),
        other => write!(w, "\"0x{other:04x}\""),
    }
}

fn actor<W: Write>(o: &mut Obj<'_, W>, p: &ProcInfo) -> io::Result<()> {
    o.obj("process", |o| {
        // Names, never what was typed into the program (`cmdline.rs`).
        let w = o.key("cmd_line")?;
        super::json::string(w, &super::cmdline::redacted(&p.cmdline))?;
        o.obj("file", |o| {
            o.str("name", p.exe.rsplit('/').next().unwrap_or(&p.exe))?;
            o.str("path", &p.exe)
        })?;
        o.str("name", &p.name)?;
        if let Some(ppid) = p.ppid {
            o.obj("parent_process", |o| o.uint("pid", u64::from(ppid)))?;
        }
        o.uint("pid", u64::from(p.pid))
    })?;
    o.obj("user", |o| {
        o.str("name", &p.user)?;
        let w = o.key("uid")?;
        w.write_all(b"\"")?;
        super::json::uint(w, u64::from(p.uid))?;
        w.write_all(b"\"")
    })
}

fn endpoint<W: Write>(o: &mut Obj<'_, W>, hostname: Option<&str>, a: SocketAddr) -> io::Result<()> {
    if let Some(h) = hostname {
        o.str("hostname", h)?;
    }
    o.ip("ip", a.ip())?;
    o.uint("port", u64::from(a.port()))
}

fn tls<W: Write>(o: &mut Obj<'_, W>, t: &TlsInfo) -> io::Result<()> {
    o.arr("ja4_fingerprint_list", |a| {
        a.obj(|o| o.str("value", &t.ja4))
    })?;
    o.opt_str("sni", t.sni.as_deref())?;
    if let Some(v) = t.versions.first() {
        tls_version(o.key("version")?, *v)?;
    }
    Ok(())
}

fn unmapped<W: Write>(o: &mut Obj<'_, W>, e: &Event) -> io::Result<()> {
    let unit = e.process.as_ref().and_then(|p| p.systemd_unit.as_deref());
    if e.tls.is_none()
        && e.name_source.is_none()
        && e.signals.is_empty()
        && e.cookie == 0
        && unit.is_none()
    {
        return Ok(());
    }
    o.obj("unmapped", |o| {
        if let Some(t) = &e.tls {
            o.arr("alpn", |a| t.alpn.iter().try_for_each(|p| a.str(p)))?;
            o.uint("client_hello_len", t.hello_len as u64)?;
            if t.partial {
                o.bool("client_hello_partial", true)?;
            }
            o.bool("ech", t.ech)?;
        }
        if let Some(src) = e.name_source {
            let confidence = match src.naming().confidence {
                shadowai_api::Confidence::Low => "low",
                shadowai_api::Confidence::Medium => "medium",
                shadowai_api::Confidence::High => "high",
            };
            o.str("name_confidence", confidence)?;
            o.str("name_source", name_source(src))?;
        }
        if let Some(v) = e.tls.as_ref().and_then(|t| t.quic_version) {
            write!(o.key("quic_version")?, "\"0x{v:08x}\"")?;
        }
        if !e.signals.is_empty() {
            o.arr("signals", |a| {
                e.signals.iter().try_for_each(|s| a.str(signal(*s)))
            })?;
        }
        if e.cookie != 0 {
            o.uint("socket_cookie", e.cookie)?;
        }
        if let Some(u) = unit {
            o.str("systemd_unit", u)?;
        }
        Ok(())
    })
}

/// `"action":…,"activity_name":…` (the head of every event), by action and activity.
macro_rules! head {
    ($action:literal, $action_id:literal, $activity_id:literal, $activity:literal) => {
        concat!(
            r#""action":""#,
            $action,
            r#"","action_id":"#,
            $action_id,
            r#","activity_id":"#,
            $activity_id,
            r#","activity_name":""#,
            $activity,
            '"'
        )
    };
}

/// `"category_name":…,"class_uid":…` by class.
macro_rules! class {
    ($name:literal, $uid:literal) => {
        concat!(
            r#""category_name":"Network Activity","category_uid":"#,
            4,
            r#","class_name":""#,
            $name,
            r#"","class_uid":"#,
            $uid
        )
    };
}

const METADATA: &str = concat!(
    r#""metadata":{"product":{"name":"shadowai-agent","vendor_name":"shadowai","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"version":"1.8.0"}"#
);

/// The event's constant runs — head, class, `type_uid` (= class_uid × 100 + activity_id) —
/// written as one copy each: the fields every event of a kind carries alike.
fn constant_runs(kind: &EventKind, blocked: bool) -> (&'static str, &'static str, &'static str) {
    const DNS: &str = class!("DNS Activity", 4003);
    const NET: &str = class!("Network Activity", 4001);
    match (kind, blocked) {
        (EventKind::DnsQuery, false) => {
            (head!("Allowed", 1, 1, "Query"), DNS, r#""type_uid":400301"#)
        }
        (EventKind::DnsQuery, true) => {
            (head!("Denied", 2, 1, "Query"), DNS, r#""type_uid":400301"#)
        }
        (EventKind::DnsResponse, false) => (
            head!("Allowed", 1, 2, "Response"),
            DNS,
            r#""type_uid":400302"#,
        ),
        (EventKind::DnsResponse, true) => (
            head!("Denied", 2, 2, "Response"),
            DNS,
            r#""type_uid":400302"#,
        ),
        (EventKind::Connect, false) => {
            (head!("Allowed", 1, 1, "Open"), NET, r#""type_uid":400101"#)
        }
        (EventKind::Connect, true) => (head!("Denied", 2, 1, "Open"), NET, r#""type_uid":400101"#),
        (EventKind::TlsClientHello | EventKind::QuicClientHello, false) => (
            head!("Allowed", 1, 6, "Traffic"),
            NET,
            r#""type_uid":400106"#,
        ),
        (EventKind::TlsClientHello | EventKind::QuicClientHello, true) => (
            head!("Denied", 2, 6, "Traffic"),
            NET,
            r#""type_uid":400106"#,
        ),
    }
}

/// Writes one event as an OCSF object (one line of JSON, no newline).
pub fn write(w: &mut impl Write, e: &Event, device: &Device) -> io::Result<()> {
    let (head, class, type_uid) = constant_runs(&e.kind, e.blocked);
    let dns_response = e.dns.as_ref().filter(|_| e.kind == EventKind::DnsResponse);
    let mut o = Obj::open(w)?;
    o.fields(head)?;
    if let Some(p) = e.process.as_deref() {
        o.obj("actor", |o| actor(o, p))?;
    }
    if let Some(d) = dns_response {
        o.arr("answers", |a| {
            d.answers.iter().try_for_each(|r| {
                a.obj(|o| {
                    o.str("class", "IN")?;
                    o.str("rdata", &r.rdata)?;
                    o.uint("ttl", u64::from(r.ttl))?;
                    o.str("type", r.rtype)
                })
            })
        })?;
    }
    o.fields(class)?;
    o.obj("connection_info", |o| {
        o.fields(r#""direction":"Outbound","direction_id":2"#)?;
        o.str("protocol_name", e.protocol)
    })?;
    if let Some(c) = e.process.as_ref().and_then(|p| p.container_id.as_deref()) {
        o.obj("container", |o| o.str("uid", c))?;
    }
    o.obj("device", |o| o.str("hostname", &device.hostname))?;
    if e.blocked {
        o.str("disposition", "Blocked")?;
        o.uint("disposition_id", 2)?;
    }
    o.obj("dst_endpoint", |o| {
        endpoint(o, e.hostname.as_deref(), e.dst)
    })?;
    o.fields(METADATA)?;
    if let Some(d) = &e.dns {
        o.obj("query", |o| {
            o.str("class", "IN")?;
            o.str("hostname", &d.question)?;
            o.uint("packet_uid", u64::from(d.id))?;
            o.str("type", qtype_name(d.qtype))
        })?;
    }
    if let Some(d) = dns_response {
        o.str("rcode", rcode_name(d.rcode))?;
        o.uint("rcode_id", u64::from(d.rcode.min(6)))?;
    }
    o.fields(r#""severity_id":1"#)?;
    if let Some(src) = e.src {
        o.obj("src_endpoint", |o| endpoint(o, None, src))?;
    }
    o.int("time", e.time_ms)?;
    if let Some(t) = &e.tls {
        o.obj("tls", |o| tls(o, t))?;
    }
    o.fields(type_uid)?;
    unmapped(&mut o, e)?;
    o.close()
}
