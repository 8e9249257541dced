//! Socket ownership: in socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`), and for a TCP
//! socket between its connect() and its first payload packet, in a slot of `PARKED`.
//!
//! The sock_addr hooks (connect4/6, sendmsg4/6) run in the owning task's context and write
//! who owns the socket; the packet programs, which run without a task context, read it back
//! for the packet's socket (`skb->sk`, full sockets only). Storage lives and dies with the
//! socket: no table to fill, no eviction, so a flood of short-lived sockets cannot push a
//! live socket's owner out (the LRU hash keyed by socket cookie that this replaced could:
//! 65,536 new sockets evicted every older owner).
//!
//! Storage costs an allocation when it is made and an RCU-deferred free when the socket
//! goes: a third of a loopback connect's whole overhead on 6.18 (measured: the connect
//! loop went from 0.89× to 0.93× bare without it). Most TCP sockets that connect never
//! carry a byte the programs look at — health checks, port scans, pools dialling ahead, the
//! connect loop — so a TCP connect() parks its owner in `PARKED` instead: a preallocated
//! array, one slot per socket, found by the socket's address and claimed with a
//! compare-and-swap (no allocation, no lock). The address, not the cookie: the release
//! hook has it for free (a cookie would be made for every socket released, accepted ones
//! too), and a socket reused at the same address by the allocator hits the same, cached
//! slot. The socket's first payload packet, in either direction, moves the owner into the
//! socket's storage and frees the slot; its release frees the slot if it never carried
//! payload. So a slot holds a live socket that has connected and carried nothing yet, and
//! nothing evicts it: a connect whose slot is taken (by another such socket) makes storage
//! at once, as before — a flood cannot push a parked owner out either
//! (`tests/tests/agent_socket_owners.rs` floods TCP connects and holds 20,000 sockets).
//!
//! The slot also keeps the socket's cookie: a kernel socket is released without the
//! release hook, so its slot can outlive it and meet a new socket at the same address; the
//! packet programs adopt an owner only when the cookie is the packet's own (a stale slot is
//! freed there), and a connect() at that address takes the slot over.

use core::{intrinsics::AtomicOrdering, mem::MaybeUninit};

use aya_ebpf::{
    bindings::{__sk_buff, bpf_sock, BPF_SK_STORAGE_GET_F_CREATE},
    btf_maps::SkStorage,
    helpers::generated::{bpf_get_socket_cookie, bpf_sk_fullsock, bpf_sk_storage_get},
    macros::{btf_map, map},
    maps::{Array, PerCpuArray},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use shadowai_common::SockOwner;

use crate::skb::copy_words;

/// What a socket's storage holds.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockState {
    pub owner: SockOwner,
    /// The de-dup key (`SendKey`, as its four words: owner and hook, address, port) of the
    /// destination a sendmsg hook last reported on this socket, or found reported within
    /// the window; zero when none.
    last_key: [u64; 4],
    /// When that destination was reported (coarse clock), as `SEEN` has it.
    last_ns: u64,
}

/// Socket → owner, written by the sock_addr hooks, read by the packet hooks.
#[btf_map]
static SOCK_OWNER: SkStorage<SockState> = SkStorage::new();

/// Slots of [`PARKED`] (a power of two): TCP sockets that have connected and carried no
/// payload yet, at once. A connect that finds its slot taken makes storage instead.
const PARKED_SLOTS: u32 = 16_384;

/// One parked owner: `sk` 0 is a free slot.
#[repr(C)]
#[derive(Clone, Copy)]
struct Parked {
    /// Address of the socket (`struct sock`), the slot's key: a live socket is the only one
    /// at its address, and the release hook has it without making a cookie.
    sk: u64,
    /// The socket's cookie: whether the socket at `sk` is still the one that parked here
    /// (a kernel socket is released without the release hook, so its slot can outlive it).
    cookie: u64,
    owner: SockOwner,
}

/// Owners of TCP sockets between connect() and their first payload packet (see the module
/// documentation): 16,384 × 64 bytes, preallocated.
#[map]
static PARKED: Array<Parked> = Array::with_max_entries(PARKED_SLOTS, 0);

