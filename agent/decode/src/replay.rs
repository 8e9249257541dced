//! Replay: read a capture file and yield the packets the kernel would have captured, as
//! [`PacketIn`] values — DNS on port 53 (UDP and TCP, both directions), the client's
//! segments of TCP flows whose first payload is a TLS ClientHello record (at most 8 segments
//! / 16 KiB, like the kernel), and the client's QUIC long-header Initials (at most 4 per
//! flow). The client is whoever sent the first such payload; its direction is `Egress`.
//! `flow` is a hash of the canonical (sorted) 5-tuple — for a TLS connection mixed with its
//! number, as the kernel's socket cookie differs per connection; `src`/`dst` are as on the wire.

use hashlink::LruCache;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use crate::decoder::{Decoder, Limits};
use crate::defrag::{Defrag, DefragStats};
use crate::error::DecodeError;
use crate::layers::{self, L3, L4Kind, LINKTYPE_RAW};
use crate::pcap::{Frame, Reader};
use crate::stats::DecodeStats;
use crate::{Decoded, Direction, Hint, PacketIn, quic, tls};

/// Like the kernel: segments and bytes captured per TLS flow, datagrams per QUIC flow.
pub const MAX_TLS_SEGS: u32 = 8;
pub const MAX_TLS_BYTES: u64 = 16 * 1024 + 5;
pub const MAX_QUIC_PKTS: u32 = 4;
/// Flows whose class the replay remembers, like the kernel's `FLOWS` map: past it the least
/// recently seen is forgotten (counted in [`ReplayStats::flows_evicted`]).
pub const MAX_FLOWS: usize = 65_536;
const DNS_PORT: u16 = 53;

/// A classified packet with its own copy of the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayPacket {
    pub ts_ns: u64,
    pub flow: u64,
    pub direction: Direction,
    pub hint: Hint,
    pub tcp_seq: Option<u32>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub wire_len: u32,
    pub payload: Vec<u8>,
}

impl ReplayPacket {
    pub fn as_packet_in(&self) -> PacketIn<'_> {
        PacketIn {
            ts_ns: self.ts_ns,
            flow: self.flow,
            direction: self.direction,
            hint: self.hint,
            tcp_seq: self.tcp_seq,
            src: self.src,
            dst: self.dst,
            wire_len: self.wire_len,
            payload: &self.payload,
        }
    }
}

/// Counters of the replay's own classification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub frames: u64,
    /// Frames that are not IP/TCP/UDP (or are later fragments).
    pub not_ip: u64,
    /// Frames whose headers were malformed.
    pub malformed: u64,
    /// Frames of a link type the reader does not understand.
    pub unsupported_link: u64,
    /// Packets yielded, by hint.
    pub dns_udp: u64,
    pub dns_tcp: u64,
    pub tls: u64,
    pub quic: u64,
    /// Packets ignored (not a kind the kernel captures, or past its per-flow caps).
    pub ignored: u64,
    /// Flows forgotten to stay within [`MAX_FLOWS`] (a later segment of one is judged afresh).
    pub flows_evicted: u64,
    /// IP fragments seen, datagrams reassembled from them, datagrams given up.
    pub defrag: DefragStats,
}

#[derive(Clone, Copy, Debug)]
enum FlowClass {
    /// Capturing the client's handshake segments.
    Tls {
        client: SocketAddr,
        segs: u32,
        bytes: u64,
        /// This connection's flow id: the 5-tuple's hash mixed with the connection's
        /// number, so a later connection on a reused 4-tuple is a flow of its own for the
        /// decoder too (its handshake is not taken for the earlier one's, already done).
        conn: u64,
    },
    Quic {
        client: SocketAddr,
        pkts: u32,
    },
    /// Nothing the kernel would capture.
    Ignore,
}

/// The classifier on its own (for callers that parse frames themselves).
pub struct Classifier {
    flows: LruCache<u64, FlowClass>,
    /// TLS connections opened so far (numbers each one's flow id).
    conns: u64,
    defrag: Defrag,
    pub stats: ReplayStats,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::with_max_flows(MAX_FLOWS)
    }
}

