//! The durable outbox between finding aggregation and upload.
//!
//! Contract (tested on its own, independent of the store behind it): `append` returns only
//! once the batch is on disk; `pending` yields batches oldest first; `ack` deletes a batch
//! and is the only way one leaves, except three counted ones: the size cap (on the bytes
//! the store takes on disk) and a full disk drop the oldest batches, and `quarantine` sets
//! aside a batch the collector refused for good. A batch keeps its id across restarts, so
//! a retry after a crash is recognised by the collector and never stored twice.
//!
//! Every method blocks (sled flushes with fsync): call them from a blocking thread, never
//! from the task that drains the ring buffer. sled is behind this small interface (it
//! carries unmaintained-dependency advisories), so replacing it touches one file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[error(
        "the disk holding the spool has {free} bytes free, under the {needed} a write needs; batch not written"
    )]
    NoSpace { free: u64, needed: u64 },
}

impl SpoolError {
    /// True when the disk refused the write for lack of space.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            SpoolError::Open { source, .. } | SpoolError::Store { source, .. } => source,
            SpoolError::NoSpace { .. } => return true,
            SpoolError::Encode { .. } => return false,
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
}

impl Dropped {
    fn add(&mut self, findings: u64) {
        self.batches += 1;
        self.findings += findings;
    }
}

/// The spool shared by the output stage (appends) and the uplink (reads, acks); both use
/// it from blocking threads.
pub type SpoolHandle = Arc<parking_lot::Mutex<Spool>>;

/// Free bytes a write must leave on the spool's filesystem: sled grows its files a segment
/// at a time and cannot recover in-process from a write the disk refused, so the spool
/// never lets it get that far.
pub const DISK_RESERVE: u64 = 2 << 20;

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

pub struct Spool {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    quarantine: sled::Tree,
    /// Cap on the bytes the store takes on disk.
    max_bytes: u64,
    /// Encoded bytes of the batches held (kept current on append/ack/drop).
    bytes: u64,
    /// Dropped since start (cap, full disk, corruption).
    pub dropped: Dropped,
}

fn findings_in(v: &[u8]) -> u64 {
    serde_json::from_slice::<Batch>(v).map_or(0, |b| b.findings.len() as u64)
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
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
            db,
            tree,
            quarantine,
            max_bytes: max_bytes.max(64 * 1024),
            bytes,
            dropped: Dropped::default(),
        })
    }

    /// Stores a batch durably (flushed before returning). Over the cap, the oldest batches
    /// are dropped (counted in [`Spool::dropped`]). A batch the disk has no room for
    /// ([`DISK_RESERVE`] kept free) is refused with [`SpoolError::NoSpace`] before sled
    /// touches the disk, so the spool stays usable and writes resume once there is room.
    /// If the disk still refuses a write, the oldest batches are dropped and the write is
    /// tried once more.
    pub fn append(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        let bytes = serde_json::to_vec(batch).map_err(|source| SpoolError::Encode { source })?;
        let needed = DISK_RESERVE + 4 * bytes.len() as u64;
        if let Some(free) = free_bytes(&self.dir)
            && free < needed
        {
            return Err(SpoolError::NoSpace { free, needed });
        }
        match self.write(&bytes) {
            Err(e) if e.is_disk_full() => {
                let freed = self.drop_oldest(self.tree.len().div_ceil(2).max(1))?;
                tracing::warn!(
                    dropped_batches = freed.batches,
                    "disk full: oldest spooled batches dropped to make room"
                );
                self.write(&bytes)
            }
            r => r,
        }?;
        self.enforce_cap()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let seq = self
            .db
            .generate_id()
            .map_err(store("allocating a sequence number"))?;
        let key = seq.to_be_bytes();
        self.tree
            .insert(key, bytes)
            .map_err(store("writing a batch"))?;
        if let Err(e) = self.tree.flush() {
            // Not on disk: take it back out, so a batch counted as lost is really gone
            // and never turns up later as a surprise.
            let _ = self.tree.remove(key);
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
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for item in self.tree.iter() {
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
                .tree
                .remove(k)
                .map_err(store("dropping a corrupt batch"))?
            {
                self.bytes = self.bytes.saturating_sub(v.len() as u64);
            }
            self.dropped.add(0);
        }
        Ok(out)
    }

    /// The collector acknowledged this batch: delete it.
    pub fn ack(&mut self, key: u64) -> Result<(), SpoolError> {
        if let Some(v) = self
            .tree
            .remove(key.to_be_bytes())
            .map_err(store("deleting an acked batch"))?
        {
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
        }
        self.tree.flush().map_err(store("flushing"))?;
        Ok(())
    }

    /// The collector refused this batch for good: move it out of the queue into the
    /// (bounded) quarantine, where an operator can still read it.
    pub fn quarantine(&mut self, key: u64) -> Result<(), SpoolError> {
        let Some(v) = self
            .tree
            .remove(key.to_be_bytes())
            .map_err(store("taking a batch out of the queue"))?
        else {
            return Ok(());
        };
        self.bytes = self.bytes.saturating_sub(v.len() as u64);
        self.quarantine
            .insert(key.to_be_bytes(), v)
            .map_err(store("quarantining a batch"))?;
        while self.quarantine.len() > MAX_QUARANTINE {
            if self
                .quarantine
                .pop_min()
                .map_err(store("trimming the quarantine"))?
                .is_none()
            {
                break;
            }
        }
        self.db.flush().map_err(store("flushing"))?;
        Ok(())
    }

    /// Batches in quarantine, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Batch>, SpoolError> {
        let mut out = Vec::new();
        for item in self.quarantine.iter() {
            let (_, v) = item.map_err(store("reading the quarantine"))?;
            if let Ok(b) = serde_json::from_slice(&v) {
                out.push(b);
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Bytes the store takes on disk (0 when the size cannot be read).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Drops up to `n` of the oldest batches (counted).
    fn drop_oldest(&mut self, n: usize) -> Result<Dropped, SpoolError> {
        let mut d = Dropped::default();
        for _ in 0..n {
            let Some((_, v)) = self
                .tree
                .pop_min()
                .map_err(store("dropping the oldest batch"))?
            else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
            d.add(findings_in(&v));
        }
        self.dropped.batches += d.batches;
        self.dropped.findings += d.findings;
        Ok(d)
    }

    /// Keeps the store under its cap: the encoded batches under half of it (sled needs
    /// room around live data), and the files on disk under all of it. The newest batch is
    /// always kept.
    fn enforce_cap(&mut self) -> Result<(), SpoolError> {
        let mut d = Dropped::default();
        while self.bytes > self.max_bytes / 2 && self.tree.len() > 1 {
            let one = self.drop_oldest(1)?;
            d.batches += one.batches;
            d.findings += one.findings;
        }
        if self.size_on_disk() > self.max_bytes {
            while self.bytes > self.max_bytes / 4 && self.tree.len() > 1 {
                let one = self.drop_oldest(1)?;
                d.batches += one.batches;
                d.findings += one.findings;
            }
        }
        if d.batches > 0 {
            tracing::warn!(
                dropped_batches = d.batches,
                dropped_findings = d.findings,
                cap_bytes = self.max_bytes,
                "spool over its size cap: oldest batches dropped (counted as lost)"
            );
            self.tree.flush().map_err(store("flushing"))?;
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
