//! The connection ids of recent QUIC Initials, per socket: what the agent needs to answer a
//! refused QUIC client with a Version Negotiation packet (RFC 9000 §17.2.1), which makes
//! it abandon the attempt at once (browsers then fall back to TCP, where the SNI block
//! holds). Taken from the Initial's clear-text long header; bounded, oldest out first.

use std::collections::{HashMap, VecDeque};

/// Sockets remembered at most.
pub const MAX_SOCKETS: usize = 4096;

/// A QUIC client's connection ids, as its Initial carried them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuicIds {
    /// The Destination Connection ID the client chose.
    pub dcid: Vec<u8>,
    /// The client's own Source Connection ID.
    pub scid: Vec<u8>,
}

impl QuicIds {
    /// Parses a long-header packet's ids; `None` for anything else.
    pub fn parse(pkt: &[u8]) -> Option<Self> {
        if pkt.first()? & 0x80 == 0 {
            return None;
        }
        let dl = usize::from(*pkt.get(5)?);
        let dcid = pkt.get(6..6 + dl)?;
        let sl = usize::from(*pkt.get(6 + dl)?);
        let scid = pkt.get(7 + dl..7 + dl + sl)?;
        if dl > 20 || sl > 20 {
            return None;
        }
        Some(Self {
            dcid: dcid.to_vec(),
            scid: scid.to_vec(),
        })
    }

    /// A Version Negotiation packet answering this client: its ids swapped, and one
    /// reserved version (`0x?a?a?a?a`, RFC 9000 §15) that no client speaks.
    pub fn version_negotiation(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(7 + self.dcid.len() + self.scid.len() + 4);
        p.push(0xc0);
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.push(self.scid.len() as u8);
        p.extend_from_slice(&self.scid);
        p.push(self.dcid.len() as u8);
        p.extend_from_slice(&self.dcid);
        p.extend_from_slice(&0x1a2a_3a4a_u32.to_be_bytes());
        p
    }
}

/// Socket cookie → ids of its first Initial.
#[derive(Default)]
pub struct RecentInitials {
    ids: HashMap<u64, QuicIds>,
    order: VecDeque<u64>,
}

impl RecentInitials {
    /// Remembers the first Initial of a socket; the oldest socket goes when full.
    pub fn note(&mut self, cookie: u64, pkt: &[u8]) {
        if self.ids.contains_key(&cookie) {
            return;
        }
        let Some(ids) = QuicIds::parse(pkt) else {
            return;
        };
        while self.ids.len() >= MAX_SOCKETS {
            match self.order.pop_front() {
                Some(old) => {
                    self.ids.remove(&old);
                }
                None => break,
            }
        }
        self.ids.insert(cookie, ids);
        self.order.push_back(cookie);
        // Cookies already taken leave stale entries in `order`; keep it bounded too.
        if self.order.len() > 2 * MAX_SOCKETS {
            self.order.retain(|c| self.ids.contains_key(c));
        }
    }

    /// The ids of a socket, forgotten once taken.
    pub fn take(&mut self, cookie: u64) -> Option<QuicIds> {
        self.ids.remove(&cookie)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    fn initial(dcid: &[u8], scid: &[u8]) -> Vec<u8> {
        let mut p = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
        p.extend_from_slice(dcid);
        p.push(scid.len() as u8);
        p.extend_from_slice(scid);
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn ids_are_parsed_swapped_and_garbage_refused() {
        let ids = QuicIds::parse(&initial(&[1, 2, 3, 4, 5, 6, 7, 8], &[9, 9])).unwrap();
        assert_eq!(ids.dcid, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let vn = ids.version_negotiation();
        assert_eq!(&vn[1..5], &[0, 0, 0, 0], "version 0: Version Negotiation");
        assert_eq!(&vn[5..8], &[2, 9, 9], "the client's SCID is the DCID");
        assert_eq!(&vn[8..17], &[8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&vn[17..], &[0x1a, 0x2a, 0x3a, 0x4a]);
        assert_eq!(
            QuicIds::parse(&[0x40, 0, 0, 0, 1, 0, 0]),
            None,
            "short header"
        );
        assert_eq!(QuicIds::parse(&initial(&[0; 21], &[])), None, "CID over 20");
        let whole = initial(&[1; 8], &[2; 8]);
        for n in 0..23 {
            assert_eq!(QuicIds::parse(&whole[..n]), None, "cut at {n}");
        }
    }

    #[test]
    fn a_flood_of_sockets_keeps_the_bound_and_the_newest() {
        let mut r = RecentInitials::default();
        let pkt = initial(&[7; 8], &[8; 4]);
        for c in 0..(3 * MAX_SOCKETS as u64) {
            r.note(c, &pkt);
            if c % 3 == 0 {
                assert!(r.take(c).is_some());
            }
            assert!(r.len() <= MAX_SOCKETS);
            assert!(r.order.len() <= 2 * MAX_SOCKETS + 1);
        }
        let last = 3 * MAX_SOCKETS as u64 - 1;
        assert!(r.take(last).is_some(), "the newest stays");
        assert!(r.take(1).is_none(), "the oldest went first");
        r.note(5, &[0x40]);
        assert!(r.take(5).is_none(), "not a long header: nothing kept");
    }
}
