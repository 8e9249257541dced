//! The admin's local file of audit heads, each line signed with the admin's ed25519 key
//! (the `rules keygen` secret key) and chained to the line before it.
//!
//! A line is `{"seq","hash","ts_ms","key_id","prev","sig"}`: `sig` signs
//! `shadowai-audit-checkpoint-v1\nSEQ\nHASH\nTS_MS\nPREV`, where `PREV` is the previous line's
//! `sig` (empty for the first). Editing a line, inserting one, deleting or reordering any but
//! the last lines breaks a signature or the chain, so someone who rewrites the collector's
//! database cannot make the file agree with the rewrite without the admin's key. Cutting the
//! newest lines off the end is not detectable from the file alone (nothing after them signs
//! them): the head forwarded to the SIEM covers that.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize};
use shadowai_api::audit::Checkpoint;
use shadowai_rules::bundle::key_id;
use shadowai_rules::keyset::KeySet;

use crate::AuditTampered;

const CONTEXT: &str = "shadowai-audit-checkpoint-v1";

/// One line of the checkpoints file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub seq: i64,
    pub hash: String,
    /// When the admin's CLI saw this head (Unix ms).
    pub ts_ms: i64,
    pub key_id: String,
    /// The previous line's `sig` (empty for the first line).
    pub prev: String,
    pub sig: String,
}

impl SignedCheckpoint {
    fn message(seq: i64, hash: &str, ts_ms: i64, prev: &str) -> String {
        format!("{CONTEXT}\n{seq}\n{hash}\n{ts_ms}\n{prev}")
    }

    /// Signs `cp` as the line after `prev` (the file's last line).
    pub fn sign(cp: &Checkpoint, ts_ms: i64, prev: Option<&Self>, key: &SigningKey) -> Self {
        let prev = prev.map(|p| p.sig.clone()).unwrap_or_default();
        let sig = key.sign(Self::message(cp.seq, &cp.hash, ts_ms, &prev).as_bytes());
        SignedCheckpoint {
            seq: cp.seq,
            hash: cp.hash.clone(),
            ts_ms,
            key_id: key_id(&key.verifying_key()),
            prev,
            sig: hex::encode(sig.to_bytes()),
        }
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// Why a checkpoints file cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}:{line}: not a signed checkpoint")]
    Parse {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}:{line}: signed by key {key_id}, which is not in the trusted key set")]
    UnknownKey {
        path: String,
        line: usize,
        key_id: String,
    },
    #[error("{path}:{line}: the signature does not match the line: it was edited")]
    BadSignature { path: String, line: usize },
    #[error(
        "{path}:{line}: does not follow line {prev_line} (lines were removed, inserted or reordered)"
    )]
    Chain {
        path: String,
        line: usize,
        prev_line: usize,
    },
}

/// The keys checkpoint lines may be signed with: the admin's own key and any key sets given
/// (keys rotate: lines signed by the old key stay valid while it is listed).
#[derive(Default)]
pub struct Trust(pub Vec<KeySet>);

impl Trust {
    fn get(&self, id: &str) -> Option<&ed25519_dalek::VerifyingKey> {
        self.0.iter().find_map(|k| k.get(id))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn verify_line(c: &SignedCheckpoint, keys: &Trust) -> Option<bool> {
    let key = keys.get(&c.key_id)?;
    let bytes: [u8; 64] = hex::decode(&c.sig).ok()?.try_into().ok()?;
    let msg = SignedCheckpoint::message(c.seq, &c.hash, c.ts_ms, &c.prev);
    Some(
        key.verify(msg.as_bytes(), &Signature::from_bytes(&bytes))
            .is_ok(),
    )
}

/// Reads and checks the whole file: every line signed by a trusted key, each chained to
/// the one before. An absent file has no checkpoints.
pub fn read(path: &Path, keys: &Trust) -> Result<Vec<SignedCheckpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let p = path.display().to_string();
    let mut out: Vec<(usize, SignedCheckpoint)> = Vec::new();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line = i + 1;
        let c: SignedCheckpoint = serde_json::from_str(l).map_err(|source| FileError::Parse {
            path: p.clone(),
            line,
            source,
        })?;
        match verify_line(&c, keys) {
            None if keys.get(&c.key_id).is_none() => {
                return Err(tampered(FileError::UnknownKey {
                    path: p.clone(),
                    line,
                    key_id: c.key_id,
                }));
            }
            Some(true) => {}
            None | Some(false) => {
                return Err(tampered(FileError::BadSignature {
                    path: p.clone(),
                    line,
                }));
            }
        }
        let prev = out.last().map(|(_, x)| x.sig.as_str()).unwrap_or("");
        if c.prev != prev {
            return Err(tampered(FileError::Chain {
                path: p.clone(),
                line,
                prev_line: out.last().map_or(0, |(n, _)| *n),
            }));
        }
        out.push((line, c));
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

fn tampered(e: FileError) -> anyhow::Error {
    AuditTampered(format!("checkpoints file does NOT verify: {e}")).into()
}

/// Appends a line (file mode 0600, created with its directory).
pub fn append(path: &Path, cp: &SignedCheckpoint) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut line = serde_json::to_vec(cp)?;
    line.push(b'\n');
    f.write_all(&line)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(seq: i64) -> Checkpoint {
        Checkpoint {
            seq,
            hash: format!("{seq:064x}"),
        }
    }

    fn write(path: &Path, lines: &[SignedCheckpoint]) {
        let text: String = lines
            .iter()
            .map(|c| serde_json::to_string(c).unwrap() + "\n")
            .collect();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn edits_insertions_and_removals_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.jsonl");
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let keys = Trust(vec![KeySet::new(vec![key.verifying_key()]).unwrap()]);
        let mut lines: Vec<SignedCheckpoint> = Vec::new();
        for seq in [3, 5, 9] {
            let next = SignedCheckpoint::sign(&cp(seq), seq * 1000, lines.last(), &key);
            append(&path, &next).unwrap();
            lines.push(next);
        }
        assert_eq!(read(&path, &keys).unwrap(), lines);
        let err = |l: &[SignedCheckpoint]| {
            write(&path, l);
            format!("{:#}", read(&path, &keys).unwrap_err())
        };
        // An edited head (as if to match a rewritten log).
        let mut edited = lines.clone();
        edited[1].hash = format!("{:064x}", 99);
        assert!(err(&edited).contains(":2: the signature does not match"));
        // A removed middle line.
        let removed = vec![lines[0].clone(), lines[2].clone()];
        assert!(err(&removed).contains(":2: does not follow line 1"));
        // A line signed by another key, and one re-signed by it after the fact.
        let forged = SignedCheckpoint::sign(&cp(12), 1, lines.last(), &other);
        let mut with_forged = lines.clone();
        with_forged.push(forged);
        assert!(err(&with_forged).contains(":4: signed by key"));
        // Reordered.
        let reordered = vec![lines[1].clone(), lines[0].clone(), lines[2].clone()];
        assert!(err(&reordered).contains(":1: does not follow line 0"));
        // Cutting the last line off is the one change the file cannot show.
        write(&path, &lines[..2]);
        assert_eq!(read(&path, &keys).unwrap(), lines[..2].to_vec());
    }
}
