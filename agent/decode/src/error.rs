//! The crate's one error type. Every variant names what was wrong and where (byte offset
//! into the unit being parsed), so a counted error can also be logged usefully.

use std::fmt;

/// Which decoder or layer an error (or a counter) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Dns,
    Tls,
    Quic,
    Pcap,
    Packet,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Dns => "dns",
            Proto::Tls => "tls",
            Proto::Quic => "quic",
            Proto::Pcap => "pcap",
            Proto::Packet => "packet",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes claim to be this protocol but a field is invalid.
    #[error("{proto}: malformed {what} at byte {offset}")]
    Malformed {
        proto: Proto,
        what: &'static str,
        offset: usize,
    },
    /// The capture cut the packet short (wire_len > captured) and the part needed is missing.
    #[error("{proto}: {what} needs {needed} bytes but the capture holds {captured}")]
    Truncated {
        proto: Proto,
        what: &'static str,
        needed: usize,
        captured: usize,
    },
    /// A message announces more bytes than the configured per-flow limit allows.
    #[error("{proto}: {what} announces {announced} bytes, over the limit of {limit}")]
    TooLarge {
        proto: Proto,
        what: &'static str,
        announced: usize,
        limit: usize,
    },
    /// The DNS message did not parse.
    #[error("dns: malformed message: {source}")]
    Dns {
        #[source]
        source: hickory_proto::ProtoError,
    },
    /// QUIC packet protection could not be removed (wrong keys or corrupted packet).
    #[error("quic: {step} failed for version {version:#010x}")]
    QuicCrypto { version: u32, step: &'static str },
    /// A QUIC frame type that may not appear in an Initial packet.
    #[error("quic: frame type {frame_type:#x} not allowed in an Initial at byte {offset}")]
    QuicFrame { frame_type: u64, offset: usize },
    /// The capture file's link type is not one the reader understands.
    #[error("pcap: unsupported link type {linktype}")]
    UnsupportedLinkType { linktype: u32 },
    /// Reading the capture file failed.
    #[error("pcap: reading the capture failed at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// A capture-file structure is invalid.
    #[error("pcap: malformed {what} at file byte {offset}")]
    PcapFormat { what: &'static str, offset: u64 },
}

/// A stable, countable label for each kind of error (the counters' keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    Malformed,
    Truncated,
    TooLarge,
    DnsMessage,
    QuicCrypto,
    QuicFrame,
    UnsupportedLinkType,
    Io,
    PcapFormat,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::Truncated => "truncated",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::DnsMessage => "dns_message",
            ErrorKind::QuicCrypto => "quic_crypto",
            ErrorKind::QuicFrame => "quic_frame",
            ErrorKind::UnsupportedLinkType => "unsupported_link_type",
            ErrorKind::Io => "io",
            ErrorKind::PcapFormat => "pcap_format",
        }
    }
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::Malformed { .. } => ErrorKind::Malformed,
            DecodeError::Truncated { .. } => ErrorKind::Truncated,
            DecodeError::TooLarge { .. } => ErrorKind::TooLarge,
            DecodeError::Dns { .. } => ErrorKind::DnsMessage,
            DecodeError::QuicCrypto { .. } => ErrorKind::QuicCrypto,
            DecodeError::QuicFrame { .. } => ErrorKind::QuicFrame,
            DecodeError::UnsupportedLinkType { .. } => ErrorKind::UnsupportedLinkType,
            DecodeError::Io { .. } => ErrorKind::Io,
            DecodeError::PcapFormat { .. } => ErrorKind::PcapFormat,
        }
    }

    pub(crate) fn malformed(proto: Proto, what: &'static str, offset: usize) -> Self {
        DecodeError::Malformed {
            proto,
            what,
            offset,
        }
    }
}

/// The three outcomes of a pure decoder; errors ride in the `Err` of a `Result<Parsed<T>, _>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A complete value.
    Found(T),
    /// These bytes are not this protocol; nothing to count as an error.
    NotThis,
    /// So far so good, but more bytes are needed (`needed` total bytes when known).
    Incomplete { needed: Option<usize> },
}
