//! Every capture from nDPI's test suite: the names replay extracts equal the `Hostname/SNI`
//! nDPI printed for the TLS, QUIC and DNS flows (and no SNI where nDPI found none), and the
//! JA4 hashes agree with nDPI's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use shadowai_decode::replay::{decode_file, flow_hash};
use shadowai_decode::{Decoded, Limits, Transport};

struct NdpiFlow {
    proto: u8,
    a: SocketAddr,
    b: SocketAddr,
    label: String,
    hostname: Option<String>,
    ja4: Option<String>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("[{key}: "))? + key.len() + 3;
    let end = line[start..].find(']')? + start;
    Some(&line[start..end])
}

fn parse_ndpi(text: &str) -> Vec<NdpiFlow> {
    let mut flows = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let Some((num, rest)) = t.split_once('\t') else {
            continue;
        };
        if num.parse::<u32>().is_err() || !(rest.starts_with("TCP ") || rest.starts_with("UDP ")) {
            continue;
        }
        let mut words = rest.split_whitespace();
        let proto = if words.next() == Some("TCP") { 6 } else { 17 };
        let a: SocketAddr = words.next().unwrap().parse().unwrap();
        let _arrow = words.next();
        let b: SocketAddr = words.next().unwrap().parse().unwrap();
        flows.push(NdpiFlow {
            proto,
            a,
            b,
            label: field(rest, "proto").unwrap().to_string(),
            hostname: field(rest, "Hostname/SNI").map(str::to_string),
            ja4: field(rest, "JA4").map(str::to_string),
        });
    }
    flows
}

/// JA4 parts both implementations agree on: protocol, version, counts, both hashes. (nDPI
/// prints `d` for SNI-less hellos and takes ALPN chars differently; the spec is followed here.)
fn ja4_comparable(j: &str) -> String {
    format!("{}{}{}", &j[0..3], &j[4..8], &j[10..])
}

const CAPTURES: &[&str] = &[
    "dns.pcap",
    "doh.pcapng",
    "malformed_dns.pcap",
    "no_sni.pcap",
    "quic-27.pcap",
    "quic-29.pcap",
    "quic-v2.pcapng",
    "tls_1.3_unidirectional_client.pcapng",
];

#[test]
fn names_match_ndpi_on_every_capture() {
    let mut checked_names = 0;
    let mut checked_no_sni = 0;
    let mut checked_ja4 = 0;
    for cap in CAPTURES {
        let path = common::fixture(&format!("ndpi/{cap}"));
        let text =
            std::fs::read_to_string(common::fixture(&format!("ndpi/{cap}.ndpi.out"))).unwrap();
        let out = decode_file(&path, Limits::default()).unwrap();
        assert!(out.error.is_none(), "{cap}: {:?}", out.error);
        // First name and first hello per flow.
        let mut first_name: HashMap<u64, String> = HashMap::new();
        let mut first_hello = HashMap::new();
        // Keyed by the 5-tuple (nDPI's flows): the decoder's own flow id of a TLS
        // connection also numbers the connection (a reused 4-tuple is a new flow).
        let proto = |t: &Transport| if matches!(t, Transport::Tcp) { 6 } else { 17 };
        for d in &out.decoded {
            match d {
                Decoded::Dns {
                    src,
                    dst,
                    transport,
                    msg,
                    ..
                } => {
                    if let Some(q) = msg.questions.first() {
                        let key = flow_hash(proto(transport), *src, *dst);
                        first_name.entry(key).or_insert_with(|| q.name.clone());
                    }
                }
                Decoded::ClientHello {
                    src,
                    dst,
                    transport,
                    hello,
                    ..
                } => {
                    let key = flow_hash(proto(transport), *src, *dst);
                    first_hello.entry(key).or_insert(hello);
                    if let Some(s) = &hello.sni {
                        first_name.entry(key).or_insert_with(|| s.clone());
                    }
                }
            }
        }
        let flows = parse_ndpi(&text);
        assert!(!flows.is_empty(), "{cap}: no flows parsed from nDPI output");
        for f in flows {
            let relevant = ["TLS", "QUIC", "DNS", "DoH"]
                .iter()
                .any(|p| f.label.contains(p));
            assert!(relevant, "{cap}: unexpected nDPI protocol {}", f.label);
            let key = flow_hash(f.proto, f.a, f.b);
            match &f.hostname {
                Some(h) => {
                    assert_eq!(
                        first_name.get(&key),
                        Some(h),
                        "{cap}: flow {} <-> {}",
                        f.a,
                        f.b
                    );
                    checked_names += 1;
                }
                None => {
                    if let Some(hello) = first_hello.get(&key) {
                        assert_eq!(hello.sni, None, "{cap}: flow {} <-> {}", f.a, f.b);
                        checked_no_sni += 1;
                    }
                }
            }
            if let (Some(j), Some(hello)) = (&f.ja4, first_hello.get(&key)) {
                assert_eq!(
                    ja4_comparable(&hello.ja4),
                    ja4_comparable(j),
                    "{cap}: JA4 of {}",
                    f.a
                );
                checked_ja4 += 1;
            }
        }
    }
    // 2 DNS (dns.pcap) + 1 (malformed_dns) + 3 named TLS (no_sni) + 1 TLS + 3 QUIC.
    assert_eq!(checked_names, 10);
    // doh.pcapng's SNI-less hello and the four ESNI hellos of no_sni.pcap.
    assert_eq!(checked_no_sni, 5);
    assert_eq!(checked_ja4, 12);
}

#[test]
fn malformed_dns_is_counted() {
    let out = decode_file(
        &common::fixture("ndpi/malformed_dns.pcap"),
        Limits::default(),
    )
    .unwrap();
    let dns = &out.decode_stats.dns;
    assert_eq!(dns.packets, 6);
    assert_eq!(dns.decoded, 2);
    assert_eq!(dns.error_total(), 4);
}

#[test]
fn ech_is_reported_where_ndpi_saw_esni() {
    let out = decode_file(&common::fixture("ndpi/no_sni.pcap"), Limits::default()).unwrap();
    let with_ech = common::hellos(&out.decoded)
        .iter()
        .filter(|h| h.ech.is_some())
        .count();
    assert_eq!(with_ech, 4);
}
