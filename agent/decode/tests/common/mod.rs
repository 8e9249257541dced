//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test; not every test binary uses every helper"
)]

use std::net::SocketAddr;
use std::path::PathBuf;

use shadowai_decode::{Decoded, Direction, Hint, PacketIn};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn read_fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap()
}

pub const CLIENT: &str = "10.0.0.2:40000";
pub const SERVER: &str = "10.0.0.1:443";

pub fn pkt<'a>(hint: Hint, seq: Option<u32>, payload: &'a [u8]) -> PacketIn<'a> {
    PacketIn {
        ts_ns: 1_000,
        flow: 7,
        direction: Direction::Egress,
        hint,
        tcp_seq: seq,
        src: CLIENT.parse::<SocketAddr>().unwrap(),
        dst: SERVER.parse::<SocketAddr>().unwrap(),
        wire_len: payload.len() as u32,
        payload,
    }
}

/// A TLS 1.3-style ClientHello handshake message (type 1 + u24 length + body) with the given
/// SNI and ALPN, padded with a padding extension of `pad` bytes (to make it span segments).
pub fn client_hello(sni: Option<&str>, alpn: &[&str], pad: usize) -> Vec<u8> {
    let mut exts = Vec::new();
    let mut ext = |ty: u16, data: &[u8]| {
        exts.extend_from_slice(&ty.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(data);
    };
    ext(0x0a0a, &[]); // GREASE
    if let Some(name) = sni {
        let mut d = Vec::new();
        d.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        d.push(0);
        d.extend_from_slice(&(name.len() as u16).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
        ext(0x0000, &d);
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&list);
        ext(0x0010, &d);
    }
    ext(0x002b, &[4, 0x03, 0x04, 0x03, 0x03]); // supported_versions
    ext(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]); // signature_algorithms
    ext(0x0033, &[0, 0]); // key_share (empty list)
    if pad > 0 {
        ext(0x0015, &vec![0u8; pad]);
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(32);
    body.extend_from_slice(&[0x22; 32]); // session id
    let ciphers: [u16; 4] = [0x1a1a, 0x1301, 0x1302, 0x1303];
    body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        body.extend_from_slice(&c.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![0x01];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

/// Wrap a handshake message in TLS records of at most `max_fragment` bytes each.
pub fn records(msg: &[u8], max_fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in msg.chunks(max_fragment) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

pub fn hellos(out: &[Decoded]) -> Vec<&shadowai_decode::ClientHelloInfo> {
    out.iter()
        .filter_map(|d| match d {
            Decoded::ClientHello { hello, .. } => Some(hello),
            Decoded::Dns { .. } => None,
        })
        .collect()
}
