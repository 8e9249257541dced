//! Every fixture, every truncated prefix: no panic, and every packet ends in a counted
//! outcome (an error, "need more", or "not this").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use shadowai_decode::pcap::Reader;
use shadowai_decode::replay::{Replay, ReplayPacket};
use shadowai_decode::{Decoder, Hint, Limits, Parsed, ProtoStats, dns, quic, tls};

const CAPTURES: &[&str] = &[
    "ndpi/dns.pcap",
    "ndpi/doh.pcapng",
    "ndpi/malformed_dns.pcap",
    "ndpi/no_sni.pcap",
    "ndpi/quic-27.pcap",
    "ndpi/quic-29.pcap",
    "ndpi/quic-v2.pcapng",
    "ndpi/tls_1.3_unidirectional_client.pcapng",
];

fn packets(cap: &str) -> Vec<ReplayPacket> {
    let data = common::read_fixture(cap);
    Replay::new(&data[..])
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn outcomes(s: &ProtoStats) -> u64 {
    s.decoded + s.not_this + s.buffered + s.after_done + s.error_total()
}

/// Each capture file cut at every byte (the 89 KB one at every record boundary ±2 and every
/// 7th byte, to keep the quadratic cost bounded) reads to a clean end or a `PcapFormat` error.
#[test]
fn capture_file_prefixes() {
    for cap in CAPTURES {
        let data = common::read_fixture(cap);
        let full = Reader::new(&data[..]).unwrap().count();
        let every = data.len() <= 32 * 1024;
        for cut in 0..data.len() {
            if !every && cut % 7 != 0 && !near_record_boundary(&data, cut) {
                continue;
            }
            let prefix = &data[..cut];
            let Ok(reader) = Reader::new(prefix) else {
                continue;
            };
            let mut n = 0;
            let mut errors = 0;
            for f in reader {
                match f {
                    Ok(_) => n += 1,
                    Err(e) => {
                        assert_eq!(
                            e.kind(),
                            shadowai_decode::ErrorKind::PcapFormat,
                            "{cap}@{cut}: {e}"
                        );
                        errors += 1;
                    }
                }
            }
            assert!(n <= full && errors <= 1, "{cap}@{cut}");
        }
    }
}

/// Record boundaries of a little-endian classic pcap (the one large fixture).
fn near_record_boundary(data: &[u8], cut: usize) -> bool {
    let mut off = 24usize;
    while off + 16 <= data.len() {
        if cut + 2 >= off && cut <= off + 18 {
            return true;
        }
        let incl =
            u32::from_le_bytes([data[off + 8], data[off + 9], data[off + 10], data[off + 11]]);
        off += 16 + incl as usize;
    }
    false
}

/// Every packet the fixtures hold, cut at every length and marked truncated (wire_len = the
/// real length), through the stateful decoder: exactly one counted outcome per packet.
#[test]
fn every_packet_prefix_through_the_decoder() {
    let mut pushed = 0u64;
    for cap in CAPTURES {
        for p in packets(cap) {
            for cut in 0..=p.payload.len() {
                let mut q = p.clone();
                q.payload.truncate(cut);
                let mut dec = Decoder::new(Limits::default());
                let mut out = Vec::new();
                dec.push(&q.as_packet_in(), &mut out);
                pushed += 1;
                let s = dec.stats();
                let (stats, hint) = match q.hint {
                    Hint::DnsUdp | Hint::DnsTcp => (&s.dns, q.hint),
                    Hint::Tls => (&s.tls, q.hint),
                    Hint::Quic => (&s.quic, q.hint),
                };
                assert_eq!(stats.packets, 1);
                if hint == Hint::DnsTcp {
                    assert!(outcomes(stats) >= 1, "{cap}@{cut}");
                } else {
                    assert_eq!(outcomes(stats), 1, "{cap}@{cut}: {stats:?}");
                }
                if cut < p.payload.len() {
                    assert_eq!(stats.truncated_input, 1);
                }
                if hint == Hint::DnsUdp && cut < p.payload.len() {
                    assert_eq!(
                        stats.error_total(),
                        1,
                        "{cap}@{cut}: a cut DNS message is an error: {:?} {:?}",
                        out,
                        q.payload
                    );
                }
            }
        }
    }
    assert!(pushed > 20_000, "{pushed}");
}

/// The pure decoders on every prefix of every unit they decode in the fixtures.
#[test]
fn every_prefix_through_the_pure_decoders() {
    let rfc_v1 = common::read_fixture("rfc/rfc9001-a2-client-initial.bin");
    let rfc_v2 = common::read_fixture("rfc/rfc9369-a2-client-initial.bin");
    let mut quic_units = vec![rfc_v1, rfc_v2];
    let mut tls_units = Vec::new();
    let mut dns_units = Vec::new();
    for cap in CAPTURES {
        for p in packets(cap) {
            match p.hint {
                Hint::Quic => quic_units.push(p.payload),
                Hint::Tls if tls::looks_like_handshake_record(&p.payload) => {
                    tls_units.push(p.payload)
                }
                Hint::DnsUdp => dns_units.push(p.payload),
                _ => {}
            }
        }
    }
    assert!(quic_units.len() >= 5 && tls_units.len() >= 8 && dns_units.len() >= 10);
    for (i, u) in quic_units.iter().enumerate() {
        if i < 2 {
            assert!(quic::client_hello_from_datagram(u, 1 << 16).is_ok());
        }
        let full = quic::decrypt_datagram(u, None);
        for cut in 0..u.len() {
            match quic::decrypt_datagram(&u[..cut], None) {
                Err(_) | Ok(Parsed::NotThis) => {}
                // A cut inside a later coalesced packet keeps the complete Initials before it.
                Ok(Parsed::Found(d)) => match &full {
                    Ok(Parsed::Found(f)) => assert_eq!(d.chunks, f.chunks[..d.chunks.len()]),
                    other => panic!("prefix {cut} decoded, the whole datagram gave {other:?}"),
                },
                Ok(other) => panic!("prefix {cut} of a QUIC Initial gave {other:?}"),
            }
        }
    }
    for u in &tls_units {
        let full = tls::client_hello_from_stream(u, 1 << 16).unwrap();
        for cut in 0..u.len() {
            let r = tls::client_hello_from_stream(&u[..cut], 1 << 16).unwrap();
            if matches!(full, Parsed::Found(_)) {
                assert!(matches!(r, Parsed::Incomplete { .. }), "cut {cut}: {r:?}");
            }
            // The best-effort prefix parser never panics, and never invents a name.
            if let Ok(Parsed::Found(h)) = tls::client_hello_from_stream_prefix(&u[..cut], 1 << 16) {
                assert!(h.partial || cut == u.len());
                if let (Some(s), Parsed::Found(f)) = (&h.sni, &full) {
                    assert_eq!(Some(s), f.sni.as_ref());
                }
            }
        }
    }
    for u in &dns_units {
        let ok = dns::parse_message(u).is_ok();
        for cut in 0..u.len() {
            if ok {
                assert!(
                    dns::parse_message(&u[..cut]).is_err(),
                    "DNS prefix {cut} parsed"
                );
            }
        }
    }
}