/// Per-CPU scratch through which a socket pointer becomes a number: the verifier allows no
/// arithmetic on a socket pointer, but a privileged program may store one in a map value
/// and read the word back.
#[map]
static SK_ADDR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The address of socket `sk` as a number (0 when the scratch slot is missing).
#[inline(always)]
fn addr_of(sk: *mut core::ffi::c_void) -> u64 {
    let Some(p) = SK_ADDR.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch word; volatile, so the store and the load stay a store of
    // the pointer and a load of a number.
    unsafe {
        core::ptr::write_volatile(p.cast::<*mut core::ffi::c_void>(), sk);
        core::ptr::read_volatile(p)
    }
}

/// The map as the helpers take it.
#[inline(always)]
fn map() -> *mut core::ffi::c_void {
    core::ptr::from_ref(&SOCK_OWNER).cast_mut().cast()
}

/// The storage of socket `sk` (null when it has none and `create` is false, or the kernel
/// could not allocate it); a new one is zeroed: pid 0, no owner, unmarked, no destination.
#[inline(always)]
fn storage(sk: *mut core::ffi::c_void, create: bool) -> *mut SockState {
    let flags = if create {
        BPF_SK_STORAGE_GET_F_CREATE.into()
    } else {
        0
    };
    // SAFETY: helper call with this program's map and a socket the caller's context gives
    // it (full, for the program's duration); no initial value.
    unsafe { bpf_sk_storage_get(map(), sk, core::ptr::null_mut(), flags) }.cast::<SockState>()
}

/// The slot of the socket at address `sk` (Fibonacci hashing of the address without its
/// low bits, which every socket shares).
#[inline(always)]
fn slot(sk: u64) -> Option<*mut Parked> {
    let i = ((sk >> 6).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50) as u32;
    PARKED.get_ptr_mut(i & (PARKED_SLOTS - 1))
}

/// Compare-and-swap of a slot's key: `old` → `new`; the value found (`old` when it
/// swapped). (core's `AtomicU64::compare_exchange` is not offered on the BPF target; the
/// intrinsic compiles to the BPF `cmpxchg` instruction, kernel 5.12 and later.)
#[inline(always)]
fn swap_key(p: *mut Parked, old: u64, new: u64) -> u64 {
    // SAFETY: an 8-byte aligned u64 inside a map value that outlives the program run,
    // accessed atomically by every writer.
    unsafe {
        core::intrinsics::atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            core::ptr::addr_of_mut!((*p).sk),
            old,
            new,
        )
    }
    .0
}

/// A slot's key, read once.
#[inline(always)]
fn key_in(p: *mut Parked) -> u64 {
    // SAFETY: an 8-byte aligned u64 inside a map value; a single 8-byte load.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*p).sk)) }
}

/// Records `owner` for the socket of a sock_addr hook. A TCP socket without storage parks it
/// in its `PARKED` slot when that is free (or already its own: a connect() retried after
/// a failure); anything else writes the socket's storage, creating it on the socket's first
/// connect()/sendmsg() and overwriting it in place after. `Err`: the kernel could not
/// allocate the storage (the event still carries the owner; its packets will not).
/// `Ok(null)`: parked.
///
/// The storage's `counted` mark survives the overwrite. A TCP socket's storage starts
/// unmarked (connect() comes before any payload; the byte count marks it at its first
/// payload packet), a UDP socket's marked: it may have received datagrams before its first
/// sendmsg(), counted while it had no storage to mark.
#[inline(always)]
pub fn record(ctx: &SockAddrContext, owner: &SockOwner, tcp: bool) -> Result<*mut SockState, ()> {
    // SAFETY: `sk` of a sock_addr context is a full socket for the program's duration.
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    let mut st = storage(sk.cast(), false);
    if st.is_null() {
        if tcp && park(ctx, owner) {
            return Ok(st);
        }
        st = storage(sk.cast(), true);
    }
    if st.is_null() {
        return Err(());
    }
    // SAFETY: `st` is the socket's storage, sized and aligned for a SockState (a new one is
    // zeroed: unmarked).
    unsafe {
        let o = core::ptr::addr_of_mut!((*st).owner);
        let counted = if tcp { (*o).counted } else { 1 };
        copy_words(o, owner);
        (*o).counted = counted;
    }
    Ok(st)
}

