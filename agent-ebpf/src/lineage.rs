//! Process lineage: `sched/sched_process_fork` records child → parent thread group for every
//! new task, so that a child that forks, execs and exits before the agent reads /proc (or a
//! subshell that never execs at all) is still tied to its parent — and through it to an AI
//! agent session. One LRU map update per fork, no event: userspace looks a parent up only
//! when /proc no longer has it.
//!
//! The tracepoint's layout changed across kernels (`child_pid` at 44 with inline comm
//! arrays, at 20 with `__data_loc` strings on 6.x): userspace reads the offset from the
//! event's `format` file and writes it to `LINEAGE_CFG`; 0 leaves the program idle.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::{Array, LruHashMap},
    programs::TracePointContext,
};

/// Child task id → parent thread-group id (thread creations included: harmless, a thread
/// id is never looked up as a process).
#[map]
static LINEAGE: LruHashMap<u32, u32> = LruHashMap::with_max_entries(65536, 0);

/// `[0]`: offset of `child_pid` in this kernel's `sched_process_fork` record.
#[map]
static LINEAGE_CFG: Array<u32> = Array::with_max_entries(1, 0);

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let Some(&off) = LINEAGE_CFG.get(0) else {
        return 0;
    };
    if off == 0 || off > 252 {
        return 0;
    }
    // SAFETY: the offset comes from the tracepoint's own format (checked in userspace);
    // the read goes through the probe-read helper, so a bad one fails, never faults.
    let child: i32 = match unsafe { ctx.read_at((off & 0xff) as usize) } {
        Ok(c) => c,
        Err(_) => return 0,
    };
    if child <= 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = LINEAGE.insert(&(child as u32), &parent, 0);
    0
}
