//! SHA-256 of executables, for findings' process evidence. Cached per path and re-hashed
//! only when the file's inode, size or mtime changes; files over [`MAX_BYTES`] and anything
//! that is not a regular file are not hashed.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

/// Larger executables are not hashed (the cost would stall the event loop).
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Paths remembered at most.
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct ExeHashes {
    cache: HashMap<String, ((u64, u64, i64), String)>,
}

impl ExeHashes {
    /// Hex SHA-256 of the file at `path`, or `None` when it is gone, unreadable, not a
    /// regular file or too large.
    pub fn get(&mut self, path: &str) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() || meta.len() > MAX_BYTES {
            return None;
        }
        let stamp = (meta.ino(), meta.len(), meta.mtime());
        if let Some((s, h)) = self.cache.get(path)
            && *s == stamp
        {
            return Some(h.clone());
        }
        let mut f = std::fs::File::open(path).ok()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex = hex::encode(hasher.finalize());
        if self.cache.len() >= MAX_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(path.to_string(), (stamp, hex.clone()));
        Some(hex)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn hashes_files_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, b"abc").unwrap();
        let mut h = ExeHashes::default();
        let path = p.to_str().unwrap();
        assert_eq!(
            h.get(path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(
            h.get(path).unwrap(),
            "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
            "size changed: re-hashed"
        );
        assert_eq!(h.get(dir.path().to_str().unwrap()), None, "a directory");
        assert_eq!(h.get("/nonexistent/exe"), None);
    }
}
