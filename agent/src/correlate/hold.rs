//! A connect followed by its ClientHello is one use, named by the hello.
//!
//! The kernel reports a connect before the first payload leaves, so at connect time the
//! socket's name can only come from DNS answers — possibly another process's, for an
//! address shared by an AI service and a benign site. [`ConnectHold`] keeps each connect
//! back for a short while: if a TLS or QUIC ClientHello on the same socket follows, the
//! connect is dropped and the hello (its SNI, its address) is the use; otherwise the
//! connect is released as it was. Blocked connects (no hello can follow) and connects
//! without a socket cookie pass at once.
//!
//! Bounded: at most [`HOLD_CAP`] connects wait; past it the oldest is released early (an
//! early release only loses the merge, never the event).

use std::collections::{BTreeMap, HashMap};

use crate::event::{Event, EventKind};

/// How long a connect waits for its ClientHello, in ms of event time.
pub const HOLD_MS: i64 = 1500;
/// Connects held at most.
pub const HOLD_CAP: usize = 16_384;

#[derive(Default)]
pub struct ConnectHold {
    by_cookie: HashMap<u64, (Event, u64)>,
    /// (time_ms, seq) → cookie, oldest first; exactly one per held connect.
    order: BTreeMap<(i64, u64), u64>,
    next_seq: u64,
    /// Connects superseded by their own ClientHello.
    pub merged: u64,
    /// Connects released before their time because the hold was full.
    pub released_early: u64,
}

impl ConnectHold {
    /// Takes a batch of events; returns those ready to classify now (held connects come
    /// out of [`Self::due`] or a later `push`).
    pub fn push(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        for e in events {
            match e.kind {
                EventKind::Connect if e.cookie != 0 && !e.blocked => self.hold(e, out),
                EventKind::TlsClientHello | EventKind::QuicClientHello => {
                    if self.take(e.cookie).is_some() {
                        self.merged += 1;
                    }
                    out.push(e);
                }
                _ => out.push(e),
            }
        }
    }

    /// Releases the connects whose wait ended by `now_ms` (all of them with `force`).
    pub fn due(&mut self, now_ms: i64, force: bool, out: &mut Vec<Event>) {
        while let Some(entry) = self.order.first_entry() {
            if !force && entry.key().0.saturating_add(HOLD_MS) > now_ms {
                break;
            }
            let cookie = entry.remove();
            if let Some((e, _)) = self.by_cookie.remove(&cookie) {
                out.push(e);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }

    fn hold(&mut self, e: Event, out: &mut Vec<Event>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = (e.time_ms, seq);
        let cookie = e.cookie;
        // A second connect on one socket (UDP re-connect): the first is released.
        if let Some(prev) = self.take(cookie) {
            out.push(prev);
        }
        self.order.insert(key, cookie);
        self.by_cookie.insert(cookie, (e, seq));
        while self.by_cookie.len() > HOLD_CAP {
            let Some((_, c)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.by_cookie.remove(&c) {
                self.released_early += 1;
                out.push(old);
            }
        }
    }

    fn take(&mut self, cookie: u64) -> Option<Event> {
        let (e, seq) = self.by_cookie.remove(&cookie)?;
        self.order.remove(&(e.time_ms, seq));
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::correlate::dns_cache::NameScope;
    use crate::event::{NameSource, TlsInfo};

    fn ev(kind: EventKind, t: i64, cookie: u64, name: &str) -> Event {
        Event {
            time_ms: t,
            kind: kind.clone(),
            protocol: "tcp",
            process: None,
            src: None,
            dst: "104.18.6.192:443".parse().unwrap(),
            hostname: Some(name.into()),
            name_source: Some(if kind == EventKind::Connect {
                NameSource::DnsCache(NameScope::Namespace)
            } else {
                NameSource::Sni
            }),
            dns: None,
            tls: (kind != EventKind::Connect).then(|| TlsInfo {
                sni: Some(name.into()),
                ..TlsInfo::default()
            }),
            signals: vec![],
            cookie,
            blocked: false,
        }
    }

    #[test]
    fn the_hello_supersedes_its_connect_and_a_lone_connect_comes_out_later() {
        let mut h = ConnectHold::default();
        let mut out = Vec::new();
        h.push(
            vec![
                ev(EventKind::Connect, 1000, 5, "api.openai.com"),
                ev(EventKind::Connect, 1000, 6, "api.openai.com"),
            ],
            &mut out,
        );
        assert!(out.is_empty());
        h.push(
            vec![ev(EventKind::TlsClientHello, 1010, 5, "benign.example")],
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].hostname.as_deref(), Some("benign.example"));
        assert_eq!(h.merged, 1);
        out.clear();
        h.due(1000 + HOLD_MS - 1, false, &mut out);
        assert!(out.is_empty(), "still waiting");
        h.due(1000 + HOLD_MS, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].cookie, 6);
        assert!(h.is_empty());
    }

    #[test]
    fn blocked_and_cookieless_connects_pass_at_once() {
        let mut h = ConnectHold::default();
        let mut out = Vec::new();
        let mut blocked = ev(EventKind::Connect, 1, 9, "x");
        blocked.blocked = true;
        h.push(vec![blocked, ev(EventKind::Connect, 1, 0, "y")], &mut out);
        assert_eq!(out.len(), 2);
        assert!(h.is_empty());
    }

    #[test]
    fn a_connect_flood_stays_at_the_bound_and_loses_nothing() {
        let mut h = ConnectHold::default();
        let mut out = Vec::new();
        let n = HOLD_CAP as u64 + 1000;
        h.push(
            (1..=n)
                .map(|c| ev(EventKind::Connect, c as i64, c, "a"))
                .collect(),
            &mut out,
        );
        assert_eq!(h.len(), HOLD_CAP);
        assert_eq!(out.len(), 1000);
        assert_eq!(h.released_early, 1000);
        assert!(
            out.iter().all(|e| e.cookie <= 1000),
            "the oldest went first"
        );
        h.due(0, true, &mut out);
        assert_eq!(out.len() as u64, n, "every connect comes out exactly once");
        assert!(h.order.is_empty());
    }
}
