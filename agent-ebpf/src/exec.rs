//! Process lifecycle: argv at execve() entry, the new program at sched_process_exec, and
//! the exit of a thread-group leader. Offsets are those of the stable tracepoint formats
//! (`/sys/kernel/tracing/events/.../format`); the agent checks them before attaching.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use shadowai_common::{
    drop, kind, prog, ExecEvent, ExitEvent, ARGS_LEN, ARGS_PACK, ARG_CHUNK, FILENAME_LEN, MAX_ARGS,
};

use crate::{count_drop, wakeup_flags, ARGS_SCRATCH, EVENTS, EXEC_ARGS};

/// `syscalls/sys_enter_execve`: `argv` at offset 24.
const EXECVE_ARGV: usize = 24;
/// `syscalls/sys_enter_execveat`: `argv` at offset 32.
const EXECVEAT_ARGV: usize = 32;
/// `sched/sched_process_exec`: `__data_loc char[] filename` at 8, `old_pid` at 16.
const EXEC_FILENAME_LOC: usize = 8;
const EXEC_OLD_PID: usize = 16;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    save_args(&ctx, EXECVE_ARGV);
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    save_args(&ctx, EXECVEAT_ARGV);
    0
}

/// Copies up to MAX_ARGS argv strings (NUL-separated) into EXEC_ARGS[tid].
#[inline(always)]
fn save_args(ctx: &TracePointContext, argv_off: usize) {
    // SAFETY: the offset is that of the tracepoint's argv field.
    let argv: *const *const u8 = match unsafe { ctx.read_at(argv_off) } {
        Ok(p) => p,
        Err(_) => return,
    };
    let Some(buf) = ARGS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch slot, exclusively ours while this program runs.
    let buf = unsafe { &mut *buf };
    let mut off: usize = 0;
    for i in 0..MAX_ARGS {
        // SAFETY: user pointer read through the helper; faults are returned, not taken.
        let arg: *const u8 = match unsafe { bpf_probe_read_user(argv.wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if arg.is_null() {
            break;
        }
        // Bound the offset with a mask the verifier understands; ARGS_LEN = 2 * ARGS_PACK.
        let start = off & (ARGS_PACK - 1);
        if off >= ARGS_PACK {
            break;
        }
        let end = start + ARG_CHUNK;
        if end > ARGS_LEN {
            break;
        }
        // SAFETY: as above.
        match unsafe { bpf_probe_read_user_str_bytes(arg, &mut buf.data[start..end]) } {
            // The helper's length excludes the NUL; keep one as the separator.
            Ok(s) => off = start + s.len() + 1,
            Err(_) => break,
        }
    }
    buf.len = if off > ARGS_LEN {
        ARGS_LEN as u32
    } else {
        off as u32
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if EXEC_ARGS.insert(&tid, &*buf, 0).is_err() {
        count_drop(prog::EXEC, drop::MAP_FULL);
    }
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
    let old_pid: i32 = unsafe { ctx.read_at(EXEC_OLD_PID) }.map_err(|e| e as i64)?;
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
        (*ev).args_len = 0;
        let key = old_pid as u32;
        if let Some(args) = EXEC_ARGS.get(&key) {
            if bpf_probe_read_kernel_buf(args.data.as_ptr(), &mut (&mut (*ev).args)[..]).is_ok() {
                (*ev).args_len = args.len;
            }
            let _ = EXEC_ARGS.remove(&key);
        }
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
    let _ = EXEC_ARGS.remove(&tid);
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
