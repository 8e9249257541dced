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

const CATEGORY_NETWORK: u32 = 4;
const CLASS_NETWORK: u32 = 4001;
const CLASS_DNS: u32 = 4003;

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
        let w = o.key("cmd_line")?;
        let mut cmd = String::new();
        for (i, arg) in p.cmdline.iter().enumerate() {
            if i > 0 {
                cmd.push(' ');
            }
            cmd.push_str(arg);
        }
        super::json::string(w, &cmd)?;
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

/// Writes one event as an OCSF object (one line of JSON, no newline).
pub fn write(w: &mut impl Write, e: &Event, device: &Device) -> io::Result<()> {
    let (class_uid, class_name, activity_id, activity_name) = match e.kind {
        EventKind::DnsQuery => (CLASS_DNS, "DNS Activity", 1, "Query"),
        EventKind::DnsResponse => (CLASS_DNS, "DNS Activity", 2, "Response"),
        EventKind::Connect => (CLASS_NETWORK, "Network Activity", 1, "Open"),
        EventKind::TlsClientHello | EventKind::QuicClientHello => {
            (CLASS_NETWORK, "Network Activity", 6, "Traffic")
        }
    };
    let dns_response = e.dns.as_ref().filter(|_| e.kind == EventKind::DnsResponse);
    let mut o = Obj::open(w)?;
    o.str("action", if e.blocked { "Denied" } else { "Allowed" })?;
    o.uint("action_id", if e.blocked { 2 } else { 1 })?;
    o.uint("activity_id", u64::from(activity_id))?;
    o.str("activity_name", activity_name)?;
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
    o.str("category_name", "Network Activity")?;
    o.uint("category_uid", u64::from(CATEGORY_NETWORK))?;
    o.str("class_name", class_name)?;
    o.uint("class_uid", u64::from(class_uid))?;
    o.obj("connection_info", |o| {
        o.str("direction", "Outbound")?;
        o.uint("direction_id", 2)?;
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
    o.obj("metadata", |o| {
        o.obj("product", |o| {
            o.str("name", "shadowai-agent")?;
            o.str("vendor_name", "shadowai")?;
            o.str("version", env!("CARGO_PKG_VERSION"))
        })?;
        o.str("version", "1.8.0")
    })?;
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
    o.uint("severity_id", 1)?;
    if let Some(src) = e.src {
        o.obj("src_endpoint", |o| endpoint(o, None, src))?;
    }
    o.int("time", e.time_ms)?;
    if let Some(t) = &e.tls {
        o.obj("tls", |o| tls(o, t))?;
    }
    o.uint("type_uid", u64::from(class_uid * 100 + activity_id))?;
    unmapped(&mut o, e)?;
    o.close()
}
