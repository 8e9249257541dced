//! Trusted bundle keys, by id, so keys can rotate with overlap: a key-set file holds one
//! public key per line (64 hex digits, `#` comments); a bundle is verified with the key its
//! envelope names (`key_id`). To rotate: add the new key to every verifier's set, publish
//! with the new key, then remove the old one.

use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::bundle::{self, VerifiedBundle, VerifyOptions};
use crate::error::RulesError;

/// Largest number of keys a set may hold.
pub const MAX_KEYS: usize = 16;

/// Public keys a verifier trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// A set from keys (duplicates dropped); at least one, at most [`MAX_KEYS`].
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, &'static str> {
        let mut out: Vec<VerifyingKey> = Vec::with_capacity(keys.len());
        for k in keys {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        match out.len() {
            0 => Err("no key line"),
            n if n > MAX_KEYS => Err("more than 16 keys"),
            _ => Ok(Self { keys: out }),
        }
    }

    /// Reads a key-set file: one or more public-key lines (a single-key file is a set).
    pub fn read(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
        let bad = |reason| RulesError::BadKey {
            path: path.into(),
            reason,
        };
        let mut keys = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let bytes: [u8; 32] = hex::decode(line)
                .map_err(|_| bad("a key line is not hex"))?
                .try_into()
                .map_err(|_| bad("a key is not 32 bytes (64 hex digits)"))?;
            keys.push(
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| bad("a key is not a valid ed25519 public key"))?,
            );
        }
        Self::new(keys).map_err(bad)
    }

    /// Ids of the keys, in file order.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(bundle::key_id).collect()
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| bundle::key_id(k) == id)
    }

    /// Verifies with the key the bundle names; a bundle that names none is tried only when
    /// the set has exactly one key.
    pub fn verify(
        &self,
        bytes: &[u8],
        opts: &VerifyOptions<'_>,
    ) -> Result<VerifiedBundle, RulesError> {
        let named = bundle::envelope_key_id(bytes)?;
        let key = match (&named, self.keys.as_slice()) {
            (Some(id), _) => self.get(id),
            (None, [only]) => Some(only),
            (None, _) => None,
        };
        match key {
            Some(k) => bundle::verify(bytes, k, opts),
            None => Err(RulesError::WrongKey {
                found: named.unwrap_or_else(|| "(none)".into()),
                expected: self.ids().join(" or "),
            }),
        }
    }
}
