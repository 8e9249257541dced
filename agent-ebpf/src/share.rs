//! Shares of the bulk ring under a flood (constants and rules: `shadowai_common::share`).
//!
//! The bulk ring `EVENTS` is one queue for every process on the host: a local user who
//! floods it with junk (distinct DNS names, UDP connects to distinct addresses) would push
//! out the events of the AI use they want to hide. While the ring is mostly empty nothing
//! here touches a map (one ring query per event). Under pressure each event is charged to
//! its process, then — beyond the process's share — to its user; an event over both shares
//! is counted as throttled and not reported. Refusals and held hellos never come here
//! (they go to `DECISIONS`).
//!
//! Counts are plain adds per interval: two CPUs charging one process at the same instant
//! may lose a count (a share is then exceeded by one). Both tables are LRU maps: a flood
//! of new processes evicts idle entries, and a process whose entry was evicted starts a
//! new share — which needs a new process per 32 events, each a fork the exec and fork
//! tracepoints see.

use aya_ebpf::{helpers::generated::bpf_ktime_get_coarse_ns, macros::map, maps::LruHashMap};
use shadowai_common::{drop, share, share::Used};

use crate::{count_drop, EVENTS};

/// Process (tgid) → events charged this interval.
#[map]
static SHARE_PROCS: LruHashMap<u32, Used> = LruHashMap::with_max_entries(8192, 0);

/// User (uid) → events charged beyond their processes' own shares this interval.
#[map]
static SHARE_USERS: LruHashMap<u32, Used> = LruHashMap::with_max_entries(1024, 0);

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// May an event of process `pid` (0: unknown) and user `uid` go to `EVENTS`? Counts a
/// refusal in `DROPS` for `prog_id`.
#[inline(never)]
pub fn admit(pid: u32, uid: u32, prog_id: u32) -> bool {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA);
    let size = EVENTS.query(BPF_RB_RING_SIZE);
    // Ring sizes and positions are far below 2^60: no product here can overflow.
    if pending * share::PRESSURE_DIV < size {
        return true;
    }
    // SAFETY: helper without arguments.
    let interval = unsafe { bpf_ktime_get_coarse_ns() } >> share::INTERVAL_SHIFT;
    let user = if pid == 0 { share::UNOWNED_USER } else { uid };
    // Past three quarters the users' shares close too: only each process's own is left.
    let full = pending * share::PRESSURE_DIV >= size * 3;
    if charge(&SHARE_PROCS, pid, interval) <= share::PER_PROCESS
        || (!full && charge(&SHARE_USERS, user, interval) <= share::PER_USER)
    {
        return true;
    }
    count_drop(prog_id, drop::THROTTLED);
    false
}

/// One more event for `key` this interval; returns its count so far, this one included.
#[inline(always)]
fn charge(map: &LruHashMap<u32, Used>, key: u32, interval: u64) -> u64 {
    match map.get_ptr_mut(&key) {
        Some(u) => {
            // SAFETY: a valid map value pointer while the program runs; see the module's
            // note on concurrent adds.
            unsafe {
                if (*u).interval != interval {
                    (*u).interval = interval;
                    (*u).count = 0;
                }
                (*u).count += 1;
                (*u).count
            }
        }
        None => {
            // A failed insert (never for an LRU map) only forgets this count.
            let _ = map.insert(&key, &Used { interval, count: 1 }, 0);
            1
        }
    }
}
