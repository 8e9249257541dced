//! The name index behind [`crate::matcher::Matcher::match_name`]: a trie of labels read
//! right to left (`com` → `openai.com` → `api.openai.com`), one node for every label suffix
//! of every indexed name (exact hosts, domain suffixes, the literal suffixes of SNI globs),
//! whose edges live in one open-addressing table keyed by a 64-bit hash of (parent node,
//! label).
//!
//! A lookup ([`SuffixIndex::walk`]) takes the query's labels right to left: hash the label's
//! folded bytes eight at a time, probe the table, and on a key match compare that one label
//! with the node's — so every byte of the name is hashed once and compared at most once
//! (a colliding key costs one more label compare, never a wrong answer), and nothing is
//! allocated. The walk stops at the first suffix no indexed name ends with (`www.google.com`
//! stops after `google.com`: two probes), which is what makes misses, most DNS traffic, cheap.
//!
//! Bounded: the table is built from the signed catalogue only (query names cannot grow it);
//! at most [`MAX_SUFFIXES`] nodes (refused beyond, naming the pattern); the table is a power
//! of two at most half full, so a probe that misses ends at an empty bucket soon; a walk is
//! at most one probe per label. The hash is seeded at random per build, so names crafted to
//! collide in one agent's table do not collide in another's.

use std::hash::{BuildHasher, Hasher};

use rustc_hash::FxHashMap;

use crate::qname::{MAX_LABEL, QName, word};

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xd6e8_feb8_6659_fd93;

/// Most label-suffix nodes one index holds (the shipped catalogue needs ~3,000; the bench's
/// 10,000 patterns ~10,600). At the bound: 6 MiB of nodes, 8 MiB of table, ≤ 16 MiB of labels.
pub const MAX_SUFFIXES: usize = 1 << 18;

/// What an indexed name stands for (pattern ids; `NONE` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// More than [`MAX_SUFFIXES`] distinct label suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooManySuffixes;

#[derive(Clone, Debug)]
struct Node {
    /// The label's words: `words[at..at + len.div_ceil(8)]`.
    at: u32,
    len: u32,
    slot: Slot,
}

/// One edge: the child's first label word and length are kept here, so a label of up to 8
/// bytes is told apart without leaving the bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// The label's first 8 bytes (zero past its end).
    w0: u64,
    parent: u32,
    /// `named << 31 | len << 24 | node`, `named` when the node has a slot (so a walk
    /// through intermediate nodes never reads the node array); `NONE`: empty (node ids stay
    /// below 2^24, labels below 128 bytes).
    len_node: u32,
}

const EMPTY_BUCKET: Bucket = Bucket {
    w0: 0,
    parent: NONE,
    len_node: NONE,
};
const NODE_BITS: u32 = 24;
const NODE_MASK: u32 = (1 << NODE_BITS) - 1;
const LEN_MASK: u32 = 0x7f << NODE_BITS;
const NAMED: u32 = 1 << 31;
const _: () = assert!(MAX_SUFFIXES < 1 << NODE_BITS && MAX_LABEL < 128);

/// 64×64→128-bit multiply, folded.
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The seeded hash of one edge: `parent` and a label of `len` bytes as (folded) words.
#[inline]
fn edge_hash(seed: u64, parent: u32, len: usize, words: &[u64]) -> u64 {
    let mut h = seed ^ (u64::from(parent) << 8 | len as u64).wrapping_mul(K1);
    for &w in words {
        h = mum(h ^ w, K2);
    }
    h
}

/// Label suffix index. Keys are normalised names (lower case, no trailing dot).
#[derive(Clone, Debug)]
pub(crate) struct SuffixIndex {
    seed: u64,
    /// Bucket count − 1 (a power of two minus one).
    mask: usize,
    /// Probe every edge from the same bucket (tests: an adversary who found the hash).
    collide: bool,
    buckets: Vec<Bucket>,
    /// Node 0 is the root (the empty suffix).
    nodes: Vec<Node>,
    /// Every node's label as little-endian words, zero past its end.
    words: Vec<u64>,
    /// Nodes carrying a non-empty slot.
    named: usize,
}

impl Default for SuffixIndex {
    fn default() -> Self {
        Builder::default().finish()
    }
}

