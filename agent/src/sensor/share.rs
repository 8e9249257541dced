//! Who floods: the kernel charges each process's events to it while the bulk ring is under
//! pressure (`agent-ebpf/src/share.rs`). When the `throttled` drop count grows, the agent
//! reads those charges to name the processes that went over their share, once each.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};
use shadowai_common::share::{INTERVAL_SHIFT, PER_PROCESS, Used};

use crate::error::AgentError;

/// Processes named at most; the set is then cleared (a flooder may be named again).
const MAX_NAMED: usize = 1024;
/// Processes named per read at most.
const PER_READ: usize = 4;
/// Intervals back (≈ 134 ms each) that count as now.
const RECENT: u64 = 8;
/// Reads of the map at most this often: one walks up to 8,192 entries (two syscalls each),
/// on the task that drains the rings, and it only runs while a flood is being throttled.
const SCAN_EVERY: Duration = Duration::from_secs(5);

/// The kernel's per-process charges (`SHARE_PROCS`).
pub struct Shares {
    procs: HashMap<MapData, u32, Used>,
    named: HashSet<u32>,
    read_failed: bool,
    last_scan: Option<Instant>,
}

impl Shares {
    pub fn new(map: aya::maps::Map) -> Result<Self, AgentError> {
        let procs = HashMap::try_from(map).map_err(|e| AgentError::Map {
            name: "SHARE_PROCS",
            reason: e.to_string(),
        })?;
        Ok(Self {
            procs,
            named: HashSet::new(),
            read_failed: false,
            last_scan: None,
        })
    }

    /// Processes over their share within the last second not named before, with their
    /// charge in their latest interval, the most charged first (at most a few per call).
    /// Pid 0 stands for sockets without a recorded owner.
    /// Empty between reads ([`SCAN_EVERY`]).
    pub fn new_flooders(&mut self) -> Vec<(u32, u64)> {
        if self.last_scan.is_some_and(|t| t.elapsed() < SCAN_EVERY) {
            return Vec::new();
        }
        self.last_scan = Some(Instant::now());
        let now = coarse_interval();
        let mut over = Vec::new();
        for entry in self.procs.iter() {
            match entry {
                Ok((pid, used)) => {
                    if used.count > PER_PROCESS && used.interval + RECENT >= now {
                        over.push((pid, used.count));
                    }
                }
                Err(e) => {
                    if !self.read_failed {
                        tracing::warn!(error = %e, "reading SHARE_PROCS failed: flooding processes go unnamed in the log (still counted as throttled)");
                        self.read_failed = true;
                    }
                    break;
                }
            }
        }
        pick(&mut self.named, over)
    }
}

/// The most charged of `over` not named yet, marked named.
fn pick(named: &mut HashSet<u32>, mut over: Vec<(u32, u64)>) -> Vec<(u32, u64)> {
    over.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    over.retain(|(pid, _)| !named.contains(pid));
    over.truncate(PER_READ);
    if named.len() + over.len() > MAX_NAMED {
        named.clear();
    }
    named.extend(over.iter().map(|(pid, _)| *pid));
    over
}

/// The kernel's current interval: `bpf_ktime_get_coarse_ns()` is CLOCK_MONOTONIC_COARSE.
fn coarse_interval() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes the timespec we pass; a failure leaves it zeroed,
    // and an interval of 0 only makes every charge look recent.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let ns = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    ns >> INTERVAL_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_flooders_are_named_once_each() {
        let mut named = HashSet::new();
        let over = vec![(10, 40), (11, 900), (12, 33), (13, 500), (14, 70), (15, 64)];
        assert_eq!(
            pick(&mut named, over.clone()),
            [(11, 900), (13, 500), (14, 70), (15, 64)]
        );
        assert_eq!(pick(&mut named, over.clone()), [(10, 40), (12, 33)]);
        assert!(pick(&mut named, over).is_empty(), "each is named once");
    }

    #[test]
    fn the_named_set_is_bounded() {
        let mut named: HashSet<u32> = (0..MAX_NAMED as u32).collect();
        assert_eq!(pick(&mut named, vec![(5_000_000, 99)]), [(5_000_000, 99)]);
        assert_eq!(named.len(), 1, "cleared when full");
    }
}
