//! Golden renderings: the typed serialisation writes exactly these bytes (the same bytes the
//! sorted-map rendering it replaced wrote for these events).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use crate::correlate::dns_cache::NameScope;
use crate::enrich::ProcInfo;
use crate::event::{DnsInfo, DnsRecord, Event, EventKind, NameSource, Signal, TlsInfo};

use super::ocsf::{Device, write};

fn device() -> Device {
    Device {
        hostname: "host-1".into(),
    }
}

fn line(e: &Event) -> String {
    let mut out = Vec::new();
    write(&mut out, e, &device()).unwrap();
    String::from_utf8(out).unwrap()
}

fn base(kind: EventKind) -> Event {
    Event {
        time_ms: 1_764_000_000_123,
        kind,
        protocol: "udp",
        process: None,
        src: None,
        dst: "192.0.2.53:53".parse().unwrap(),
        hostname: None,
        name_source: None,
        dns: None,
        tls: None,
        signals: Vec::new(),
        cookie: 0,
        blocked: false,
    }
}

fn dns_response() -> Event {
    let mut e = base(EventKind::DnsResponse);
    e.src = Some("10.0.0.2:40000".parse().unwrap());
    e.hostname = Some("api.openai.com".into());
    e.name_source = Some(NameSource::Dns);
    e.dns = Some(DnsInfo {
        id: 4660,
        question: "api.openai.com".into(),
        qtype: 1,
        rcode: 0,
        answers: vec![
            DnsRecord {
                name: "api.openai.com".into(),
                rtype: "CNAME",
                ttl: 60,
                rdata: "edge.openai.com".into(),
            },
            DnsRecord {
                name: "edge.openai.com".into(),
                rtype: "A",
                ttl: 300,
                rdata: "198.51.100.7".into(),
            },
        ],
        edns: true,
        transport: "udp",
    });
    e
}

fn quic_hello_with_process() -> Event {
    let mut e = base(EventKind::QuicClientHello);
    e.protocol = "quic";
    e.process = Some(Arc::new(ProcInfo {
        pid: 4242,
        ppid: Some(1),
        name: "curl".into(),
        exe: "/usr/bin/curl".into(),
        cmdline: vec!["curl".into(), "--http3".into(), "https://x \"y\"".into()],
        uid: 1000,
        user: "alice".into(),
        groups: vec!["alice".into()],
        container_id: Some("0123456789abcdef".into()),
        systemd_unit: Some("user@1000.service".into()),
        exited_ns: None,
        tag: None,
        ..ProcInfo::default()
    }));
    e.src = Some("[2001:db8::2]:50000".parse().unwrap());
    e.dst = "[2001:db8::1]:443".parse().unwrap();
    e.hostname = Some("chat.example.ai".into());
    e.name_source = Some(NameSource::DnsCache(NameScope::Namespace));
    e.tls = Some(TlsInfo {
        sni: Some("chat.example.ai".into()),
        alpn: vec!["h3".into()],
        versions: vec![0x0304, 0x0303],
        ja4: "q13d0312h3_55b375c5d22e_06cda9e17597".into(),
        ech: true,
        hello_len: 1830,
        partial: true,
        quic_version: Some(1),
    });
    e.signals = vec![Signal::Ech, Signal::NeverResolved];
    e.cookie = 77;
    e
}

fn blocked_connect() -> Event {
    let mut e = base(EventKind::Connect);
    e.protocol = "tcp";
    e.dst = "203.0.113.9:443".parse().unwrap();
    e.tls = Some(TlsInfo {
        versions: vec![0x7f1c],
        ..TlsInfo::default()
    });
    e.blocked = true;
    e
}

#[test]
fn dns_response_renders_the_golden_line() {
    let want = r#"{"action":"Allowed","action_id":1,"activity_id":2,"activity_name":"Response","answers":[{"class":"IN","rdata":"edge.openai.com","ttl":60,"type":"CNAME"},{"class":"IN","rdata":"198.51.100.7","ttl":300,"type":"A"}],"category_name":"Network Activity","category_uid":4,"class_name":"DNS Activity","class_uid":4003,"connection_info":{"direction":"Outbound","direction_id":2,"protocol_name":"udp"},"device":{"hostname":"host-1"},"dst_endpoint":{"hostname":"api.openai.com","ip":"192.0.2.53","port":53},"metadata":{"product":{"name":"shadowai-agent","vendor_name":"shadowai","version":"0.1.0"},"version":"1.8.0"},"query":{"class":"IN","hostname":"api.openai.com","packet_uid":4660,"type":"A"},"rcode":"NoError","rcode_id":0,"severity_id":1,"src_endpoint":{"ip":"10.0.0.2","port":40000},"time":1764000000123,"type_uid":400302,"unmapped":{"name_confidence":"high","name_source":"dns"}}"#;
    assert_eq!(line(&dns_response()), want);
    // And it is valid JSON.
    let _: serde_json::Value = serde_json::from_str(want).unwrap();
}

