//! OCSF 1.8 rendering: DNS Activity (4003) and Network Activity (4001).

use serde_json::{Map, Value, json};

use crate::event::{Event, EventKind, NameSource};

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

/// Renders one event as an OCSF object.
pub fn render(e: &Event, device: &Device) -> Value {
    let (class_uid, class_name, activity_id, activity_name) = match e.kind {
        EventKind::DnsQuery => (CLASS_DNS, "DNS Activity", 1, "Query"),
        EventKind::DnsResponse => (CLASS_DNS, "DNS Activity", 2, "Response"),
        EventKind::Connect => (CLASS_NETWORK, "Network Activity", 1, "Open"),
        EventKind::TlsClientHello | EventKind::QuicClientHello => {
            (CLASS_NETWORK, "Network Activity", 6, "Traffic")
        }
    };
    let mut o = Map::new();
    o.insert("class_uid".into(), json!(class_uid));
    o.insert("class_name".into(), json!(class_name));
    o.insert("category_uid".into(), json!(CATEGORY_NETWORK));
    o.insert("category_name".into(), json!("Network Activity"));
    o.insert("activity_id".into(), json!(activity_id));
    o.insert("activity_name".into(), json!(activity_name));
    o.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    o.insert("severity_id".into(), json!(1));
    if e.blocked {
        o.insert("action_id".into(), json!(2));
        o.insert("action".into(), json!("Denied"));
        o.insert("disposition_id".into(), json!(2));
        o.insert("disposition".into(), json!("Blocked"));
    } else {
        o.insert("action_id".into(), json!(1));
        o.insert("action".into(), json!("Allowed"));
    }
    o.insert("time".into(), json!(e.time_ms));
    o.insert(
        "metadata".into(),
        json!({
            "version": "1.8.0",
            "product": {"name": "shadowai-agent", "vendor_name": "shadowai", "version": env!("CARGO_PKG_VERSION")},
        }),
    );
    o.insert("device".into(), json!({"hostname": device.hostname}));
    if let Some(p) = &e.process {
        let file_name = p.exe.rsplit('/').next().unwrap_or(&p.exe);
        let mut proc = json!({
            "pid": p.pid,
            "name": p.name,
            "file": {"path": p.exe, "name": file_name},
            "cmd_line": p.cmdline.join(" "),
        });
        if let Some(ppid) = p.ppid {
            proc["parent_process"] = json!({"pid": ppid});
        }
        o.insert(
            "actor".into(),
            json!({"process": proc, "user": {"name": p.user, "uid": p.uid.to_string()}}),
        );
        if let Some(c) = &p.container_id {
            o.insert("container".into(), json!({"uid": c}));
        }
    }
    if let Some(src) = e.src {
        o.insert(
            "src_endpoint".into(),
            json!({"ip": src.ip().to_string(), "port": src.port()}),
        );
    }
    let mut dst = json!({"ip": e.dst.ip().to_string(), "port": e.dst.port()});
    if let Some(h) = &e.hostname {
        dst["hostname"] = json!(h);
    }
    o.insert("dst_endpoint".into(), dst);
    o.insert(
        "connection_info".into(),
        json!({"protocol_name": e.protocol, "direction_id": 2, "direction": "Outbound"}),
    );
    if let Some(d) = &e.dns {
        o.insert(
            "query".into(),
            json!({"hostname": d.question, "type": qtype_name(d.qtype), "class": "IN", "packet_uid": d.id}),
        );
        if e.kind == EventKind::DnsResponse {
            o.insert("rcode_id".into(), json!(d.rcode.min(6)));
            o.insert("rcode".into(), json!(rcode_name(d.rcode)));
            let answers: Vec<Value> = d
                .answers
                .iter()
                .map(|a| json!({"rdata": a.rdata, "type": a.rtype, "ttl": a.ttl, "class": "IN"}))
                .collect();
            o.insert("answers".into(), Value::Array(answers));
        }
    }
    if let Some(t) = &e.tls {
        let mut tls = json!({
            "sni": t.sni,
            "ja4_fingerprint_list": [{"value": t.ja4}],
        });
        if let Some(v) = t.versions.first() {
            tls["version"] = json!(tls_version(*v));
        }
        o.insert("tls".into(), tls);
    }
    let mut unmapped = Map::new();
    if let Some(src) = e.name_source {
        let s = match src {
            NameSource::Sni => "sni".to_string(),
            NameSource::Dns => "dns".to_string(),
            NameSource::DnsCache(scope) => format!(
                "dns_cache_{}",
                serde_json::to_value(scope)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
        };
        unmapped.insert("name_source".into(), json!(s));
        unmapped.insert("name_confidence".into(), json!(src.naming().confidence));
    }
    if !e.signals.is_empty() {
        unmapped.insert("signals".into(), json!(e.signals));
    }
    if let Some(u) = e.process.as_ref().and_then(|p| p.systemd_unit.as_ref()) {
        unmapped.insert("systemd_unit".into(), json!(u));
    }
    if let Some(t) = &e.tls {
        unmapped.insert("alpn".into(), json!(t.alpn));
        unmapped.insert("ech".into(), json!(t.ech));
        unmapped.insert("client_hello_len".into(), json!(t.hello_len));
        if t.partial {
            unmapped.insert("client_hello_partial".into(), json!(true));
        }
        if let Some(v) = t.quic_version {
            unmapped.insert("quic_version".into(), json!(format!("0x{v:08x}")));
        }
    }
    if e.cookie != 0 {
        unmapped.insert("socket_cookie".into(), json!(e.cookie));
    }
    if !unmapped.is_empty() {
        o.insert("unmapped".into(), Value::Object(unmapped));
    }
    Value::Object(o)
}

fn tls_version(v: u16) -> String {
    match v {
        0x0304 => "1.3".into(),
        0x0303 => "1.2".into(),
        0x0302 => "1.1".into(),
        0x0301 => "1.0".into(),
        other => format!("0x{other:04x}"),
    }
}
