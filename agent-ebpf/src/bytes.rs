//! Byte accounting per socket: L4 payload bytes out and in, keyed by socket cookie, for the
//! agent to attribute to AI uses. Sizes only — no payload byte is ever read.
//!
//! - [`count`], called by the capture programs `skb_egress` / `skb_ingress` (`skb.rs`) right
//!   after their header parse and before they decide anything: for a packet with payload,
//!   one hash lookup and one add (one insert for a socket's first payload packet). Every
//!   packet with payload is counted, the ones those programs then drop too — as when the
//!   count had cgroup_skb programs of its own, which the kernel ran whatever the capture
//!   program returned. Under GSO/GRO a packet here is a whole super-segment with one set
//!   of headers, so the payload is the packet length minus those headers, as a capture on
//!   the wire adds it up. (Folded into the capture programs: one program run and one
//!   header parse per packet and direction instead of two.)
//! - `bytes_release` (cgroup/sock_release): when the socket is closed, its final counters go
//!   to userspace through `BYTES_CLOSED` and its entry is deleted, so the map holds live
//!   sockets only. Bytes a socket still sends after close() (an orphaned send queue) are
//!   not counted. A socket whose owner storage (`owners.rs`) is not marked `counted`, or
//!   that has no storage, never had counters and is skipped: [`count`] marks it before
//!   inserting a socket's first counters, creating the storage of a socket that has none
//!   (an accepted one); UDP sockets are marked from their first sendmsg() (they may have
//!   counted datagrams before they had storage). So the release of a socket that carried
//!   no payload — most accepted ones of a busy server, every one of the connect loop's —
//!   is one storage read (and, for TCP, one read of the socket's `PARKED` slot, freed here
//!   if it still holds one), not a cookie and a miss in a 65,536-entry table.
//!
//! `SOCK_BYTES` is an LRU map: a flood of sockets evicts the least recently active ones, never
//! a busy upload. Every refused insert or full ring is counted in `BYTES_LOST`.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::bpf_get_socket_cookie,
    macros::{cgroup_sock, map},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{SkBuffContext, SockContext},
};
use shadowai_common::bytes::{lost, SockBytes, SockClosed};

use crate::owners;

/// Socket cookie → payload bytes so far.
#[map]
static SOCK_BYTES: LruHashMap<u64, SockBytes> = LruHashMap::with_max_entries(65536, 0);

/// Final counters of released sockets (24-byte records; drained by the agent's timer).
#[map]
static BYTES_CLOSED: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Lost counts, slot = [`lost`] reason.
#[map]
static BYTES_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::SLOTS, 0);

/// cgroup_sock: allow.
const ALLOW: i32 = 1;
/// The agent drains on a timer: never wake it per record.
const BPF_RB_NO_WAKEUP: u64 = 1;

#[cgroup_sock(sock_release)]
pub fn bytes_release(ctx: SockContext) -> i32 {
    // A socket whose storage says it never carried payload has nothing to look up (most
    // client TCP sockets that only connect: one storage read and one slot read instead of
    // a cookie and a miss in a 65,536-entry table); its parked slot, if any, is freed.
    if owners::released_uncounted(&ctx) {
        return ALLOW;
    }
    // SAFETY: the context pointer is valid for the duration of the program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    // SAFETY: a copy is taken at once; a concurrent add after it is lost with the socket.
    let Some(b) = (unsafe { SOCK_BYTES.get(&cookie) }).copied() else {
        return ALLOW;
    };
    let _ = SOCK_BYTES.remove(&cookie);
    match BYTES_CLOSED.reserve::<SockClosed>(0) {
        Some(mut e) => {
            e.write(SockClosed { cookie, bytes: b });
            e.submit(BPF_RB_NO_WAKEUP);
        }
        None => count_lost(lost::CLOSED_RING_FULL),
    }
    ALLOW
}

#[inline(always)]
fn count_lost(slot: u32) {
    if let Some(p) = BYTES_LOST.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Adds `n` payload bytes of one packet to the socket's counters: one lookup and one add; an
/// insert for the socket's first payload packet. `cookie` is the packet's socket cookie
/// (`bpf_get_socket_cookie` of the skb, which the capture program needs too).
#[inline(always)]
pub fn count(ctx: &SkBuffContext, cookie: u64, n: u32, egress: bool) {
    if add(cookie, n, egress) {
        return;
    }
    // Marked before the insert: a release racing with it looks the counters up (see
    // `owners::released_uncounted`). Without storage the release will not: the counters stay
    // readable while the socket lives, and LRU eviction reclaims them.
    if !owners::mark_counted(ctx, cookie) {
        count_lost(lost::NO_STORAGE);
    }
    let b = if egress {
        SockBytes {
            bytes_out: n as u64,
            bytes_in: 0,
        }
    } else {
        SockBytes {
            bytes_out: 0,
            bytes_in: n as u64,
        }
    };
    if SOCK_BYTES
        .insert(&cookie, &b, BPF_NOEXIST as u64)
        .is_err()
        // Another CPU inserted it first: add to theirs.
        && !add(cookie, n, egress)
    {
        count_lost(lost::MAP_FULL);
    }
}

/// A plain add, not an atomic one (core offers no atomic read-modify-write on the BPF
/// target without a crate-level feature). Egress and ingress touch different fields; the
/// kernel serialises one TCP socket's transmits, and one flow's receives arrive on one CPU,
/// so a lost add needs one UDP socket sending from several CPUs at the same instant.
#[inline(always)]
fn add(cookie: u64, n: u32, egress: bool) -> bool {
    let Some(p) = SOCK_BYTES.get_ptr_mut(&cookie) else {
        return false;
    };
    // SAFETY: a valid map value pointer, alive while the entry is (RCU).
    unsafe {
        if egress {
            (*p).bytes_out += n as u64;
        } else {
            (*p).bytes_in += n as u64;
        }
    }
    true
}