/// Builds a [`SuffixIndex`] one name at a time.
#[derive(Debug)]
pub(crate) struct Builder {
    nodes: Vec<Node>,
    words: Vec<u64>,
    children: FxHashMap<(u32, Box<[u8]>), u32>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            nodes: vec![Node {
                at: 0,
                len: 0,
                slot: Slot::EMPTY,
            }],
            words: Vec::new(),
            children: FxHashMap::default(),
        }
    }
}

/// Labels of a normalised name, right to left.
fn labels_rev(name: &str) -> impl Iterator<Item = &[u8]> {
    name.as_bytes().rsplit(|&b| b == b'.')
}

impl Builder {
    /// The node of `name` (normalised), if it is there.
    pub(crate) fn find(&self, name: &str) -> Option<u32> {
        labels_rev(name).try_fold(ROOT, |parent, l| {
            self.children.get(&(parent, Box::<[u8]>::from(l))).copied()
        })
    }

    /// The slot of `name`, [`Slot::EMPTY`] when it has none.
    pub(crate) fn slot(&self, name: &str) -> Slot {
        self.find(name)
            .and_then(|n| self.nodes.get(n as usize))
            .map_or(Slot::EMPTY, |n| n.slot)
    }

    /// The node of `name` (normalised, labels of 1 to [`MAX_LABEL`] bytes: checked patterns),
    /// made with its suffixes' nodes when missing.
    pub(crate) fn node(&mut self, name: &str) -> Result<u32, TooManySuffixes> {
        let mut parent = ROOT;
        for l in labels_rev(name) {
            let key = (parent, Box::<[u8]>::from(l));
            parent = match self.children.get(&key) {
                Some(&n) => n,
                None => {
                    if self.nodes.len() >= MAX_SUFFIXES {
                        return Err(TooManySuffixes);
                    }
                    let id = self.nodes.len() as u32;
                    self.nodes.push(Node {
                        at: self.words.len() as u32,
                        len: l.len() as u32,
                        slot: Slot::EMPTY,
                    });
                    self.words
                        .extend((0..l.len()).step_by(8).map(|at| word(l, at)));
                    self.children.insert(key, id);
                    id
                }
            };
        }
        Ok(parent)
    }

    /// The slot of a node from [`Builder::node`].
    pub(crate) fn slot_mut(&mut self, node: u32) -> Option<&mut Slot> {
        self.nodes.get_mut(node as usize).map(|n| &mut n.slot)
    }

    /// The index, hashed with a random seed.
    pub(crate) fn finish(self) -> SuffixIndex {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        self.finish_seeded(seed, false)
    }

