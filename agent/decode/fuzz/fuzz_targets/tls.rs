//! TLS: the stream decoder, the prefix (cut capture) decoder, the bare handshake parser, and
//! the stateful decoder fed the input as up to three out-of-order, overlapping segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_decode::{Decoder, Direction, Hint, Limits, PacketIn, tls};

fuzz_target!(|data: &[u8]| {
    let _ = tls::client_hello_from_stream(data, 1 << 16);
    let _ = tls::client_hello_from_stream_prefix(data, 1 << 16);
    let _ = tls::parse_handshake(data, false, true);
    let _ = tls::parse_handshake(data, true, false);
    if data.len() < 3 {
        return;
    }
    let (a, b) = (usize::from(data[0]), usize::from(data[1]));
    let body = &data[2..];
    let cut1 = a.min(body.len());
    let cut2 = (cut1 + b * 8).min(body.len());
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let addr = "127.0.0.1:443".parse().unwrap_or_else(|_| unreachable!());
    for (off, seg, truncated) in [
        (cut2, &body[cut2..], false),
        (0, &body[..cut2], data[1] & 1 == 1),
        (cut1, &body[cut1..], false),
    ] {
        let pkt = PacketIn {
            ts_ns: off as u64,
            flow: 1,
            direction: Direction::Egress,
            hint: Hint::Tls,
            tcp_seq: Some(0xffff_fff0u32.wrapping_add(off as u32)),
            src: addr,
            dst: addr,
            wire_len: seg.len() as u32 + u32::from(truncated),
            payload: seg,
        };
        dec.push(&pkt, &mut out);
    }
    dec.expire(u64::MAX);
});
