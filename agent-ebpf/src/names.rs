//! Name matching in the kernel: the enforcement filters' lookups of a DNS question name
//! and of a ClientHello's SNI in `BLOCK_NAMES` (reversed wire form, longest prefix).

use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext};
use shadowai_common::{QNAME_LABELS, QNAME_MAX, SNI_EXTENSIONS, SNI_MAX};

use crate::{config, BLOCK_NAMES, QNAME_KEY, QNAME_SCRATCH};

/// [`sni_verdict`]: the SNI is blocked.
pub const SNI_BLOCKED: u32 = 1;
/// [`sni_verdict`]: the SNI was found in this segment and is not blocked.
pub const SNI_ALLOWED: u32 = 2;
/// [`sni_verdict`]: no SNI in this segment (or one the kernel cannot judge).
pub const SNI_UNKNOWN: u32 = 0;

/// Does the ClientHello record starting at `off` (the first segment of the flow) name a
/// blocked server? Walks the hello to the server_name extension with bounded loads
/// (every offset is checked by the helper at run time) and looks the name up in
/// `BLOCK_NAMES` in the same reversed wire form as DNS questions. Anything not found in
/// this segment (a hello spanning segments, an SNI over [`SNI_MAX`] bytes) is unknown:
/// the agent decides it from the reassembled hello.
#[inline(never)]
pub fn sni_verdict(ctx: &SkBuffContext, off: u32, plen: u32) -> u32 {
    // Record header (5), handshake header (4), version (2), random (32).
    let mut p = off + 43;
    let end = off + plen;
    let Ok(sid) = ctx.load::<u8>(p as usize) else {
        return SNI_UNKNOWN;
    };
    p += 1 + sid as u32;
    let Ok(cs) = ctx.load::<[u8; 2]>(p as usize) else {
        return SNI_UNKNOWN;
    };
    p += 2 + (((cs[0] as u32) << 8) | cs[1] as u32);
    let Ok(comp) = ctx.load::<u8>(p as usize) else {
        return SNI_UNKNOWN;
    };
    p += 1 + comp as u32 + 2; // compression methods, then the extensions' total length
    let mut name_off = 0u32;
    let mut name_len = 0u32;
    for _ in 0..SNI_EXTENSIONS {
        if p + 4 > end {
            return SNI_UNKNOWN;
        }
        let Ok(h) = ctx.load::<[u8; 4]>(p as usize) else {
            return SNI_UNKNOWN;
        };
        let elen = ((h[2] as u32) << 8) | h[3] as u32;
        if h[0] == 0 && h[1] == 0 {
            // server_name: list length (2), name type (1), name length (2), name.
            let Ok(n) = ctx.load::<[u8; 5]>(p as usize + 4) else {
                return SNI_UNKNOWN;
            };
            if n[2] != 0 {
                return SNI_UNKNOWN;
            }
            name_len = ((n[3] as u32) << 8) | n[4] as u32;
            name_off = p + 9;
            break;
        }
        p += 4 + elen;
    }
    if name_len == 0 || name_len as usize > SNI_MAX || name_off + name_len > end {
        return SNI_UNKNOWN;
    }
    let (Some(buf), Some(key)) = (QNAME_SCRATCH.get_ptr_mut(0), QNAME_KEY.get_ptr_mut(0)) else {
        return SNI_UNKNOWN;
    };
    // SAFETY: per-CPU scratch slots, ours while this program runs.
    let (buf, key) = unsafe { (&mut *buf, &mut *key) };
    // 1..=128 for the verifier whatever LLVM knows (see `qname_blocked`).
    // SAFETY: a read of a local.
    let m = unsafe { core::ptr::read_volatile(&name_len) };
    let n = (m.wrapping_sub(1) & (QNAME_MAX as u32 - 1)) + 1;
    // SAFETY: `buf` has 256 bytes and `n` <= 128.
    let rc =
        unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), name_off, buf.as_mut_ptr().cast(), n) };
    if rc != 0 {
        return SNI_UNKNOWN;
    }
    // Reverse the dotted name into wire form: walking from its last byte, letters are
    // copied lower-cased and each dot (and the name's start, a dot planted at index 255,
    // where the walk lands after the first byte) becomes the length of the label after
    // it. Branch-free, so the verifier keeps one state across the 128 steps.
    buf[255] = b'.';
    // SAFETY: a read of a local.
    let n = (unsafe { core::ptr::read_volatile(&n) } & 0xff) as usize;
    let last = n.wrapping_sub(1);
    let mut label: u8 = 0;
    for i in 0..QNAME_MAX {
        let b = buf[last.wrapping_sub(i) & 0xff];
        // 0xff when b is a dot, else 0.
        let dot = (((b ^ b'.') as u32).wrapping_sub(1) >> 8) as u8;
        let upper = ((b.wrapping_sub(b'A') as u32).wrapping_sub(26) >> 31) as u8;
        let lower = b | (upper << 5);
        key.data[i & (QNAME_MAX - 1)] = (label & dot) | (lower & !dot);
        label = label.wrapping_add(1) & !dot;
    }
    key.prefix_len = ((n + 1) * 8) as u32;
    if BLOCK_NAMES.get(&*key).is_some() {
        SNI_BLOCKED
    } else {
        SNI_ALLOWED
    }
}