impl Classifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// A classifier remembering at most `max` flows (at least one).
    pub fn with_max_flows(max: usize) -> Self {
        Self {
            flows: LruCache::new(max.max(1)),
            conns: 0,
            defrag: Defrag::default(),
            stats: ReplayStats::default(),
        }
    }

    /// Remembers `class` for `flow`, forgetting the least recently seen flow when full.
    fn remember(&mut self, flow: u64, class: FlowClass) {
        if self.flows.len() >= self.flows.capacity() && !self.flows.contains_key(&flow) {
            self.stats.flows_evicted += 1;
        }
        self.flows.insert(flow, class);
    }

    /// Classify one frame; `None` when the kernel would not have captured it.
    pub fn classify(&mut self, frame: &Frame) -> Option<ReplayPacket> {
        self.stats.frames += 1;
        let whole;
        let l3 = match layers::parse_l3(frame.linktype, &frame.data) {
            Ok(Some(L3::Fragment(fr))) => {
                let done = self.defrag.add(frame.ts_ns, &fr);
                self.stats.defrag = self.defrag.stats.clone();
                match done {
                    Some(p) => {
                        whole = p;
                        layers::parse_l3(LINKTYPE_RAW, &whole)
                    }
                    None => return None,
                }
            }
            other => other,
        };
        let seg = match l3 {
            Ok(Some(L3::Segment(s))) => s,
            Ok(Some(L3::Fragment(_))) => {
                self.stats.malformed += 1;
                return None;
            }
            Ok(None) => {
                self.stats.not_ip += 1;
                return None;
            }
            Err(DecodeError::UnsupportedLinkType { .. }) => {
                self.stats.unsupported_link += 1;
                return None;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let (proto, seq) = match seg.kind {
            L4Kind::Tcp { seq, .. } => (6u8, Some(seq)),
            L4Kind::Udp => (17u8, None),
        };
        let flow = flow_hash(proto, seg.src, seg.dst);
        let mk = |hint, direction, flow| ReplayPacket {
            ts_ns: frame.ts_ns,
            flow,
            direction,
            hint,
            tcp_seq: seq,
            src: seg.src,
            dst: seg.dst,
            wire_len: seg.wire_len,
            payload: seg.payload.to_vec(),
        };
        let dns_dir = if seg.dst.port() == DNS_PORT {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let is_dns = seg.dst.port() == DNS_PORT || seg.src.port() == DNS_PORT;
        match seg.kind {
            L4Kind::Udp if is_dns => {
                self.stats.dns_udp += 1;
                Some(mk(Hint::DnsUdp, dns_dir, flow))
            }
            L4Kind::Tcp { .. } if is_dns => {
                if seg.payload.is_empty() {
                    self.stats.ignored += 1;
                    return None;
                }
                self.stats.dns_tcp += 1;
                Some(mk(Hint::DnsTcp, dns_dir, flow))
            }
            L4Kind::Tcp { flags, .. } => {
                // A SYN opens a new connection: a 4-tuple reused by a later connection in the
                // same capture starts fresh, as the kernel's per-socket state does.
                if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
                    self.flows.remove(&flow);
                }
                if seg.payload.is_empty() {
                    return None;
                }
                if !self.flows.contains_key(&flow) {
                    let class = if is_client_hello_start(seg.payload) {
                        self.conns += 1;
                        FlowClass::Tls {
                            client: seg.src,
                            segs: 0,
                            bytes: 0,
                            conn: flow ^ self.conns.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        }
                    } else {
                        FlowClass::Ignore
                    };
                    self.remember(flow, class);
                }
                let Some(class) = self.flows.get_mut(&flow) else {
                    self.stats.ignored += 1;
                    return None;
                };
                match class {
                    FlowClass::Tls {
                        client,
                        segs,
                        bytes,
                        conn,
                    } if *client == seg.src && *segs < MAX_TLS_SEGS && *bytes < MAX_TLS_BYTES => {
                        *segs += 1;
                        *bytes += seg.payload.len() as u64;
                        self.stats.tls += 1;
                        Some(mk(Hint::Tls, Direction::Egress, *conn))
                    }
                    _ => {
                        self.stats.ignored += 1;
                        None
                    }
                }
            }
            L4Kind::Udp => {
                let initial = quic::looks_like_initial(seg.payload);
                if initial && !self.flows.contains_key(&flow) {
                    self.remember(
                        flow,
                        FlowClass::Quic {
                            client: seg.src,
                            pkts: 0,
                        },
                    );
                }
                let Some(class) = self.flows.get_mut(&flow) else {
                    self.stats.ignored += 1;
                    return None;
                };
                match class {
                    FlowClass::Quic { client, pkts }
                        if initial && *client == seg.src && *pkts < MAX_QUIC_PKTS =>
                    {
                        *pkts += 1;
                        self.stats.quic += 1;
                        Some(mk(Hint::Quic, Direction::Egress, flow))
                    }
                    _ => {
                        self.stats.ignored += 1;
                        None
                    }
                }
            }
        }
    }
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn is_client_hello_start(p: &[u8]) -> bool {
    tls::may_start_handshake_record(p) && p.get(5).is_none_or(|&t| t == 0x01)
}

/// FNV-1a over the canonical 5-tuple (endpoints sorted): both directions share the hash.
pub fn flow_hash(proto: u8, a: SocketAddr, b: SocketAddr) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&[proto]);
    for ep in [lo, hi] {
        match ep.ip() {
            std::net::IpAddr::V4(v) => eat(&v.octets()),
            std::net::IpAddr::V6(v) => eat(&v.octets()),
        }
        eat(&ep.port().to_be_bytes());
    }
    h
}

/// Iterates a capture, yielding classified packets. Reader errors end the iteration.
pub struct Replay<R> {
    reader: Reader<R>,
    pub classifier: Classifier,
}

