//! A query name made ready for the name index without copying it: one pass eight bytes at a
//! time sets every dot's position in a 256-bit map, so the index steps from label to label
//! right to left without scanning bytes again; words are read straight from the caller's
//! name and ASCII upper case is folded to lower case as they are read (SWAR, no per-byte
//! branch).
//!
//! Folded words are exactly [`crate::pattern::normalize`]'s bytes: only `A`–`Z` change;
//! every other byte, UTF-8 included, is kept as it is.

use crate::pattern::MAX_NAME_LEN;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// Gathers the high bit of each byte (shifted down to bit 0 of the byte) into the top byte.
const GATHER: u64 = 0x0102_0408_1020_4080;

/// High bit set in each byte of `w` that is `A`–`Z`.
#[inline]
fn upper_bytes(w: u64) -> u64 {
    let low7 = w & SEVEN;
    let ge_a = low7.wrapping_add(LO * (0x80 - u64::from(b'A')));
    let gt_z = low7.wrapping_add(LO * (0x80 - u64::from(b'Z') - 1));
    ge_a & !gt_z & !w & HI
}

/// `w` with its ASCII upper-case bytes made lower case.
#[inline]
pub(crate) fn fold_word(w: u64) -> u64 {
    w | (upper_bytes(w) >> 2)
}

/// Bit `k` set when byte `k` of `w` is a `.`.
#[inline]
fn dot_bits(w: u64) -> u64 {
    let x = w ^ (LO * u64::from(b'.'));
    // High bit of each byte set where x's byte is zero (exact: no borrow between bytes).
    let zero = !(((x & SEVEN).wrapping_add(SEVEN)) | x) & HI;
    (zero >> 7).wrapping_mul(GATHER) >> 56
}

/// Mask keeping the first `n` bytes (n ≤ 8) of a little-endian word.
#[inline]
pub(crate) fn keep(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// Little-endian word of `bytes` at `at`; bytes past the end read as 0. One load when the
/// slice has 8 bytes there, or when it is at least 8 long (the last 8 bytes, shifted).
#[inline]
pub(crate) fn word(bytes: &[u8], at: usize) -> u64 {
    let load = |from: usize| {
        bytes.get(from..from + 8).map_or(0, |w| {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        })
    };
    let len = bytes.len();
    if at + 8 <= len {
        load(at)
    } else if at >= len {
        0
    } else if len >= 8 {
        load(len - 8) >> (8 * (at + 8 - len))
    } else {
        bytes
            .get(at..)
            .unwrap_or(&[])
            .iter()
            .rev()
            .fold(0, |w, &b| w << 8 | u64::from(b))
    }
}

/// A query name, one trailing dot dropped, with its dots mapped. Borrows the caller's
/// bytes: [`QName::word`] folds case as it reads.
pub(crate) struct QName<'a> {
    raw: &'a [u8],
    /// Bit `p` set when byte `p` is a dot.
    dots: [u64; 4],
    labels: usize,
}

impl<'a> QName<'a> {
    /// `None` for a name that is empty or longer than [`MAX_NAME_LEN`] once one trailing dot
    /// is dropped (as [`crate::pattern::normalize`]).
    #[inline]
    pub(crate) fn new(name: &'a str) -> Option<Self> {
        let raw = name.as_bytes();
        let raw = raw.strip_suffix(b".").unwrap_or(raw);
        let len = raw.len();
        if len == 0 || len > MAX_NAME_LEN {
            return None;
        }
        let mut q = Self {
            raw,
            dots: [0; 4],
            labels: 1,
        };
        let mut at = 0;
        while at < len {
            let bits = dot_bits(word(raw, at));
            if let Some(d) = q.dots.get_mut(at / 64) {
                *d |= bits << (at % 64);
            }
            q.labels += bits.count_ones() as usize;
            at += 8;
        }
        Some(q)
    }

    /// The name as given (case kept), without the trailing dot.
    #[inline]
    pub(crate) fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Lower-cased little-endian word at `at` (0 bytes past the end).
    #[inline]
    pub(crate) fn word(&self, at: usize) -> u64 {
        fold_word(word(self.raw, at))
    }

    /// Length of the name.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Number of labels (dots + 1; empty labels count).
    #[inline]
    pub(crate) fn labels(&self) -> usize {
        self.labels
    }