/// Does the DNS question name at `qoff` (wire format) end in a blocked suffix?
///
/// Walk the labels to find the name's end (at most [`QNAME_LABELS`] jumps), copy the name
/// reversed and lower-cased into the lookup key (one flat loop), and do one longest-prefix
/// lookup in `BLOCK_NAMES`: any stored suffix that prefixes the key is a blocked suffix of
/// the name, at a label boundary. Longer names, compression pointers and garbage are never
/// blocked.
#[inline(never)]
pub fn qname_blocked(ctx: &SkBuffContext, qoff: u32, plen: u32) -> bool {
    if config().block_names == 0 || plen <= 12 {
        return false;
    }
    let (Some(buf), Some(key)) = (QNAME_SCRATCH.get_ptr_mut(0), QNAME_KEY.get_ptr_mut(0)) else {
        return false;
    };
    // SAFETY: per-CPU scratch slots, ours while this program runs.
    let (buf, key) = unsafe { (&mut *buf, &mut *key) };
    let avail = plen - 12;
    let m = if avail as usize > QNAME_MAX {
        QNAME_MAX as u32
    } else {
        avail
    };
    // Written so the verifier sees 1..=QNAME_MAX without relying on the checks above
    // (LLVM folds those away).
    let n = ((m.wrapping_sub(1)) & (QNAME_MAX as u32 - 1)) + 1;
    // SAFETY: `buf` has 256 bytes and `n` <= 128.
    let rc = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), qoff, buf.as_mut_ptr().cast(), n) };
    if rc != 0 {
        return false;
    }
    let n = n as usize;
    let mut end = 0usize;
    let mut found = false;
    for _ in 0..QNAME_LABELS {
        if end >= n {
            return false;
        }
        // The index must be bounded for the verifier on its own: verifiers before 6.8 learn
        // nothing from `end < n` (two registers), and LLVM drops a plain `& 0xff` because
        // it knows end < n <= 128 (6.1 refused the program: "R3 max value is outside of the
        // allowed memory range"). A volatile read hides that knowledge from LLVM.
        // SAFETY: a read of a local.
        let idx = unsafe { core::ptr::read_volatile(&end) } & 0xff;
        let len = buf[idx] as usize;
        if len == 0 {
            found = true;
            break;
        }
        if len > 63 {
            return false; // compression pointer or garbage
        }
        end += len + 1;
    }
    if !found || end == 0 || end > QNAME_MAX {
        return false;
    }
    // One verifier state from here on, whichever label count led here: a masked `end`
    // (0..=255, the same range on every path; the checks above keep the real value in
    // 1..=QNAME_MAX) lets the verifier prune the 32 ways into the loop below to one.
    // Without it, 6.1 walked every (label count × byte) path into its 1M-instruction limit.
    // The volatile read keeps LLVM from dropping the mask.
    // SAFETY: a read of a local.
    let end = unsafe { core::ptr::read_volatile(&end) } & 0xff;
    let last = end.wrapping_sub(1);
    // Every one of the QNAME_MAX key bytes, with no exit that depends on `end`: the lookup
    // compares only `prefix_len` bits, so bytes past the name do not matter, and a branch
    // per byte would split the state again.
    for i in 0..QNAME_MAX {
        let b = buf[last.wrapping_sub(i) & 0xff];
        key.data[i & (QNAME_MAX - 1)] = b | (((b.wrapping_sub(b'A') < 26) as u8) << 5);
    }
    key.prefix_len = (end * 8) as u32;
    BLOCK_NAMES.get(&*key).is_some()
}
