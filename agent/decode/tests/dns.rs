//! DNS: answers the agent relies on (CNAME chains, AAAA, HTTPS with ALPN/ECH/hints, EDNS),
//! DNS over TCP split across segments, malformed and truncated messages counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, SVCB, SvcParamKey, SvcParamValue,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS};
use hickory_proto::rr::{Name, RData as H, Record, RecordType};
use shadowai_decode::{Decoded, Decoder, ErrorKind, Hint, Limits, RData, Transport, dns};

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// What a resolver answers for an AI service fronted by a CDN, with an HTTPS record.
fn response() -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0x4242).set_message_type(MessageType::Response);
    m.add_query(Query::query(name("chatgpt.com."), RecordType::HTTPS));
    m.add_answer(Record::from_rdata(
        name("chatgpt.com."),
        300,
        H::CNAME(CNAME(name("chatgpt.com.cdn.cloudflare.net."))),
    ));
    m.add_answer(Record::from_rdata(
        name("chatgpt.com.cdn.cloudflare.net."),
        60,
        H::CNAME(CNAME(name("edge.example.net."))),
    ));
    m.add_answer(Record::from_rdata(
        name("edge.example.net."),
        30,
        H::A(A(Ipv4Addr::new(104, 18, 32, 47))),
    ));
    m.add_answer(Record::from_rdata(
        name("edge.example.net."),
        30,
        H::AAAA(AAAA(Ipv6Addr::from_str("2606:4700::6812:202f").unwrap())),
    ));
    let svcb = SVCB::new(
        1,
        Name::root(),
        vec![
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h3".into(), "h2".into()])),
            ),
            (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(vec![A(Ipv4Addr::new(104, 18, 32, 47))])),
            ),
            (
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(vec![0xfe, 0x0d, 0, 4, 1, 2, 3, 4])),
            ),
        ],
    );
    m.add_answer(Record::from_rdata(
        name("edge.example.net."),
        30,
        H::HTTPS(HTTPS(svcb)),
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().unwrap()
}

#[test]
fn https_cname_aaaa_edns() {
    let msg = dns::parse_message(&response()).unwrap();
    assert_eq!(msg.id, 0x4242);
    assert!(msg.is_response);
    assert_eq!(msg.rcode, 0);
    assert_eq!(msg.questions[0].name, "chatgpt.com");
    assert_eq!(msg.questions[0].qtype, 65);
    assert_eq!(msg.edns_udp_size, Some(1232));
    assert_eq!(
        msg.cname_chain("chatgpt.com"),
        vec![
            "chatgpt.com",
            "chatgpt.com.cdn.cloudflare.net",
            "edge.example.net"
        ]
    );
    let addrs: Vec<IpAddr> = msg
        .answers
        .iter()
        .filter_map(|a| match a.data {
            RData::Addr(ip) => Some(ip),
            _ => None,
        })
        .collect();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[1].is_ipv6());
    let svcb = msg
        .answers
        .iter()
        .find_map(|a| match &a.data {
            RData::Svcb(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert!(svcb.https && svcb.ech);
    assert_eq!(svcb.priority, 1);
    assert_eq!(svcb.alpn, vec!["h3", "h2"]);
    assert_eq!(
        svcb.ipv4hint,
        vec![IpAddr::V4(Ipv4Addr::new(104, 18, 32, 47))]
    );
}

#[test]
fn cname_loop_terminates() {
    let mut m = Message::new();
    m.set_message_type(MessageType::Response);
    m.add_answer(Record::from_rdata(
        name("a.example."),
        1,
        H::CNAME(CNAME(name("b.example."))),
    ));
    m.add_answer(Record::from_rdata(
        name("b.example."),
        1,
        H::CNAME(CNAME(name("a.example."))),
    ));
    let msg = dns::parse_message(&m.to_vec().unwrap()).unwrap();
    assert_eq!(msg.cname_chain("a.example"), vec!["a.example", "b.example"]);
}

/// Two responses in one DNS-over-TCP stream, cut inside the length prefix and inside a
/// message, delivered out of order.
#[test]
fn dns_over_tcp_split_across_segments() {
    let r = response();
    let mut stream = Vec::new();
    for _ in 0..2 {
        stream.extend_from_slice(&(r.len() as u16).to_be_bytes());
        stream.extend_from_slice(&r);
    }
    let cuts = [1usize, 40, r.len() + 3, stream.len()];
    let mut segs = Vec::new();
    let mut prev = 0;
    for c in cuts {
        segs.push((prev, &stream[prev..c]));
        prev = c;
    }
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let order = [0usize, 2, 1, 3];
    for i in order {
        let (off, seg) = segs[i];
        let mut p = common::pkt(Hint::DnsTcp, Some(77 + off as u32), seg);
        p.dst = "10.0.0.1:53".parse().unwrap();
        dec.push(&p, &mut out);
    }
    assert_eq!(out.len(), 2, "{:?}", dec.stats().dns);
    assert!(out.iter().all(
        |d| matches!(d, Decoded::Dns { transport: Transport::Tcp, msg, .. } if msg.id == 0x4242)
    ));
    assert_eq!(dec.stats().dns.error_total(), 0);
}

#[test]
fn malformed_and_truncated_are_counted() {
    let r = response();
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    // Truncated by the capture.
    let mut p = common::pkt(Hint::DnsUdp, None, &r[..40]);
    p.wire_len = r.len() as u32;
    dec.push(&p, &mut out);
    // Malformed: a question count that the message does not hold.
    let mut bad = r.clone();
    bad[5] = 9;
    dec.push(&common::pkt(Hint::DnsUdp, None, &bad), &mut out);
    // Too short for a header.
    dec.push(&common::pkt(Hint::DnsUdp, None, &r[..7]), &mut out);
    assert!(out.is_empty());
    let s = &dec.stats().dns;
    assert_eq!(s.packets, 3);
    assert_eq!(s.errors.get(&ErrorKind::Truncated), Some(&2));
    assert_eq!(s.errors.get(&ErrorKind::DnsMessage), Some(&1));
    // A compression-pointer loop is an error, not a hang.
    let mut lp = vec![0u8, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    lp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(dns::parse_message(&lp).is_err());
}
