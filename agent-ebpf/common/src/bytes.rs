//! Byte accounting per socket: what `agent-ebpf/src/bytes.rs` counts and hands to the
//! agent. Only sizes — never a byte of payload.

/// L4 payload bytes one socket sent and received (TCP segment data, UDP datagram data;
/// headers excluded), keyed by socket cookie in `SOCK_BYTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockBytes {
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// The final counters of a socket, sent through `BYTES_CLOSED` when it is released.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockClosed {
    pub cookie: u64,
    pub bytes: SockBytes,
}

/// Lost-count slots of `BYTES_LOST` (per CPU).
pub mod lost {
    /// A new socket's counters found `SOCK_BYTES` refusing the insert.
    pub const MAP_FULL: u32 = 0;
    /// A released socket's final counters found `BYTES_CLOSED` full.
    pub const CLOSED_RING_FULL: u32 = 1;
    /// A socket's first counters were inserted but its storage could not be made (not a
    /// full socket, or no memory): its release will not report them.
    pub const NO_STORAGE: u32 = 2;
    pub const SLOTS: u32 = 3;
    pub const NAMES: [&str; SLOTS as usize] =
        ["counter_map_full", "closed_ring_full", "no_socket_storage"];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], only u64 fields, no padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::SockBytes {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockClosed {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<SockBytes>(), 16);
        assert_eq!(core::mem::size_of::<SockClosed>(), 24);
    }
}
