//! cgroup_skb egress/ingress: capture the packets that can carry a name, nothing else — and
//! count every packet's payload bytes for its socket (`bytes.rs`), from the same header parse.
//!
//! Packets start at the IP header here. Per socket cookie, `FLOWS` remembers whether a TCP
//! flow is a TLS handshake still being captured, or done (not TLS, or enough bytes seen),
//! so established flows cost one map lookup per egress segment and are never copied.

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use shadowai_common::{
    dir, dns_port_bit, drop, flags, flow, kind, payload, prog, FlowState, PacketEvent, PacketMeta,
    MAX_PAYLOAD,
};

use crate::names::{qname_blocked, sni_verdict, SNI_BLOCKED, SNI_UNKNOWN};
use crate::{
    bytes, config, count_drop, dnsdedup, owners, share, wakeup_flags, BPF_RB_FORCE_WAKEUP,
    DECISIONS, DNS_PORTS, EVENTS, FLOWS,
};

/// Let the packet through (cgroup_skb return value).
const PASS: i32 = 1;
/// Drop it (on egress a UDP sender gets EPERM at once).
const DROP: i32 = 0;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

const QUIC_V1: u32 = 0x0000_0001;
const QUIC_V2: u32 = 0x6b33_43cf;

#[cgroup_skb]
pub fn skb_egress(ctx: SkBuffContext) -> i32 {
    match try_skb(&ctx, dir::EGRESS, prog::SKB_EGRESS) {
        Ok(true) => DROP,
        _ => PASS,
    }
}

#[cgroup_skb]
pub fn skb_ingress(ctx: SkBuffContext) -> i32 {
    match try_skb(&ctx, dir::INGRESS, prog::SKB_INGRESS) {
        Ok(true) => DROP,
        _ => PASS,
    }
}

/// Where a packet's layers start, and its addresses.
struct Parsed {
    meta: PacketMeta,
    /// Offset of the L4 payload.
    off: u32,
    /// Payload bytes on the wire.
    len: u32,
}

