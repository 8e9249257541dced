//! Counters: every packet the decoder sees ends in exactly one counted outcome.

use std::collections::BTreeMap;

use crate::error::{DecodeError, ErrorKind, Proto};

/// Outcome counters of one protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtoStats {
    /// Packets handed to this decoder.
    pub packets: u64,
    /// Messages decoded (DNS messages, ClientHellos).
    pub decoded: u64,
    /// Packets that were not this protocol after all (nothing wrong, nothing to decode).
    pub not_this: u64,
    /// Packets kept while waiting for more bytes of a message.
    pub buffered: u64,
    /// Packets that arrived for a flow whose message was already decoded (retransmits etc.).
    pub after_done: u64,
    /// Packets whose payload the capture truncated (wire_len > captured).
    pub truncated_input: u64,
    /// Partial flows dropped by [`crate::Decoder::expire`] (timeout).
    pub expired: u64,
    /// Partial flows dropped because the flow table was full (oldest first).
    pub evicted: u64,
    /// Errors by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl ProtoStats {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn count_error(&mut self, err: &DecodeError) {
        *self.errors.entry(err.kind()).or_insert(0) += 1;
    }
}

/// All counters of a [`crate::Decoder`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub dns: ProtoStats,
    pub tls: ProtoStats,
    pub quic: ProtoStats,
}

impl DecodeStats {
    pub fn proto_mut(&mut self, proto: Proto) -> Option<&mut ProtoStats> {
        match proto {
            Proto::Dns => Some(&mut self.dns),
            Proto::Tls => Some(&mut self.tls),
            Proto::Quic => Some(&mut self.quic),
            Proto::Pcap | Proto::Packet => None,
        }
    }

    /// Flatten to `(name, value)` pairs, e.g. for metrics (`tls_errors_malformed_total`).
    pub fn to_pairs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (name, s) in [("dns", &self.dns), ("tls", &self.tls), ("quic", &self.quic)] {
            out.push((format!("{name}_packets_total"), s.packets));
            out.push((format!("{name}_decoded_total"), s.decoded));
            out.push((format!("{name}_not_this_total"), s.not_this));
            out.push((format!("{name}_buffered_total"), s.buffered));
            out.push((format!("{name}_after_done_total"), s.after_done));
            out.push((format!("{name}_truncated_input_total"), s.truncated_input));
            out.push((format!("{name}_expired_total"), s.expired));
            out.push((format!("{name}_evicted_total"), s.evicted));
            for (kind, n) in &s.errors {
                out.push((format!("{name}_errors_{}_total", kind.as_str()), *n));
            }
        }
        out
    }
}
