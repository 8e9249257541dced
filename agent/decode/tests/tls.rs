//! ClientHellos over TCP: split across segments out of order with duplicates, fragmented
//! across records, cut by the capture, bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{client_hello, hellos, pkt, records};
use shadowai_decode::tls::{client_hello_from_stream, parse_handshake};
use shadowai_decode::{Decoded, Decoder, ErrorKind, Hint, Limits, Transport};

const ISN: u32 = 0xffff_ff00; // wraps during the stream

#[test]
fn split_across_three_segments_out_of_order_with_duplicates() {
    let stream = records(
        &client_hello(Some("api.openai.com"), &["h2", "http/1.1"], 1700),
        16384,
    );
    assert!(stream.len() > 1800);
    let s1 = &stream[..600];
    let s2 = &stream[600..1300];
    let s3 = &stream[1300..];
    let seq = |off: usize| Some(ISN.wrapping_add(off as u32));
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    // s3 before the start, s1, s3 again, then a partial overlap of s1/s2, then s2.
    dec.push(&pkt(Hint::Tls, seq(1300), s3), &mut out);
    dec.push(&pkt(Hint::Tls, seq(0), s1), &mut out);
    dec.push(&pkt(Hint::Tls, seq(1300), s3), &mut out);
    dec.push(&pkt(Hint::Tls, seq(500), &stream[500..700]), &mut out);
    assert!(out.is_empty());
    dec.push(&pkt(Hint::Tls, seq(600), s2), &mut out);
    let hs = hellos(&out);
    assert_eq!(hs.len(), 1, "{:?}", dec.stats());
    assert_eq!(hs[0].sni.as_deref(), Some("api.openai.com"));
    assert_eq!(hs[0].alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
    assert_eq!(hs[0].versions, vec![0x0304, 0x0303]);
    assert_eq!(hs[0].cipher_count, 3); // GREASE excluded
    assert!(hs[0].ja4.starts_with("t13d0306h2_"), "{}", hs[0].ja4);
    assert!(matches!(
        out[0],
        Decoded::ClientHello {
            transport: Transport::Tcp,
            ..
        }
    ));
    let s = &dec.stats().tls;
    assert_eq!(s.decoded, 1);
    assert_eq!(s.error_total(), 0);
    // A later retransmission is counted as after-done, not decoded twice.
    dec.push(&pkt(Hint::Tls, seq(600), s2), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(dec.stats().tls.after_done, 1);
}

#[test]
fn handshake_fragmented_across_records_and_segments() {
    let msg = client_hello(Some("claude.ai"), &["h2"], 900);
    let stream = records(&msg, 300); // 4 records
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    for (i, chunk) in stream.chunks(250).enumerate().rev() {
        dec.push(
            &pkt(Hint::Tls, Some(1000 + 250 * i as u32), chunk),
            &mut out,
        );
    }
    let hs = hellos(&out);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].sni.as_deref(), Some("claude.ai"));
    assert_eq!(hs[0].hello_len, msg.len());
}

#[test]
fn truncated_capture_still_names_the_server() {
    // One 2.2 KB segment on a loopback MTU, cut at 2047 bytes by the kernel copy.
    let stream = records(
        &client_hello(Some("gemini.google.com"), &["h2"], 2100),
        16384,
    );
    let mut p = pkt(Hint::Tls, Some(5), &stream[..2047]);
    p.wire_len = stream.len() as u32;
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.push(&p, &mut out);
    let hs = hellos(&out);
    assert_eq!(hs.len(), 1);
    assert!(hs[0].partial);
    assert_eq!(hs[0].sni.as_deref(), Some("gemini.google.com"));
    assert_eq!(dec.stats().tls.truncated_input, 1);
}

#[test]
fn not_tls_and_oversized() {
    let mut dec = Decoder::new(Limits {
        max_flow_bytes: 4096,
        ..Limits::default()
    });
    let mut out = Vec::new();
    dec.push(
        &pkt(
            Hint::Tls,
            Some(1),
            b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
        ),
        &mut out,
    );
    assert_eq!(dec.stats().tls.not_this, 1); // a ServerHello is not a ClientHello
    let big = records(&client_hello(Some("x.example"), &[], 6000), 16384);
    let mut p = pkt(Hint::Tls, Some(1), &big[..1400]);
    p.flow = 8;
    dec.push(&p, &mut out);
    assert!(out.is_empty());
    assert_eq!(dec.stats().tls.errors.get(&ErrorKind::TooLarge), Some(&1));
}

#[test]
fn extension_overrunning_its_block_is_malformed() {
    let mut bad = client_hello(Some("b.example"), &[], 0);
    let n = bad.len();
    bad[n - 3] = 0x10; // key_share (last extension) length now runs past the block
    let err = parse_handshake(&bad, false, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    assert!(err.to_string().contains("extension length"), "{err}");
    // Through the stream decoder it is an error too, not a wait for more bytes.
    let r = client_hello_from_stream(&records(&bad, 16384), 1 << 16);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn sni_with_control_bytes_is_rejected() {
    let mut msg = client_hello(Some("evil\u{7}.example"), &[], 0);
    let r = parse_handshake(&msg, false, true);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Malformed);
    msg.truncate(10);
    assert!(parse_handshake(&msg, false, true).is_err());
}

#[test]
fn stale_partial_flows_expire_and_are_counted() {
    let stream = records(&client_hello(Some("api.mistral.ai"), &[], 1500), 16384);
    let mut dec = Decoder::new(Limits {
        flow_timeout_ns: 1_000,
        max_flows: 2,
        ..Limits::default()
    });
    let mut out = Vec::new();
    for flow in 0..3u64 {
        let mut p = pkt(Hint::Tls, Some(0), &stream[..700]);
        p.flow = flow;
        p.ts_ns = 100 + flow;
        dec.push(&p, &mut out);
    }
    assert_eq!(dec.stats().tls.evicted, 1);
    assert_eq!(dec.pending_flows(), 2);
    dec.expire(10_000);
    assert_eq!(dec.stats().tls.expired, 2);
    assert_eq!(dec.pending_flows(), 0);
}
