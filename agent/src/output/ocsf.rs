//! OCSF 1.8 rendering: DNS Activity (4003) and Network Activity (4001).
//!
//! Typed serialisation: [`render`] borrows the event into structs that serde writes straight
//! to the output, so an event costs no JSON tree, no per-field `String` and no map inserts
//! (addresses, uids and the command line are formatted into the writer). Fields are declared
//! in alphabetical order: the bytes are the same as the sorted-map rendering they replace.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::correlate::dns_cache::NameScope;
use crate::enrich::ProcInfo;
use crate::event::{DnsRecord, Event, EventKind, NameSource, Signal, TlsInfo};

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

/// One event as an OCSF object, borrowing from the event; serialise it with serde.
#[derive(Serialize)]
pub struct Ocsf<'a> {
    action: &'static str,
    action_id: u8,
    activity_id: u32,
    activity_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answers: Option<Answers<'a>>,
    category_name: &'static str,
    category_uid: u32,
    class_name: &'static str,
    class_uid: u32,
    connection_info: ConnectionInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Uid<'a>>,
    device: Hostname<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disposition: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disposition_id: Option<u8>,
    dst_endpoint: Endpoint<'a>,
    metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<Query<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcode_id: Option<u16>,
    severity_id: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_endpoint: Option<Endpoint<'a>>,
    time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
    type_uid: u32,
    #[serde(skip_serializing_if = "Unmapped::is_empty")]
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Actor<'a> {
    process: Process<'a>,
    user: User<'a>,
}

#[derive(Serialize)]
struct Process<'a> {
    cmd_line: Joined<'a>,
    file: File<'a>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_process: Option<Pid>,
    pid: u32,
}

#[derive(Serialize)]
struct File<'a> {
    name: &'a str,
    path: &'a str,
}

#[derive(Serialize)]
struct Pid {
    pid: u32,
}

#[derive(Serialize)]
struct User<'a> {
    name: &'a str,
    #[serde(serialize_with = "as_text")]
    uid: u32,
}

#[derive(Serialize)]
struct Uid<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Hostname<'a> {
    hostname: &'a str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(serialize_with = "ip_text")]
    ip: SocketAddr,
    #[serde(serialize_with = "port")]
    port: SocketAddr,
}

#[derive(Serialize)]
struct ConnectionInfo {
    direction: &'static str,
    direction_id: u8,
    protocol_name: &'static str,
}

#[derive(Serialize)]
struct Metadata {
    product: Product,
    version: &'static str,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Query<'a> {
    class: &'static str,
    hostname: &'a str,
    packet_uid: u16,
    #[serde(rename = "type")]
    qtype: &'static str,
}

/// DNS answers as OCSF answer objects.
struct Answers<'a>(&'a [DnsRecord]);

#[derive(Serialize)]
struct Answer<'a> {
    class: &'static str,
    rdata: &'a str,
    ttl: u32,
    #[serde(rename = "type")]
    rtype: &'static str,
}

impl Serialize for Answers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for a in self.0 {
            seq.serialize_element(&Answer {
                class: "IN",
                rdata: &a.rdata,
                ttl: a.ttl,
                rtype: a.rtype,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Tls<'a> {
    ja4_fingerprint_list: [Ja4<'a>; 1],
    sni: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<TlsVersion>,
}

#[derive(Serialize)]
struct Ja4<'a> {
    value: &'a str,
}

#[derive(Default, Serialize)]
struct Unmapped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    alpn: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_hello_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_hello_partial: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ech: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quic_version: Option<QuicVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signals: Option<&'a [Signal]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_cookie: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
}

impl Unmapped<'_> {
    fn is_empty(&self) -> bool {
        self.alpn.is_none()
            && self.client_hello_len.is_none()
            && self.client_hello_partial.is_none()
            && self.ech.is_none()
            && self.name_source.is_none()
            && self.quic_version.is_none()
            && self.signals.is_none()
            && self.socket_cookie.is_none()
            && self.systemd_unit.is_none()
    }
}

/// The command line, joined with spaces while it is written.
struct Joined<'a>(&'a [String]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(arg)?;
        }
        Ok(())
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct TlsVersion(u16);

impl Serialize for TlsVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            0x0304 => s.serialize_str("1.3"),
            0x0303 => s.serialize_str("1.2"),
            0x0302 => s.serialize_str("1.1"),
            0x0301 => s.serialize_str("1.0"),
            other => s.collect_str(&format_args!("0x{other:04x}")),
        }
    }
}

struct QuicVersion(u32);

impl Serialize for QuicVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("0x{:08x}", self.0))
    }
}

fn as_text<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ip_text<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&a.ip())
}

