//! QUIC Initials: the RFC 9001 / RFC 9369 Appendix A vectors, and CRYPTO data split across
//! packets, out of order, duplicated and coalesced.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{hellos, pkt, read_fixture};
use shadowai_decode::quic::{self, VERSION_1, VERSION_2, crypto_frame, seal_initial};
use shadowai_decode::{Decoded, Decoder, Hint, Limits, Parsed, Transport};

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn rfc_crypto_frame() -> Vec<u8> {
    read_fixture("rfc/rfc9001-a2-crypto-frame.bin")
}

/// The ClientHello handshake message carried in the RFC's CRYPTO frame (06 00 40f1 …).
fn rfc_hello() -> Vec<u8> {
    rfc_crypto_frame()[4..].to_vec()
}

fn check_rfc_hello(h: &shadowai_decode::ClientHelloInfo) {
    assert_eq!(h.sni.as_deref(), Some("example.com"));
    assert_eq!(h.alpn, vec!["alpn".to_string()]);
    assert_eq!(h.versions, vec![0x0304]);
    assert_eq!(h.cipher_count, 2);
    assert_eq!(h.hello_len, 241);
    assert!(h.ja4.starts_with("q13d0211an_"), "{}", h.ja4);
    assert!(!h.partial);
}

#[test]
fn rfc9001_a2_v1_client_initial_decrypts() {
    let packet = read_fixture("rfc/rfc9001-a2-client-initial.bin");
    let Parsed::Found(d) = quic::decrypt_datagram(&packet, None).unwrap() else {
        panic!("not decoded");
    };
    assert_eq!(d.version, VERSION_1);
    assert_eq!(d.dcid, DCID);
    assert_eq!(d.chunks.len(), 1);
    assert_eq!(d.chunks[0].offset, 0);
    assert_eq!(d.chunks[0].data, rfc_hello());
    let Parsed::Found(h) = quic::client_hello_from_datagram(&packet, 1 << 16).unwrap() else {
        panic!("no hello");
    };
    check_rfc_hello(&h);
}

#[test]
fn rfc9369_a2_v2_client_initial_decrypts() {
    let packet = read_fixture("rfc/rfc9369-a2-client-initial.bin");
    let Parsed::Found(d) = quic::decrypt_datagram(&packet, None).unwrap() else {
        panic!("not decoded");
    };
    assert_eq!(d.version, VERSION_2);
    assert_eq!(d.chunks[0].data, rfc_hello());
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.push(&pkt(Hint::Quic, None, &packet), &mut out);
    assert_eq!(out.len(), 1);
    let Decoded::ClientHello {
        transport, hello, ..
    } = &out[0]
    else {
        panic!()
    };
    assert_eq!(*transport, Transport::Quic { version: VERSION_2 });
    check_rfc_hello(hello);
}

/// Our sending side reproduces the RFC's protected packets byte for byte, which proves the
/// key schedule, header protection and AEAD both ways.
#[test]
fn sealing_reproduces_the_rfc_packets() {
    for (version, file) in [
        (VERSION_1, "rfc/rfc9001-a2-client-initial.bin"),
        (VERSION_2, "rfc/rfc9369-a2-client-initial.bin"),
    ] {
        let sealed =
            seal_initial(version, &DCID, &[], &DCID, 2, &rfc_crypto_frame(), 1162).unwrap();
        assert_eq!(sealed, read_fixture(file), "version {version:#x}");
    }
}

#[test]
fn corrupted_initial_is_a_counted_crypto_error() {
    let mut packet = read_fixture("rfc/rfc9001-a2-client-initial.bin");
    packet[600] ^= 1;
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.push(&pkt(Hint::Quic, None, &packet), &mut out);
    assert!(out.is_empty());
    assert_eq!(
        dec.stats()
            .quic
            .errors
            .get(&shadowai_decode::ErrorKind::QuicCrypto),
        Some(&1)
    );
}

