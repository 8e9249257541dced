//! SHA-256 of executables, for findings' process evidence — of the file that ran, not of
//! whatever sits at its path now.
//!
//! A path can be replaced after exec (another binary renamed over it, a new hard link);
//! the process table records the executed file's identity ([`ExeFile`]: device, inode,
//! size, mtime) from `/proc/PID/exe` while the process runs, and the hash is read from a
//! file whose identity matches it: `/proc/PID/exe` itself while the process lives, else
//! the path, and nothing ([`Skip::Replaced`]) when the path now holds another file. When
//! the process was gone before its identity could be read, the file at the path is hashed
//! only if it has not changed (ctime: renames, links and writes all set it) since well
//! before the program started; else [`Skip::Unverified`].
//!
//! Cached per executed inode (device, inode) and re-hashed only when the file's size or
//! mtime (with nanoseconds) changes, so a thousand hard links to one large binary cost one
//! read. The cache is bounded ([`MAX_ENTRIES`], oldest insert evicted first, O(1)); files
//! over [`MAX_BYTES`] and anything that is not a regular file are not hashed; and the
//! caller passes a byte budget per window, so a window with many large, distinct
//! executables cannot hold the output stage for long. Runs on the output stage's own
//! thread, never on the task that drains the ring buffer.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

/// Larger executables are not hashed.
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Inodes remembered at most.
pub const MAX_ENTRIES: usize = 4096;
/// Without the executed file's identity, the file at the path is trusted only if its last
/// change (ctime) came at least this long before the program started.
pub const UNCHANGED_BEFORE_START_MS: i64 = 1000;

/// Why no hash was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Gone, unreadable, or not a regular file.
    Unavailable,
    /// Over [`MAX_BYTES`].
    TooLarge,
    /// Hashing it would exceed this window's byte budget.
    Budget,
    /// The path now holds another file than the one that ran.
    Replaced,
    /// The executed file's identity is unknown and the path changed around the start.
    Unverified,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unavailable => "unavailable",
            Skip::TooLarge => "too_large",
            Skip::Budget => "budget",
            Skip::Replaced => "replaced",
            Skip::Unverified => "unverified",
        }
    }
}

/// The identity of an executed file: which inode, at which size and modification time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeFile {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl ExeFile {
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }

    /// The executed file of a running process (`stat` follows `/proc/PID/exe` to the
    /// file the process runs, even once its path holds another).
    pub fn of_process(proc_root: &std::path::Path, pid: u32) -> Option<Self> {
        std::fs::metadata(proc_root.join(pid.to_string()).join("exe"))
            .ok()
            .map(|m| Self::of(&m))
    }
}

/// What the process table knew of a process's executable, handed with its finding to the
/// output stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    pub pid: u32,
    /// Read from `/proc/PID/exe` while the process ran.
    pub file: Option<ExeFile>,
    /// When the program started (Unix ms), from its exec event.
    pub started_ms: Option<i64>,
}

type Inode = (u64, u64);
type Stamp = (u64, i64, i64);

fn stamp(f: &ExeFile) -> Stamp {
    (f.size, f.mtime, f.mtime_nsec)
}

fn ctime_ms(m: &std::fs::Metadata) -> i64 {
    m.ctime()
        .saturating_mul(1000)
        .saturating_add(m.ctime_nsec() / 1_000_000)
}