/// The socket's storage, if it has one (a UDP socket after its first connect()/sendmsg()).
#[inline(always)]
pub fn of_sock_addr(ctx: &SockAddrContext) -> Option<&'static mut SockState> {
    // SAFETY: `sk` of a sock_addr context is a full socket for the program's duration.
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    // SAFETY: non-null storage of this map is a SockState while the program runs.
    unsafe { storage(sk.cast(), false).as_mut() }
}

impl SockState {
    /// Did this socket report `key`'s destination within `window` of `now`, for the owner
    /// it records (uid and gid as `uid_gid` says; the pid is in the key)? Then a sendmsg to
    /// it again is a repeat, as `SEEN` would say, without building the owner or looking
    /// `SEEN` up.
    #[inline(always)]
    pub fn reported(&self, key: &[u64; 4], uid_gid: u64, now: u64, window: u64) -> bool {
        // Word by word: an array compare would be a call to `bcmp`.
        window != 0
            && self.last_key[0] == key[0]
            && self.last_key[1] == key[1]
            && self.last_key[2] == key[2]
            && self.last_key[3] == key[3]
            && u64::from(self.owner.uid) | (u64::from(self.owner.gid) << 32) == uid_gid
            && now.wrapping_sub(self.last_ns) < window
    }

    /// Remembers that `key`'s destination was reported at `at` on this socket.
    #[inline(always)]
    pub fn remember(&mut self, key: &[u64; 4], at: u64) {
        for i in 0..4 {
            self.last_key[i] = key[i];
        }
        self.last_ns = at;
    }
}

/// Parks `owner` in the slot of the socket's address: `false` when another parked socket
/// holds it.
#[inline(always)]
fn park(ctx: &SockAddrContext, owner: &SockOwner) -> bool {
    // SAFETY: `sk` of a sock_addr context is a full socket for the program's duration.
    let addr = addr_of(unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk }.cast());
    let Some(p) = slot(addr) else {
        return false;
    };
    // Held under this address: by this socket's own earlier connect() (retried after a
    // failure), or left by a socket released without the hook (a kernel socket) that was
    // here before this one: either way this socket's now.
    let held = swap_key(p, 0, addr);
    if addr == 0 || (held != 0 && held != addr) {
        return false;
    }
    // SAFETY: the context pointer is valid for the duration of the program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // No reader looks for this socket before the connect() this program runs in returns
    // (no packet of it exists yet), and no other live socket has its address: plain
    // stores.
    // SAFETY: the slot is this socket's now; both are valid, 8-byte aligned SockOwners.
    unsafe {
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).cookie), cookie);
        copy_words(core::ptr::addr_of_mut!((*p).owner), owner);
    }
    true
}

/// Moves the parked owner of the packet's socket (`full`, cookie `cookie`) into the
/// socket's storage (made here) and frees its slot. Null when the socket has no parked
/// owner or the storage could not be made.
#[inline(always)]
fn adopt(full: *mut bpf_sock, cookie: u64) -> *mut SockState {
    let addr = addr_of(full.cast());
    let Some(p) = slot(addr) else {
        return core::ptr::null_mut();
    };
    if addr == 0 || key_in(p) != addr {
        return core::ptr::null_mut();
    }
    let mut owner = MaybeUninit::<SockOwner>::uninit();
    // SAFETY: valid, 8-byte aligned words of the slot, and a SockOwner on this stack.
    let parked = unsafe {
        let c = core::ptr::read_volatile(core::ptr::addr_of!((*p).cookie));
        copy_words(owner.as_mut_ptr(), core::ptr::addr_of!((*p).owner));
        c
    };
    if parked != cookie {
        // Left by a socket that lived at this address before (released without the
        // hook): worth nothing now.
        swap_key(p, addr, 0);
        return core::ptr::null_mut();
    }
    // Still this socket's after the copy (its release may race with a late packet).
    if key_in(p) != addr {
        return core::ptr::null_mut();
    }
    let s = storage(full.cast(), true);
    if s.is_null() {
        return s;
    }
    // SAFETY: the socket's storage and a copy fully written above; a TCP owner starts
    // unmarked (the caller marks it).
    unsafe {
        let o = core::ptr::addr_of_mut!((*s).owner);
        let counted = (*o).counted;
        copy_words(o, owner.as_ptr());
        (*o).counted = counted;
    }
    swap_key(p, addr, 0);
    s
}

