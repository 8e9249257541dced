//! The stateful decoder: packets in (as captured), decoded messages out. Keeps bounded
//! per-flow state for the three things that span packets — ClientHellos across TCP segments,
//! DNS-over-TCP streams, the QUIC CRYPTO stream across Initials — and counts every outcome.

use crate::flows::FlowTable;

use crate::error::{DecodeError, Parsed, Proto};
use crate::reasm::Reassembly;
use crate::stats::DecodeStats;
use crate::{Decoded, Direction, Hint, PacketIn, Transport, dns, quic, tls};

/// Bounds on the decoder's memory and patience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes buffered per flow at most (a ClientHello is announced in 3 bytes: 16 MiB max).
    pub max_flow_bytes: usize,
    /// A partial flow with no packet for this long is dropped by [`Decoder::expire`].
    pub flow_timeout_ns: u64,
    /// Flows tracked per protocol at most; the least recently seen is evicted first.
    pub max_flows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_flow_bytes: 32 * 1024,
            flow_timeout_ns: 10_000_000_000,
            max_flows: 8192,
        }
    }
}

struct TlsFlow {
    /// Sequence number of the first handshake byte, once seen.
    base: Option<u32>,
    /// Segments that arrived before the first one (bounded by `max_flow_bytes`).
    early: Vec<(u32, Vec<u8>)>,
    early_bytes: usize,
    buf: Reassembly,
    /// Stream offset where a truncated capture left a permanent hole.
    cut_at: Option<u64>,
}

struct DnsTcpFlow {
    base: Option<u32>,
    /// Stream offset of `buf`'s byte 0 (messages before it were dropped).
    origin: u64,
    /// Bytes of `buf` already parsed into messages.
    parsed: usize,
    buf: Reassembly,
}

struct QuicFlow {
    first_dcid: Vec<u8>,
    buf: Reassembly,
}

/// Stateful decoder; one per agent (or per replayed capture).
pub struct Decoder {
    limits: Limits,
    stats: DecodeStats,
    tls: FlowTable<u64, TlsFlow>,
    dns_tcp: FlowTable<(u64, bool), DnsTcpFlow>,
    quic: FlowTable<u64, QuicFlow>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            stats: DecodeStats::default(),
            tls: FlowTable::new(),
            dns_tcp: FlowTable::new(),
            quic: FlowTable::new(),
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Partial flows currently held (all protocols).
    pub fn pending_flows(&self) -> usize {
        self.tls.values().filter(|f| f.state.is_some()).count()
            + self.dns_tcp.values().filter(|f| f.state.is_some()).count()
            + self.quic.values().filter(|f| f.state.is_some()).count()
    }

    /// Feed one captured packet; decoded messages are appended to `out`.
    pub fn push(&mut self, pkt: &PacketIn<'_>, out: &mut Vec<Decoded>) {
        match pkt.hint {
            Hint::DnsUdp => self.push_dns_udp(pkt, out),
            Hint::DnsTcp => self.push_dns_tcp(pkt, out),
            Hint::Tls => self.push_tls(pkt, out),
            Hint::Quic => self.push_quic(pkt, out),
        }
    }

    /// Drop flows idle for longer than the timeout; partial ones are counted as expired.
    pub fn expire(&mut self, now_ns: u64) {
        let timeout = self.limits.flow_timeout_ns;
        self.stats.tls.expired += self.tls.expire(now_ns, timeout, |_| true);
        self.stats.dns.expired += self.dns_tcp.expire(now_ns, timeout, |s| s.buf.held() > 0);
        self.stats.quic.expired += self.quic.expire(now_ns, timeout, |_| true);
    }

    fn push_dns_udp(&mut self, pkt: &PacketIn<'_>, out: &mut Vec<Decoded>) {
        let s = &mut self.stats.dns;
        s.packets += 1;
        if pkt.is_truncated() {
            s.truncated_input += 1;
        }
        match dns::parse_message(pkt.payload) {
            Ok(msg) => {
                s.decoded += 1;
                out.push(dns_out(pkt, Transport::Udp, msg));
            }
            Err(_) if pkt.is_truncated() => s.count_error(&DecodeError::Truncated {
                proto: Proto::Dns,
                what: "DNS message",
                needed: pkt.wire_len as usize,
                captured: pkt.payload.len(),
            }),
            Err(e) => s.count_error(&e),
        }
    }

