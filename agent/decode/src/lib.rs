//! shadowai's protocol decoders.
//!
//! Pure decoders over `&[u8]` (DNS, TLS ClientHello, QUIC Initial) with three outcomes
//! ([`Parsed::Found`], [`Parsed::NotThis`], [`Parsed::Incomplete`]) or a [`DecodeError`], and a
//! stateful [`Decoder`] that feeds them packets the way the agent captures them: it reassembles
//! ClientHellos across TCP segments (out of order, duplicated), DNS-over-TCP streams and the QUIC
//! CRYPTO stream across Initial packets, with bounded memory and counted outcomes.
//!
//! [`pcap`] reads capture files and [`replay`] turns them into the same [`PacketIn`] values the
//! kernel would deliver; [`signals`] knows encrypted-DNS endpoints.

pub mod decoder;
pub mod defrag;
pub mod dns;
pub mod error;
mod flows;
pub mod ja4;
pub mod layers;
pub mod pcap;
pub mod quic;
pub mod reasm;
pub mod replay;
pub mod signals;
pub mod stats;
pub mod tls;

use std::net::SocketAddr;

pub use decoder::{Decoder, Limits};
pub use dns::{DnsAnswer, DnsMessage, DnsQuestion, RData, SvcbInfo};
pub use error::{DecodeError, ErrorKind, Parsed, Proto};
pub use stats::{DecodeStats, ProtoStats};
pub use tls::{ClientHelloInfo, EchInfo};

/// Direction of a packet relative to the host that captured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Egress,
    Ingress,
}

/// What the capture point thinks a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hint {
    DnsUdp,
    DnsTcp,
    Tls,
    Quic,
}

/// One captured packet payload and its metadata, as the kernel (or [`replay`]) delivers it.
#[derive(Clone, Debug)]
pub struct PacketIn<'a> {
    pub ts_ns: u64,
    /// Socket cookie live; a hash of the canonical 5-tuple in replay.
    pub flow: u64,
    pub direction: Direction,
    pub hint: Hint,
    /// TCP sequence number of the first payload byte (None for UDP).
    pub tcp_seq: Option<u32>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Payload bytes on the wire (>= `payload.len()` when the capture truncated it).
    pub wire_len: u32,
    pub payload: &'a [u8],
}

impl PacketIn<'_> {
    /// Whether the capture cut this payload short.
    pub fn is_truncated(&self) -> bool {
        self.wire_len as usize > self.payload.len()
    }
}

/// How a decoded message travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// QUIC with the wire version number of the Initial.
    Quic {
        version: u32,
    },
}

/// What the decoder found. Evidence only: names, parameters, fingerprints — never payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Dns {
        flow: u64,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
        msg: DnsMessage,
    },
    ClientHello {
        flow: u64,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        /// `Tcp` or `Quic { version }`.
        transport: Transport,
        hello: ClientHelloInfo,
    },
}

impl Decoded {
    pub fn flow(&self) -> u64 {
        match self {
            Decoded::Dns { flow, .. } | Decoded::ClientHello { flow, .. } => *flow,
        }
    }
}
