//! The durable outbox between finding aggregation and upload.
//!
//! Contract (tested on its own, independent of the store behind it): `append` returns only
//! once the batch is on disk; `pending` yields batches oldest first; `ack` deletes a batch
//! and is the only way one leaves, except three counted ones: the size cap (on the bytes
//! the store takes on disk) and a full disk drop the oldest batches, and `quarantine` sets
//! aside a batch the collector refused for good. A batch keeps its id across restarts, so
//! a retry after a crash is recognised by the collector and never stored twice.
//!
//! Every method blocks (sled flushes with fsync): only the spool's own thread calls them
//! ([`super::spool_worker`]), so a disk that stops answering holds up nothing else. sled
//! is behind this small interface (it carries unmaintained-dependency advisories), so
//! replacing it touches one file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shadowai_api::Finding;

/// Batches kept in quarantine at most (the oldest goes first).
pub const MAX_QUARANTINE: usize = 64;

/// One upload unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    pub findings: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("opening the spool at {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("{what}")]
    Store {
        what: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("encoding a batch")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("the spool is closed after a disk error and could not be reopened yet")]
    Closed,
    #[error(
        "the disk holding the spool has {free} bytes free, under the {needed} a write needs; batch not written"
    )]
    NoSpace { free: u64, needed: u64 },
}

impl SpoolError {
    /// True for an I/O error inside sled (after which it must be reopened).
    pub fn is_store_io(&self) -> bool {
        matches!(
            self,
            SpoolError::Store {
                source: sled::Error::Io(_),
                ..
            }
        )
    }

    /// True when the disk refused the write for lack of space.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            SpoolError::Open { source, .. } | SpoolError::Store { source, .. } => source,
            SpoolError::NoSpace { .. } => return true,
            SpoolError::Encode { .. } | SpoolError::Closed => return false,
        };
        matches!(io, sled::Error::Io(e) if e.raw_os_error() == Some(libc::ENOSPC)
            || e.kind() == std::io::ErrorKind::StorageFull)
    }
}

fn store(what: &'static str) -> impl Fn(sled::Error) -> SpoolError {
    move |source| SpoolError::Store { what, source }
}

/// What left the spool without being acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub batches: u64,
    pub findings: u64,
    /// Bytes of the dropped batches as stored.
    pub bytes: u64,
}

impl Dropped {
    fn add(&mut self, findings: u64, bytes: u64) {
        self.batches += 1;
        self.findings += findings;
        self.bytes += bytes;
    }
}

/// Free bytes a write must leave on the spool's filesystem: sled grows its files a segment
/// at a time and cannot recover in-process from a write the disk refused, so the spool
/// never lets it get that far.
pub const DISK_RESERVE: u64 = 2 << 20;

/// sled's page cache: the spool reads each batch once, to upload it, so a small cache
/// costs nothing and keeps the agent's memory down (sled's default is 1 GiB).
pub const CACHE_BYTES: u64 = 1 << 20;

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    let frsize = st.f_frsize;
    (r == 0).then(|| st.f_bavail.saturating_mul(frsize))
}

/// The sled handles; `None` only between a failed reopen and the next attempt.
struct Sled {
    db: sled::Db,
    tree: sled::Tree,
    quarantine: sled::Tree,
}

pub struct Spool {
    dir: PathBuf,
    sled: Option<Sled>,
    /// Cap on the bytes the store takes on disk.
    max_bytes: u64,
    /// Encoded bytes of the batches held (kept current on append/ack/drop).
    bytes: u64,
    /// Dropped since start (cap, full disk, corruption).
    pub dropped: Dropped,
    /// Free bytes a write must leave on the disk ([`DISK_RESERVE`]).
    reserve: u64,
    /// True while the disk keeps the spool dropping batches (logged when it starts and
    /// ends; every drop is counted).
    disk_full: bool,
}