#[inline(always)]
/// `Ok(true)`: drop the packet (enforce mode: a DNS query for a blocked name, the first
/// ClientHello segment naming a blocked server, any later payload of a refused socket).
fn try_skb(ctx: &SkBuffContext, direction: u8, prog_id: u32) -> Result<bool, i64> {
    // Most TCP segments of a short connection carry nothing (SYN, SYN-ACK, ACK, FIN, RST):
    // nothing to count, capture or drop. Decided from the headers in place, before any map
    // is touched or the packet's metadata is built — exactly when `parse` below would find
    // a TCP payload of 0 bytes, whatever the flags (a SYN with data goes on).
    if tcp_without_payload(ctx) {
        return Ok(false);
    }
    // The name filter is decided first, on its own parse, while the verifier holds a single
    // state: called from the DNS branches below, the filter was verified again for every
    // path that reached them and took the program past the 1M-instruction limit on 6.1.
    // Only enforce mode (a non-empty BLOCK_NAMES) pays for the second parse.
    let blocked = direction == dir::EGRESS && config().block_names != 0 && dns_query_blocked(ctx);
    let Some(mut p) = parse(ctx, direction)? else {
        return Ok(false);
    };
    if p.len == 0 {
        return Ok(false);
    }
    // SAFETY: ctx.skb is the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    // Counted before anything is decided: a packet dropped below counts too.
    bytes::count(ctx, cookie, p.len, direction == dir::EGRESS);
    let is_dns = dns_port(if direction == dir::EGRESS {
        p.meta.dport
    } else {
        p.meta.sport
    });
    // Ingress carries nothing we capture but DNS answers: stop before any map work —
    // except, in enforce mode, datagrams to a QUIC socket the agent is deciding or refused
    // (one lookup per UDP datagram).
    if direction != dir::EGRESS && !is_dns {
        if p.meta.protocol == IPPROTO_UDP && deciding_names() {
            let held = quic_held(cookie, prog_id);
            // A Version Negotiation packet is how the agent turns a refused client away.
            return Ok(held && !is_version_negotiation(ctx, p.off));
        }
        return Ok(false);
    }
    p.meta.cookie = cookie;

    if p.meta.protocol == IPPROTO_UDP {
        if is_dns {
            p.meta.payload = payload::DNS_UDP;
            if blocked {
                // Refused every time: never de-duplicated.
                p.meta.flags = flags::BLOCKED;
            } else if dnsdedup::repeat(ctx, p.off, p.len, direction, cookie) {
                return Ok(false);
            }
            emit(ctx, &mut p, prog_id)?;
            return Ok(blocked);
        }
        if direction != dir::EGRESS {
            return Ok(false);
        }
        // A QUIC flow the agent refused: every later datagram is dropped (sendmsg() fails
        // with EPERM), so the client gives up or falls back to TCP. One lookup, enforce
        // mode only.
        if deciding_names() && flow_blocked(cookie) {
            return Ok(true);
        }
        if is_quic_initial(ctx, p.off)? {
            // In enforce mode the server's answers are held back until the agent has
            // decrypted the SNI and decided (or for flow::HOLD_MS): a refused client
            // must not complete its handshake first.
            let hold = deciding_names();
            if count_packet(cookie, flow::MAX_QUIC_PKTS, prog_id, hold) != Count::Capture {
                return Ok(false);
            }
            p.meta.payload = payload::QUIC;
            if hold {
                p.meta.flags |= flags::URGENT;
            }
            emit(ctx, &mut p, prog_id)?;
            return Ok(false);
        }
        return Ok(false);
    }

    // TCP.
    if is_dns {
        if blocked {
            // Dropping alone would leave the resolver retransmitting into a timeout: mark
            // the socket so its later segments are dropped too, and report it at once so
            // the agent tears the connection down (the resolver fails fast).
            mark_blocked(cookie, prog_id);
            p.meta.payload = payload::DNS_TCP;
            p.meta.flags = flags::BLOCKED;
            emit(ctx, &mut p, prog_id)?;
            return Ok(true);
        }
        match count_packet(cookie, flow::MAX_DNS_TCP_SEGS, prog_id, false) {
            Count::Capture => {}
            Count::Skip => return Ok(false),
            Count::Blocked => return Ok(direction == dir::EGRESS),
        }
        p.meta.payload = payload::DNS_TCP;
        emit(ctx, &mut p, prog_id)?;
        return Ok(false);
    }
    let urgent = match FLOWS.get_ptr_mut(&cookie) {
        Some(s) => {
            // SAFETY: valid map value pointer; per-socket state, races only lose a count.
            let st = unsafe { &mut *s };
            match st.state {
                flow::CAPTURING | flow::CAPTURING_HOLD => {}
                // Established flows end here: one lookup per egress segment.
                flow::BLOCKED => return Ok(true),
                // The hello is out, the agent is deciding: nothing else leaves meanwhile.
                flow::PENDING => {
                    if now_ms().wrapping_sub(st.want) < flow::HOLD_MS {
                        return Ok(true);
                    }
                    // Undecided within the hold: fail open, counted once.
                    st.state = flow::DONE;
                    count_drop(prog_id, drop::HOLD_EXPIRED);
                    return Ok(false);
                }
                _ => return Ok(false),
            }
            st.got = st.got.saturating_add(p.len);
            st.segs += 1;
            // The rest of a ClientHello the agent decides (held): to the decision ring,
            // like its first segment, waking the agent now rather than on its timer.
            let held = st.state == flow::CAPTURING_HOLD;
            if st.got >= st.want || st.segs >= flow::MAX_TLS_SEGS {
                if held {
                    st.state = flow::PENDING;
                    st.want = now_ms();
                } else {
                    st.state = flow::DONE;
                }
            }
            held
        }
        None => {
            // First payload of this socket: is it a TLS ClientHello record?
            let hdr: [u8; 6] = match ctx.load(p.off as usize) {
                Ok(h) => h,
                Err(_) => [0; 6],
            };
            let is_hello = hdr[0] == 0x16 && hdr[1] == 0x03 && hdr[2] <= 0x04 && hdr[5] == 0x01;
            let want = 5 + (((hdr[3] as u32) << 8) | hdr[4] as u32);
            let want = if want > flow::MAX_TLS_BYTES {
                flow::MAX_TLS_BYTES
            } else {
                want
            };
            if !is_hello {
                let st = FlowState {
                    state: flow::DONE,
                    want,
                    got: p.len,
                    segs: 1,
                };
                if FLOWS.insert(&cookie, &st, 0).is_err() {
                    count_drop(prog_id, drop::MAP_FULL);
                }
                return Ok(false);
            }
            let sni = if config().block_names != 0 {
                sni_verdict(ctx, p.off, p.len)
            } else {
                SNI_UNKNOWN
            };
            if sni == SNI_BLOCKED {
                mark_blocked(cookie, prog_id);
                p.meta.payload = payload::TLS;
                p.meta.flags = flags::BLOCKED | flags::BLOCKED_SNI;
                emit(ctx, &mut p, prog_id)?;
                return Ok(true);
            }
            // Who decides: the kernel did (SNI found, not blocked), or — for an SNI beyond
            // this segment, or blocks that depend on the process — the agent. Then the
            // socket's egress after the hello is held until it has (flow::PENDING), so
            // a refused client never gets application data out.
            let per_process = config().urgent_hellos != 0;
            let hold = per_process || (sni == SNI_UNKNOWN && deciding_names());
            let complete = p.len >= want;
            let st = FlowState {
                state: match (complete, hold) {
                    (true, true) => flow::PENDING,
                    (true, false) => flow::DONE,
                    (false, true) => flow::CAPTURING_HOLD,
                    (false, false) => flow::CAPTURING,
                },
                want: if complete && hold { now_ms() } else { want },
                got: p.len,
                segs: 1,
            };
            if FLOWS.insert(&cookie, &st, 0).is_err() {
                count_drop(prog_id, drop::MAP_FULL);
            }
            hold
        }
    };
    p.meta.payload = payload::TLS;
    if urgent {
        p.meta.flags |= flags::URGENT;
    }
    emit(ctx, &mut p, prog_id)?;
    Ok(false)
}