    /// The index with a given seed; `collide` starts every probe at the same bucket.
    pub(crate) fn finish_seeded(self, seed: u64, collide: bool) -> SuffixIndex {
        let Self {
            nodes,
            words,
            children,
        } = self;
        let cap = (children.len() * 2).next_power_of_two().max(8);
        let mask = cap - 1;
        let mut buckets = vec![EMPTY_BUCKET; cap];
        for (&(parent, _), &id) in &children {
            let Some(n) = nodes.get(id as usize) else {
                continue;
            };
            let (at, len) = (n.at as usize, n.len as usize);
            let w = words.get(at..at + len.div_ceil(8)).unwrap_or(&[]);
            let h = if collide {
                seed
            } else {
                edge_hash(seed, parent, len, w)
            };
            let mut i = h as usize & mask;
            while let Some(b) = buckets.get_mut(i) {
                if b.len_node == NONE {
                    let named = if n.slot == Slot::EMPTY { 0 } else { NAMED };
                    *b = Bucket {
                        w0: w.first().copied().unwrap_or(0),
                        parent,
                        len_node: named | (len as u32) << NODE_BITS | id,
                    };
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        let named = nodes.iter().filter(|n| n.slot != Slot::EMPTY).count();
        SuffixIndex {
            seed,
            mask,
            collide,
            buckets,
            nodes,
            words,
            named,
        }
    }
}

impl SuffixIndex {
    /// Number of indexed names.
    pub(crate) fn len(&self) -> usize {
        self.named
    }

    /// The child of `parent` whose label is `len` bytes of folded `words`: its id, and its
    /// slot when it has one.
    #[inline]
    fn child(&self, parent: u32, len: usize, words: &[u64]) -> Option<(u32, Option<&Slot>)> {
        let w0 = words.first().copied().unwrap_or(0);
        let len_tag = (len as u32) << NODE_BITS;
        let mut i = if self.collide {
            self.seed as usize & self.mask
        } else {
            edge_hash(self.seed, parent, len, words) as usize & self.mask
        };
        loop {
            let b = self.buckets.get(i)?;
            if b.len_node == NONE {
                return None;
            }
            if b.w0 == w0 && b.parent == parent && b.len_node & LEN_MASK == len_tag {
                let id = b.len_node & NODE_MASK;
                let named = b.len_node & NAMED != 0;
                if len <= 8 && !named {
                    return Some((id, None));
                }
                let n = self.nodes.get(id as usize)?;
                let at = n.at as usize;
                if len <= 8 || self.words.get(at..at + words.len()) == Some(words) {
                    return Some((id, named.then_some(&n.slot)));
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Call `f(start, slot)` for every indexed name that `q` equals or ends with at a label
    /// boundary, shortest first; `start` is where that suffix begins in the name (0: the
    /// whole name).
    #[inline]
    pub(crate) fn walk(&self, q: &QName, mut f: impl FnMut(usize, &Slot)) {
        let mut parent = ROOT;
        let mut end = q.len();
        let mut buf = [0u64; MAX_LABEL.div_ceil(8)];
        let mut two;
        loop {
            let (start, short) = q.label_before(end);
            let len = end - start;
            let words = match short {
                Some(w) => {
                    two = w;
                    two.get(..len.div_ceil(8)).unwrap_or(&[])
                }
                None => match q.label_words(start, end, &mut buf) {
                    Some(w) => w,
                    None => return,
                },
            };
            let Some((id, slot)) = self.child(parent, len, words) else {
                return;
            };
            if let Some(slot) = slot {
                f(start, slot);
            }
            if start == 0 {
                return;
            }
            parent = id;
            end = start - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[(&str, u32)], collide: bool) -> SuffixIndex {
        let mut b = Builder::default();
        for &(n, id) in names {
            let node = b.node(n).unwrap_or(ROOT);
            if let Some(s) = b.slot_mut(node) {
                s.suffix = id;
            }
        }
        b.finish_seeded(42, collide)
    }

    fn found(ix: &SuffixIndex, name: &str) -> Vec<(usize, u32)> {
        let mut v = Vec::new();
        if let Some(q) = QName::new(name) {
            ix.walk(&q, |start, s| v.push((start, s.suffix)));
        }
        v
    }

    #[test]
    fn finds_every_indexed_suffix_shortest_first() {
        let names = [
            ("openai.com", 1),
            ("api.openai.com", 2),
            ("x.y.example.org", 3),
            ("a-label-of-more-than-eight-bytes.example.org", 4),
        ];
        for collide in [false, true] {
            let ix = index(&names, collide);
            assert_eq!(ix.len(), 4);
            assert_eq!(found(&ix, "a.api.openai.com"), vec![(6, 1), (2, 2)]);
            assert_eq!(found(&ix, "A.API.OpenAI.COM."), vec![(6, 1), (2, 2)]);
            assert_eq!(found(&ix, "openai.com"), vec![(0, 1)]);
            assert!(found(&ix, "notopenai.com").is_empty());
            assert!(found(&ix, "com").is_empty());
            assert!(found(&ix, "y.example.org").is_empty());
            assert_eq!(found(&ix, "x.y.example.org"), vec![(0, 3)]);
            assert_eq!(
                found(&ix, "b.A-LABEL-OF-MORE-THAN-EIGHT-BYTES.example.org"),
                vec![(2, 4)]
            );
            assert!(found(&ix, "a-label-of-more-than-eight-bytez.example.org").is_empty());
            assert!(found(&ix, "").is_empty());
            assert!(
                found(&ix, "openai.com..").is_empty(),
                "one trailing dot only"
            );
            assert_eq!(found(&ix, ".openai.com"), vec![(1, 1)]);
            assert_eq!(found(&ix, "..openai.com"), vec![(2, 1)]);
        }
    }

    #[test]
    fn the_builder_stops_at_the_bound() {
        let mut b = Builder::default();
        let mut made = 1; // the root
        let mut i = 0;
        let err = loop {
            match b.node(&format!("n{i}.t")) {
                Ok(_) => made = b.nodes.len(),
                Err(e) => break e,
            }
            i += 1;
        };
        assert_eq!(err, TooManySuffixes);
        assert_eq!(made, MAX_SUFFIXES);
        assert!(b.node("n0.t").is_ok(), "names already there still resolve");
        let ix = b.finish_seeded(1, false);
        assert!(ix.buckets.len() <= 2 * MAX_SUFFIXES, "{}", ix.buckets.len());
    }
}
