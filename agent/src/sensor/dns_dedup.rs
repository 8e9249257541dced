//! The kernel's count of DNS messages it did not send up because they repeated one the
//! same socket owner sent or received within the de-dup window (`agent-ebpf/src/dnsdedup.rs`).

use aya::maps::{MapData, PerCpuArray};
use shadowai_common::dir;

use crate::error::AgentError;

/// Label of each direction slot, in slot order.
const DIRECTIONS: [(u8, &str); 2] = [(dir::EGRESS, "egress"), (dir::INGRESS, "ingress")];

/// The per-CPU `DNS_DEDUP` counters, by direction.
pub struct DnsDedup {
    map: PerCpuArray<MapData, u64>,
    /// Last values read, kept when a read fails (logged once).
    last: [u64; 2],
    read_failed: bool,
}

impl DnsDedup {
    pub fn new(map: aya::maps::Map) -> Result<Self, AgentError> {
        let map = PerCpuArray::try_from(map).map_err(|e| AgentError::Map {
            name: "DNS_DEDUP",
            reason: e.to_string(),
        })?;
        Ok(Self {
            map,
            last: [0; 2],
            read_failed: false,
        })
    }

    /// Messages de-duplicated so far, summed over CPUs: (direction, count).
    pub fn counts(&mut self) -> Vec<(&'static str, u64)> {
        DIRECTIONS
            .iter()
            .map(|&(slot, label)| {
                match self.map.get(&u32::from(slot), 0) {
                    Ok(v) => self.last[usize::from(slot)] = v.iter().sum(),
                    Err(e) if !self.read_failed => {
                        self.read_failed = true;
                        tracing::warn!(error = %e, direction = label, "reading the kernel's DNS de-dup counter failed; /metrics keeps the last value");
                    }
                    Err(_) => {}
                }
                (label, self.last[usize::from(slot)])
            })
            .collect()
    }
}
