//! Socket ownership in socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`).
//!
//! The sock_addr hooks (connect4/6, sendmsg4/6) run in the owning task's context and write
//! who owns the socket into the socket's own storage; the packet programs, which run
//! without a task context, read it back from the packet's socket (`skb->sk`, full sockets
//! only). Storage lives and dies with the socket: no table to fill, no eviction, so a flood
//! of short-lived sockets cannot push a live socket's owner out (the LRU hash keyed by socket
//! cookie that this replaces could: 65,536 new sockets evicted every older owner), and a
//! socket's second and later connect/sendmsg write in place instead of inserting.

use aya_ebpf::{
    bindings::{__sk_buff, bpf_sock, BPF_SK_STORAGE_GET_F_CREATE},
    btf_maps::SkStorage,
    helpers::generated::{bpf_sk_fullsock, bpf_sk_storage_get},
    macros::btf_map,
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use shadowai_common::SockOwner;

/// Socket → owner, written by the sock_addr hooks, read by the packet hooks.
#[btf_map]
static SOCK_OWNER: SkStorage<SockOwner> = SkStorage::new();

/// The map as the helpers take it.
#[inline(always)]
fn map() -> *mut core::ffi::c_void {
    core::ptr::from_ref(&SOCK_OWNER).cast_mut().cast()
}

/// The storage of socket `sk` (null when it has none and `create` is false, or the kernel
/// could not allocate it); a new one is zeroed: pid 0, no owner, unmarked.
#[inline(always)]
fn storage(sk: *mut core::ffi::c_void, create: bool) -> *mut SockOwner {
    let flags = if create {
        BPF_SK_STORAGE_GET_F_CREATE.into()
    } else {
        0
    };
    // SAFETY: helper call with this program's map and a socket the caller's context gives
    // it (full, for the program's duration); no initial value.
    unsafe { bpf_sk_storage_get(map(), sk, core::ptr::null_mut(), flags) }.cast::<SockOwner>()
}

/// Records `owner` for the socket of a sock_addr hook: creates its storage on the socket's
/// first connect()/sendmsg(), overwrites it in place after. `false`: the kernel could not
/// allocate the storage (the event still carries the owner; its packets will not).
///
/// The storage's `counted` mark survives the overwrite. A TCP socket's storage starts
/// unmarked (connect() comes before any payload; the byte count marks it at its first
/// payload packet), a UDP socket's marked: it may have received datagrams before its first
/// sendmsg(), counted while it had no storage to mark.
#[inline(always)]
pub fn record(ctx: &SockAddrContext, owner: &SockOwner, tcp: bool) -> bool {
    // SAFETY: `sk` of a sock_addr context is a full socket for the program's duration.
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    let slot = storage(sk.cast(), true);
    if slot.is_null() {
        return false;
    }
    // SAFETY: `slot` is the socket's storage, sized and aligned for a SockOwner (a new one
    // is zeroed: unmarked).
    unsafe {
        let counted = if tcp { (*slot).counted } else { 1 };
        crate::skb::copy_words(slot, owner);
        (*slot).counted = counted;
    }
    true
}

/// Marks the packet's socket as having byte counters (see [`uncounted`]), creating its
/// storage, unowned, when it has none (an accepted socket: no connect() or sendmsg() ran
/// on it). `false` when the packet's socket is not a full socket or the kernel could not
/// allocate the storage: its release will not look its counters up.
#[inline(always)]
pub fn mark_counted(ctx: &SkBuffContext) -> bool {
    let Some(full) = full_socket(ctx) else {
        return false;
    };
    // A new storage names no owner (pid 0), which `of_packet` reads as none.
    let p = storage(full.cast(), true);
    if p.is_null() {
        return false;
    }
    // SAFETY: the socket's storage, valid while the program runs; a plain store (a racing
    // writer writes the same value, or `record` keeps it).
    unsafe { (*p).counted = 1 };
    true
}

/// Does the socket of a cgroup sock program (sock_release) record that it never had byte
/// counters? A socket without storage never had any: [`mark_counted`] creates the storage
/// before a socket's first counters are inserted.
#[inline(always)]
pub fn uncounted(ctx: &SockContext) -> bool {
    // The program's context is the socket itself, as the helper takes it here.
    let p = storage(ctx.sock.cast(), false);
    // SAFETY: non-null storage of this map holds a SockOwner while the program runs.
    match unsafe { p.as_ref() } {
        Some(o) => o.counted == 0,
        None => true,
    }
}

/// The owner recorded for the packet's socket, if it is a full socket that has one
/// (request and time-wait sockets have no storage; an accepted socket's storage, made by
/// [`mark_counted`], names no owner: pid 0).
#[inline(always)]
pub fn of_packet(ctx: &SkBuffContext) -> Option<&'static SockOwner> {
    let full = full_socket(ctx)?;
    let p = storage(full.cast(), false);
    // SAFETY: non-null storage of this map holds a SockOwner while the program runs;
    // shared, read-only here.
    unsafe { p.as_ref() }.filter(|o| o.pid != 0)
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