    fn push_dns_tcp(&mut self, pkt: &PacketIn<'_>, out: &mut Vec<Decoded>) {
        let limits = self.limits;
        let s = &mut self.stats.dns;
        s.packets += 1;
        if pkt.is_truncated() {
            s.truncated_input += 1;
        }
        if pkt.payload.is_empty() {
            s.not_this += 1;
            return;
        }
        let key = (pkt.flow, pkt.direction == Direction::Egress);
        let flow = self
            .dns_tcp
            .entry(key, pkt.ts_ns, limits.max_flows, s, || DnsTcpFlow {
                base: None,
                origin: 0,
                parsed: 0,
                buf: Reassembly::new(limits.max_flow_bytes),
            });
        let Some(st) = flow.state.as_mut() else {
            s.after_done += 1;
            return;
        };
        let offset = match (pkt.tcp_seq, st.base) {
            (None, _) => st.origin + st.buf.contiguous().len() as u64,
            (Some(seq), None) => {
                st.base = Some(seq);
                0
            }
            (Some(seq), Some(base)) => u64::from(seq.wrapping_sub(base)),
        };
        let done_upto = st.origin + st.parsed as u64;
        if offset >= 1 << 31 || offset + (pkt.payload.len() as u64) <= done_upto {
            // Before the stream start we know, or already parsed: a retransmission.
            s.not_this += 1;
            return;
        }
        let (rel, bytes) = if offset >= st.origin {
            (offset - st.origin, pkt.payload)
        } else {
            let skip = usize::try_from(st.origin - offset).unwrap_or(usize::MAX);
            (0, pkt.payload.get(skip..).unwrap_or(&[]))
        };
        if st.buf.insert(rel, bytes).is_err() {
            s.count_error(&DecodeError::TooLarge {
                proto: Proto::Dns,
                what: "DNS-over-TCP stream buffer",
                announced: usize::try_from(rel).unwrap_or(usize::MAX) + bytes.len(),
                limit: limits.max_flow_bytes,
            });
            flow.state = None;
            return;
        }
        let mut any = false;
        loop {
            let avail = &st.buf.contiguous()[st.parsed..];
            if avail.is_empty() {
                break;
            }
            match dns::tcp_frame(avail) {
                Parsed::Found((m, n)) => {
                    any = true;
                    match dns::parse_message(m) {
                        Ok(msg) => {
                            s.decoded += 1;
                            out.push(dns_out(pkt, Transport::Tcp, msg));
                        }
                        Err(e) => s.count_error(&e),
                    }
                    st.parsed += n;
                }
                Parsed::NotThis | Parsed::Incomplete { .. } => break,
            }
        }
        if st.parsed > 0 && !st.buf.has_gap() {
            // Drop what was parsed so a long-lived stream does not hit the limit.
            let rest = st.buf.contiguous()[st.parsed..].to_vec();
            st.buf = Reassembly::new(limits.max_flow_bytes);
            let _ = st.buf.insert(0, &rest);
            st.origin += st.parsed as u64;
            st.parsed = 0;
        }
        if !any {
            s.buffered += 1;
        }
    }

    fn push_tls(&mut self, pkt: &PacketIn<'_>, out: &mut Vec<Decoded>) {
        let limits = self.limits;
        let s = &mut self.stats.tls;
        s.packets += 1;
        if pkt.is_truncated() {
            s.truncated_input += 1;
        }
        if pkt.direction == Direction::Ingress || pkt.payload.is_empty() {
            s.not_this += 1;
            return;
        }
        let flow = self
            .tls
            .entry(pkt.flow, pkt.ts_ns, limits.max_flows, s, || TlsFlow {
                base: None,
                early: Vec::new(),
                early_bytes: 0,
                buf: Reassembly::new(limits.max_flow_bytes),
                cut_at: None,
            });
        let Some(st) = flow.state.as_mut() else {
            s.after_done += 1;
            return;
        };
        match (pkt.tcp_seq, st.base) {
            (None, _) => {
                let off = st.buf.contiguous().len() as u64;
                place(st, off, pkt);
            }
            (Some(seq), None) if tls::may_start_handshake_record(pkt.payload) => {
                st.base = Some(seq);
                place(st, 0, pkt);
                for (eseq, bytes) in std::mem::take(&mut st.early) {
                    let off = u64::from(eseq.wrapping_sub(seq));
                    if off < 1 << 31 {
                        let _ = st.buf.insert(off, &bytes);
                    }
                }
                st.early_bytes = 0;
            }
            (Some(seq), None) => {
                st.early_bytes += pkt.payload.len();
                if st.early_bytes > limits.max_flow_bytes {
                    s.count_error(&DecodeError::TooLarge {
                        proto: Proto::Tls,
                        what: "segments before the ClientHello start",
                        announced: st.early_bytes,
                        limit: limits.max_flow_bytes,
                    });
                    flow.state = None;
                    return;
                }
                st.early.push((seq, pkt.payload.to_vec()));
                s.buffered += 1;
                return;
            }
            (Some(seq), Some(base)) => {
                let off = u64::from(seq.wrapping_sub(base));
                if off >= 1 << 31 {
                    s.not_this += 1;
                    return;
                }
                place(st, off, pkt);
            }
        }
        let stream = st.buf.contiguous();
        let result = match tls::client_hello_from_stream(stream, limits.max_flow_bytes) {
            Ok(Parsed::Incomplete { .. })
                if st.cut_at.is_some_and(|c| stream.len() as u64 >= c) =>
            {
                // The capture cut the ClientHello and no more of it will come: use the prefix.
                tls::client_hello_from_stream_prefix(stream, limits.max_flow_bytes)
            }
            Ok(Parsed::Incomplete { needed: Some(n) }) if n > limits.max_flow_bytes => {
                Err(DecodeError::TooLarge {
                    proto: Proto::Tls,
                    what: "ClientHello records",
                    announced: n,
                    limit: limits.max_flow_bytes,
                })
            }
            other => other,
        };
        match result {
            Ok(Parsed::Found(hello)) => {
                s.decoded += 1;
                flow.state = None;
                out.push(Decoded::ClientHello {
                    flow: pkt.flow,
                    ts_ns: pkt.ts_ns,
                    src: pkt.src,
                    dst: pkt.dst,
                    transport: Transport::Tcp,
                    hello,
                });
            }
            Ok(Parsed::NotThis) => {
                s.not_this += 1;
                flow.state = None;
            }
            Ok(Parsed::Incomplete { .. }) => s.buffered += 1,
            Err(e) => {
                s.count_error(&e);
                flow.state = None;
            }
        }
    }

