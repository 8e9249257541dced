//! A query name as the name index reads it, without copying it: words straight from the
//! caller's name, ASCII upper case folded to lower case as they are read, and label bounds
//! found eight bytes at a time (SWAR, no per-byte branch).
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

/// Longest label of a DNS name.
pub(crate) const MAX_LABEL: usize = 63;

/// Bytes `[at, end)` of `raw` (at most 8 of them) as a little-endian word, zero above:
/// one load when the name has 8 bytes up to `end`.
#[inline]
fn bytes_to(raw: &[u8], at: usize, end: usize) -> u64 {
    if end >= 8 {
        raw.get(end - 8..end).map_or(0, |w| {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a) >> (8 * (8 - (end - at)))
        })
    } else {
        raw.get(at..end)
            .unwrap_or(&[])
            .iter()
            .rev()
            .fold(0, |w, &b| w << 8 | u64::from(b))
    }
}

/// Low `n` bits set (n ≤ 8).
#[inline]
fn low_bits(n: usize) -> u64 {
    (1u64 << n) - 1
}

/// A query name, one trailing dot dropped. Borrows the caller's bytes: [`QName::word`] folds
/// case as it reads, and label bounds are found on demand, 8 bytes per step, so a walk that
/// stops after two labels never reads the rest of a long name.
pub(crate) struct QName<'a> {
    raw: &'a [u8],
}

impl<'a> QName<'a> {
    /// `None` for a name that is empty or longer than [`MAX_NAME_LEN`] once one trailing dot
    /// is dropped (as [`crate::pattern::normalize`]).
    #[inline]
    pub(crate) fn new(name: &'a str) -> Option<Self> {
        let raw = name.as_bytes();
        let raw = raw.strip_suffix(b".").unwrap_or(raw);
        if raw.is_empty() || raw.len() > MAX_NAME_LEN {
            return None;
        }
        Some(Self { raw })
    }

