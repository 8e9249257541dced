//! DNS: one message, and the same bytes as a DNS-over-TCP stream split into two segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_decode::{Decoder, Direction, Hint, Limits, PacketIn, dns};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = dns::parse_message(data)
        && let Some(q) = m.questions.first()
    {
        let _ = m.cname_chain(&q.name);
    }
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = usize::from(cut).min(rest.len());
    let mut dec = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let src = "127.0.0.1:5353".parse().unwrap_or_else(|_| unreachable!());
    let dst = "127.0.0.1:53".parse().unwrap_or_else(|_| unreachable!());
    for (off, seg) in [(cut, &rest[cut..]), (0, &rest[..cut])] {
        let pkt = PacketIn {
            ts_ns: 1,
            flow: 3,
            direction: Direction::Ingress,
            hint: Hint::DnsTcp,
            tcp_seq: Some(1000 + off as u32),
            src,
            dst,
            wire_len: seg.len() as u32,
            payload: seg,
        };
        dec.push(&pkt, &mut out);
    }
    let udp = PacketIn {
        ts_ns: 1,
        flow: 4,
        direction: Direction::Ingress,
        hint: Hint::DnsUdp,
        tcp_seq: None,
        src,
        dst,
        wire_len: rest.len() as u32,
        payload: rest,
    };
    dec.push(&udp, &mut out);
});
