//! Types shared by shadowai's eBPF programs and the agent, defined once.
//!
//! Every type is `#[repr(C)]`, fixed-width and explicitly padded (no `bool`, no implicit
//! padding) so that the kernel and userspace agree byte for byte. With the `user` feature
//! they implement `aya::Pod` and can be read straight out of maps and the ring buffer.
#![no_std]

pub mod bytes;

/// Bytes of packet payload one [`PacketEvent`] carries at most. A power of two minus one so
/// the eBPF side can bound the copy length with a mask the verifier understands.
pub const MAX_PAYLOAD: usize = 2047;
/// Bytes of a `comm` (task name), as in the kernel.
pub const COMM_LEN: usize = 16;
/// Bytes of an exec'd file name kept by [`ExecEvent`].
pub const FILENAME_LEN: usize = 256;
/// Bytes of argv kept by [`ExecEvent`]: the first ARGS_LEN bytes of the process's argv
/// area (NUL-separated, as `/proc/PID/cmdline`), so only the last argument kept can be cut.
pub const ARGS_LEN: usize = 1024;

/// Ring-buffer record tags; the first `u32` of every record.
pub mod kind {
    pub const CONNECT: u32 = 1;
    pub const PACKET: u32 = 2;
    pub const EXEC: u32 = 3;
    pub const EXIT: u32 = 4;
}

/// Which hook produced a [`ConnectEvent`].
pub mod hook {
    pub const CONNECT4: u8 = 1;
    pub const CONNECT6: u8 = 2;
    pub const SENDMSG4: u8 = 3;
    pub const SENDMSG6: u8 = 4;
}

/// What a [`PacketEvent`] carries.
pub mod payload {
    /// DNS over UDP (a whole datagram).
    pub const DNS_UDP: u8 = 1;
    /// DNS over TCP (one segment of a length-prefixed stream).
    pub const DNS_TCP: u8 = 2;
    /// A TCP segment of a flow that started with a TLS handshake record.
    pub const TLS: u8 = 3;
    /// A QUIC long-header Initial datagram.
    pub const QUIC: u8 = 4;
}

/// Traffic direction of a [`PacketEvent`].
pub mod dir {
    pub const EGRESS: u8 = 0;
    pub const INGRESS: u8 = 1;
}

/// Program slots of the [`drop`] counters (index = `prog * drop::REASONS + reason`).
pub mod prog {
    pub const CONNECT4: u32 = 0;
    pub const CONNECT6: u32 = 1;
    pub const SENDMSG4: u32 = 2;
    pub const SENDMSG6: u32 = 3;
    pub const SKB_EGRESS: u32 = 4;
    pub const SKB_INGRESS: u32 = 5;
    pub const EXEC: u32 = 6;
    pub const EXIT: u32 = 7;
    pub const COUNT: u32 = 8;
    pub const NAMES: [&str; COUNT as usize] = [
        "connect4",
        "connect6",
        "sendmsg4",
        "sendmsg6",
        "skb_egress",
        "skb_ingress",
        "exec",
        "exit",
    ];
}

/// Shares of the bulk ring (`EVENTS`) under a flood (`agent-ebpf/src/share.rs`). While
/// less than 1/[`PRESSURE_DIV`] of the ring is pending, every event goes up. Above it, per
/// interval of 2^[`INTERVAL_SHIFT`] ns (≈ 134 ms): each process's first [`PER_PROCESS`]
/// events go up; beyond those, its user's processes share [`PER_USER`] more (until three
/// quarters of the ring are pending: then only the processes' own shares); the rest is
/// counted ([`drop::THROTTLED`]) and not reported. So one process, or one user's many
/// processes, flooding junk cannot crowd another process's events out — not even one of
/// the same user's (a browser beside the flooder keeps its share).
pub mod share {
    pub const PRESSURE_DIV: u64 = 4;
    pub const INTERVAL_SHIFT: u32 = 27;
    pub const PER_PROCESS: u64 = 32;
    pub const PER_USER: u64 = 512;
    /// The user key of events whose socket has no recorded owner (one shared share).
    pub const UNOWNED_USER: u32 = u32::MAX;