fn findings_in(v: &[u8]) -> u64 {
    serde_json::from_slice::<Batch>(v).map_or(0, |b| b.findings.len() as u64)
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            // No background flusher. Why (sled 0.34.7, found by looping the full-disk test until it
            // hung and reading the stuck threads):
            //
            // The flusher thread seals sled's current I/O buffer every 500 ms, also while the spool
            // thread is inside a write to it; the spool thread is then the buffer's last writer and
            // hands the buffer to sled's I/O pool itself (`Log::exit_reservation`). When that write
            // fails — ENOSPC on a full disk — sled records the error but, on this one path, does
            // not wake the threads waiting for the buffer to become stable; the spool thread,
            // already in `flush()` (or in `Tree`'s drop, which flushes, when the store is reopened
            // after the error), waits on that condition variable forever.
            //
            // With no flusher, only the spool thread touches the store, and it is never inside a
            // write when a buffer is sealed: every buffer is sealed by the spool thread's own flush
            // (after each append and ack) and written on the path that wakes waiters on failure.
            // Nothing is lost: the spool flushes after every change itself, and the flusher's
            // segment cleaning is not needed for a FIFO (20,000 appends of 20 KB with 50 live
            // stayed at 4–7 MB on disk with and without it). The spool thread's deadline
            // (`super::spool_worker`) still bounds what any hang left in the store could cost.
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| SpoolError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        let tree = db.open_tree("batches").map_err(store("opening tree"))?;
        let quarantine = db
            .open_tree("quarantine")
            .map_err(store("opening the quarantine"))?;
        let bytes = tree
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|v| v.len() as u64)
            .sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            sled: Some(Sled {
                db,
                tree,
                quarantine,
            }),
            max_bytes: max_bytes.max(64 * 1024),
            bytes,
            dropped: Dropped::default(),
            reserve: DISK_RESERVE,
            disk_full: false,
        })
    }

    /// Stores a batch durably (flushed before returning). Over the cap, the oldest batches
    /// are dropped (counted in [`Spool::dropped`]). When the disk lacks room for it
    /// ([`DISK_RESERVE`] kept free, checked before sled touches the disk), the oldest
    /// batches are dropped — counted — for as long as that gives room back; only when it
    /// does not (the disk is full of something else) is the new batch refused with
    /// [`SpoolError::NoSpace`]. sled never sees a write the disk refuses, so the spool stays
    /// usable and writes resume once there is room. If the disk still refuses a write, the
    /// oldest batches are dropped and the write is tried once more.
    pub fn append(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        let bytes = serde_json::to_vec(batch).map_err(|source| SpoolError::Encode { source })?;
        let needed = self.reserve + 4 * bytes.len() as u64;
        self.retrying(|s| {
            s.make_room(needed)?;
            match s.write(&bytes) {
                Err(e) if e.is_disk_full() => {
                    // sled refuses every call after this until it is reopened.
                    s.reopen()?;
                    let freed = s.drop_oldest(s.len().div_ceil(2).max(1))?;
                    tracing::warn!(
                        dropped_batches = freed.batches,
                        "disk full: oldest spooled batches dropped to make room"
                    );
                    s.write(&bytes)
                }
                r => r,
            }?;
            s.enforce_cap()
        })
    }

    /// Runs `f`; after an I/O error from sled (which then refuses every later call) the
    /// store is reopened in place and `f` runs once more — so a disk that filled up and
    /// emptied again never needs an agent restart.
    fn retrying<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        if self.sled.is_none() {
            self.reopen()?;
        }
        match f(self) {
            Err(e) if e.is_store_io() => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "spool I/O failed; reopening the store and trying once more");
                self.reopen()?;
                f(self)
            }
            r => r,
        }
    }

    /// Room a write has: the disk's free bytes, plus what sled holds in its files beyond
    /// the live batches (space freed by dropped batches, which sled reuses before it grows
    /// its files; counted conservatively, at twice the live bytes).
    fn room(&self) -> Option<u64> {
        let free = free_bytes(&self.dir)?;
        Some(free.saturating_add(self.size_on_disk().saturating_sub(2 * self.bytes)))
    }

    /// Drops the oldest batches (counted) until a write of `needed` bytes has room; refuses
    /// it when even an empty queue would not give enough (the disk is full of something
    /// else).
    fn make_room(&mut self, needed: u64) -> Result<(), SpoolError> {
        // No reserve: no pre-check at all (only tests set it, to meet ENOSPC inside sled).
        if self.reserve == 0 {
            return Ok(());
        }
        let Some(mut room) = self.room() else {
            return Ok(());
        };
        let mut d = Dropped::default();
        while room < needed && !self.sled()?.tree.is_empty() {
            let one = self.drop_oldest(1)?;
            d.batches += one.batches;
            d.findings += one.findings;
            d.bytes += one.bytes;
            room = self.room().unwrap_or(room);
        }
        if d.batches > 0 && !self.disk_full {
            self.disk_full = true;
            tracing::warn!(
                dropped_batches = d.batches,
                dropped_findings = d.findings,
                room,
                needed,
                "disk full: oldest spooled batches dropped to make room for new ones (each counted as lost; logged again when it ends)"
            );
        } else if d.batches == 0 && self.disk_full && room >= needed.saturating_add(self.reserve) {
            // Room to spare again (not merely the room the last drop made).
            self.disk_full = false;
            tracing::info!(
                room,
                "the spool's disk has room again: no more batches dropped"
            );
        }
        if room < needed {
            return Err(SpoolError::NoSpace { free: room, needed });
        }
        Ok(())
    }

    /// After a write the disk refused, sled refuses every later call until it is opened
    /// again: close and reopen it in place (no agent restart), keeping the counters. If it
    /// cannot be opened now, the next call tries again.
    fn reopen(&mut self) -> Result<(), SpoolError> {
        self.sled = None;
        let mut last = None;
        for _ in 0..50 {
            // sled's flusher may hold its lock a moment after the old handles go.
            match Self::open(&self.dir, self.max_bytes) {
                Ok(mut fresh) => {
                    self.sled = fresh.sled.take();
                    self.bytes = fresh.bytes;
                    tracing::info!("spool reopened after a write the disk refused");
                    return Ok(());
                }
                // The disk is still full: the next call tries again, no point waiting.
                Err(e) if e.is_disk_full() => return Err(e),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(last.unwrap_or(SpoolError::Closed))
    }

    fn sled(&self) -> Result<&Sled, SpoolError> {
        self.sled.as_ref().ok_or(SpoolError::Closed)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let seq = self
            .sled()?
            .db
            .generate_id()
            .map_err(store("allocating a sequence number"))?;
        let key = seq.to_be_bytes();
        self.sled()?
            .tree
            .insert(key, bytes)
            .map_err(store("writing a batch"))?;
        if let Err(e) = self.sled()?.tree.flush() {
            // Not on disk: take it back out, so a batch counted as lost is really gone
            // and never turns up later as a surprise.
            let _ = self.sled()?.tree.remove(key);
            return Err(SpoolError::Store {
                what: "flushing a batch to disk",
                source: e,
            });
        }
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Up to `n` batches, oldest first, with their keys for [`Spool::ack`]. A stored batch
    /// that no longer decodes (disk corruption) is dropped and counted, not fatal.
    pub fn pending(&mut self, n: usize) -> Result<Vec<(u64, Batch)>, SpoolError> {
        self.retrying(|s| s.pending_once(n))
    }

    fn pending_once(&mut self, n: usize) -> Result<Vec<(u64, Batch)>, SpoolError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for item in self.sled()?.tree.iter() {
            let (k, v) = item.map_err(store("reading"))?;
            let Ok(key) = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes) else {
                bad.push(k);
                continue;
            };
            match serde_json::from_slice::<Batch>(&v) {
                Ok(b) => out.push((key, b)),
                Err(e) => {
                    tracing::error!(key, error = %e, "spooled batch does not decode; dropping it");
                    bad.push(k);
                }
            }
            if out.len() >= n {
                break;
            }
        }
        for k in bad {
            if let Some(v) = self
                .sled()?
                .tree
                .remove(k)
                .map_err(store("dropping a corrupt batch"))?
            {
                self.bytes = self.bytes.saturating_sub(v.len() as u64);
            }
            self.dropped.add(0, 0);
        }
        Ok(out)
    }

    /// The collector acknowledged this batch: delete it.
    pub fn ack(&mut self, key: u64) -> Result<(), SpoolError> {
        self.retrying(|s| s.ack_once(key))
    }

    fn ack_once(&mut self, key: u64) -> Result<(), SpoolError> {
        if let Some(v) = self
            .sled()?
            .tree
            .remove(key.to_be_bytes())
            .map_err(store("deleting an acked batch"))?
        {
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
        }
        self.sled()?.tree.flush().map_err(store("flushing"))?;
        Ok(())
    }

    /// The collector refused this batch for good: move it out of the queue into the
    /// (bounded) quarantine, where an operator can still read it.
    pub fn quarantine(&mut self, key: u64) -> Result<(), SpoolError> {
        let Some(v) = self
            .sled()?
            .tree
            .remove(key.to_be_bytes())
            .map_err(store("taking a batch out of the queue"))?
        else {
            return Ok(());
        };
        self.bytes = self.bytes.saturating_sub(v.len() as u64);
        self.sled()?
            .quarantine
            .insert(key.to_be_bytes(), v)
            .map_err(store("quarantining a batch"))?;
        while self.sled()?.quarantine.len() > MAX_QUARANTINE {
            if self
                .sled()?
                .quarantine
                .pop_min()
                .map_err(store("trimming the quarantine"))?
                .is_none()
            {
                break;
            }
        }
        self.sled()?.db.flush().map_err(store("flushing"))?;
        Ok(())
    }

    /// Sets the free bytes a write must leave; 0 skips the check (tests force a write the
    /// disk refuses inside sled).
    #[cfg(test)]
    fn set_reserve(&mut self, reserve: u64) {
        self.reserve = reserve;
    }

    /// Batches in quarantine, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Batch>, SpoolError> {
        let mut out = Vec::new();
        for item in self.sled()?.quarantine.iter() {
            let (_, v) = item.map_err(store("reading the quarantine"))?;
            if let Ok(b) = serde_json::from_slice(&v) {
                out.push(b);
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.sled.as_ref().map_or(0, |s| s.tree.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the store takes on disk (0 when the size cannot be read).
    pub fn size_on_disk(&self) -> u64 {
        self.sled
            .as_ref()
            .map_or(0, |s| s.db.size_on_disk().unwrap_or(0))
    }

    /// Drops up to `n` of the oldest batches (counted).
    fn drop_oldest(&mut self, n: usize) -> Result<Dropped, SpoolError> {
        let mut d = Dropped::default();
        for _ in 0..n {
            let Some((_, v)) = self
                .sled()?
                .tree
                .pop_min()
                .map_err(store("dropping the oldest batch"))?
            else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
            d.add(findings_in(&v), v.len() as u64);
        }
        self.dropped.batches += d.batches;
        self.dropped.findings += d.findings;
        self.dropped.bytes += d.bytes;
        Ok(d)
    }

    /// Keeps the store under its cap: the encoded batches under half of it (sled needs
    /// room around live data), and the files on disk under all of it. The newest batch is
    /// always kept.
    fn enforce_cap(&mut self) -> Result<(), SpoolError> {
        let mut d = Dropped::default();
        while self.bytes > self.max_bytes / 2 && self.sled()?.tree.len() > 1 {
            let one = self.drop_oldest(1)?;
            d.batches += one.batches;
            d.findings += one.findings;
            d.bytes += one.bytes;
        }
        if self.size_on_disk() > self.max_bytes {
            while self.bytes > self.max_bytes / 4 && self.sled()?.tree.len() > 1 {
                let one = self.drop_oldest(1)?;
                d.batches += one.batches;
                d.findings += one.findings;
                d.bytes += one.bytes;
            }
        }
        if d.batches > 0 {
            tracing::warn!(
                dropped_batches = d.batches,
                dropped_findings = d.findings,
                cap_bytes = self.max_bytes,
                "spool over its size cap: oldest batches dropped (counted as lost)"
            );
            self.sled()?.tree.flush().map_err(store("flushing"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use proptest::prelude::*;

    fn batch(id: &str, n: usize) -> Batch {
        Batch {
            batch_id: id.into(),
            findings: (0..n)
                .map(|i| crate::run::findings::tests::finding(&format!("{id}-{i}")))
                .collect(),
        }
    }

    #[test]
    fn survives_reopen_and_acks_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
            s.append(&batch("a", 2)).unwrap();
            s.append(&batch("b", 1)).unwrap();
        }
        let mut s = reopen(dir.path());
        let p = s.pending(10).unwrap();
        assert_eq!(
            p.iter()
                .map(|(_, b)| b.batch_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        s.ack(p[0].0).unwrap();
        drop(s);
        let mut s = reopen(dir.path());
        let p = s.pending(10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.batch_id, "b");
        assert_eq!(p[0].1.findings.len(), 1);
    }

    #[test]
    fn cap_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 * 1024).unwrap();
        for i in 0..200 {
            s.append(&batch(&format!("b{i}"), 2)).unwrap();
        }
        assert!(s.dropped.batches > 0);
        assert_eq!(s.dropped.findings, s.dropped.batches * 2);
        let p = s.pending(1000).unwrap();
        assert_eq!(
            p.last().unwrap().1.batch_id,
            "b199",
            "the newest batch is kept"
        );
        assert_eq!(p.len() as u64 + s.dropped.batches, 200);
    }

    #[test]
    fn quarantine_takes_a_batch_out_of_the_queue_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        for i in 0..(MAX_QUARANTINE + 10) {
            s.append(&batch(&format!("q{i}"), 1)).unwrap();
        }
        s.append(&batch("good", 1)).unwrap();
        while let Some((k, b)) = s.pending(1).unwrap().into_iter().next() {
            if b.batch_id == "good" {
                break;
            }
            s.quarantine(k).unwrap();
        }
        let p = s.pending(10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.batch_id, "good", "the queue moved on");
        let q = s.quarantined().unwrap();
        assert_eq!(q.len(), MAX_QUARANTINE);
        assert_eq!(
            q.last().unwrap().batch_id,
            format!("q{}", MAX_QUARANTINE + 9)
        );
    }

    /// A small tmpfs, unmounted on drop (needs root, as CI is).
    struct SmallDisk(tempfile::TempDir);

    impl SmallDisk {
        fn new(mib: u32) -> Self {
            let d = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(d.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "mounting a tmpfs (the spool's disk tests need root)");
            Self(d)
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    /// A disk test must end in bounded time: a hang (as sled's was on a full disk) fails
    /// the test instead of stalling CI.
    const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(120);

    /// Runs `f` on its own thread; panics if it has not finished within `limit`.
    fn within(limit: std::time::Duration, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!(
                "the spool did not finish within {} s: it hung",
                limit.as_secs()
            ),
        }
    }

    #[test]
    fn a_full_disk_drops_the_oldest_batches_and_keeps_taking_new_ones() {
        let disk = SmallDisk::new(8);
        let root = disk.0.path().to_path_buf();
        within(WATCHDOG, move || {
            let dir = root.join("spool");
            // A cap far above the disk: the disk fills first.
            let mut s = Spool::open(&dir, 1 << 30).unwrap();
            let (mut ok, mut refused) = (0, 0);
            for i in 0..300 {
                match s.append(&batch(&format!("d{i}"), 40)) {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        assert!(e.is_disk_full(), "{e}");
                        refused += 1;
                    }
                }
            }
            assert!(s.dropped.batches > 0, "the disk filled: the oldest went");
            assert!(s.dropped.bytes > 0 && s.dropped.findings == s.dropped.batches * 40);
            assert!(
                refused <= 3,
                "new batches are taken (oldest dropped), not refused: {ok} ok, {refused} refused"
            );
            let p = s.pending(1000).unwrap();
            assert_eq!(p.last().unwrap().1.batch_id, "d299", "the newest is kept");
            let seq: Vec<u32> = p
                .iter()
                .map(|(_, b)| b.batch_id[1..].parse().unwrap())
                .collect();
            assert!(
                seq.windows(2).all(|w| w[0] < w[1]),
                "still oldest first: {seq:?}"
            );
            // Acks still work, and so does a reopen.
            s.ack(p[0].0).unwrap();
            drop(s);
            let mut s = reopen(&dir);
            assert_eq!(s.pending(1).unwrap().len(), 1);
        });
    }

    #[test]
    fn a_disk_full_of_something_else_refuses_new_batches_and_recovers() {
        let disk = SmallDisk::new(8);
        let root = disk.0.path().to_path_buf();
        within(WATCHDOG, move || {
            let dir = root.join("spool");
            let mut s = Spool::open(&dir, 1 << 30).unwrap();
            s.append(&batch("before", 2)).unwrap();
            // Another file takes the disk to the last byte.
            let filler = root.join("filler");
            let _ = std::process::Command::new("dd")
                .args(["if=/dev/zero", "bs=64k"])
                .arg(format!("of={}", filler.display()))
                .output();
            let e = s.append(&batch("during", 2)).unwrap_err();
            assert!(e.is_disk_full(), "{e}");
            // Room again: the same spool (no restart) takes writes again.
            std::fs::remove_file(&filler).unwrap();
            s.append(&batch("after", 2)).unwrap();
            let ids: Vec<String> = s
                .pending(10)
                .unwrap()
                .into_iter()
                .map(|(_, b)| b.batch_id)
                .collect();
            assert!(ids.ends_with(&["after".to_string()]), "{ids:?}");
        });
    }

    #[test]
    fn a_write_the_disk_refuses_mid_way_leaves_the_spool_usable_without_a_restart() {
        let disk = SmallDisk::new(8);
        let root = disk.0.path().to_path_buf();
        within(WATCHDOG, move || {
            let dir = root.join("spool");
            let mut s = Spool::open(&dir, 1 << 30).unwrap();
            // No reserve: sled itself meets ENOSPC in the middle of a write.
            s.set_reserve(0);
            s.append(&batch("first", 2)).unwrap();
            let filler = root.join("filler");
            let _ = std::process::Command::new("dd")
                .args(["if=/dev/zero", "bs=4k"])
                .arg(format!("of={}", filler.display()))
                .output();
            let (mut refused, mut by_sled) = (0, 0);
            for i in 0..20 {
                if let Err(e) = s.append(&batch(&format!("full{i}"), 200)) {
                    refused += 1;
                    if !matches!(e, SpoolError::NoSpace { .. }) {
                        by_sled += 1;
                    }
                }
            }
            assert!(refused > 0, "the disk refused writes");
            assert!(
                by_sled > 0,
                "sled itself met ENOSPC, not only the pre-check ({refused} refused)"
            );
            std::fs::remove_file(&filler).unwrap();
            s.set_reserve(DISK_RESERVE);
            s.append(&batch("after", 2)).unwrap();
            let ids: Vec<String> = s
                .pending(100)
                .unwrap()
                .into_iter()
                .map(|(_, b)| b.batch_id)
                .collect();
            assert_eq!(ids.last().map(String::as_str), Some("after"), "{ids:?}");
            let (k, _) = s.pending(1).unwrap().remove(0);
            s.ack(k).unwrap();
        });
    }

    /// sled's flusher thread may hold the store's lock a moment after the drop.
    fn reopen(dir: &Path) -> Spool {
        for _ in 0..100 {
            if let Ok(s) = Spool::open(dir, 1 << 30) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Spool::open(dir, 1 << 30).unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append,
        AckOldest,
        Reopen,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Model test: the spool behaves like a FIFO queue across any mix of appends, acks
        /// and reopens (crash = drop without anything else).
        #[test]
        fn behaves_like_a_fifo(ops in proptest::collection::vec(prop_oneof![Just(Op::Append), Just(Op::AckOldest), Just(Op::Reopen)], 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
            let mut model: std::collections::VecDeque<String> = Default::default();
            let mut n = 0;
            for op in ops {
                match op {
                    Op::Append => {
                        let id = format!("x{n}");
                        n += 1;
                        s.append(&batch(&id, 1)).unwrap();
                        model.push_back(id);
                    }
                    Op::AckOldest => {
                        if let Some((k, b)) = s.pending(1).unwrap().into_iter().next() {
                            prop_assert_eq!(Some(b.batch_id), model.pop_front());
                            s.ack(k).unwrap();
                        } else {
                            prop_assert!(model.is_empty());
                        }
                    }
                    Op::Reopen => {
                        drop(s);
                        s = reopen(dir.path());
                    }
                }
            }
            let ids: Vec<String> = s.pending(1000).unwrap().into_iter().map(|(_, b)| b.batch_id).collect();
            prop_assert_eq!(ids, model.into_iter().collect::<Vec<_>>());
        }
    }
}