    fn push_quic(&mut self, pkt: &PacketIn<'_>, out: &mut Vec<Decoded>) {
        let limits = self.limits;
        let s = &mut self.stats.quic;
        s.packets += 1;
        if pkt.is_truncated() {
            s.truncated_input += 1;
        }
        if pkt.direction == Direction::Ingress {
            s.not_this += 1;
            return;
        }
        if let Some(f) = self.quic.touch(pkt.flow, pkt.ts_ns)
            && f.state.is_none()
        {
            s.after_done += 1;
            return;
        }
        let fallback = self
            .quic
            .get(&pkt.flow)
            .and_then(|f| f.state.as_ref())
            .map(|q| q.first_dcid.clone());
        let d = match quic::decrypt_datagram(pkt.payload, fallback.as_deref()) {
            Ok(Parsed::Found(d)) => d,
            Ok(Parsed::NotThis | Parsed::Incomplete { .. }) => {
                s.not_this += 1;
                return;
            }
            Err(e) if pkt.is_truncated() => {
                s.count_error(&DecodeError::Truncated {
                    proto: Proto::Quic,
                    what: "Initial datagram",
                    needed: pkt.wire_len as usize,
                    captured: pkt.payload.len(),
                });
                let _ = e;
                return;
            }
            Err(e) => {
                s.count_error(&e);
                return;
            }
        };
        let version = d.version;
        let flow = self
            .quic
            .entry(pkt.flow, pkt.ts_ns, limits.max_flows, s, || QuicFlow {
                first_dcid: d.dcid.clone(),
                buf: Reassembly::new(limits.max_flow_bytes),
            });
        let Some(st) = flow.state.as_mut() else {
            s.after_done += 1;
            return;
        };
        for c in &d.chunks {
            if st.buf.insert(c.offset, &c.data).is_err() {
                s.count_error(&DecodeError::TooLarge {
                    proto: Proto::Quic,
                    what: "CRYPTO stream",
                    announced: usize::try_from(c.offset).unwrap_or(usize::MAX),
                    limit: limits.max_flow_bytes,
                });
                flow.state = None;
                return;
            }
        }
        match quic::client_hello_from_crypto(&st.buf) {
            Ok(Parsed::Found(hello)) => {
                s.decoded += 1;
                flow.state = None;
                out.push(Decoded::ClientHello {
                    flow: pkt.flow,
                    ts_ns: pkt.ts_ns,
                    src: pkt.src,
                    dst: pkt.dst,
                    transport: Transport::Quic { version },
                    hello,
                });
            }
            Ok(Parsed::Incomplete { needed: Some(n) }) if n > limits.max_flow_bytes => {
                s.count_error(&DecodeError::TooLarge {
                    proto: Proto::Quic,
                    what: "ClientHello",
                    announced: n,
                    limit: limits.max_flow_bytes,
                });
                flow.state = None;
            }
            Ok(Parsed::Incomplete { .. }) => s.buffered += 1,
            Ok(Parsed::NotThis) => {
                s.not_this += 1;
                flow.state = None;
            }
            Err(e) => {
                s.count_error(&e);
                flow.state = None;
            }
        }
    }
}

/// Place a TLS segment's captured bytes; remember where a truncated capture left a hole.
fn place(st: &mut TlsFlow, off: u64, pkt: &PacketIn<'_>) {
    // Over-limit bytes are refused; the head is kept and the parser reports TooLarge if the
    // ClientHello really needs them.
    let _ = st.buf.insert(off, pkt.payload);
    if pkt.is_truncated() {
        let cut = off + pkt.payload.len() as u64;
        st.cut_at = Some(st.cut_at.map_or(cut, |c| c.min(cut)));
    }
}

fn dns_out(pkt: &PacketIn<'_>, transport: Transport, msg: dns::DnsMessage) -> Decoded {
    Decoded::Dns {
        flow: pkt.flow,
        ts_ns: pkt.ts_ns,
        src: pkt.src,
        dst: pkt.dst,
        transport,
        msg,
    }
}
