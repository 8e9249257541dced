//! QUIC: raw datagrams through header parsing and decryption (even input modes); and, to get
//! past the AEAD, the input as the *plaintext* of a properly sealed Initial (odd modes):
//! frames, CRYPTO reassembly and the ClientHello through the stateful decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_decode::quic::{self, VERSION_1, VERSION_2};
use shadowai_decode::{Decoder, Direction, Hint, Limits, PacketIn};

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let fallback = if mode & 2 == 0 { None } else { Some(&DCID[..]) };
        let _ = quic::decrypt_datagram(rest, fallback);
        return;
    }
    let version = if mode & 2 == 0 { VERSION_1 } else { VERSION_2 };
    let Ok(d) = quic::seal_initial(version, &DCID, &[], &DCID, u32::from(mode >> 2), rest, 0) else {
        return;
    };
    let addr = "[::1]:443".parse().unwrap_or_else(|_| unreachable!());
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
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    dec.push(&pkt, &mut out);
});