/// The storage of the packet's socket, adopting its parked owner if it has one; null when
/// it has neither.
#[inline(always)]
fn of_full(full: *mut bpf_sock, cookie: u64) -> *mut SockState {
    let s = storage(full.cast(), false);
    if !s.is_null() {
        return s;
    }
    adopt(full, cookie)
}

/// Marks the packet's socket (cookie `cookie`) as having byte counters (see [`released_uncounted`]),
/// adopting its parked owner, or creating its storage, unowned, when it has neither (an
/// accepted socket: no connect() or sendmsg() ran on it). `false` when the packet's socket
/// is not a full socket or the kernel could not allocate the storage: its release will not
/// look its counters up.
#[inline(always)]
pub fn mark_counted(ctx: &SkBuffContext, cookie: u64) -> bool {
    let Some(full) = full_socket(ctx) else {
        return false;
    };
    let mut p = of_full(full, cookie);
    if p.is_null() {
        // A new storage names no owner (pid 0), which `of_packet` reads as none.
        p = storage(full.cast(), true);
    }
    if p.is_null() {
        return false;
    }
    // SAFETY: the socket's storage, valid while the program runs; a plain store (a racing
    // writer writes the same value, or `record` keeps it).
    unsafe { (*p).owner.counted = 1 };
    true
}

/// The release of the socket of a cgroup sock program (sock_release): frees its `PARKED`
/// slot if it holds one (a TCP socket that connected and never carried payload), and
/// answers whether it never had byte counters. A socket without storage never had any:
/// [`mark_counted`] makes the storage before a socket's first counters are inserted.
#[inline(always)]
pub fn released_uncounted(ctx: &SockContext) -> bool {
    // The program's context is the socket itself, as the helper takes it here.
    let p = storage(ctx.sock.cast(), false);
    // SAFETY: non-null storage of this map holds a SockState while the program runs.
    if let Some(s) = unsafe { p.as_ref() } {
        return s.owner.counted == 0;
    }
    // SAFETY: the context pointer is valid for the duration of the program.
    if unsafe { (*ctx.sock).protocol } == IPPROTO_TCP {
        // The context is the socket: its address is the slot's key.
        let addr = addr_of(ctx.sock.cast());
        if let Some(p) = slot(addr) {
            if addr != 0 && key_in(p) == addr {
                swap_key(p, addr, 0);
            }
        }
    }
    true
}

const IPPROTO_TCP: u32 = 6;

/// The owner recorded for the packet's socket (cookie `cookie`), if it is a full socket
/// that has one (request and time-wait sockets have none; an accepted socket's storage,
/// made by [`mark_counted`], names no owner: pid 0).
#[inline(always)]
pub fn of_packet(ctx: &SkBuffContext, cookie: u64) -> Option<&'static SockOwner> {
    let full = full_socket(ctx)?;
    let p = of_full(full, cookie);
    // SAFETY: non-null storage of this map holds a SockState while the program runs;
    // shared, read-only here.
    unsafe { p.as_ref() }
        .map(|s| &s.owner)
        .filter(|o| o.pid != 0)
}

/// The packet's socket, if it is a full socket.
#[inline(always)]
fn full_socket(ctx: &SkBuffContext) -> Option<*mut bpf_sock> {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // SAFETY: reading the `sk` field of the program's own context.
    let sk: *mut bpf_sock = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    // SAFETY: helper on a non-null socket pointer from the context.
    let full = unsafe { bpf_sk_fullsock(sk) };
    (!full.is_null()).then_some(full)
}
