//! The capture reader and link/IP layers on synthetic files: pcap in both byte orders and
//! both time resolutions, pcapng with several sections/interfaces and `if_tsresol`, link types
//! Ethernet+VLAN, Linux SLL, SLL2, raw, BSD NULL/LOOP, IPv6 extension headers, fragments.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use shadowai_decode::pcap::Reader;
use shadowai_decode::replay::decode_reader;
use shadowai_decode::{Decoded, ErrorKind, Limits};

fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn tcp(sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0x60, 0x18, 0xff, 0xff, 0, 0, 0, 0]); // doff 6 (one option word)
    t.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    t.extend_from_slice(payload);
    t
}

fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = 24 + l4.len();
    let mut h = vec![
        0x46,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    h.extend_from_slice(&[192, 0, 2, 10, 192, 0, 2, 53]);
    h.extend_from_slice(&[1, 1, 1, 0]); // options: NOPs + EOL
    h.extend_from_slice(l4);
    h
}

fn ipv6(proto: u8, l4: &[u8], frag_offset: u16) -> Vec<u8> {
    // Hop-by-hop (8 bytes) → fragment header (8 bytes) → proto.
    let ext_len = 16;
    let plen = ext_len + l4.len();
    let mut h = vec![0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, 0, 64];
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // HBH: next = fragment, PadN
    let fo = (frag_offset << 3).to_be_bytes();
    h.extend_from_slice(&[proto, 0, fo[0], fo[1], 0, 0, 0, 7]);
    h.extend_from_slice(l4);
    h
}

fn frames() -> Vec<(u32, Vec<u8>)> {
    let hello = common::records(
        &common::client_hello(Some("copilot.microsoft.com"), &["h2"], 0),
        16384,
    );
    let v4_dns = ipv4(17, &udp(5353, 53, &dns_query("perplexity.ai")));
    let v6_tls = ipv6(6, &tcp(50000, 443, 77, &hello), 0);
    let v6_later_fragment = ipv6(17, &udp(5353, 53, &dns_query("ignored.example")), 100);
    let mut eth_vlan = vec![0u8; 12];
    eth_vlan.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
    eth_vlan.extend_from_slice(&v4_dns);
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x86, 0xdd]);
    sll.extend_from_slice(&v6_tls);
    let mut sll2 = vec![0x08, 0x00];
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(&v4_dns);
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&v4_dns);
    let mut lo = 30u32.to_be_bytes().to_vec();
    lo.extend_from_slice(&v6_tls);
    vec![
        (1, eth_vlan),
        (113, sll),
        (276, sll2),
        (0, null),
        (108, lo),
        (101, v6_tls.clone()),
        (229, v6_later_fragment),
        (228, v4_dns),
    ]
}

fn pcap(big: bool, nanos: bool, linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }).to_vec();
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&w32(65535));
    f.extend_from_slice(&w32(linktype));
    for (i, fr) in frames.iter().enumerate() {
        f.extend_from_slice(&w32(1_700_000_000 + i as u32));
        f.extend_from_slice(&w32(500));
        f.extend_from_slice(&w32(fr.len() as u32));
        f.extend_from_slice(&w32(fr.len() as u32));
        f.extend_from_slice(fr);
    }
    f
}

fn block(ty: u32, body: &[u8]) -> Vec<u8> {
    let len = 12 + body.len().div_ceil(4) * 4;
    let mut b = ty.to_le_bytes().to_vec();
    b.extend_from_slice(&(len as u32).to_le_bytes());
    b.extend_from_slice(body);
    b.resize(len - 4, 0);
    b.extend_from_slice(&(len as u32).to_le_bytes());
    b
}

fn pcapng(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut f = Vec::new();
    // Two sections; the second re-declares its interfaces (ids restart at 0).
    for half in frames.chunks(frames.len().div_ceil(2)) {
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        f.extend_from_slice(&block(0x0a0d_0d0a, &shb));
        for (lt, _) in half {
            let mut idb = (*lt as u16).to_le_bytes().to_vec();
            idb.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
            idb.extend_from_slice(&[0, 0, 0, 0]);
            f.extend_from_slice(&block(1, &idb));
        }
        for (i, (_, fr)) in half.iter().enumerate() {
            let ts: u64 = 1_700_000_000_123_456_789;
            let mut epb = (i as u32).to_le_bytes().to_vec();
            epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ts as u32).to_le_bytes());
            epb.extend_from_slice(&(fr.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(fr.len() as u32).to_le_bytes());
            epb.extend_from_slice(fr);
            f.extend_from_slice(&block(6, &epb));
        }
    }
    f
}

fn names(data: &[u8]) -> Vec<String> {
    let out = decode_reader(data, Limits::default()).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    out.decoded
        .iter()
        .map(|d| match d {
            Decoded::Dns { msg, .. } => msg.questions[0].name.clone(),
            Decoded::ClientHello { hello, .. } => hello.sni.clone().unwrap(),
        })
        .collect()
}

#[test]
fn every_link_type_in_classic_pcap_both_orders_and_resolutions() {
    for (lt, fr) in frames() {
        for big in [false, true] {
            for nanos in [false, true] {
                let file = pcap(big, nanos, lt, std::slice::from_ref(&fr));
                let f = Reader::new(&file[..]).unwrap().next().unwrap().unwrap();
                assert_eq!(f.linktype, lt);
                assert_eq!(
                    f.ts_ns,
                    1_700_000_000_000_000_000 + if nanos { 500 } else { 500_000 }
                );
                let got = names(&file);
                let want: Vec<&str> = match lt {
                    229 => vec![], // a later IPv6 fragment carries no transport header
                    113 | 108 | 101 => vec!["copilot.microsoft.com"],
                    _ => vec!["perplexity.ai"],
                };
                assert_eq!(got, want, "linktype {lt} big {big} nanos {nanos}");
            }
        }
    }
}

