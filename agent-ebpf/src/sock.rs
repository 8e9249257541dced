//! connect4/6 and sendmsg4/6: socket ownership and outbound destinations.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            self as gen, bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie,
        },
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use shadowai_common::{drop, flags, hook, kind, prog, ConnectEvent, SendKey, SockOwner, COMM_LEN};

use crate::{blocked_addr, config, count_drop, owners, share, wakeup_flags, EVENTS, SEEN};

/// Refuse the operation: connect()/sendmsg() fail with EPERM at once.
const DENY: i32 = 0;

/// Allow the operation (cgroup_sock_addr return value).
const ALLOW: i32 = 1;

const IPPROTO_TCP: u32 = 6;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, hook::CONNECT4, prog::CONNECT4, false)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, hook::CONNECT6, prog::CONNECT6, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, hook::SENDMSG4, prog::SENDMSG4, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, hook::SENDMSG6, prog::SENDMSG6, true)
}

/// The current task as a socket owner. Every field is written, none zeroed first: a byte
/// array built on its own (as `bpf_get_current_comm()` builds one, or a `[0; N]` field in an
/// initialiser) is zeroed by a call to compiler-builtins' byte-wise `memset`.
#[inline(always)]
pub fn current_owner() -> SockOwner {
    let mut owner = MaybeUninit::<SockOwner>::uninit();
    let o = owner.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: writes of every field of `owner` through its own pointer; the helper writes
    // all COMM_LEN bytes of the comm (NUL-padded, or zeroed on failure).
    unsafe {
        (*o).pid = (pid_tgid >> 32) as u32;
        (*o).uid = uid_gid as u32;
        (*o).gid = (uid_gid >> 32) as u32;
        (*o).counted = 0;
        (*o).cgroup_id = bpf_get_current_cgroup_id();
        (*o).netns = 0;
        gen::bpf_get_current_comm((*o).comm.as_mut_ptr().cast(), COMM_LEN as u32);
        owner.assume_init()
    }
}

/// The de-dup key of a destination as the four words it is (little-endian BPF: an
/// address's bytes in memory order), so that no array of it is zeroed apart.
#[inline(always)]
fn send_words(pid: u32, hook_id: u8, sa: *const bpf_sock_addr, v6: bool, dport: u16) -> [u64; 4] {
    let pair = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    // SAFETY: reads of context fields the verifier allows for this attach type.
    let (a, b) = unsafe {
        if v6 {
            let ip6 = (*sa).user_ip6;
            (pair(ip6[0], ip6[1]), pair(ip6[2], ip6[3]))
        } else {
            (u64::from((*sa).user_ip4), 0)
        }
    };
    [
        (u64::from(pid) << 32) | u64::from(hook_id),
        a,
        b,
        u64::from(dport),
    ]
}

/// The words of a de-dup key as the key.
#[inline(always)]
fn send_key(words: [u64; 4]) -> SendKey {
    // SAFETY: SendKey is 32 bytes of integers and byte arrays (`owner`, `daddr`, then
    // `dport` and its zero padding), 8-byte aligned like the array.
    unsafe { core::mem::transmute::<[u64; 4], SendKey>(words) }
}

/// A UDP socket sending again to the destination it reported within the window, for the
/// same owner: a repeat, decided from the socket's storage alone (no owner built, no `SEEN`
/// lookup: a resolver or a QUIC client re-sending on one unconnected socket). Never for a
/// blocked destination, which is reported every time. A change of the process's name or
/// cgroup reaches the storage at the next send that is not a repeat (a new destination, or
/// the window's end); one of its uid or gid, or another process sending, at once.
#[inline(always)]
fn repeat_send(ctx: &SockAddrContext, hook_id: u8, v6: bool, dport: u16, now: u64) -> bool {
    let Some(st) = owners::of_sock_addr(ctx) else {
        return false;
    };
    let words = send_words(
        (bpf_get_current_pid_tgid() >> 32) as u32,
        hook_id,
        ctx.sock_addr,
        v6,
        dport,
    );
    st.reported(&words, bpf_get_current_uid_gid(), now, config().dedup_ns)
        && !blocked_addr(v6, &send_key(words).daddr)
}

/// Records the owner, reports the destination, and decides: ALLOW, or DENY for a
/// destination inside a blocked network (always reported, never de-duplicated).
#[inline(always)]
fn on_sock_addr(ctx: &SockAddrContext, hook_id: u8, prog_id: u32, v6: bool) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: reads of context fields the verifier allows for this attach type.
    let (dport, protocol) = unsafe { (u16::from_be((*sa).user_port as u16), (*sa).protocol as u8) };
    let tcp = u32::from(protocol) == IPPROTO_TCP;
    // The window is seconds long: the coarse clock (the last tick, no clock-source read;
    // in a VM a TSC read is tens of ns) is exact enough for it.
    // SAFETY: helper without arguments.
    let now = unsafe { gen::bpf_ktime_get_coarse_ns() };
    let sendmsg = hook_id == hook::SENDMSG4 || hook_id == hook::SENDMSG6;
    if sendmsg && !tcp && repeat_send(ctx, hook_id, v6, dport, now) {
        return ALLOW;
    }
    let mut owner = current_owner();
    // SAFETY: the context pointer is valid for the duration of the program.
    owner.netns = unsafe { bpf_get_netns_cookie(sa.cast()) };
    let st = match owners::record(ctx, &owner, tcp) {
        Ok(st) => st,
        Err(()) => {
            count_drop(prog_id, drop::MAP_FULL);
            core::ptr::null_mut()
        }
    };

    // Report each (process, hook, destination) once per window.
    let words = send_words(owner.pid, hook_id, sa, v6, dport);
    let key = send_key(words);
    let daddr = key.daddr;
    let blocked = blocked_addr(v6, &daddr);
    let window = config().dedup_ns;
    let verdict = if blocked { DENY } else { ALLOW };
    if !blocked {
        // SAFETY: the socket's storage (or null), valid while the program runs.
        let st = unsafe { st.as_mut() };
        if let Some(last) = unsafe { SEEN.get(&key) } {
            if window != 0 && now.wrapping_sub(*last) < window {
                if let Some(st) = st {
                    st.remember(&words, *last);
                }
                return verdict;
            }
        }
        // Under a flood, over its process's and user's shares: not reported, and not
        // marked reported (`share.rs`).
        if !share::admit(owner.pid, owner.uid, prog_id) {
            return verdict;
        }
        let _ = SEEN.insert(&key, &now, 0);
        if let Some(st) = st {
            st.remember(&words, now);
        }
    }

    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_drop(prog_id, drop::RINGBUF_FULL);
        return verdict;
    };
    // Only a reported destination needs the cookie here: a UDP socket's first call makes
    // it; a parked TCP socket's connect has made it already (`owners::record`), and its
    // packets take it if they carry payload.
    // SAFETY: the context pointer is valid for the duration of the program.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    entry.write(ConnectEvent {
        kind: kind::CONNECT,
        hook: hook_id,
        protocol,
        family: if v6 { 6 } else { 4 },
        flags: if blocked { flags::BLOCKED as u8 } else { 0 },
        // SAFETY: helper without arguments.
        ts_ns: unsafe { gen::bpf_ktime_get_ns() },
        cookie,
        owner,
        tid: bpf_get_current_pid_tgid() as u32,
        dport,
        _pad1: 0,
        daddr,
    });
    entry.submit(wakeup_flags::<ConnectEvent>());
    verdict
}
