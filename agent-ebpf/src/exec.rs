//! Process lifecycle: the new program and its argv at sched_process_exec, and the exit of
//! a thread-group leader. Offsets are those of the stable tracepoint formats
//! (`/sys/kernel/tracing/events/.../format`); the agent checks them before attaching.
//!
//! argv is read where `/proc/PID/cmdline` reads it: the new memory map's
//! `arg_start..arg_end`, NUL-separated, in place by the time the exec tracepoint fires. The
//! field offsets differ between kernel builds: userspace finds them in the kernel's BTF and
//! writes them to `EXEC_CFG`. (Read at execve() entry instead, argv needed a syscall
//! tracepoint, and while one is attached every syscall of every process takes the traced
//! entry path: ≈ 8.5 ns each here, BENCHMARKS.md.) The environment, which follows argv in
//! the same area, is never read.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_user,
        },
    },
    macros::{map, tracepoint},
    maps::Array,
    programs::TracePointContext,
};
use shadowai_common::{drop, kind, prog, ExecEvent, ExitEvent, ARGS_LEN, FILENAME_LEN};

use crate::{count_drop, wakeup_flags, EVENTS};

/// `sched/sched_process_exec`: `__data_loc char[] filename` at 8.
const EXEC_FILENAME_LOC: usize = 8;

/// Byte offsets, from the kernel's BTF: `[0]` `task_struct.mm`, `[1]` `mm_struct.arg_start`,
/// `[2]` `mm_struct.arg_end`. `[0] == 0`: unknown, no argv is read.
#[map]
static EXEC_CFG: Array<u32> = Array::with_max_entries(3, 0);

/// Copies the current task's argv area (at most ARGS_LEN bytes) into `dst`; its length, or
/// `None` when the offsets are unknown or a read failed.
#[inline(always)]
fn read_argv(dst: &mut [u8; ARGS_LEN]) -> Option<u32> {
    let mm_off = *EXEC_CFG.get(0)?;
    let start_off = *EXEC_CFG.get(1)?;
    let end_off = *EXEC_CFG.get(2)?;
    if mm_off == 0 {
        return Some(0); // no BTF: userspace said so at start-up
    }
    if mm_off > 1 << 16 || start_off > 1 << 12 || end_off > 1 << 12 {
        return None;
    }
    // SAFETY: helper without arguments; the task is only read through probe-read helpers.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: probe reads: a bad address is an error, never a fault.
    let (start, end) = unsafe {
        let mm: *const u8 =
            bpf_probe_read_kernel(task.wrapping_add(mm_off as usize).cast()).ok()?;
        let start: u64 = bpf_probe_read_kernel(mm.wrapping_add(start_off as usize).cast()).ok()?;
        let end: u64 = bpf_probe_read_kernel(mm.wrapping_add(end_off as usize).cast()).ok()?;
        (start, end)
    };
    if end <= start {
        return None;
    }
    let mut n = end - start;
    if n > ARGS_LEN as u64 {
        n = ARGS_LEN as u64;
    }
    // SAFETY: `n` is 1..=ARGS_LEN, the size of `dst`; a user read that faults fails.
    let r = unsafe {
        bpf_probe_read_user(
            dst.as_mut_ptr().cast(),
            n as u32,
            start as *const core::ffi::c_void,
        )
    };
    (r == 0).then_some(n as u32)
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

#[inline(always)]
fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets of the tracepoint's fields.
    let loc: u32 = unsafe { ctx.read_at(EXEC_FILENAME_LOC) }.map_err(|e| e as i64)?;
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_drop(prog::EXEC, drop::RINGBUF_FULL);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `ev` points at a reserved record we fill before submitting.
    unsafe {
        (*ev).kind = kind::EXEC;
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).cgroup_id = bpf_get_current_cgroup_id();
        (*ev).comm = bpf_get_current_comm().unwrap_or_default();
        (*ev).filename[0] = 0;
        let name_ptr = (ctx.as_ptr_u8()).wrapping_add((loc & 0xffff) as usize);
        if bpf_probe_read_kernel_str_bytes(name_ptr, &mut (&mut (*ev).filename)[..FILENAME_LEN])
            .is_err()
        {
            count_drop(prog::EXEC, drop::READ_FAILED);
        }
        (*ev).args_len = match read_argv(&mut (*ev).args) {
            Some(n) => n,
            None => {
                count_drop(prog::EXEC, drop::READ_FAILED);
                0
            }
        };
    }
    entry.submit(wakeup_flags::<ExecEvent>());
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tgid != tid {
        return 0; // a thread, not the process
    }
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_drop(prog::EXIT, drop::RINGBUF_FULL);
        return 0;
    };
    entry.write(ExitEvent {
        kind: kind::EXIT,
        pid: tgid,
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    });
    entry.submit(wakeup_flags::<ExitEvent>());
    0
}

trait CtxPtr {
    fn as_ptr_u8(&self) -> *const u8;
}

impl CtxPtr for TracePointContext {
    #[inline(always)]
    fn as_ptr_u8(&self) -> *const u8 {
        use aya_ebpf::EbpfContext;
        self.as_ptr() as *const u8
    }
}