    /// Events charged to a process or user in one interval (`SHARE_PROCS`, `SHARE_USERS`).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Used {
        /// `bpf_ktime_get_coarse_ns() >> INTERVAL_SHIFT` (CLOCK_MONOTONIC_COARSE).
        pub interval: u64,
        pub count: u64,
    }
}

/// Drop/truncation reasons counted per program.
pub mod drop {
    /// The ring buffer had no room: the event is lost.
    pub const RINGBUF_FULL: u32 = 0;
    /// The payload was longer than [`super::MAX_PAYLOAD`]: the tail was cut.
    pub const TRUNCATED: u32 = 1;
    /// A helper failed to read packet or user memory.
    pub const READ_FAILED: u32 = 2;
    /// A state map was full (LRU eviction is not counted; a failed insert is).
    pub const MAP_FULL: u32 = 3;
    /// A flow held for the agent's decision (`flow::PENDING`) outlived
    /// `flow::HOLD_MS` undecided and was let through (fail-open); counted once per flow.
    pub const HOLD_EXPIRED: u32 = 4;
    /// The bulk ring was under a flood and the event's process (then its user) had used
    /// its share of it ([`super::share`]): not reported.
    pub const THROTTLED: u32 = 5;
    pub const REASONS: u32 = 6;
    pub const NAMES: [&str; REASONS as usize] = [
        "ringbuf_full",
        "truncated",
        "read_failed",
        "map_full",
        "hold_expired",
        "throttled",
    ];
    /// Size of the per-CPU drop-counter array.
    pub const SLOTS: u32 = super::prog::COUNT * REASONS;
}

/// Who owns a socket, recorded by connect/sendmsg hooks under the socket cookie so that
/// packet programs (which run without process context) can attribute what they capture.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    /// Thread-group id (the process id users see).
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// In the socket's storage only: non-zero when the socket may have byte counters in
    /// `SOCK_BYTES`, so that its release must look them up (see `agent-ebpf/src/bytes.rs`).
    /// 0 in the owner an event carries from a connect/sendmsg hook.
    pub counted: u32,
    pub cgroup_id: u64,
    /// Network-namespace cookie of the socket (0 where the kernel cannot tell).
    pub netns: u64,
    pub comm: [u8; COMM_LEN],
}

/// An outbound connect() or sendmsg() (UDP), one per socket and destination.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub kind: u32,
    pub hook: u8,
    /// `libc::IPPROTO_TCP` or `IPPROTO_UDP` (0 when the kernel did not say).
    pub protocol: u8,
    /// 4 or 6.
    pub family: u8,
    /// [`flags`] bits.
    pub flags: u8,
    pub ts_ns: u64,
    pub cookie: u64,
    pub owner: SockOwner,
    pub tid: u32,
    /// Destination port, host byte order.
    pub dport: u16,
    pub _pad1: u16,
    /// Destination address: IPv4 in the first four bytes (network order), else IPv6.
    pub daddr: [u8; 16],
}

/// Per-flow facts a [`PacketEvent`] carries besides its payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMeta {
    pub ts_ns: u64,
    pub cookie: u64,
    /// Owner as recorded at connect/sendmsg time; `pid == 0` when unknown.
    pub owner: SockOwner,
    /// TCP sequence number of the first payload byte (0 for UDP).
    pub tcp_seq: u32,
    /// Bytes of payload on the wire in this packet (may exceed `cap_len`).
    pub wire_len: u32,
    /// Bytes of payload copied into `data`.
    pub cap_len: u32,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub family: u8,
    pub protocol: u8,
    pub direction: u8,
    pub payload: u8,
    /// [`flags`] bits.
    pub flags: u32,
}

/// Bits of `ConnectEvent::flags` / `PacketMeta::flags`.
pub mod flags {
    /// The kernel refused this connection or dropped this DNS query (enforce mode).
    pub const BLOCKED: u32 = 1;
    /// The packet is a TLS ClientHello whose first segment named a blocked server (SNI):
    /// the kernel dropped it and marked the socket [`super::flow::BLOCKED`].
    pub const BLOCKED_SNI: u32 = 2;
    /// A ClientHello segment or QUIC Initial of a flow the kernel holds for the agent's
    /// decision (enforce mode): the agent decides from the reassembled hello, so the kernel
    /// woke it at once. Records with any flag go to the `DECISIONS` ring buffer, which the
    /// agent drains before the bulk `EVENTS`, so a flood cannot delay them past the hold.
    pub const URGENT: u32 = 4;
}