/// Marks a socket refused: its later egress payload is dropped (see [`flow::BLOCKED`]).
#[inline(always)]
fn mark_blocked(cookie: u64, prog_id: u32) {
    let st = FlowState {
        state: flow::BLOCKED,
        want: 0,
        got: 0,
        segs: 0,
    };
    if FLOWS.insert(&cookie, &st, 0).is_err() {
        count_drop(prog_id, drop::MAP_FULL);
    }
}

/// Enforce mode with blocks by name: host-wide names in `BLOCK_NAMES`, or blocks the
/// agent decides per process from the SNI. Flows are then held and refused by socket.
#[inline(always)]
fn deciding_names() -> bool {
    let c = config();
    c.block_names != 0 || c.urgent_hellos != 0
}

/// Kernel time in (binary) milliseconds, never 0.
#[inline(always)]
fn now_ms() -> u32 {
    // SAFETY: helper without arguments.
    ((unsafe { bpf_ktime_get_ns() } >> 20) as u32) | 1
}

/// Should a datagram arriving for this UDP socket be dropped: the agent refused the flow,
/// or is still deciding it (for at most [`flow::HOLD_MS`], then fail-open, counted once)?
#[inline(always)]
fn quic_held(cookie: u64, prog_id: u32) -> bool {
    let Some(s) = FLOWS.get_ptr_mut(&cookie) else {
        return false;
    };
    // SAFETY: valid map value pointer; per-socket state.
    let st = unsafe { &mut *s };
    match st.state {
        flow::BLOCKED => true,
        flow::PENDING => {
            if now_ms().wrapping_sub(st.want) < flow::HOLD_MS {
                return true;
            }
            st.state = flow::DONE;
            st.segs = flow::MAX_QUIC_PKTS;
            count_drop(prog_id, drop::HOLD_EXPIRED);
            false
        }
        _ => false,
    }
}