#[test]
fn pcapng_sections_interfaces_and_resolution() {
    let file = pcapng(&frames());
    let all: Vec<_> = Reader::new(&file[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|f| f.ts_ns == 1_700_000_000_123_456_789));
    assert_eq!(
        all.iter().map(|f| f.linktype).collect::<Vec<_>>(),
        vec![1, 113, 276, 0, 108, 101, 229, 228]
    );
    let got = names(&file);
    assert_eq!(got.iter().filter(|n| *n == "perplexity.ai").count(), 4);
    // The three TLS frames are the same flow: decoded once, the rest counted after-done.
    assert_eq!(
        got.iter().filter(|n| *n == "copilot.microsoft.com").count(),
        1
    );
}

#[test]
fn bad_files_give_named_errors() {
    let e = Reader::new(&b"GIF89a.."[..]).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::PcapFormat);
    assert!(e.to_string().contains("magic"), "{e}");
    let mut huge = pcap(false, false, 1, &[vec![0; 10]]);
    huge[24 + 8..24 + 12].copy_from_slice(&(u32::MAX).to_le_bytes());
    let err = Reader::new(&huge[..]).unwrap().next().unwrap().unwrap_err();
    assert!(
        err.to_string().contains("record length") && err.to_string().contains("32"),
        "{err}"
    );
    let mut ng = pcapng(&frames());
    ng.truncate(ng.len() - 3);
    let last = Reader::new(&ng[..]).unwrap().last().unwrap();
    assert!(last.is_err());
    // A simple packet block too short for its own header.
    let mut spb = pcapng(&frames()[..1]);
    spb.extend_from_slice(&block(3, &[]));
    let last = Reader::new(&spb[..]).unwrap().last().unwrap().unwrap_err();
    assert!(last.to_string().contains("simple packet block"), "{last}");
    // An unknown link type is counted by replay, not fatal.
    let file = pcap(false, false, 147, &[vec![1, 2, 3]]);
    let out = decode_reader(&file[..], Limits::default()).unwrap();
    assert_eq!(out.replay_stats.unsupported_link, 1);
}

fn ipv4_fragment(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let total = 20 + data.len();
    let fo = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&fo.to_be_bytes());
    h.extend_from_slice(&[64, 17, 0, 0, 192, 0, 2, 10, 192, 0, 2, 53]);
    h.extend_from_slice(data);
    h
}

fn ipv6_fragment(id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let plen = 8 + data.len();
    let mut h = vec![0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, 44, 64];
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let fo = (((offset / 8) as u16) << 3) | u16::from(more);
    h.extend_from_slice(&[17, 0]);
    h.extend_from_slice(&fo.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(data);
    h
}

/// A 1.3 KB DNS query split into IPv4 fragments and a QUIC Initial split into IPv6 fragments,
/// both delivered out of order with a duplicate, reassemble and decode.
#[test]
fn ip_fragments_are_reassembled() {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 30, 0, 0, 0, 0, 0, 0];
    for i in 0..30 {
        let name = if i == 0 {
            "perplexity.ai".to_string()
        } else {
            format!("a-rather-long-label-number-{i:02}.example")
        };
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
    }
    let dgram = udp(5353, 53, &q);
    assert!(dgram.len() > 1100);
    let v4: Vec<Vec<u8>> = dgram
        .chunks(504)
        .enumerate()
        .map(|(i, c)| ipv4_fragment(7, i * 504, (i + 1) * 504 < dgram.len(), c))
        .collect();
    let initial = common::read_fixture("rfc/rfc9001-a2-client-initial.bin");
    let qd = udp(50000, 443, &initial);
    let v6 = [
        ipv6_fragment(99, 0, true, &qd[..800]),
        ipv6_fragment(99, 800, false, &qd[800..]),
    ];
    let frames = [&v4[2], &v4[0], &v4[0], &v6[1], &v4[1], &v6[0]];
    let file = pcap(
        false,
        false,
        101,
        &frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>(),
    );
    let out = decode_reader(&file[..], Limits::default()).unwrap();
    let got: Vec<String> = out
        .decoded
        .iter()
        .map(|d| match d {
            Decoded::Dns { msg, .. } => msg.questions[0].name.clone(),
            Decoded::ClientHello { hello, .. } => hello.sni.clone().unwrap(),
        })
        .collect();
    assert_eq!(got, vec!["perplexity.ai", "example.com"]);
    assert_eq!(out.replay_stats.defrag.reassembled, 2);
    assert_eq!(out.replay_stats.defrag.fragments, 6);
    assert_eq!(out.replay_stats.malformed, 0);
}

/// A port reused by a later connection (a busy client cycles through its ephemeral range):
/// each connection's ClientHello is decoded, not only the first one's — the replay used to
/// take the second handshake for the first flow's, already decoded, and drop it.
#[test]
fn a_reused_four_tuple_yields_each_connections_hello() {
    let syn = |seq: u32| {
        let mut t = tcp(50000, 443, seq, &[]);
        t[13] = 0x02; // SYN only
        ipv4(6, &t)
    };
    let hello = |sni: &str, seq: u32| {
        let h = common::records(&common::client_hello(Some(sni), &["h2"], 0), 16384);
        ipv4(6, &tcp(50000, 443, seq, &h))
    };
    let frames = [
        syn(1000),
        hello("api.openai.com", 1001),
        syn(9000),
        hello("claude.ai", 9001),
        // A retransmission of the second hello is still one handshake.
        hello("claude.ai", 9001),
    ];
    let got = names(&pcap(false, false, 101, &frames));
    assert_eq!(got, ["api.openai.com", "claude.ai"]);
}