/// Longest SNI (bytes) the kernel's first-segment check considers; longer names are
/// decided in userspace. One less than [`QNAME_MAX`]: the wire form adds a length byte.
pub const SNI_MAX: usize = QNAME_MAX - 1;
/// TLS extensions the kernel walks at most looking for server_name.
pub const SNI_EXTENSIONS: usize = 24;

/// Longest DNS question name (wire bytes) the query filter considers.
pub const QNAME_MAX: usize = 128;
/// Labels of a question name the query filter walks at most.
pub const QNAME_LABELS: usize = 32;

/// The DNS query filter's key for a name suffix (`["deepseek", "com"]`): its wire form
/// (length-prefixed labels, no root byte) reversed and lower-cased, so that a longest-prefix
/// match on the reversed question name finds every blocked suffix — and only at a label
/// boundary, because the suffix's own leading length byte is part of the key. Returns the
/// key bytes and the prefix length in bits; `None` for an empty label, a label over 63
/// bytes, or a name over [`QNAME_MAX`] wire bytes.
pub fn qname_suffix_key<'a>(
    labels: impl Iterator<Item = &'a [u8]>,
) -> Option<([u8; QNAME_MAX], u32)> {
    let mut wire = [0u8; QNAME_MAX];
    let mut n = 0usize;
    for l in labels {
        if l.is_empty() || l.len() > 63 || n + 1 + l.len() > QNAME_MAX {
            return None;
        }
        wire[n] = l.len() as u8;
        wire[n + 1..n + 1 + l.len()].copy_from_slice(l);
        n += 1 + l.len();
    }
    if n == 0 {
        return None;
    }
    let mut key = [0u8; QNAME_MAX];
    for i in 0..n {
        key[i] = wire[n - 1 - i].to_ascii_lowercase();
    }
    Some((key, (n * 8) as u32))
}

/// A captured packet payload (DNS message, handshake bytes, QUIC Initial).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PacketEvent {
    pub kind: u32,
    pub _pad: u32,
    pub meta: PacketMeta,
    pub data: [u8; MAX_PAYLOAD + 1],
}

/// A successful execve(): the new program of `pid`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Number of argv bytes in `args` (NUL-separated).
    pub args_len: u32,
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; FILENAME_LEN],
    pub args: [u8; ARGS_LEN],
}

/// A process (thread-group leader) exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub kind: u32,
    pub pid: u32,
    pub ts_ns: u64,
}

/// Per-socket capture state kept by the packet programs (LRU map keyed by socket cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowState {
    /// One of [`flow`]'s states.
    pub state: u32,
    /// Handshake bytes wanted in total (TLS record header + length), 0 when unknown.
    pub want: u32,
    /// Handshake bytes captured so far.
    pub got: u32,
    /// Segments/datagrams captured so far.
    pub segs: u32,
}

/// States of [`FlowState::state`].
pub mod flow {
    /// Capturing handshake bytes.
    pub const CAPTURING: u32 = 1;
    /// Enough captured, or not a protocol that carries a name: ignore this socket.
    pub const DONE: u32 = 2;
    /// Refused (enforce mode): every later egress payload packet of this socket is dropped
    /// until userspace has torn the socket down. Set by the kernel (blocked DNS-over-TCP
    /// query, blocked SNI in the first ClientHello segment) or by the agent (a name only
    /// userspace could decide: a ClientHello spanning segments, a QUIC Initial).
    pub const BLOCKED: u32 = 3;
    /// A socket whose name the agent is deciding (enforce mode): a QUIC socket's incoming
    /// datagrams, or a TCP socket's egress after its ClientHello, are dropped until the
    /// agent writes [`DONE`] or [`BLOCKED`], or [`HOLD_MS`] pass (fail-open). `want`
    /// holds the time the hold began (binary ms, never 0).
    pub const PENDING: u32 = 4;
    /// [`CAPTURING`] a ClientHello the kernel could not decide from its first segment
    /// (or whose verdict depends on the process): [`PARKED`] once it is complete.
    pub const CAPTURING_HOLD: u32 = 5;
    /// How long a socket is held at most, in binary milliseconds (2^20 ns).
    pub const HOLD_MS: u32 = 250;
    /// Segments per TCP flow captured at most (a ClientHello spans 1-3 segments; retransmits).
    pub const MAX_TLS_SEGS: u32 = 8;
    /// Handshake bytes per TCP flow captured at most.
    pub const MAX_TLS_BYTES: u32 = 16 * 1024 + 5;
    /// QUIC Initial datagrams per socket captured at most.
    pub const MAX_QUIC_PKTS: u32 = 4;
    /// DNS-over-TCP segments per socket and direction captured at most.
    pub const MAX_DNS_TCP_SEGS: u32 = 32;
}