    /// Start of the label that ends at `end` (exclusive): just after the last dot before
    /// `end`, or 0.
    #[inline]
    pub(crate) fn label_start(&self, end: usize) -> usize {
        let mut i = end / 64;
        let mut m = self.dots.get(i).copied().unwrap_or(0) & ((1u64 << (end % 64)) - 1);
        loop {
            if m != 0 {
                return i * 64 + 64 - m.leading_zeros() as usize;
            }
            if i == 0 {
                return 0;
            }
            i -= 1;
            m = self.dots.get(i).copied().unwrap_or(0);
        }
    }

    /// End (exclusive) of the label that starts at `start`: the next dot, or the name's end.
    #[inline]
    pub(crate) fn label_end(&self, start: usize) -> usize {
        let mut i = start / 64;
        let mut m = self.dots.get(i).copied().unwrap_or(0) & (u64::MAX << (start % 64));
        loop {
            if m != 0 {
                return (i * 64 + m.trailing_zeros() as usize).min(self.len());
            }
            i += 1;
            if i >= self.dots.len() {
                return self.len();
            }
            m = self.dots.get(i).copied().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::pattern::normalize;

    /// The name through [`QName::word`], and its length.
    fn folded(q: &QName) -> Vec<u8> {
        let mut v = Vec::new();
        let mut at = 0;
        while at < q.len() {
            v.extend_from_slice(&q.word(at).to_le_bytes());
            at += 8;
        }
        assert!(v[q.len()..].iter().all(|&b| b == 0), "zero past the end");
        v.truncate(q.len());
        v
    }

    fn bounds(q: &QName) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut end = q.len();
        loop {
            let s = q.label_start(end);
            assert_eq!(q.label_end(s), end);
            v.push((s, end));
            if s == 0 {
                return v;
            }
            end = s - 1;
        }
    }

    #[test]
    fn folds_like_normalize_and_finds_every_dot() {
        let names = [
            "API.OpenAI.com.",
            "a",
            "A.",
            ".",
            "",
            "..",
            "a..b",
            ".lead",
            "Zz@[`{.AZ.az",
            "ÄÖ.Straße.DE",
            "xn--BCHER-KVA.example",
        ];
        for n in names {
            let mut buf = [0u8; MAX_NAME_LEN];
            let want = normalize(n, &mut buf).map(|s| s.as_bytes().to_vec());
            let q = QName::new(n);
            assert_eq!(q.as_ref().map(folded), want, "{n:?}");
            if let Some(q) = q {
                let f = folded(&q);
                let s = std::str::from_utf8(&f).unwrap();
                let mut want: Vec<(usize, usize)> = Vec::new();
                let mut at = 0;
                for l in s.split('.') {
                    want.push((at, at + l.len()));
                    at += l.len() + 1;
                }
                want.reverse();
                assert_eq!(bounds(&q), want, "{n:?}");
                assert_eq!(q.labels(), s.split('.').count());
            }
        }
    }

    #[test]
    fn words_at_every_offset_of_every_length() {
        let src: Vec<u8> = (1..=40).collect();
        for len in 0..=src.len() {
            let b = &src[..len];
            for at in 0..len + 10 {
                let mut want = [0u8; 8];
                for (i, w) in want.iter_mut().enumerate() {
                    *w = b.get(at + i).copied().unwrap_or(0);
                }
                assert_eq!(word(b, at), u64::from_le_bytes(want), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn every_byte_folds_as_ascii_lowercase() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b; 8]);
            assert_eq!(
                fold_word(w),
                u64::from_le_bytes([b.to_ascii_lowercase(); 8]),
                "{b}"
            );
            let dots = dot_bits(u64::from_le_bytes([b, 0, b'.', b, b, b'.', 0, b]));
            let mut want = 0b0010_0100;
            if b == b'.' {
                want |= 0b1001_1001;
            }
            assert_eq!(dots, want, "{b}");
        }
    }

    #[test]
    fn longest_names_and_most_labels() {
        let long = "a.".repeat(126) + "a"; // 253 bytes, 127 labels
        let q = QName::new(&long).unwrap();
        assert_eq!(q.labels(), 127);
        assert_eq!(bounds(&q).len(), 127);
        let dots = ".".repeat(254); // one trailing dot dropped: 253 dots, 254 empty labels
        let q = QName::new(&dots).unwrap();
        assert_eq!(q.labels(), 254);
        assert_eq!(bounds(&q).len(), 254);
        assert!(QName::new(&"a".repeat(254)).is_none());
        assert!(QName::new(&("a".repeat(253) + ".")).is_some());
    }
}