#[test]
fn quic_hello_with_process_renders_the_golden_line() {
    let want = r#"{"action":"Allowed","action_id":1,"activity_id":6,"activity_name":"Traffic","actor":{"process":{"cmd_line":"curl --http3 …","file":{"name":"curl","path":"/usr/bin/curl"},"name":"curl","parent_process":{"pid":1},"pid":4242},"user":{"name":"alice","uid":"1000"}},"category_name":"Network Activity","category_uid":4,"class_name":"Network Activity","class_uid":4001,"connection_info":{"direction":"Outbound","direction_id":2,"protocol_name":"quic"},"container":{"uid":"0123456789abcdef"},"device":{"hostname":"host-1"},"dst_endpoint":{"hostname":"chat.example.ai","ip":"2001:db8::1","port":443},"metadata":{"product":{"name":"shadowai-agent","vendor_name":"shadowai","version":"0.1.0"},"version":"1.8.0"},"severity_id":1,"src_endpoint":{"ip":"2001:db8::2","port":50000},"time":1764000000123,"tls":{"ja4_fingerprint_list":[{"value":"q13d0312h3_55b375c5d22e_06cda9e17597"}],"sni":"chat.example.ai","version":"1.3"},"type_uid":400106,"unmapped":{"alpn":["h3"],"client_hello_len":1830,"client_hello_partial":true,"ech":true,"name_confidence":"low","name_source":"dns_cache_namespace","quic_version":"0x00000001","signals":["ech","never_resolved"],"socket_cookie":77,"systemd_unit":"user@1000.service"}}"#;
    assert_eq!(line(&quic_hello_with_process()), want);
    // And it is valid JSON.
    let _: serde_json::Value = serde_json::from_str(want).unwrap();
}

#[test]
fn blocked_connect_renders_the_golden_line() {
    let want = r#"{"action":"Denied","action_id":2,"activity_id":1,"activity_name":"Open","category_name":"Network Activity","category_uid":4,"class_name":"Network Activity","class_uid":4001,"connection_info":{"direction":"Outbound","direction_id":2,"protocol_name":"tcp"},"device":{"hostname":"host-1"},"disposition":"Blocked","disposition_id":2,"dst_endpoint":{"ip":"203.0.113.9","port":443},"metadata":{"product":{"name":"shadowai-agent","vendor_name":"shadowai","version":"0.1.0"},"version":"1.8.0"},"severity_id":1,"time":1764000000123,"tls":{"ja4_fingerprint_list":[{"value":""}],"sni":null,"version":"0x7f1c"},"type_uid":400101,"unmapped":{"alpn":[],"client_hello_len":0,"ech":false}}"#;
    assert_eq!(line(&blocked_connect()), want);
    // And it is valid JSON.
    let _: serde_json::Value = serde_json::from_str(want).unwrap();
}

/// Every kind × action: the constant runs written as one copy each carry the OCSF ids the
/// kind and action call for, and the line is one valid JSON object.
#[test]
fn every_kind_and_action_has_its_ids() {
    let kinds = [
        (EventKind::DnsQuery, 4003, "DNS Activity", 1, "Query"),
        (EventKind::DnsResponse, 4003, "DNS Activity", 2, "Response"),
        (EventKind::Connect, 4001, "Network Activity", 1, "Open"),
        (
            EventKind::TlsClientHello,
            4001,
            "Network Activity",
            6,
            "Traffic",
        ),
        (
            EventKind::QuicClientHello,
            4001,
            "Network Activity",
            6,
            "Traffic",
        ),
    ];
    for (kind, class_uid, class_name, activity_id, activity) in kinds {
        for blocked in [false, true] {
            let mut e = base(kind.clone());
            e.blocked = blocked;
            let v: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
            let (action, action_id) = if blocked {
                ("Denied", 2)
            } else {
                ("Allowed", 1)
            };
            assert_eq!(v["action"], action);
            assert_eq!(v["action_id"], action_id);
            assert_eq!(v["activity_id"], activity_id);
            assert_eq!(v["activity_name"], activity);
            assert_eq!(v["category_uid"], 4);
            assert_eq!(v["category_name"], "Network Activity");
            assert_eq!(v["class_uid"], class_uid);
            assert_eq!(v["class_name"], class_name);
            assert_eq!(v["type_uid"], class_uid * 100 + activity_id);
            assert_eq!(v["severity_id"], 1);
            assert_eq!(
                v["metadata"]["product"]["version"],
                env!("CARGO_PKG_VERSION")
            );
            assert_eq!(v["connection_info"]["protocol_name"], "udp");
        }
    }
}