/// Has this socket been refused?
#[inline(always)]
fn flow_blocked(cookie: u64) -> bool {
    // SAFETY: read-only lookup.
    matches!(unsafe { FLOWS.get(&cookie) }, Some(s) if s.state == flow::BLOCKED)
}

/// Is this egress packet a DNS query (UDP, or a TCP segment, to a watched port) for a
/// blocked name? Parses the headers itself so that `try_skb` can ask before it branches.
#[inline(always)]
fn dns_query_blocked(ctx: &SkBuffContext) -> bool {
    let Ok(Some(p)) = parse(ctx, dir::EGRESS) else {
        return false;
    };
    if p.len == 0 || !dns_port(p.meta.dport) {
        return false;
    }
    if p.meta.protocol == IPPROTO_UDP {
        qname_blocked(ctx, p.off + 12, p.len)
    } else {
        // A query segment starts with its 2-byte length, then the 12-byte header.
        qname_blocked(ctx, p.off + 14, p.len.saturating_sub(2))
    }
}

/// What to do with a packet of a counted (DNS-over-TCP, QUIC) socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    Capture,
    /// `max` packets were captured already.
    Skip,
    /// The socket was refused ([`flow::BLOCKED`]).
    Blocked,
}

/// Counts one more captured packet for this socket; with `hold`, the socket's ingress is
/// held back ([`flow::PENDING`]) from its first captured packet until the agent decides.
#[inline(always)]
fn count_packet(cookie: u64, max: u32, prog_id: u32, hold: bool) -> Count {
    let mut since = 0;
    let segs = match FLOWS.get_ptr_mut(&cookie) {
        // SAFETY: valid map value pointer.
        Some(s) => unsafe {
            match (*s).state {
                flow::BLOCKED => return Count::Blocked,
                flow::DONE => return Count::Skip,
                flow::PENDING => since = (*s).want,
                _ => {}
            }
            (*s).segs
        },
        None => 0,
    };
    if segs >= max {
        return Count::Skip;
    }
    let next = FlowState {
        state: if hold { flow::PENDING } else { flow::CAPTURING },
        want: if since != 0 { since } else { now_ms() },
        got: 0,
        segs: segs + 1,
    };
    if FLOWS.insert(&cookie, &next, 0).is_err() {
        count_drop(prog_id, drop::MAP_FULL);
    }
    Count::Capture
}

#[inline(always)]
fn dns_port(port: u16) -> bool {
    let (word, mask) = dns_port_bit(port);
    matches!(DNS_PORTS.get(word), Some(w) if *w & mask != 0)
}

/// Is the UDP payload at `off` a QUIC Version Negotiation packet (long header, version 0)?
#[inline(always)]
fn is_version_negotiation(ctx: &SkBuffContext, off: u32) -> bool {
    match ctx.load::<[u8; 5]>(off as usize) {
        Ok(h) => h[0] & 0x80 != 0 && h[1] == 0 && h[2] == 0 && h[3] == 0 && h[4] == 0,
        Err(_) => false,
    }
}

/// Is the UDP payload at `off` a QUIC long-header Initial of a version we can decrypt?
#[inline(always)]
fn is_quic_initial(ctx: &SkBuffContext, off: u32) -> Result<bool, i64> {
    let hdr: [u8; 5] = ctx.load(off as usize)?;
    if hdr[0] & 0x80 == 0 {
        return Ok(false);
    }
    let version = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]);
    let ptype = (hdr[0] >> 4) & 0x03;
    Ok(match version {
        QUIC_V1 => ptype == 0,
        QUIC_V2 => ptype == 1,
        // IETF drafts 0xff0000xx use v1's packet types.
        v if v >> 8 == 0x00ff_0000 => ptype == 0,
        _ => false,
    })
}