/// A 1.9 KB ClientHello (post-quantum key share size) spread over two datagrams: the first
/// coalesces two Initials carrying the last and the first chunk (in that order), the second
/// carries the middle chunk; duplicates included. Fed second datagram first.
#[test]
fn crypto_frames_out_of_order_across_coalesced_packets() {
    let hello = common::client_hello(Some("chatgpt.com"), &["h3"], 1700);
    assert!(hello.len() > 1800);
    let (a, rest) = hello.split_at(700);
    let (b, c) = rest.split_at(700);
    let scid = [9u8; 8];
    // Datagram 1: Initial{CRYPTO c} + Initial{CRYPTO a}, coalesced.
    let mut d1 =
        seal_initial(VERSION_1, &DCID, &scid, &DCID, 1, &crypto_frame(1400, c), 0).unwrap();
    let p2 = seal_initial(VERSION_1, &DCID, &scid, &DCID, 0, &crypto_frame(0, a), 0).unwrap();
    d1.extend_from_slice(&p2);
    // Datagram 2: CRYPTO b and a duplicate of a, padded like a real Initial.
    let mut frames = crypto_frame(700, b);
    frames.extend_from_slice(&crypto_frame(0, &a[..100]));
    frames.extend_from_slice(&[0x01]); // PING
    let d2 = seal_initial(VERSION_1, &DCID, &scid, &DCID, 2, &frames, 1100).unwrap();

    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.push(&pkt(Hint::Quic, None, &d2), &mut out);
    assert!(out.is_empty());
    dec.push(&pkt(Hint::Quic, None, &d1), &mut out);
    let hs = hellos(&out);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].sni.as_deref(), Some("chatgpt.com"));
    assert_eq!(hs[0].alpn, vec!["h3".to_string()]);
    assert_eq!(dec.stats().quic.buffered, 1);
    assert_eq!(dec.stats().quic.decoded, 1);
    // A retransmission afterwards is counted, not decoded again.
    dec.push(&pkt(Hint::Quic, None, &d2), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(dec.stats().quic.after_done, 1);
}

/// After the server's first flight a client addresses the server's CID, but its Initials are
/// still protected with the keys of the original DCID.
#[test]
fn later_initial_with_new_dcid_uses_original_keys() {
    let hello = common::client_hello(Some("api.anthropic.com"), &["h3"], 1500);
    let (a, b) = hello.split_at(1000);
    let server_cid = [0x55u8; 8];
    let d1 = seal_initial(VERSION_2, &DCID, &[1; 4], &DCID, 0, &crypto_frame(0, a), 0).unwrap();
    let d2 = seal_initial(
        VERSION_2,
        &server_cid,
        &[1; 4],
        &DCID,
        1,
        &crypto_frame(1000, b),
        0,
    )
    .unwrap();
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.push(&pkt(Hint::Quic, None, &d1), &mut out);
    dec.push(&pkt(Hint::Quic, None, &d2), &mut out);
    let hs = hellos(&out);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].sni.as_deref(), Some("api.anthropic.com"));
}

/// A Handshake packet coalesced after the Initial is stepped over.
#[test]
fn coalesced_handshake_packet_is_skipped() {
    let mut d = seal_initial(VERSION_1, &DCID, &[], &DCID, 0, &rfc_crypto_frame(), 0).unwrap();
    // Long header, type Handshake (2), v1, DCID, SCID, length 20, then 20 opaque bytes.
    let mut hs = vec![0xe0, 0, 0, 0, 1, 8];
    hs.extend_from_slice(&DCID);
    hs.extend_from_slice(&[0, 20]);
    hs.extend_from_slice(&[0xaa; 20]);
    d.extend_from_slice(&hs);
    let Parsed::Found(h) = quic::client_hello_from_datagram(&d, 1 << 16).unwrap() else {
        panic!()
    };
    assert_eq!(h.sni.as_deref(), Some("example.com"));
}

#[test]
fn not_quic_and_unknown_versions() {
    assert_eq!(
        quic::decrypt_datagram(b"\x40hello short header", None).unwrap(),
        Parsed::NotThis
    );
    let mut unknown = read_fixture("rfc/rfc9001-a2-client-initial.bin");
    unknown[1..5].copy_from_slice(&[0x0a, 0x0a, 0x0a, 0x0a]);
    assert_eq!(
        quic::decrypt_datagram(&unknown, None).unwrap(),
        Parsed::NotThis
    );
}

#[test]
fn crypto_stream_over_the_limit_is_counted() {
    let frames = crypto_frame(40_000, b"far away");
    let d = seal_initial(VERSION_1, &DCID, &[], &DCID, 0, &frames, 1100).unwrap();
    let mut dec = Decoder::new(Limits {
        max_flow_bytes: 16 * 1024,
        ..Limits::default()
    });
    let mut out = Vec::new();
    dec.push(&pkt(Hint::Quic, None, &d), &mut out);
    assert!(out.is_empty());
    assert_eq!(
        dec.stats()
            .quic
            .errors
            .get(&shadowai_decode::ErrorKind::TooLarge),
        Some(&1)
    );
}
