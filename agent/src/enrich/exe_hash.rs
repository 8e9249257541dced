//! SHA-256 of executables, for findings' process evidence.
//!
//! Cached per inode (device, inode) and re-hashed only when the file's size or mtime
//! (with nanoseconds) changes, so a thousand hard links to one large binary cost one read
//! (ctime is left out on purpose: every new link changes it).
//! The cache is bounded ([`MAX_ENTRIES`], oldest insert evicted first, O(1)); files over
//! [`MAX_BYTES`] and anything that is not a regular file are not hashed; and the caller
//! passes a byte budget per window, so a window with many large, distinct executables
//! cannot hold the output stage for long. Runs on the output stage's own thread, never on
//! the task that drains the ring buffer.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

/// Larger executables are not hashed.
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Inodes remembered at most.
pub const MAX_ENTRIES: usize = 4096;

/// Why no hash was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Gone, unreadable, or not a regular file.
    Unavailable,
    /// Over [`MAX_BYTES`].
    TooLarge,
    /// Hashing it would exceed this window's byte budget.
    Budget,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unavailable => "unavailable",
            Skip::TooLarge => "too_large",
            Skip::Budget => "budget",
        }
    }
}

type Inode = (u64, u64);
type Stamp = (u64, i64, i64);

pub struct ExeHashes {
    cache: HashMap<Inode, (Stamp, String)>,
    order: VecDeque<Inode>,
    cap: usize,
    /// Bytes read from disk since creation (for tests and metrics).
    pub bytes_hashed: u64,
}

impl Default for ExeHashes {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl ExeHashes {
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            cache: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            bytes_hashed: 0,
        }
    }

    /// Hex SHA-256 of the file at `path`. Reading it spends its size from `budget`; a file
    /// the budget cannot cover is skipped (a cached hash costs nothing).
    pub fn get(&mut self, path: &str, budget: &mut u64) -> Result<String, Skip> {
        let meta = std::fs::metadata(path).map_err(|_| Skip::Unavailable)?;
        if !meta.is_file() {
            return Err(Skip::Unavailable);
        }
        if meta.len() > MAX_BYTES {
            return Err(Skip::TooLarge);
        }
        let inode = (meta.dev(), meta.ino());
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec());
        if let Some((s, h)) = self.cache.get(&inode)
            && *s == stamp
        {
            return Ok(h.clone());
        }
        if meta.len() > *budget {
            return Err(Skip::Budget);
        }
        let f = std::fs::File::open(path).map_err(|_| Skip::Unavailable)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut f = f.take(MAX_BYTES);
        let mut read = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|_| Skip::Unavailable)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            hasher.update(&buf[..n]);
        }
        *budget = budget.saturating_sub(read);
        self.bytes_hashed += read;
        let hex = hex::encode(hasher.finalize());
        if self.cache.insert(inode, (stamp, hex.clone())).is_none() {
            self.order.push_back(inode);
            while self.cache.len() > self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.cache.remove(&old);
                    }
                    None => break,
                }
            }
        }
        Ok(hex)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    const UNLIMITED: u64 = u64::MAX;

    #[test]
    fn hashes_files_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, b"abc").unwrap();
        let mut h = ExeHashes::default();
        let path = p.to_str().unwrap();
        let mut b = UNLIMITED;
        assert_eq!(
            h.get(path, &mut b).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(
            h.get(path, &mut b).unwrap(),
            "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
            "size changed: re-hashed"
        );
        assert_eq!(
            h.get(dir.path().to_str().unwrap(), &mut b),
            Err(Skip::Unavailable),
            "a directory"
        );
        assert_eq!(h.get("/nonexistent/exe", &mut b), Err(Skip::Unavailable));
    }

    #[test]
    fn hard_links_to_one_file_are_read_once_and_the_budget_holds() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; 1 << 20]).unwrap();
        let mut h = ExeHashes::default();
        let mut budget = 3 << 20;
        for i in 0..500 {
            let link = dir.path().join(format!("link{i}"));
            std::fs::hard_link(&big, &link).unwrap();
            h.get(link.to_str().unwrap(), &mut budget).unwrap();
        }
        assert_eq!(h.bytes_hashed, 1 << 20, "one read for 500 links");
        assert_eq!(h.len(), 1);
        // Distinct large files: the budget stops the reading, the rest are skipped.
        let mut skipped = 0;
        for i in 0..5 {
            let f = dir.path().join(format!("other{i}"));
            std::fs::write(&f, vec![i as u8; 1 << 20]).unwrap();
            if h.get(f.to_str().unwrap(), &mut budget) == Err(Skip::Budget) {
                skipped += 1;
            }
        }
        assert_eq!(skipped, 3, "2 MiB of budget were left for 5 × 1 MiB");
        assert!(h.bytes_hashed <= 3 << 20);
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = ExeHashes::with_capacity(8);
        let mut b = UNLIMITED;
        let paths: Vec<String> = (0..100)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, format!("{i}")).unwrap();
                p.to_str().unwrap().to_string()
            })
            .collect();
        for p in &paths {
            h.get(p, &mut b).unwrap();
            assert!(h.len() <= 8);
        }
        let before = h.bytes_hashed;
        h.get(&paths[99], &mut b).unwrap();
        assert_eq!(h.bytes_hashed, before, "the newest is still cached");
        h.get(&paths[0], &mut b).unwrap();
        assert!(h.bytes_hashed > before, "the oldest was evicted");
    }
}