impl<R: Read> Replay<R> {
    pub fn new(r: R) -> Result<Self, DecodeError> {
        Ok(Replay {
            reader: Reader::new(r)?,
            classifier: Classifier::new(),
        })
    }
}

impl<R: Read> Iterator for Replay<R> {
    type Item = Result<ReplayPacket, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.reader.next()? {
                Ok(frame) => {
                    if let Some(p) = self.classifier.classify(&frame) {
                        return Some(Ok(p));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Everything one replay produced.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub decoded: Vec<Decoded>,
    pub decode_stats: DecodeStats,
    pub replay_stats: ReplayStats,
    /// The reader error that ended the capture early, if any.
    pub error: Option<DecodeError>,
}

/// Run a whole capture through a fresh [`Decoder`].
pub fn decode_reader<R: Read>(r: R, limits: Limits) -> Result<ReplayOutcome, DecodeError> {
    let mut replay = Replay::new(r)?;
    let mut dec = Decoder::new(limits);
    let mut decoded = Vec::new();
    let mut error = None;
    let mut last_ts = 0;
    for item in replay.by_ref() {
        match item {
            Ok(p) => {
                last_ts = last_ts.max(p.ts_ns);
                dec.push(&p.as_packet_in(), &mut decoded);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    // End of capture: whatever is still partial will never complete.
    dec.expire(
        last_ts
            .saturating_add(limits.flow_timeout_ns)
            .saturating_add(1),
    );
    Ok(ReplayOutcome {
        decoded,
        decode_stats: dec.stats().clone(),
        replay_stats: replay.classifier.stats,
        error,
    })
}

/// [`decode_reader`] on a file.
pub fn decode_file(path: &Path, limits: Limits) -> Result<ReplayOutcome, DecodeError> {
    let f = std::fs::File::open(path).map_err(|source| DecodeError::Io { offset: 0, source })?;
    decode_reader(std::io::BufReader::new(f), limits)
}

#[cfg(test)]
mod tests {
    use super::{Classifier, Hint};
    use crate::layers::LINKTYPE_RAW;
    use crate::pcap::Frame;

    /// A raw IPv4/TCP frame 10.0.0.2:40000 → 10.0.0.1:443 with `flags` and `payload`.
    fn tcp(flags: u8, payload: &[u8]) -> Frame {
        tcp_from(40_000, flags, payload)
    }

    /// As [`tcp`], from client port `sport`.
    fn tcp_from(sport: u16, flags: u8, payload: &[u8]) -> Frame {
        let total = 40 + payload.len();
        let mut d = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
            10,
            0,
            0,
            2,
            10,
            0,
            0,
            1,
        ];
        let [p0, p1] = sport.to_be_bytes();
        d.extend_from_slice(&[p0, p1, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags]);
        d.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        d.extend_from_slice(payload);
        Frame {
            ts_ns: 0,
            linktype: LINKTYPE_RAW,
            orig_len: d.len() as u32,
            data: d,
        }
    }

    #[test]
    fn a_reused_four_tuple_is_a_new_connection_after_a_syn() {
        let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0];
        let mut c = Classifier::new();
        let mut ids = Vec::new();
        for _ in 0..2 {
            assert!(c.classify(&tcp(0x02, &[])).is_none()); // SYN
            let p = c.classify(&tcp(0x18, &hello));
            assert_eq!(p.as_ref().map(|p| p.hint), Some(Hint::Tls));
            ids.push(p.map(|p| p.flow));
            // The rest of a long connection: the flow's segment budget runs out.
            for _ in 0..20 {
                c.classify(&tcp(0x18, &[0x17, 0x03, 0x03, 0x00, 0x01, 0]));
            }
            assert!(
                c.classify(&tcp(0x18, &[0x17, 0x03, 0x03, 0x00, 0x01, 0]))
                    .is_none()
            );
        }
        assert_ne!(ids[0], ids[1], "each connection is a flow of its own");
    }

    /// A flood of junk flows cannot grow the replay's memory: the flow map stays at its
    /// bound, every forgotten flow is counted, and a handshake in progress that keeps
    /// sending is not the one forgotten.
    #[test]
    fn junk_flows_stay_within_the_bound() {
        let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0];
        let junk = [0x47, 0x45, 0x54, 0x20];
        let mut c = Classifier::with_max_flows(8);
        let first = c.classify(&tcp_from(1, 0x18, &hello)).map(|p| p.flow);
        assert!(first.is_some());
        let tuple = super::flow_hash(
            6,
            "10.0.0.2:1".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        for port in 100..1_100u16 {
            assert!(c.classify(&tcp_from(port, 0x18, &junk)).is_none());
            if port % 4 == 0 {
                // The handshake's flow is seen again (its segment budget runs out, but the
                // flow stays known): recently seen flows are not the ones forgotten.
                c.classify(&tcp_from(1, 0x18, &[0x01]));
            }
            assert!(c.flows.len() <= 8);
        }
        assert!(
            c.flows.contains_key(&tuple),
            "the live handshake was forgotten"
        );
        assert_eq!(c.stats.flows_evicted, 1_000 + 1 - 8);
    }
}
