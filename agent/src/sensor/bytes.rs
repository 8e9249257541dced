//! Loader side of byte accounting (`agent-ebpf/src/bytes.rs`): the capture programs
//! `skb_egress` / `skb_ingress` count the bytes; this attaches `bytes_release` and hands out
//! the maps. Whoever attributes sockets to uses reads the live counters by socket cookie and
//! drains the final counters of released sockets.

use std::os::fd::AsFd;

use aya::Ebpf;
use aya::maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSock};
use shadowai_common::bytes::{SockBytes, SockClosed, lost};

use super::HookStatus;

/// The byte counters of every socket, by cookie.
pub struct ByteCounters {
    counters: HashMap<MapData, u64, SockBytes>,
    closed: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
}

/// The hook of this module (reported in `hooks`).
pub const HOOK: &str = "bytes_release";

/// The programs that count: the capture programs, which must be attached before
/// [`ByteCounters::attach`] is called.
pub const COUNTING: [&str; 2] = ["skb_egress", "skb_ingress"];

impl ByteCounters {
    /// Attaches `bytes_release` (reported in `hooks`); `None` unless both counting programs
    /// are attached and the maps are all there — half of them would report wrong figures.
    pub fn attach(
        ebpf: &mut Ebpf,
        cgroup: &impl AsFd,
        hooks: &mut Vec<HookStatus>,
    ) -> Option<Self> {
        let counting = COUNTING
            .iter()
            .all(|c| hooks.iter().any(|h| h.name == *c && h.attached));
        let release = attach_release(ebpf, cgroup);
        hooks.push(super::status(HOOK, release));
        if !counting {
            tracing::warn!(
                "byte accounting unavailable (the capture programs are not attached): findings carry no bytes_out/bytes_in"
            );
            return None;
        }
        let maps = (|| {
            let counters = HashMap::try_from(ebpf.take_map("SOCK_BYTES")?).ok()?;
            let closed = RingBuf::try_from(ebpf.take_map("BYTES_CLOSED")?).ok()?;
            let lost = PerCpuArray::try_from(ebpf.take_map("BYTES_LOST")?).ok()?;
            Some(Self {
                counters,
                closed,
                lost,
            })
        })();
        if maps.is_none() {
            tracing::error!(
                "byte accounting maps missing from the eBPF object: findings carry no bytes_out/bytes_in"
            );
        }
        maps
    }
}

/// What a byte-accounting reader needs: the kernel's counters here, a scripted source in
/// unit tests of the attribution logic.
pub trait ByteSource: Send {
    /// The live counters of a socket; `Ok(None)` once it is gone (released or evicted).
    fn read(&self, cookie: u64) -> Result<Option<SockBytes>, MapError>;
    /// Appends the final counters of sockets released since the last call, at most `max`.
    fn drain_closed(&mut self, out: &mut Vec<SockClosed>, max: usize);
    /// Kernel-side losses so far: (reason, count).
    fn lost(&self) -> Vec<(&'static str, u64)>;
}

impl ByteSource for ByteCounters {
    fn read(&self, cookie: u64) -> Result<Option<SockBytes>, MapError> {
        match self.counters.get(&cookie, 0) {
            Ok(b) => Ok(Some(b)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn drain_closed(&mut self, out: &mut Vec<SockClosed>, max: usize) {
        let mut n = 0;
        while n < max {
            let Some(item) = self.closed.next() else {
                break;
            };
            if item.len() >= std::mem::size_of::<SockClosed>() {
                // SAFETY: the kernel writes whole `SockClosed` records (Pod, every bit
                // pattern valid); the length was checked; read_unaligned needs no alignment.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SockClosed>()) });
            }
            n += 1;
        }
    }

    fn lost(&self) -> Vec<(&'static str, u64)> {
        (0..lost::SLOTS)
            .map(|slot| {
                let n = self
                    .lost
                    .get(&slot, 0)
                    .map_or(0, |v| v.iter().copied().sum::<u64>());
                (lost::NAMES[slot as usize], n)
            })
            .collect()
    }
}

fn attach_release(ebpf: &mut Ebpf, cgroup: &impl AsFd) -> Result<Option<u32>, String> {
    let prog: &mut CgroupSock = ebpf
        .program_mut(HOOK)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    prog.attach(cgroup, CgroupAttachMode::Single)
        .map_err(|e| e.to_string())?;
    Ok(super::verified(prog.info()))
}
