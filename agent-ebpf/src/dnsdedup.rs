//! In-kernel de-duplication of repeated DNS messages (UDP), the way `sock.rs` de-duplicates
//! connects: a message identical to one the same socket owner sent (or received) within the
//! de-dup window (`Config::dedup_ns`, the agent's `--dedup-secs`; 0 = every message) is not
//! copied to userspace, only counted in [`DNS_DEDUP`] (per CPU, by direction).
//!
//! Identical means: same owner, same direction, same length and the same bytes after the
//! 2-byte transaction ID. The key is (owner, direction, hash, length), and the map value
//! keeps the message itself: a hit whose stored bytes differ (a hash collision, crafted or
//! not) is treated as new, emitted, and replaces the entry. So a collision can never hide a
//! first-seen name or a changed answer set; the worst an evader gets from one is an extra
//! event. Messages longer than [`DEDUP_MAX`] bytes are never de-duplicated (always emitted).
//! Callers never ask for refused queries (they are emitted every time).

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_ktime_get_coarse_ns, bpf_skb_load_bytes},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::SkBuffContext,
};

use crate::{config, owners};

/// Longest message (after its ID) that is de-duplicated; a power of two (see `load`).
const DEDUP_MAX: usize = 512;
const WORDS: usize = DEDUP_MAX / 8;

/// Who sent or received a message, its direction, and a hash of its bytes after the ID.
#[repr(C)]
#[derive(Clone, Copy)]
struct Key {
    /// The owner's process id, or (`by_cookie`) the socket cookie when the socket has no
    /// recorded owner.
    who: u64,
    hash: u64,
    len: u32,
    direction: u8,
    by_cookie: u8,
    _pad: [u8; 2],
}

/// A message as last reported: when, and its bytes after the ID (its last word zero-padded;
/// the words after it are not part of it and never read).
#[repr(C)]
#[derive(Clone, Copy)]
struct Seen {
    ts_ns: u64,
    words: [u64; WORDS],
}

/// Recently reported DNS messages (≈ 4.3 MiB of values at 8,192 entries). Eviction only
/// makes a repeat go up again.
#[map]
static DNS_SEEN: LruHashMap<Key, Seen> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU scratch for the message being looked at (too big for the 512-byte stack).
#[map]
static DNS_SCRATCH: PerCpuArray<Seen> = PerCpuArray::with_max_entries(1, 0);

/// Messages not emitted because they repeated one within the window, by direction
/// (`dir::EGRESS`, `dir::INGRESS`).
#[map]
static DNS_DEDUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Is this UDP DNS message (`len` bytes at `off`) a repeat within the window? Counts it if
/// so. Any failure (no scratch, unreadable packet) answers `false`: the message goes up.
#[inline(always)]
pub fn repeat(ctx: &SkBuffContext, off: u32, len: u32, direction: u8, cookie: u64) -> bool {
    let window = config().dedup_ns;
    if window == 0 || len <= 2 || len - 2 > DEDUP_MAX as u32 {
        return false;
    }
    let Some(s) = DNS_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot; the program cannot be preempted on it.
    let s = unsafe { &mut *s };
    let n = len - 2;
    if !load(ctx, off + 2, n, s) {
        return false;
    }
    let (who, by_cookie) = match owners::of_packet(ctx, cookie) {
        Some(o) => (o.pid as u64, 0),
        None => (cookie, 1),
    };
    let key = Key {
        who,
        hash: hash(&s.words, n),
        len: n,
        direction,
        by_cookie,
        _pad: [0; 2],
    };
    // The coarse clock (the last tick) is exact enough for a window of seconds, and reads
    // no clock source (tens of ns per read in a VM).
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: read-only view of a map value for the duration of the program.
    if let Some(last) = unsafe { DNS_SEEN.get(&key) } {
        if now.wrapping_sub(last.ts_ns) < window && same(&last.words, &s.words, n) {
            count(direction);
            return true;
        }
    }
    s.ts_ns = now;
    // A failed insert only means the next repeat goes up too.
    let _ = DNS_SEEN.insert(&key, s, 0);
    false
}

/// Loads `n` (1..=DEDUP_MAX) bytes at `off` into the scratch words, the bytes after them in
/// their last word zeroed. Only the message's own words are ever hashed or compared (the
/// length is in the key, so an entry and a message it is compared with have the same
/// words), so the words after them may hold an earlier message: not cleared, and not read.
#[inline(always)]
fn load(ctx: &SkBuffContext, off: u32, n: u32, s: &mut Seen) -> bool {
    // The volatile read keeps the mask: LLVM knows n <= DEDUP_MAX and drops it, and the
    // verifier, which does not, then refuses the store as unbounded.
    // SAFETY: a read of a local.
    let m = unsafe { core::ptr::read_volatile(&n) };
    let last = (m.wrapping_sub(1) / 8) as usize & (WORDS - 1);
    // SAFETY: within the array (masked); volatile so that the store stays before the load.
    unsafe { core::ptr::write_volatile(&mut s.words[last], 0) };
    // The helper's length must be provably within 1..=DEDUP_MAX: (n - 1) & (MAX - 1) + 1
    // maps 1..=DEDUP_MAX onto itself (as in `skb::emit`), the volatile read keeps LLVM
    // from folding it away.
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    let n = (n.wrapping_sub(1) & (DEDUP_MAX as u32 - 1)) + 1;
    let skb: *mut __sk_buff = ctx.skb.skb;
    // SAFETY: the destination has DEDUP_MAX bytes; `n` is at most that.
    unsafe { bpf_skb_load_bytes(skb.cast(), off, s.words.as_mut_ptr().cast(), n) == 0 }
}

/// FNV-1a over the message's words (its last one zero-padded; the length is in the key).
#[inline(always)]
fn hash(words: &[u64; WORDS], n: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, w) in words.iter().enumerate() {
        if i as u32 * 8 >= n {
            break;
        }
        h = (h ^ *w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Are the two `n`-byte messages (zero-padded to their last word) the same bytes?
#[inline(always)]
fn same(a: &[u64; WORDS], b: &[u64; WORDS], n: u32) -> bool {
    let mut diff = 0;
    for i in 0..WORDS {
        if i as u32 * 8 >= n {
            break;
        }
        diff |= a[i] ^ b[i];
    }
    diff == 0
}

#[inline(always)]
fn count(direction: u8) {
    if let Some(p) = DNS_DEDUP.get_ptr_mut(direction as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}