/// Key of the "seen recently" map that de-duplicates connect/sendmsg events in the kernel:
/// a (process, protocol, destination) triple is reported once per window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendKey {
    /// `tgid << 32 | hook`.
    pub owner: u64,
    pub daddr: [u8; 16],
    pub dport: u16,
    pub _pad: [u8; 6],
}

/// Words of the `DNS_PORTS` bitmap (an array map of `u64`: one bit per port).
pub const DNS_PORT_WORDS: u32 = 65536 / 64;

/// Where a port's bit is in the `DNS_PORTS` bitmap: (word index, bit mask). An array
/// lookup, which the verifier inlines, instead of a hash lookup per packet.
#[inline(always)]
pub const fn dns_port_bit(port: u16) -> (u32, u64) {
    ((port >> 6) as u32, 1u64 << (port & 63))
}

/// Agent configuration the eBPF programs read from the `CONFIG` array (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// Ring-buffer bytes pending before a submit wakes the reader; below it the reader
    /// polls on its timer (batched wakeups).
    pub wakeup_bytes: u64,
    /// Re-report a (process, destination) pair after this many nanoseconds.
    pub dedup_ns: u64,
    /// Entries in `BLOCK_NAMES`; 0 skips the DNS query filter entirely.
    pub block_names: u64,
    /// Entries in `BLOCK_NETS4` + `BLOCK_NETS6`; 0 skips the connect filter.
    pub block_nets: u64,
    /// Non-zero when blocks depend on who connects (rules scoped to users or unix groups):
    /// every ClientHello wakes the agent at once, since only it knows the process's
    /// verdict and must tear a refused socket down before application data.
    pub urgent_hellos: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], contain only integers and byte arrays, and are
    // explicitly padded, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SockOwner {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::SendKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::share::Used {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn every_port_has_its_own_bit_in_the_dns_port_bitmap() {
        let mut seen = [0u64; DNS_PORT_WORDS as usize];
        for port in 0..=u16::MAX {
            let (word, mask) = dns_port_bit(port);
            assert!(word < DNS_PORT_WORDS, "{port}");
            assert_eq!(mask.count_ones(), 1, "{port}");
            assert_eq!(seen[word as usize] & mask, 0, "{port} shares a bit");
            seen[word as usize] |= mask;
        }
        assert!(
            seen.iter().all(|w| *w == u64::MAX),
            "every bit is some port's"
        );
        assert_eq!(dns_port_bit(53), (0, 1 << 53));
        assert_eq!(dns_port_bit(853), (13, 1 << 21));
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<SockOwner>(), 4 * 4 + 8 + 8 + COMM_LEN);
        assert_eq!(
            size_of::<ConnectEvent>(),
            4 + 4 + 8 + 8 + size_of::<SockOwner>() + 8 + 16
        );
        assert_eq!(
            size_of::<PacketMeta>(),
            8 + 8 + size_of::<SockOwner>() + 12 + 4 + 32 + 8
        );
        assert_eq!(
            size_of::<PacketEvent>(),
            8 + size_of::<PacketMeta>() + MAX_PAYLOAD + 1
        );
        assert_eq!(size_of::<FlowState>(), 16);
        assert_eq!(size_of::<SendKey>(), 32);
        assert_eq!(size_of::<ExecEvent>() % 8, 0);
    }
}
