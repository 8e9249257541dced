//! The name index behind [`crate::matcher::Matcher::match_name`]: every indexed name (exact
//! hosts, domain suffixes, the literal suffixes of SNI globs) keyed by a hash built label by
//! label from the right, plus a marker for every shorter suffix of an indexed name.
//!
//! A lookup walks the query's labels right to left, extending one running hash per label, so
//! each byte of the name is hashed once and nothing is allocated. The walk stops at the first
//! suffix no indexed name ends with (`www.google.com` stops after `google.com`: two probes),
//! which is what makes misses — most DNS traffic — cheap. A probe that finds an indexed name
//! compares the bytes, so a hash collision costs a compare, never a wrong answer. The table
//! is built from the signed catalogue only: query names cannot grow it or lengthen a chain.

use rustc_hash::FxHashMap;

const NONE: u32 = u32::MAX;
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// What an indexed name stands for (pattern ids; `NONE` when absent).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) exact: u32,
    pub(crate) suffix: u32,
    pub(crate) glob_start: u32,
    pub(crate) glob_len: u32,
}

impl Slot {
    pub(crate) const EMPTY: Self = Self {
        exact: NONE,
        suffix: NONE,
        glob_start: 0,
        glob_len: 0,
    };
}

#[derive(Clone, Debug)]
struct Entry {
    key: Box<[u8]>,
    slot: Slot,
    /// Next entry with the same hash, or `NONE`.
    next: u32,
}

/// Label-suffix hash index. Keys are normalised names (lower case, no trailing dot).
#[derive(Clone, Debug, Default)]
pub(crate) struct SuffixIndex {
    /// Suffix hash → first entry with that hash, or `NONE` for a suffix that only marks
    /// "some indexed name ends with this".
    table: FxHashMap<u64, u32>,
    entries: Vec<Entry>,
}

/// Hash of one label, 8 bytes per step.
#[inline]
fn label_hash(label: &[u8]) -> u64 {
    let mut h = (label.len() as u64).wrapping_mul(K);
    let mut chunks = label.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(26) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        h = (h.rotate_left(26) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

/// The hash of `label.suffix` from the hash of `suffix` (0 for the empty suffix).
#[inline]
fn extend(suffix: u64, label: u64) -> u64 {
    (suffix.rotate_left(31) ^ label).wrapping_mul(K) ^ (suffix >> 17)
}

/// Start of the label that ends at `end` (exclusive): just after the previous dot, or 0.
#[inline]
fn label_start(name: &[u8], end: usize) -> usize {
    name.get(..end)
        .and_then(|h| h.iter().rposition(|&b| b == b'.'))
        .map_or(0, |p| p + 1)
}

impl SuffixIndex {
    /// Index `slots` (normalised name → slot).
    pub(crate) fn build<'a>(slots: impl IntoIterator<Item = (&'a str, Slot)>) -> Self {
        let mut ix = Self::default();
        for (name, slot) in slots {
            ix.insert(name.as_bytes(), slot);
        }
        ix
    }

    fn insert(&mut self, key: &[u8], slot: Slot) {
        let mut h = 0u64;
        let mut end = key.len();
        loop {
            let start = label_start(key, end);
            h = extend(h, label_hash(key.get(start..end).unwrap_or(&[])));
            if start == 0 {
                break;
            }
            // A shorter suffix: mark it so the walk goes on past it.
            self.table.entry(h).or_insert(NONE);
            end = start - 1;
        }
        let id = self.entries.len() as u32;
        let head = self.table.entry(h).or_insert(NONE);
        self.entries.push(Entry {
            key: key.into(),
            slot,
            next: *head,
        });
        *head = id;
    }

    /// Number of indexed names.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Call `f(start, slot)` for every indexed name that `name` (normalised) equals or ends
    /// with at a label boundary, shortest first; `start` is where that suffix begins in
    /// `name` (0: the whole name).
    #[inline]
    pub(crate) fn walk(&self, name: &[u8], mut f: impl FnMut(usize, &Slot)) {
        let mut h = 0u64;
        let mut end = name.len();
        loop {
            let start = label_start(name, end);
            let suffix = name.get(start..).unwrap_or(&[]);
            h = extend(h, label_hash(name.get(start..end).unwrap_or(&[])));
            let Some(&first) = self.table.get(&h) else {
                return;
            };
            let mut e = first;
            while let Some(entry) = self.entries.get(e as usize) {
                if *entry.key == *suffix {
                    f(start, &entry.slot);
                    break;
                }
                e = entry.next;
            }
            if start == 0 {
                return;
            }
            end = start - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u32) -> Slot {
        Slot {
            suffix: n,
            ..Slot::EMPTY
        }
    }

    fn found(ix: &SuffixIndex, name: &str) -> Vec<(usize, u32)> {
        let mut v = Vec::new();
        ix.walk(name.as_bytes(), |start, s| v.push((start, s.suffix)));
        v
    }

    #[test]
    fn finds_every_indexed_suffix_shortest_first() {
        let ix = SuffixIndex::build([
            ("openai.com", slot(1)),
            ("api.openai.com", slot(2)),
            ("x.y.example.org", slot(3)),
        ]);
        assert_eq!(ix.len(), 3);
        assert_eq!(found(&ix, "a.api.openai.com"), vec![(6, 1), (2, 2)]);
        assert_eq!(found(&ix, "openai.com"), vec![(0, 1)]);
        assert!(found(&ix, "notopenai.com").is_empty());
        assert!(found(&ix, "com").is_empty());
        assert!(found(&ix, "y.example.org").is_empty());
        assert_eq!(found(&ix, "x.y.example.org"), vec![(0, 3)]);
        assert!(found(&ix, "").is_empty());
        assert!(found(&ix, "openai.com.").is_empty());
        assert_eq!(found(&ix, ".openai.com"), vec![(1, 1)]);
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_their_bytes() {
        // Force two keys into one chain by hand: the walk must compare bytes.
        let mut ix = SuffixIndex::build([("a.com", slot(1))]);
        let h_b = extend(extend(0, label_hash(b"com")), label_hash(b"b"));
        let h_a = extend(extend(0, label_hash(b"com")), label_hash(b"a"));
        let first = ix.table.get(&h_a).copied().unwrap_or(NONE);
        ix.entries.push(Entry {
            key: (*b"b.com").into(),
            slot: slot(2),
            next: first,
        });
        ix.table.insert(h_a, 1);
        assert_ne!(h_a, h_b);
        assert_eq!(found(&ix, "a.com"), vec![(0, 1)]);
        assert!(found(&ix, "b.com").is_empty(), "b.com hashes elsewhere");
    }
}