/// Parses IPv4/IPv6 + TCP/UDP headers. `None` for anything else (and fragments).
///
/// Each header is read with one `bpf_skb_load_bytes` (IPv4: 20 bytes; IPv6: 2 × 20; then
/// the L4 fields), not one call per field: every packet pays this parse, including the
/// payload-less ones (SYN, ACK, FIN, RST) that end here, and a helper call costs more than
/// copying a few more bytes.
#[inline(always)]
fn parse(ctx: &SkBuffContext, direction: u8) -> Result<Option<Parsed>, i64> {
    let total = ctx.len();
    let ip: [u8; 20] = header(ctx, 0)?;
    let mut meta = PacketMeta {
        direction,
        ..PacketMeta::default()
    };
    let l4: u32;
    match ip[0] >> 4 {
        4 => {
            let ihl = ((ip[0] & 0x0f) as u32) * 4;
            if ihl < 20 {
                return Ok(None);
            }
            if (((ip[6] as u16) << 8) | ip[7] as u16) & 0x1fff != 0 {
                return Ok(None);
            }
            meta.protocol = ip[9];
            meta.saddr[0..4].copy_from_slice(&ip[12..16]);
            meta.daddr[0..4].copy_from_slice(&ip[16..20]);
            meta.family = 4;
            l4 = ihl;
        }
        6 => {
            let rest: [u8; 20] = header(ctx, 20)?;
            meta.protocol = ip[6];
            meta.saddr[0..12].copy_from_slice(&ip[8..20]);
            meta.saddr[12..16].copy_from_slice(&rest[0..4]);
            meta.daddr.copy_from_slice(&rest[4..20]);
            meta.family = 6;
            l4 = 40;
        }
        _ => return Ok(None),
    }
    let off = match meta.protocol {
        IPPROTO_UDP => {
            let ports: [u8; 4] = header(ctx, l4 as usize)?;
            meta.sport = ((ports[0] as u16) << 8) | ports[1] as u16;
            meta.dport = ((ports[2] as u16) << 8) | ports[3] as u16;
            l4 + 8
        }
        IPPROTO_TCP => {
            // Ports, sequence number, and the data offset (byte 12).
            let tcp: [u8; 13] = header(ctx, l4 as usize)?;
            meta.sport = ((tcp[0] as u16) << 8) | tcp[1] as u16;
            meta.dport = ((tcp[2] as u16) << 8) | tcp[3] as u16;
            meta.tcp_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            l4 + ((tcp[12] >> 4) as u32) * 4
        }
        _ => return Ok(None),
    };
    if off >= total {
        return Ok(Some(Parsed { meta, off, len: 0 }));
    }
    let len = total - off;
    meta.wire_len = len;
    Ok(Some(Parsed { meta, off, len }))
}

/// Is the packet a TCP segment without payload? `false` whenever it cannot tell from the
/// linear area (the full parse then decides). The same reading as [`parse`]: IPv4 with its
/// IHL (not under 20 bytes), IPv6 with TCP as the fixed header's next header, the TCP data
/// offset; no payload when the packet ends at or before the end of the TCP header.
#[inline(always)]
fn tcp_without_payload(ctx: &SkBuffContext) -> bool {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // SAFETY: reading fields of the program's own context.
    let (data, end, total) =
        unsafe { ((*skb).data as usize, (*skb).data_end as usize, (*skb).len) };
    if data + 40 > end {
        return false;
    }
    // SAFETY: [data, data + 40) lies within [data, data_end), checked just above.
    let (b0, v4_proto, v6_next) = unsafe {
        let p = data as *const u8;
        (*p, *p.add(9), *p.add(6))
    };
    let l4 = match b0 >> 4 {
        4 if v4_proto == IPPROTO_TCP && b0 & 0x0f >= 5 => ((b0 & 0x0f) as usize) * 4,
        6 if v6_next == IPPROTO_TCP => 40,
        _ => return false,
    };
    let doff = data + l4 + 12;
    if doff + 1 > end {
        return false;
    }
    // SAFETY: the byte at `doff` lies within [data, data_end), checked just above.
    let hdr = unsafe { *(doff as *const u8) } >> 4;
    total as usize <= l4 + (hdr as usize) * 4
}

