//! A bounded byte-stream reassembler: pieces at arbitrary offsets (out of order, duplicated,
//! overlapping) in, the contiguous prefix out. Used for TCP segments (offset = sequence
//! number relative to the first handshake byte) and QUIC CRYPTO frames (offset = stream
//! offset).
//!
//! Overlaps resolve "first writer wins": bytes already placed are never overwritten, so a
//! retransmission with different content cannot rewrite what was decoded (an evasion trick).

/// Why a piece was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The piece ends past the configured limit.
    OverLimit { end: u64, limit: usize },
}

#[derive(Clone, Debug, Default)]
pub struct Reassembly {
    data: Vec<u8>,
    /// Filled ranges, sorted, non-overlapping, non-adjacent: `[start, end)`.
    filled: Vec<(usize, usize)>,
    limit: usize,
}

impl Reassembly {
    pub fn new(limit: usize) -> Self {
        Reassembly {
            data: Vec::new(),
            filled: Vec::new(),
            limit,
        }
    }

    /// Place `bytes` at stream `offset`. Bytes past `limit` are refused (the part before
    /// the limit is still placed, so a long stream keeps its useful head).
    pub fn insert(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Refused> {
        let end = offset.saturating_add(bytes.len() as u64);
        let limit = self.limit as u64;
        let usable_end = end.min(limit);
        if offset < usable_end {
            // Both fit in usize: they are <= limit.
            let start = offset as usize;
            let stop = usable_end as usize;
            self.place(start, &bytes[..stop - start]);
        }
        if end > limit {
            return Err(Refused::OverLimit {
                end,
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn place(&mut self, start: usize, bytes: &[u8]) {
        let end = start + bytes.len();
        if bytes.is_empty() {
            return;
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        // Copy into the gaps only (first writer wins).
        let mut cursor = start;
        for &(s, e) in &self.filled {
            if e <= cursor {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cursor {
                self.data[cursor..s].copy_from_slice(&bytes[cursor - start..s - start]);
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            self.data[cursor..end].copy_from_slice(&bytes[cursor - start..]);
        }
        // Merge [start, end) into the range list.
        let mut merged = Vec::with_capacity(self.filled.len() + 1);
        let (mut ns, mut ne) = (start, end);
        let mut placed = false;
        for &(s, e) in &self.filled {
            if e < ns {
                merged.push((s, e));
            } else if s > ne {
                if !placed {
                    merged.push((ns, ne));
                    placed = true;
                }
                merged.push((s, e));
            } else {
                ns = ns.min(s);
                ne = ne.max(e);
            }
        }
        if !placed {
            merged.push((ns, ne));
        }
        self.filled = merged;
    }

    /// The bytes available from offset 0 without a gap.
    pub fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, e)) => &self.data[..e],
            _ => &[],
        }
    }

    /// Bytes held (for memory accounting).
    pub fn held(&self) -> usize {
        self.data.len()
    }

    /// Whether any byte beyond the contiguous prefix is held (a gap is open).
    pub fn has_gap(&self) -> bool {
        self.filled.len() > 1 || self.filled.first().is_some_and(|&(s, _)| s != 0)
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

    #[test]
    fn out_of_order_and_duplicates() {
        let mut r = Reassembly::new(100);
        r.insert(6, b"world").unwrap();
        assert_eq!(r.contiguous(), b"");
        assert!(r.has_gap());
        r.insert(0, b"hel").unwrap();
        assert_eq!(r.contiguous(), b"hel");
        r.insert(0, b"hel").unwrap();
        r.insert(3, b"lo ").unwrap();
        assert_eq!(r.contiguous(), b"hello world");
        assert!(!r.has_gap());
    }

    #[test]
    fn first_writer_wins() {
        let mut r = Reassembly::new(100);
        r.insert(0, b"abc").unwrap();
        r.insert(1, b"XYZW").unwrap();
        assert_eq!(r.contiguous(), b"abcZW");
        r.insert(10, b"kl").unwrap();
        r.insert(4, b"QQQQQQQQQQQ").unwrap();
        assert_eq!(r.contiguous(), b"abcZWQQQQQklQQQ");
    }

    #[test]
    fn limit_keeps_head() {
        let mut r = Reassembly::new(4);
        assert_eq!(
            r.insert(2, b"cdef"),
            Err(Refused::OverLimit { end: 6, limit: 4 })
        );
        r.insert(0, b"ab").unwrap();
        assert_eq!(r.contiguous(), b"abcd");
        assert!(r.insert(u64::MAX - 1, b"zzzz").is_err());
        assert_eq!(r.held(), 4);
    }
}
