//! connect4/6 and sendmsg4/6: socket ownership and outbound destinations.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie,
            bpf_ktime_get_ns,
        },
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use shadowai_common::{drop, flags, hook, kind, prog, ConnectEvent, SendKey, SockOwner};

use crate::{blocked_addr, config, count_drop, owners, wakeup_flags, EVENTS, SEEN};

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

/// The current task as a socket owner.
#[inline(always)]
pub fn current_owner() -> SockOwner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    SockOwner {
        pid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        counted: 0,
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns: 0,
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// Records the owner, reports the destination, and decides: ALLOW, or DENY for a
/// destination inside a blocked network (always reported, never de-duplicated).
#[inline(always)]
fn on_sock_addr(ctx: &SockAddrContext, hook_id: u8, prog_id: u32, v6: bool) -> i32 {
    let sa = ctx.sock_addr;
    let mut owner = current_owner();
    // SAFETY: the context pointer is valid for the duration of the program.
    owner.netns = unsafe { bpf_get_netns_cookie(sa.cast()) };
    // SAFETY: the context pointer is valid for the duration of the program.
    let tcp = unsafe { (*sa).protocol } == IPPROTO_TCP;
    if !owners::record(ctx, &owner, tcp) {
        count_drop(prog_id, drop::MAP_FULL);
    }

    let mut daddr = [0u8; 16];
    // SAFETY: reads of context fields the verifier allows for this attach type.
    let (dport, protocol) = unsafe {
        if v6 {
            let ip6 = (*sa).user_ip6;
            daddr[0..4].copy_from_slice(&ip6[0].to_ne_bytes());
            daddr[4..8].copy_from_slice(&ip6[1].to_ne_bytes());
            daddr[8..12].copy_from_slice(&ip6[2].to_ne_bytes());
            daddr[12..16].copy_from_slice(&ip6[3].to_ne_bytes());
        } else {
            daddr[0..4].copy_from_slice(&(*sa).user_ip4.to_ne_bytes());
        }
        (u16::from_be((*sa).user_port as u16), (*sa).protocol as u8)
    };

    let blocked = blocked_addr(v6, &daddr);
    // Report each (process, hook, destination) once per window.
    let key = SendKey {
        owner: ((owner.pid as u64) << 32) | hook_id as u64,
        daddr,
        dport,
        _pad: [0; 6],
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let window = config().dedup_ns;
    let verdict = if blocked { DENY } else { ALLOW };
    if !blocked {
        if let Some(last) = unsafe { SEEN.get(&key) } {
            if window != 0 && now.wrapping_sub(*last) < window {
                return verdict;
            }
        }
        let _ = SEEN.insert(&key, &now, 0);
    }

    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_drop(prog_id, drop::RINGBUF_FULL);
        return verdict;
    };
    // Only a reported connect needs the cookie: the first call makes it (an atomic on a
    // host-wide counter), which a socket that only connects (a port scan, a health check,
    // the connect loop) would otherwise pay for nothing. Its packets take it if they carry
    // payload.
    // SAFETY: the context pointer is valid for the duration of the program.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    entry.write(ConnectEvent {
        kind: kind::CONNECT,
        hook: hook_id,
        protocol,
        family: if v6 { 6 } else { 4 },
        flags: if blocked { flags::BLOCKED as u8 } else { 0 },
        ts_ns: now,
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
