//! Decoder throughput per protocol (bytes/s and messages/s) and replay packets/s.
//! `cargo bench -p shadowai-decode` (criterion prints MiB/s or Kelem/s per benchmark).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowai_decode::pcap::Reader;
use shadowai_decode::quic;
use shadowai_decode::replay::{Replay, decode_reader};
use shadowai_decode::{Decoder, Direction, Hint, Limits, PacketIn, dns, tls};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// First payload of `hint` in a capture.
fn first_payload(cap: &str, hint: Hint) -> Vec<u8> {
    let data = fixture(cap);
    Replay::new(&data[..])
        .unwrap()
        .map(Result::unwrap)
        .find(|p| p.hint == hint)
        .unwrap()
        .payload
}

fn pkt(hint: Hint, seq: Option<u32>, flow: u64, payload: &[u8]) -> PacketIn<'_> {
    let a: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let b: SocketAddr = "10.0.0.1:443".parse().unwrap();
    PacketIn {
        ts_ns: flow,
        flow,
        direction: Direction::Egress,
        hint,
        tcp_seq: seq,
        src: a,
        dst: b,
        wire_len: payload.len() as u32,
        payload,
    }
}

fn bench_dns(c: &mut Criterion) {
    // The WhatsApp response of nDPI's dns.pcap (VLAN + PPPoE capture): 5 A records.
    let data = fixture("ndpi/dns.pcap");
    let msg = Replay::new(&data[..])
        .unwrap()
        .map(Result::unwrap)
        .filter(|p| p.hint == Hint::DnsUdp)
        .max_by_key(|p| p.payload.len())
        .unwrap()
        .payload;
    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("parse_message_bytes", |b| {
        b.iter(|| dns::parse_message(black_box(&msg)).unwrap())
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_message_msgs", |b| {
        b.iter(|| dns::parse_message(black_box(&msg)).unwrap())
    });
    g.finish();
}

fn bench_tls(c: &mut Criterion) {
    let stream = first_payload("ndpi/tls_1.3_unidirectional_client.pcapng", Hint::Tls);
    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("client_hello_bytes", |b| {
        b.iter(|| tls::client_hello_from_stream(black_box(&stream), 1 << 16).unwrap())
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("client_hello_msgs", |b| {
        b.iter(|| tls::client_hello_from_stream(black_box(&stream), 1 << 16).unwrap())
    });
    // Stateful: the same hello split into 3 segments, delivered out of order, per new flow.
    let (s1, rest) = stream.split_at(stream.len() / 3);
    let (s2, s3) = rest.split_at(rest.len() / 2);
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let mut flow = 0u64;
    g.bench_function("reassembled_3_segments_msgs", |b| {
        b.iter(|| {
            flow += 1;
            out.clear();
            dec.push(
                &pkt(
                    Hint::Tls,
                    Some(1000 + (s1.len() + s2.len()) as u32),
                    flow,
                    s3,
                ),
                &mut out,
            );
            dec.push(&pkt(Hint::Tls, Some(1000), flow, s1), &mut out);
            dec.push(
                &pkt(Hint::Tls, Some(1000 + s1.len() as u32), flow, s2),
                &mut out,
            );
            assert_eq!(out.len(), 1);
            if flow.is_multiple_of(4096) {
                dec.expire(u64::MAX);
            }
        })
    });
    g.finish();
}

fn bench_quic(c: &mut Criterion) {
    let v1 = fixture("rfc/rfc9001-a2-client-initial.bin");
    let real = first_payload("ndpi/quic-v2.pcapng", Hint::Quic);
    let mut g = c.benchmark_group("quic");
    for (name, d) in [("rfc9001_v1", &v1), ("ndpi_v2", &real)] {
        g.throughput(Throughput::Bytes(d.len() as u64));
        g.bench_function(format!("{name}_initial_bytes"), |b| {
            b.iter(|| quic::client_hello_from_datagram(black_box(d), 1 << 16).unwrap())
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}_initial_msgs"), |b| {
            b.iter(|| quic::client_hello_from_datagram(black_box(d), 1 << 16).unwrap())
        });
    }
    g.finish();
}

fn bench_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    for cap in ["ndpi/no_sni.pcap", "ndpi/quic-29.pcap", "ndpi/dns.pcap"] {
        let data = fixture(cap);
        let frames = Reader::new(&data[..]).unwrap().count() as u64;
        g.throughput(Throughput::Elements(frames));
        g.bench_function(
            format!("{}_packets", cap.trim_start_matches("ndpi/")),
            |b| b.iter(|| decode_reader(black_box(&data[..]), Limits::default()).unwrap()),
        );
    }
    g.finish();
}

criterion_group!(benches, bench_dns, bench_tls, bench_quic, bench_replay);
criterion_main!(benches);
