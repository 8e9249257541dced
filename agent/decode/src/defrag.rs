//! IP fragment reassembly for replay (the kernel sees datagrams before fragmentation; a
//! capture may hold fragments). Bounded: at most [`MAX_PARTIALS`] datagrams in progress, each
//! at most 65,535 bytes; the least recently touched is dropped (counted) when full. Overlaps
//! resolve first-writer-wins like every other reassembly here.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::layers::{FragKey, Fragment};
use crate::reasm::Reassembly;

pub const MAX_PARTIALS: usize = 1024;
const MAX_DATAGRAM: usize = 65_535 - 40;

struct Partial {
    buf: Reassembly,
    /// Length of the reassembled payload, known once the last fragment arrived.
    total: Option<usize>,
    last_ts: u64,
}

/// Outcome counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    pub fragments: u64,
    pub reassembled: u64,
    /// Datagrams given up: table full, over 64 KiB, or inconsistent lengths.
    pub dropped: u64,
}

#[derive(Default)]
pub struct Defrag {
    partials: HashMap<FragKey, Partial>,
    pub stats: DefragStats,
}

impl Defrag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a fragment; returns a raw IP packet (IPv4 or IPv6 header + whole payload) once
    /// the datagram is complete.
    pub fn add(&mut self, ts_ns: u64, fr: &Fragment<'_>) -> Option<Vec<u8>> {
        self.stats.fragments += 1;
        if !self.partials.contains_key(&fr.key) && self.partials.len() >= MAX_PARTIALS {
            let oldest = self
                .partials
                .iter()
                .min_by_key(|(_, p)| p.last_ts)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.partials.remove(&k);
                self.stats.dropped += 1;
            }
        }
        let p = self.partials.entry(fr.key).or_insert_with(|| Partial {
            buf: Reassembly::new(MAX_DATAGRAM),
            total: None,
            last_ts: ts_ns,
        });
        p.last_ts = p.last_ts.max(ts_ns);
        let end = fr.offset + fr.data.len();
        let bad_last = !fr.more && p.total.is_some_and(|t| t != end);
        if p.buf.insert(fr.offset as u64, fr.data).is_err() || bad_last {
            self.partials.remove(&fr.key);
            self.stats.dropped += 1;
            return None;
        }
        if !fr.more {
            p.total = Some(end);
        }
        let total = p.total?;
        let have = p.buf.contiguous();
        if have.len() < total {
            return None;
        }
        let packet = raw_packet(&fr.key, &have[..total]);
        self.partials.remove(&fr.key);
        self.stats.reassembled += 1;
        Some(packet)
    }
}

fn raw_packet(key: &FragKey, payload: &[u8]) -> Vec<u8> {
    match (key.src, key.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload.len()) as u16;
            let mut p = vec![0x45, 0];
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 64, key.proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(payload);
            p
        }
        (s, d) => {
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            p.extend_from_slice(&[key.proto, 64]);
            for a in [s, d] {
                match a {
                    IpAddr::V6(v) => p.extend_from_slice(&v.octets()),
                    IpAddr::V4(v) => p.extend_from_slice(&v.to_ipv6_mapped().octets()),
                }
            }
            p.extend_from_slice(payload);
            p
        }
    }
}
