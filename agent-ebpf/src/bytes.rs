//! Byte accounting per socket: L4 payload bytes out and in, keyed by socket cookie, for the
//! agent to attribute to AI uses. Sizes only — no payload byte is ever read.
//!
//! - `bytes_egress` / `bytes_ingress` (cgroup_skb at the cgroup2 root, beside the capture
//!   programs): parse the IP and TCP/UDP headers, and for a packet with payload do one hash
//!   lookup and one add (one insert for a socket's first payload packet). Under GSO/GRO
//!   a packet here is a whole super-segment with one set of headers, so the payload is the
//!   packet length minus those headers, as a capture on the wire adds it up.
//! - `bytes_release` (cgroup/sock_release): when the socket is closed, its final counters go
//!   to userspace through `BYTES_CLOSED` and its entry is deleted, so the map holds live
//!   sockets only. Bytes a socket still sends after close() (an orphaned send queue) are
//!   not counted.
//!
//! `SOCK_BYTES` is an LRU map: a flood of sockets evicts the least recently active ones, never
//! a busy upload. Every refused insert or full ring is counted in `BYTES_LOST`.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::bpf_get_socket_cookie,
    macros::{cgroup_skb, cgroup_sock, map},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{SkBuffContext, SockContext},
};
use shadowai_common::bytes::{lost, SockBytes, SockClosed};

/// Socket cookie → payload bytes so far.
#[map]
static SOCK_BYTES: LruHashMap<u64, SockBytes> = LruHashMap::with_max_entries(65536, 0);

/// Final counters of released sockets (24-byte records; drained by the agent's timer).
#[map]
static BYTES_CLOSED: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Lost counts, slot = [`lost`] reason.
#[map]
static BYTES_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::SLOTS, 0);

/// cgroup_skb: let the packet through.
const PASS: i32 = 1;
/// cgroup_sock: allow.
const ALLOW: i32 = 1;
/// The agent drains on a timer: never wake it per record.
const BPF_RB_NO_WAKEUP: u64 = 1;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[cgroup_skb]
pub fn bytes_egress(ctx: SkBuffContext) -> i32 {
    if let Some(n) = payload_len(&ctx) {
        count(&ctx, n, true);
    }
    PASS
}

#[cgroup_skb]
pub fn bytes_ingress(ctx: SkBuffContext) -> i32 {
    if let Some(n) = payload_len(&ctx) {
        count(&ctx, n, false);
    }
    PASS
}

#[cgroup_sock(sock_release)]
pub fn bytes_release(ctx: SockContext) -> i32 {
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

/// L4 payload bytes of this packet (`None` for no payload, fragments, other protocols).
/// The packet starts at the IP header.
#[inline(always)]
fn payload_len(ctx: &SkBuffContext) -> Option<u32> {
    let total = ctx.len();
    let b0: u8 = ctx.load(0).ok()?;
    let (l4, proto) = match b0 >> 4 {
        4 => {
            let ihl = ((b0 & 0x0f) as u32) * 4;
            let frag: [u8; 2] = ctx.load(6).ok()?;
            // A non-first fragment has no L4 header: not counted (rare for TCP/UDP here).
            if ihl < 20 || (((frag[0] as u16) << 8) | frag[1] as u16) & 0x1fff != 0 {
                return None;
            }
            (ihl, ctx.load::<u8>(9).ok()?)
        }
        6 => (40, ctx.load::<u8>(6).ok()?),
        _ => return None,
    };
    let hdr = match proto {
        IPPROTO_TCP => {
            let doff: u8 = ctx.load(l4 as usize + 12).ok()?;
            ((doff >> 4) as u32) * 4
        }
        IPPROTO_UDP => 8,
        _ => return None,
    };
    let off = l4 + hdr;
    if total <= off {
        return None;
    }
    Some(total - off)
}

/// One lookup and one add; an insert for the socket's first payload packet.
#[inline(always)]
fn count(ctx: &SkBuffContext, n: u32, egress: bool) {
    // SAFETY: ctx.skb is the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    if add(cookie, n, egress) {
        return;
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