    /// The name as given (case kept), without the trailing dot.
    #[inline]
    pub(crate) fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The folded words of the label `[start, end)`, zero past its end, in `buf`; `None`
    /// for a label longer than [`MAX_LABEL`] (no pattern has one).
    #[inline]
    pub(crate) fn label_words<'b>(
        &self,
        start: usize,
        end: usize,
        buf: &'b mut [u64; MAX_LABEL.div_ceil(8)],
    ) -> Option<&'b [u64]> {
        let len = end.checked_sub(start)?;
        if len > MAX_LABEL {
            return None;
        }
        let n = len.div_ceil(8);
        let words = buf.get_mut(..n)?;
        let mut at = start;
        for w in words.iter_mut() {
            *w = fold_word(if at + 8 <= end {
                word(self.raw, at)
            } else {
                bytes_to(self.raw, at, end)
            });
            at += 8;
        }
        Some(words)
    }

    /// Length of the name.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// The label that ends at `end` (exclusive): its start, and its folded words (zero past
    /// its end) when it is at most 16 bytes long, found with the same one or two loads —
    /// most labels of real names; longer labels take [`QName::label_start`].
    #[inline]
    pub(crate) fn label_before(&self, end: usize) -> (usize, Option<[u64; 2]>) {
        let (at, w) = self.word_ending(end);
        let bits = dot_bits(w) & low_bits(end - at);
        if bits != 0 {
            let k = 63 - bits.leading_zeros(); // the dot's byte in `w`
            let label = w.checked_shr(8 * (k + 1)).unwrap_or(0);
            return (at + k as usize + 1, Some([fold_word(label), 0]));
        }
        if at == 0 {
            return (0, Some([fold_word(w), 0]));
        }
        // `w` holds the label's last 8 bytes; the rest (0 to 8 bytes) is in the word before.
        let (at2, w2) = self.word_ending(at);
        let n2 = at - at2;
        let bits2 = dot_bits(w2) & low_bits(n2);
        let (start, m) = if bits2 != 0 {
            let k = (63 - bits2.leading_zeros()) as usize;
            (at2 + k + 1, n2 - k - 1)
        } else if at2 == 0 {
            (0, n2)
        } else if self.raw.get(at2 - 1) == Some(&b'.') {
            (at2, n2)
        } else {
            return (self.label_start(at2), None);
        };
        // Label = the top `m` of w2's `n2` bytes, then the 8 bytes of `w`.
        let head = w2.checked_shr(8 * (n2 - m) as u32).unwrap_or(0);
        let first = head | w.checked_shl(8 * m as u32).unwrap_or(0);
        let second = w.checked_shr(8 * (8 - m) as u32).unwrap_or(0);
        (start, Some([fold_word(first), fold_word(second)]))
    }

    /// `(at, w)`: the bytes `[at, end)` as a little-endian word, zero above, where `at` is
    /// `end - 8`, or 0 near the start of the name.
    #[inline]
    pub(crate) fn word_ending(&self, end: usize) -> (usize, u64) {
        let load = |from: usize| {
            self.raw.get(from..from + 8).map(|w| {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                u64::from_le_bytes(a)
            })
        };
        if end >= 8 {
            (end - 8, load(end - 8).unwrap_or(0))
        } else {
            match load(0) {
                Some(w) => (0, w & ((1u64 << (8 * end)) - 1)),
                None => (0, bytes_to(self.raw, 0, end)),
            }
        }
    }

    /// Start of the label that ends at `end` (exclusive): just after the last dot before
    /// `end`, or 0.
    #[inline]
    pub(crate) fn label_start(&self, end: usize) -> usize {
        let mut e = end.min(self.raw.len());
        while e > 0 {
            let at = e.saturating_sub(8);
            let bits = dot_bits(word(self.raw, at)) & low_bits(e - at);
            if bits != 0 {
                return at + 64 - bits.leading_zeros() as usize;
            }
            e = at;
        }
        0
    }

    /// End (exclusive) of the label that starts at `start`: the next dot, or the name's end.
    #[inline]
    pub(crate) fn label_end(&self, start: usize) -> usize {
        let len = self.raw.len();
        let mut at = start;
        while at < len {
            let bits = dot_bits(word(self.raw, at)) & low_bits((len - at).min(8));
            if bits != 0 {
                return at + bits.trailing_zeros() as usize;
            }
            at += 8;
        }
        len
    }

    /// Number of labels in the first `end` bytes (dots + 1; empty labels count).
    #[inline]
    pub(crate) fn labels_before(&self, end: usize) -> usize {
        let end = end.min(self.raw.len());
        let mut n = 1;
        let mut at = 0;
        while at < end {
            n += (dot_bits(word(self.raw, at)) & low_bits((end - at).min(8))).count_ones() as usize;
            at += 8;
        }
        n
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
            v.extend_from_slice(&fold_word(word(q.raw(), at)).to_le_bytes());
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
                assert_eq!(q.labels_before(q.len()), s.split('.').count());
                for end in 0..=q.len() {
                    let head = s.get(..end).map_or(0, |h| h.split('.').count());
                    if s.is_char_boundary(end) {
                        assert_eq!(q.labels_before(end), head.max(1), "{n:?} {end}");
                    }
                }
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
    fn label_before_agrees_with_label_start_and_label_words() {
        let names = [
            "a",
            "ab.c",
            "x.ai",
            "api.openai.com",
            "abcdefgh.ij",
            "abcdefg.hij",
            "ABCDEFGHI.J",
            "a..b",
            ".a",
            "a.",
            "........",
            "0123456.89abcdef.0123456789abcdefg.h",
            "abcdefghijklmnop.qrstuvwxyzABCDEFG.HIJKLMNOPQRSTUVW.x",
            "Abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghi",
            "ab.cdefghijklmnopqrstu.v",
            "a.bcdefghi.j.klmnopqrstuvwxyz0123456789",
            "Zz@[`{.AZ.az",
        ];
        let mut buf = [0u64; MAX_LABEL.div_ceil(8)];
        for n in names {
            let q = QName { raw: n.as_bytes() };
            for end in 0..=q.len() {
                let start = q.label_start(end);
                let (s, w) = q.label_before(end);
                assert_eq!(s, start, "{n:?} {end}");
                let len = end - start;
                assert_eq!(w.is_some(), len <= 16, "{n:?} {end}");
                if let Some(w) = w {
                    let want = q.label_words(start, end, &mut buf).unwrap();
                    assert_eq!(&w[..len.div_ceil(8)], want, "{n:?} {end}");
                    assert!(w[len.div_ceil(8)..].iter().all(|&x| x == 0), "{n:?} {end}");
                }
            }
        }
    }

    #[test]
    fn label_words_of_every_span() {
        let name = "Ab.CDEFGHIJKLMNOP.q.Rstuvwxyz0123456789-_.".repeat(3) + "x";
        let q = QName::new(&name).unwrap();
        let lower = name.to_ascii_lowercase();
        let mut buf = [0u64; MAX_LABEL.div_ceil(8)];
        for start in 0..=q.len() {
            for end in start..=q.len() {
                let got = q.label_words(start, end, &mut buf).map(|w| {
                    let mut v: Vec<u8> = w.iter().flat_map(|w| w.to_le_bytes()).collect();
                    assert!(
                        v[end - start..].iter().all(|&b| b == 0),
                        "zero past the end"
                    );
                    v.truncate(end - start);
                    v
                });
                let want =
                    (end - start <= MAX_LABEL).then(|| lower.as_bytes()[start..end].to_vec());
                assert_eq!(got, want, "{start}..{end}");
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
        assert_eq!(q.labels_before(q.len()), 127);
        assert_eq!(bounds(&q).len(), 127);
        let dots = ".".repeat(254); // one trailing dot dropped: 253 dots, 254 empty labels
        let q = QName::new(&dots).unwrap();
        assert_eq!(q.labels_before(q.len()), 254);
        assert_eq!(bounds(&q).len(), 254);
        assert!(QName::new(&"a".repeat(254)).is_none());
        assert!(QName::new(&("a".repeat(253) + ".")).is_some());
    }
}
