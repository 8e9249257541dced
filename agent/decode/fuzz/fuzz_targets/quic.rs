//! QUIC: raw datagrams through header parsing and decryption; and, to get past the AEAD,
//! the input as the *plaintext* of a properly sealed Initial (frames, CRYPTO reassembly,
//! ClientHello), both one-shot and through the stateful decoder across two datagrams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_decode::quic::{self, VERSION_1, VERSION_2};
use shadowai_decode::{Decoder, Direction, Hint, Limits, PacketIn};

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let _ = quic::client_hello_from_datagram(rest, 1 << 16);
        let _ = quic::decrypt_datagram(rest, Some(&DCID));
        return;
    }
    let version = if mode & 2 == 0 { VERSION_1 } else { VERSION_2 };
    let split = (usize::from(mode >> 2) * 16).min(rest.len());
    let (p1, p2) = rest.split_at(split);
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let addr = "[::1]:443".parse().unwrap_or_else(|_| unreachable!());
    for (pn, plain) in [(1u32, p2), (0, p1)] {
        let Ok(d) = quic::seal_initial(version, &DCID, &[], &DCID, pn, plain, 0) else {
            continue;
        };
        let _ = quic::client_hello_from_datagram(&d, 1 << 16);
        let pkt = PacketIn {
            ts_ns: 1,
            flow: 9,
            direction: Direction::Egress,
            hint: Hint::Quic,
            tcp_seq: None,
            src: addr,
            dst: addr,
            wire_len: d.len() as u32,
            payload: &d,
        };
        dec.push(&pkt, &mut out);
    }
});