/// `N` header bytes at `off`: read in place when they are in the packet's linear area (no
/// helper call; the IP and TCP/UDP headers always are, on both hooks), else copied with
/// `bpf_skb_load_bytes`.
#[inline(always)]
fn header<const N: usize>(ctx: &SkBuffContext, off: usize) -> Result<[u8; N], i64> {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // SAFETY: reading fields of the program's own context.
    let (data, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    let p = data + off;
    if p + N <= end {
        // SAFETY: [p, p + N) lies within [data, data_end), checked just above.
        return Ok(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) });
    }
    ctx.load(off)
}

/// Copies a struct eight bytes at a time with volatile stores. A plain assignment of a struct
/// this size compiles to a call of compiler-builtins' byte-wise `memmove`: a loop that
/// verifiers before 6.8 walk byte by byte again at every call site and caller state, which
/// took `skb_egress` past the 1M-instruction limit on 6.1. Volatile stores are never merged
/// back into a `memmove` call.
///
/// # Safety
/// `dst` and `src` must be valid and 8-byte aligned.
#[inline(always)]
pub(crate) unsafe fn copy_words<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() >= 8) };
    let (d, s) = (dst.cast::<u64>(), src.cast::<u64>());
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: within both structs (size is a multiple of 8), aligned (checked above).
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read(s.add(i))) };
    }
}

/// Copies the payload (up to [`MAX_PAYLOAD`] bytes) into a ring-buffer record.
#[inline(always)]
fn emit(ctx: &SkBuffContext, p: &mut Parsed, prog_id: u32) -> Result<(), i64> {
    if let Some(owner) = owners::of_packet(ctx, p.meta.cookie) {
        // SAFETY: both point at a valid SockOwner.
        unsafe { copy_words(&mut p.meta.owner, owner) };
    }
    // Refusals and held hellos apart from the bulk (see `DECISIONS`); the bulk is shared
    // out under a flood (`share.rs`).
    let urgent = p.meta.flags != 0;
    if !urgent && !share::admit(p.meta.owner.pid, p.meta.owner.uid, prog_id) {
        return Ok(());
    }
    // SAFETY: helper without arguments.
    p.meta.ts_ns = unsafe { bpf_ktime_get_ns() };
    let mut n = p.len;
    if n as usize > MAX_PAYLOAD {
        n = MAX_PAYLOAD as u32;
        count_drop(prog_id, drop::TRUNCATED);
    }
    p.meta.cap_len = n;
    let entry = if urgent {
        DECISIONS.reserve::<PacketEvent>(0)
    } else {
        EVENTS.reserve::<PacketEvent>(0)
    };
    let Some(mut entry) = entry else {
        count_drop(prog_id, drop::RINGBUF_FULL);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // The helper's length must be provably within 1..=MAX_PAYLOAD + 1 (the size of `data`).
    // Verifiers before 6.8 learn no lower bound from a `len != 0` branch (6.1 refused the
    // program: "R3 min value is outside of the allowed memory range"), so the bound comes
    // from arithmetic: ((n - 1) & MAX) + 1 maps 1..=MAX_PAYLOAD onto itself. The volatile
    // read keeps LLVM from folding that back into `n` (it knows n >= 1 from try_skb); an
    // n of 0 (never: try_skb returns first) would read 2048 bytes and fail, counted below.
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    let len = (n.wrapping_sub(1) & (MAX_PAYLOAD as u32)) + 1;
    // SAFETY: `ev` points at a reserved record; `data` has MAX_PAYLOAD + 1 bytes.
    let ok = unsafe {
        (*ev).kind = kind::PACKET;
        (*ev)._pad = 0;
        copy_words(&mut (*ev).meta, &p.meta);
        let skb: *mut __sk_buff = ctx.skb.skb;
        bpf_skb_load_bytes(skb.cast(), p.off, (*ev).data.as_mut_ptr().cast(), len) == 0
    };
    if ok {
        // A refusal or a hello the agent must decide is reported at once: the agent tears
        // the socket down, and the client's time to fail is this latency.
        entry.submit(if urgent {
            BPF_RB_FORCE_WAKEUP
        } else {
            wakeup_flags::<PacketEvent>()
        });
    } else {
        entry.discard(0);
        count_drop(prog_id, drop::READ_FAILED);
    }
    Ok(())
}
