//! shadowai's kernel programs.
//!
//! - `connect4/6`, `sendmsg4/6` (cgroup_sock_addr at the cgroup2 root): record who owns each
//!   socket (`owners.rs`: a TCP socket's in a preallocated slot until its first payload packet,
//!   then in the socket's own storage) and report each (process, destination) once per window.
//! - `skb_egress`/`skb_ingress` (cgroup_skb at the cgroup2 root): capture only what can carry
//!   a name — DNS on watched ports, the first handshake bytes of TCP flows that start with a
//!   TLS ClientHello record, QUIC long-header Initials — stamped with the socket's owner.
//!   A UDP DNS message repeating one of the same owner within the de-dup window is only
//!   counted (`dnsdedup.rs`). The same programs, from the same header parse, count every
//!   packet's payload bytes per socket (`bytes.rs`); `bytes_release` (cgroup sock_release)
//!   hands a closed socket's final counts to userspace.
//! - `sched_process_exec` + `sched_process_exit` tracepoints: the exe path and argv of
//!   every new program (argv from the new memory map, at offsets userspace reads from the
//!   kernel's BTF; no syscall tracepoint), so short-lived processes keep their identity.
//! - `sched_process_fork` tracepoint (`lineage.rs`): child → parent, for lineage that
//!   outlives /proc.
//!
//! - Under a flood of the bulk ring, each process and then each user gets a share of it
//!   (`share.rs`), so junk from one cannot crowd out another's events.
//!
//! Every program is a thin entry point over a `try_*` function; every lost or cut event is
//! counted in `DROPS`. Nothing here ever blocks traffic (every hook returns "allow").
#![no_std]
#![feature(core_intrinsics)]
#![allow(
    internal_features,
    reason = "core_intrinsics for atomic_cxchg: core offers no compare_exchange on the BPF target (owners.rs)"
)]
#![no_main]

mod bytes;
mod dnsdedup;
mod exec;
mod lineage;
mod names;
mod owners;
mod share;
mod skb;
mod sock;

use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use shadowai_common::{drop, Config, FlowState, SendKey, DNS_PORT_WORDS, QNAME_MAX};

/// All events to userspace (8 MiB).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Records that need a decision or a teardown at once (any `flags`: refusals, held
/// ClientHellos and QUIC Initials), apart from the bulk: a local flood that fills `EVENTS`
/// cannot crowd them out, and the agent drains this ring first (1 MiB ≈ 450 records).
#[map]
static DECISIONS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Socket cookie → capture state of that flow.
#[map]
static FLOWS: LruHashMap<u64, FlowState> = LruHashMap::with_max_entries(65536, 0);

/// (process, destination) → last report time, for in-kernel de-duplication.
#[map]
static SEEN: LruHashMap<SendKey, u64> = LruHashMap::with_max_entries(16384, 0);

/// Ports whose UDP/TCP traffic is DNS (53 unless configured): a bitmap, one bit per port
/// (`dns_port_bit`), so that the per-packet question is an inlined array read.
#[map]
static DNS_PORTS: Array<u64> = Array::with_max_entries(DNS_PORT_WORDS, 0);

/// Enforcement: blocked name suffixes, reversed wire form (see `qname_suffix_key`).
#[map]
static BLOCK_NAMES: LpmTrie<[u8; QNAME_MAX], u32> = LpmTrie::with_max_entries(16384, 0);

/// Enforcement: blocked IPv4 / IPv6 networks (catalogue CIDRs of blocked services).
#[map]
static BLOCK_NETS4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(4096, 0);
#[map]
static BLOCK_NETS6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(4096, 0);

/// Per-CPU scratch: a DNS question name as loaded, and its reversed lookup key.
#[map]
static QNAME_SCRATCH: PerCpuArray<[u8; 256]> = PerCpuArray::with_max_entries(1, 0);
#[map]
static QNAME_KEY: PerCpuArray<Key<[u8; QNAME_MAX]>> = PerCpuArray::with_max_entries(1, 0);

/// Is `daddr` inside a blocked network?
#[inline(always)]
fn blocked_addr(v6: bool, daddr: &[u8; 16]) -> bool {
    if config().block_nets == 0 {
        return false;
    }
    if v6 {
        BLOCK_NETS6.get(&Key::new(128, *daddr)).is_some()
    } else {
        BLOCK_NETS4
            .get(&Key::new(32, [daddr[0], daddr[1], daddr[2], daddr[3]]))
            .is_some()
    }
}

/// Drop counters, `prog * drop::REASONS + reason`.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop::SLOTS, 0);

/// Agent configuration (index 0).
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Ring-buffer flags.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Counts one lost or cut event.
#[inline(always)]
fn count_drop(prog: u32, reason: u32) {
    let idx = prog * drop::REASONS + reason;
    if let Some(p) = DROPS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn config() -> Config {
    match CONFIG.get(0) {
        Some(c) => *c,
        None => Config::default(),
    }
}

/// Submit flags for a record of `T` in `EVENTS`: wake the reader only when this record takes
/// the pending bytes across a multiple of the threshold; below it, or while the reader is
/// still behind, it drains on its timer or keeps draining (it stops only at an empty ring).
/// Forcing a wake-up on every record once the threshold was passed (as before) cost each
/// captured packet an irq_work self-IPI and a reader wake-up, ≈ 3 µs, whenever the reader
/// lagged: 10× the capture filter's cost in a DNS loop. Two CPUs reserving across the same
/// boundary at once can both miss it; the next multiple (or the timer) wakes the reader then.
#[inline(always)]
fn wakeup_flags<T>() -> u64 {
    let threshold = config().wakeup_bytes;
    if threshold == 0 {
        return BPF_RB_FORCE_WAKEUP;
    }
    // Producer minus consumer position: this record is counted already (it is reserved),
    // with its 8-byte header, the total rounded up to 8 bytes.
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA);
    let record = (core::mem::size_of::<T>() as u64 + 8 + 7) & !7;
    if avail >= threshold && avail % threshold < record {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