fn port<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(a.port())
}

fn name_source(src: NameSource) -> &'static str {
    match src {
        NameSource::Sni => "sni",
        NameSource::Dns => "dns",
        NameSource::DnsCache(NameScope::Process) => "dns_cache_process",
        NameSource::DnsCache(NameScope::Namespace) => "dns_cache_namespace",
        NameSource::DnsCache(NameScope::Host) => "dns_cache_host",
    }
}

fn actor(p: &ProcInfo) -> Actor<'_> {
    let file_name = p.exe.rsplit('/').next().unwrap_or(&p.exe);
    Actor {
        process: Process {
            cmd_line: Joined(&p.cmdline),
            file: File {
                name: file_name,
                path: &p.exe,
            },
            name: &p.name,
            parent_process: p.ppid.map(|pid| Pid { pid }),
            pid: p.pid,
        },
        user: User {
            name: &p.user,
            uid: p.uid,
        },
    }
}

fn tls(t: &TlsInfo) -> Tls<'_> {
    Tls {
        ja4_fingerprint_list: [Ja4 { value: &t.ja4 }],
        sni: &t.sni,
        version: t.versions.first().map(|v| TlsVersion(*v)),
    }
}

fn unmapped(e: &Event) -> Unmapped<'_> {
    let mut u = Unmapped {
        name_source: e.name_source.map(name_source),
        signals: (!e.signals.is_empty()).then_some(e.signals.as_slice()),
        systemd_unit: e.process.as_ref().and_then(|p| p.systemd_unit.as_deref()),
        socket_cookie: (e.cookie != 0).then_some(e.cookie),
        ..Unmapped::default()
    };
    if let Some(t) = &e.tls {
        u.alpn = Some(&t.alpn);
        u.ech = Some(t.ech);
        u.client_hello_len = Some(t.hello_len);
        u.client_hello_partial = t.partial.then_some(true);
        u.quic_version = t.quic_version.map(QuicVersion);
    }
    u
}

/// Renders one event as an OCSF object (borrowing the event and the device).
pub fn render<'a>(e: &'a Event, device: &'a Device) -> Ocsf<'a> {
    let (class_uid, class_name, activity_id, activity_name) = match e.kind {
        EventKind::DnsQuery => (CLASS_DNS, "DNS Activity", 1, "Query"),
        EventKind::DnsResponse => (CLASS_DNS, "DNS Activity", 2, "Response"),
        EventKind::Connect => (CLASS_NETWORK, "Network Activity", 1, "Open"),
        EventKind::TlsClientHello | EventKind::QuicClientHello => {
            (CLASS_NETWORK, "Network Activity", 6, "Traffic")
        }
    };
    let response = e.kind == EventKind::DnsResponse;
    let dns_response = e.dns.as_ref().filter(|_| response);
    Ocsf {
        action: if e.blocked { "Denied" } else { "Allowed" },
        action_id: if e.blocked { 2 } else { 1 },
        activity_id,
        activity_name,
        actor: e.process.as_deref().map(actor),
        answers: dns_response.map(|d| Answers(&d.answers)),
        category_name: "Network Activity",
        category_uid: CATEGORY_NETWORK,
        class_name,
        class_uid,
        connection_info: ConnectionInfo {
            direction: "Outbound",
            direction_id: 2,
            protocol_name: e.protocol,
        },
        container: e
            .process
            .as_ref()
            .and_then(|p| p.container_id.as_deref())
            .map(|uid| Uid { uid }),
        device: Hostname {
            hostname: &device.hostname,
        },
        disposition: e.blocked.then_some("Blocked"),
        disposition_id: e.blocked.then_some(2),
        dst_endpoint: Endpoint {
            hostname: e.hostname.as_deref(),
            ip: e.dst,
            port: e.dst,
        },
        metadata: Metadata {
            product: Product {
                name: "shadowai-agent",
                vendor_name: "shadowai",
                version: env!("CARGO_PKG_VERSION"),
            },
            version: "1.8.0",
        },
        query: e.dns.as_ref().map(|d| Query {
            class: "IN",
            hostname: &d.question,
            packet_uid: d.id,
            qtype: qtype_name(d.qtype),
        }),
        rcode: dns_response.map(|d| rcode_name(d.rcode)),
        rcode_id: dns_response.map(|d| d.rcode.min(6)),
        severity_id: 1,
        src_endpoint: e.src.map(|src| Endpoint {
            hostname: None,
            ip: src,
            port: src,
        }),
        time: e.time_ms,
        tls: e.tls.as_ref().map(tls),
        type_uid: class_uid * 100 + activity_id,
        unmapped: unmapped(e),
    }
}