pub struct ExeHashes {
    cache: HashMap<Inode, (Stamp, String)>,
    order: VecDeque<Inode>,
    cap: usize,
    proc_root: std::path::PathBuf,
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
            proc_root: "/proc".into(),
            bytes_hashed: 0,
        }
    }

    /// Hex SHA-256 of the file `path`'s process executed (see the module doc). Reading it
    /// spends its size from `budget`; a file the budget cannot cover is skipped (a cached
    /// hash costs nothing).
    pub fn get(
        &mut self,
        path: &str,
        ran: Option<&Executed>,
        budget: &mut u64,
    ) -> Result<String, Skip> {
        match ran.and_then(|r| r.file.map(|f| (r.pid, f))) {
            Some((pid, file)) => self.get_identified(path, pid, &file, budget),
            None => self.get_unchanged(path, ran.and_then(|r| r.started_ms), budget),
        }
    }

    /// The executed file is known: read it through `/proc/PID/exe` or the path, whichever
    /// still is that file.
    fn get_identified(
        &mut self,
        path: &str,
        pid: u32,
        file: &ExeFile,
        budget: &mut u64,
    ) -> Result<String, Skip> {
        if file.size > MAX_BYTES {
            return Err(Skip::TooLarge);
        }
        let inode = (file.dev, file.ino);
        if let Some(h) = self.cached(inode, stamp(file)) {
            return Ok(h);
        }
        if file.size > *budget {
            return Err(Skip::Budget);
        }
        let by_proc = self.proc_root.join(pid.to_string()).join("exe");
        let mut seen = false;
        for candidate in [by_proc.as_path(), std::path::Path::new(path)] {
            let Ok(f) = std::fs::File::open(candidate) else {
                continue;
            };
            let Ok(m) = f.metadata() else { continue };
            seen = true;
            if m.is_file() && ExeFile::of(&m) == *file {
                return self.hash(f, inode, stamp(file), budget);
            }
        }
        Err(if seen {
            Skip::Replaced
        } else {
            Skip::Unavailable
        })
    }

    /// The process was gone before its executed file could be identified: the file at the
    /// path, if it has not changed since well before the program started.
    fn get_unchanged(
        &mut self,
        path: &str,
        started_ms: Option<i64>,
        budget: &mut u64,
    ) -> Result<String, Skip> {
        let f = std::fs::File::open(path).map_err(|_| Skip::Unavailable)?;
        let m = f.metadata().map_err(|_| Skip::Unavailable)?;
        if !m.is_file() {
            return Err(Skip::Unavailable);
        }
        let unchanged =
            started_ms.is_some_and(|s| ctime_ms(&m).saturating_add(UNCHANGED_BEFORE_START_MS) <= s);
        if !unchanged {
            return Err(Skip::Unverified);
        }
        if m.len() > MAX_BYTES {
            return Err(Skip::TooLarge);
        }
        let file = ExeFile::of(&m);
        let inode = (file.dev, file.ino);
        if let Some(h) = self.cached(inode, stamp(&file)) {
            return Ok(h);
        }
        if m.len() > *budget {
            return Err(Skip::Budget);
        }
        self.hash(f, inode, stamp(&file), budget)
    }

    fn cached(&self, inode: Inode, stamp: Stamp) -> Option<String> {
        match self.cache.get(&inode) {
            Some((s, h)) if *s == stamp => Some(h.clone()),
            _ => None,
        }
    }

    fn hash(
        &mut self,
        f: std::fs::File,
        inode: Inode,
        stamp: Stamp,
        budget: &mut u64,
    ) -> Result<String, Skip> {
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

    /// A file as a process that executed it and still runs would be recorded.
    fn ran(path: &str) -> Executed {
        Executed {
            pid: 0,
            file: Some(ExeFile::of(&std::fs::metadata(path).unwrap())),
            started_ms: None,
        }
    }

    #[test]
    fn hashes_files_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, b"abc").unwrap();
        let mut h = ExeHashes::default();
        let path = p.to_str().unwrap();
        let mut b = UNLIMITED;
        assert_eq!(
            h.get(path, Some(&ran(path)), &mut b).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(
            h.get(path, Some(&ran(path)), &mut b).unwrap(),
            "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
            "size changed: re-hashed"
        );
        assert_eq!(
            h.get(dir.path().to_str().unwrap(), None, &mut b),
            Err(Skip::Unavailable),
            "a directory"
        );
        assert_eq!(
            h.get("/nonexistent/exe", None, &mut b),
            Err(Skip::Unavailable)
        );
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
            let link = link.to_str().unwrap();
            h.get(link, Some(&ran(link)), &mut budget).unwrap();
        }
        assert_eq!(h.bytes_hashed, 1 << 20, "one read for 500 links");
        assert_eq!(h.len(), 1);
        // Distinct large files: the budget stops the reading, the rest are skipped.
        let mut skipped = 0;
        for i in 0..5 {
            let f = dir.path().join(format!("other{i}"));
            std::fs::write(&f, vec![i as u8; 1 << 20]).unwrap();
            let f = f.to_str().unwrap();
            if h.get(f, Some(&ran(f)), &mut budget) == Err(Skip::Budget) {
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
            h.get(p, Some(&ran(p)), &mut b).unwrap();
            assert!(h.len() <= 8);
        }
        let before = h.bytes_hashed;
        h.get(&paths[99], Some(&ran(&paths[99])), &mut b).unwrap();
        assert_eq!(h.bytes_hashed, before, "the newest is still cached");
        h.get(&paths[0], Some(&ran(&paths[0])), &mut b).unwrap();
        assert!(h.bytes_hashed > before, "the oldest was evicted");
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A real process runs a copy of a binary; another file is renamed over its path. The
    /// hash is of the file that ran — read through /proc/PID/exe while it runs, from the
    /// cache (keyed by the executed inode) after — and a process whose identity does not
    /// match the path any more gets no hash at all.
    #[test]
    fn the_hash_is_of_the_file_that_ran_not_of_what_replaced_it() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("prog");
        std::fs::copy("/bin/sleep", &prog).unwrap();
        let ran_bytes = std::fs::read(&prog).unwrap();
        let mut child = std::process::Command::new(&prog).arg("30").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let file = loop {
            // The child runs `prog` once its exec completed.
            if let Some(f) = ExeFile::of_process(std::path::Path::new("/proc"), pid)
                && f.ino == std::fs::metadata(&prog).unwrap().ino()
            {
                break f;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child never ran prog"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        // Replace the path: another binary renamed over it.
        let other = dir.path().join("other");
        std::fs::copy("/bin/true", &other).unwrap();
        std::fs::rename(&other, &prog).unwrap();
        let replaced_bytes = std::fs::read(&prog).unwrap();
        assert_ne!(ran_bytes, replaced_bytes);
        let path = prog.to_str().unwrap();
        let executed = Executed {
            pid,
            file: Some(file),
            started_ms: None,
        };

        let mut fresh = ExeHashes::default();
        let mut b = UNLIMITED;
        assert_eq!(
            fresh.get(path, Some(&executed), &mut b).unwrap(),
            sha256_hex(&ran_bytes),
            "read through /proc/PID/exe: the executed file"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            fresh.get(path, Some(&executed), &mut b).unwrap(),
            sha256_hex(&ran_bytes),
            "cached under the executed inode"
        );
        // A cache that never saw it, once the process is gone: the path holds another
        // file, so no hash rather than the wrong one.
        let mut cold = ExeHashes::default();
        assert_eq!(cold.get(path, Some(&executed), &mut b), Err(Skip::Replaced));
        assert_eq!(cold.bytes_hashed, 0);
        // The replacing binary, when it runs, is hashed as itself.
        assert_eq!(
            cold.get(path, Some(&ran(path)), &mut b).unwrap(),
            sha256_hex(&replaced_bytes)
        );
    }

    #[test]
    fn without_its_identity_a_path_is_hashed_only_if_unchanged_since_before_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, b"abc").unwrap();
        let path = p.to_str().unwrap();
        let now = crate::run::now_ms();
        let mut h = ExeHashes::default();
        let mut b = UNLIMITED;
        let started = |ms| Executed {
            pid: 0,
            file: None,
            started_ms: Some(ms),
        };
        assert_eq!(
            h.get(path, Some(&started(now)), &mut b),
            Err(Skip::Unverified),
            "changed right around the start: maybe not what ran"
        );
        assert_eq!(h.get(path, None, &mut b), Err(Skip::Unverified));
        assert_eq!(
            h.get(path, Some(&started(now + 5_000)), &mut b).unwrap(),
            sha256_hex(b"abc"),
            "unchanged since well before the start"
        );
    }
}
