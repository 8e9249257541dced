//! Bytes per AI use: the kernel counts L4 payload bytes per socket cookie
//! (`agent-ebpf/src/bytes.rs`); this stage part ties those counters to the findings whose
//! events named the socket, and adds what each socket sent and received to its finding.
//!
//! A socket is *tracked* from the first classified event that carries its cookie (a
//! connect, a ClientHello). Every tick (and before a window closes) the final counters of
//! released sockets are drained, and the live counters of the tracked ones are read; the
//! growth since the last read is added to the finding of the open window, so a long upload
//! shows in each window it spans. A socket released before its classified event arrives
//! (a short-lived `curl`: the final counters can beat the ClientHello through the pipeline)
//! waits in a small *early* table until its event comes, or expires.
//!
//! Both tables are bounded with O(1) eviction of the oldest entry (an insertion-order queue
//! beside the map, compacted when stale entries pile up); every eviction, vanished counter
//! and kernel-side loss is counted in `shadowai_bytes_lost_total{reason}`.

use std::collections::{HashMap, VecDeque};

use shadowai_common::bytes::{SockBytes, SockClosed};

use super::findings::{Aggregator, Classified};
use super::health::Health;
use crate::event::{Event, EventKind};
use crate::sensor::bytes::ByteSource;

/// Sockets tracked at most (a flood of AI connections evicts the oldest, counted).
pub const MAX_TRACKED: usize = 16_384;
/// Released sockets waiting for their classified event at most.
pub const MAX_EARLY: usize = 16_384;
/// How long a released socket's counters wait for their event.
pub const EARLY_TTL_MS: i64 = 10_000;
/// Final-counter records drained per tick at most (the rest wait for the next tick).
pub const DRAIN_MAX: usize = 1 << 16;
/// Ticks a tracked socket's counters may be missing before it is given up (a release's
/// record can lag its map deletion by one drain).
const MISSING_TICKS: u8 = 3;

/// Default for `[agent] large_upload_bytes`: a finding that sent more than this in one
/// window is flagged `large_upload`.
pub const DEFAULT_LARGE_UPLOAD: u64 = 10 * 1024 * 1024;

struct Tracked {
    /// The event that named the socket: its process, user and service identify the finding.
    event: Event,
    c: Classified,
    /// Counters as last added to a finding.
    seen: SockBytes,
    missing: u8,
}

/// A map with a bound and O(1) eviction of the oldest key.
struct Bounded<V> {
    map: HashMap<u64, V>,
    order: VecDeque<u64>,
    max: usize,
}

impl<V> Bounded<V> {
    fn new(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    /// Inserts a new key; returns how many older entries were evicted to make room.
    fn insert(&mut self, k: u64, v: V) -> u64 {
        let mut evicted = 0;
        while self.map.len() >= self.max {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.map.remove(&old).is_some() {
                evicted += 1;
            }
        }
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
        }
        // Keys removed by `remove` stay in the queue until popped; keep it within 2× the bound.
        if self.order.len() > 2 * self.max {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        evicted
    }

    fn remove(&mut self, k: u64) -> Option<V> {
        self.map.remove(&k)
    }
}

pub struct Meter<S: ByteSource> {
    src: S,
    tracked: Bounded<Tracked>,
    early: Bounded<(SockBytes, i64)>,
    health: Health,
    /// Kernel-side loss counts as last read (the kernel's are totals).
    kernel_lost: Vec<(&'static str, u64)>,
    buf: Vec<SockClosed>,
}

/// Growth from `seen` to `now`; a counter below what was seen was restarted (its socket's
/// entry was evicted and re-created in the kernel), so all of it is new.
fn growth(seen: SockBytes, now: SockBytes) -> SockBytes {
    let d = |s: u64, n: u64| if n >= s { n - s } else { n };
    SockBytes {
        bytes_out: d(seen.bytes_out, now.bytes_out),
        bytes_in: d(seen.bytes_in, now.bytes_in),
    }
}

impl<S: ByteSource> Meter<S> {
    pub fn new(src: S, health: Health) -> Self {
        Self {
            src,
            tracked: Bounded::new(MAX_TRACKED),
            early: Bounded::new(MAX_EARLY),
            health,
            kernel_lost: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn lost(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.health
                .bytes_lost
                .get_or_create(&vec![("reason", reason)])
                .inc_by(n);
        }
    }

    /// A classified event: starts tracking its socket (once per socket).
    pub fn observe(&mut self, agg: &mut Aggregator, e: &Event, c: &Classified, now_ms: i64) {
        let socket = matches!(
            e.kind,
            EventKind::Connect | EventKind::TlsClientHello | EventKind::QuicClientHello
        );
        if !socket || e.cookie == 0 {
            return;
        }
        if let Some(t) = self.tracked.map.get_mut(&e.cookie) {
            // The ClientHello after the connect names the service (SNI): later windows'
            // byte-only findings carry it as evidence.
            if e.kind != EventKind::Connect {
                t.event = e.clone();
                t.c = c.clone();
            }
            return;
        }
        if let Some((b, _)) = self.early.remove(e.cookie) {
            // Released before its event got here: all of it belongs to this use.
            if !agg.add_bytes(e, c, b.bytes_out, b.bytes_in, now_ms) {
                self.lost("window_full", 1);
            }
            return;
        }
        let evicted = self.tracked.insert(
            e.cookie,
            Tracked {
                event: e.clone(),
                c: c.clone(),
                seen: SockBytes::default(),
                missing: 0,
            },
        );
        self.lost("tracked_table_full", evicted);
    }

    /// Drains released sockets and reads the live counters of tracked ones, adding the
    /// growth to the open window's findings.
    pub fn tick(&mut self, agg: &mut Aggregator, now_ms: i64) {
        self.buf.clear();
        self.src.drain_closed(&mut self.buf, DRAIN_MAX);
        let closed = std::mem::take(&mut self.buf);
        for r in &closed {
            match self.tracked.remove(r.cookie) {
                Some(t) => self.add(agg, &t, growth(t.seen, r.bytes), now_ms),
                None => {
                    // Most released sockets are not AI uses: an eviction here is a loss
                    // only if that socket's event was still on its way (not counted).
                    self.early.insert(r.cookie, (r.bytes, now_ms));
                }
            }
        }
        self.buf = closed;

        let mut gone = Vec::new();
        let mut read_errors = 0u64;
        let mut updates = Vec::new();
        for (cookie, t) in &mut self.tracked.map {
            match self.src.read(*cookie) {
                Ok(Some(now)) => {
                    t.missing = 0;
                    let g = growth(t.seen, now);
                    t.seen = now;
                    if g != SockBytes::default() {
                        updates.push((*cookie, g));
                    }
                }
                Ok(None) => {
                    t.missing += 1;
                    if t.missing >= MISSING_TICKS {
                        gone.push(*cookie);
                    }
                }
                Err(e) => {
                    read_errors += 1;
                    if read_errors == 1 {
                        tracing::debug!(error = %e, "reading a socket's byte counters failed");
                    }
                }
            }
        }
        for (cookie, g) in updates {
            if let Some(t) = self.tracked.map.get(&cookie)
                && !agg.add_bytes(&t.event, &t.c, g.bytes_out, g.bytes_in, now_ms)
            {
                self.lost("window_full", 1);
            }
        }
        self.lost("read_error", read_errors);
        for cookie in &gone {
            self.tracked.remove(*cookie);
        }
        // Released without a record (the record ring was full) or evicted in the kernel:
        // what it did since the last read is lost.
        self.lost("counter_vanished", gone.len() as u64);
        self.expire_early(now_ms);
        self.refresh_kernel_lost();
    }

    fn add(&self, agg: &mut Aggregator, t: &Tracked, g: SockBytes, now_ms: i64) {
        if g != SockBytes::default()
            && !agg.add_bytes(&t.event, &t.c, g.bytes_out, g.bytes_in, now_ms)
        {
            self.lost("window_full", 1);
        }
    }

    fn expire_early(&mut self, now_ms: i64) {
        while let Some(k) = self.early.order.front().copied() {
            match self.early.map.get(&k) {
                Some((_, t)) if now_ms - *t < EARLY_TTL_MS => break,
                Some(_) => {
                    self.early.map.remove(&k);
                    self.early.order.pop_front();
                }
                None => {
                    self.early.order.pop_front();
                }
            }
        }
    }

    fn refresh_kernel_lost(&mut self) {
        let now = self.src.lost();
        for (reason, n) in &now {
            let before = self
                .kernel_lost
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, b)| *b);
            self.lost(reason, n.saturating_sub(before));
        }
        self.kernel_lost = now;
    }

    /// Sockets tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.tracked.map.len()
    }

    /// Released sockets waiting for their event now.
    pub fn early(&self) -> usize {
        self.early.map.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::run::findings::tests::{class, ev};
    use aya::maps::MapError;

    /// The kernel's side as a script: live counters and released sockets.
    #[derive(Default)]
    struct Script {
        live: HashMap<u64, SockBytes>,
        closed: Vec<SockClosed>,
        lost: u64,
    }

    impl ByteSource for Script {
        fn read(&self, cookie: u64) -> Result<Option<SockBytes>, MapError> {
            Ok(self.live.get(&cookie).copied())
        }
        fn drain_closed(&mut self, out: &mut Vec<SockClosed>, max: usize) {
            let n = self.closed.len().min(max);
            out.extend(self.closed.drain(..n));
        }
        fn lost(&self) -> Vec<(&'static str, u64)> {
            vec![("closed_ring_full", self.lost)]
        }
    }

    fn b(o: u64, i: u64) -> SockBytes {
        SockBytes {
            bytes_out: o,
            bytes_in: i,
        }
    }

    fn lost(h: &Health, reason: &'static str) -> u64 {
        h.bytes_lost.get_or_create(&vec![("reason", reason)]).get()
    }

    #[test]
    fn live_growth_and_the_final_counters_add_up_once() {
        let h = Health::default();
        let mut m = Meter::new(Script::default(), h.clone());
        let mut agg = Aggregator::new("h".into(), "h".into(), 60_000);
        let e = ev(EventKind::TlsClientHello, 61_000, 7, 1, "/usr/bin/curl");
        agg.observe(&e, &class());
        m.observe(&mut agg, &e, &class(), 61_000);
        m.src.live.insert(7, b(1000, 200));
        m.tick(&mut agg, 61_500);
        m.src.live.insert(7, b(5000, 300));
        m.tick(&mut agg, 62_000);
        m.src.live.remove(&7);
        m.src.closed.push(SockClosed {
            cookie: 7,
            bytes: b(5100, 400),
        });
        m.tick(&mut agg, 62_500);
        assert_eq!(m.tracked(), 0);
        let f = agg.close_if_due(0, true);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].bytes_out, f[0].bytes_in), (Some(5100), Some(400)));
    }

    #[test]
    fn a_socket_released_before_its_event_arrives_is_still_counted() {
        let h = Health::default();
        let mut m = Meter::new(Script::default(), h.clone());
        let mut agg = Aggregator::new("h".into(), "h".into(), 60_000);
        m.src.closed.push(SockClosed {
            cookie: 9,
            bytes: b(1_048_576, 512),
        });
        m.tick(&mut agg, 61_000);
        assert_eq!(m.early(), 1);
        let e = ev(EventKind::TlsClientHello, 61_000, 9, 1, "/usr/bin/curl");
        agg.observe(&e, &class());
        m.observe(&mut agg, &e, &class(), 61_100);
        assert_eq!((m.early(), m.tracked()), (0, 0));
        let f = agg.close_if_due(0, true);
        assert_eq!(f[0].bytes_out, Some(1_048_576));
    }

    #[test]
    fn an_upload_spanning_windows_shows_in_each() {
        let h = Health::default();
        let mut m = Meter::new(Script::default(), h.clone());
        let mut agg = Aggregator::new("h".into(), "h".into(), 1_000);
        let e = ev(EventKind::TlsClientHello, 10_100, 3, 1, "/usr/bin/curl");
        agg.observe(&e, &class());
        m.observe(&mut agg, &e, &class(), 10_100);
        m.src.live.insert(3, b(700, 0));
        m.tick(&mut agg, 10_500);
        let w1 = agg.close_if_due(11_000, false);
        m.src.live.insert(3, b(1_000, 10));
        m.tick(&mut agg, 11_200);
        let w2 = agg.close_if_due(12_000, false);
        assert_eq!(w1[0].bytes_out, Some(700));
        assert_eq!((w2[0].bytes_out, w2[0].bytes_in), (Some(300), Some(10)));
        assert_eq!(w2[0].id, {
            // Same use, next window: the finding of that window, not a new kind of finding.
            let mut a = Aggregator::new("h".into(), "h".into(), 1_000);
            a.observe(
                &ev(EventKind::Connect, 11_100, 99, 1, "/usr/bin/curl"),
                &class(),
            );
            a.close_if_due(0, true)[0].id.clone()
        });
    }

    #[test]
    fn a_later_windows_byte_only_finding_says_where_the_bytes_went() {
        let h = Health::default();
        let mut m = Meter::new(Script::default(), h.clone());
        let mut agg = Aggregator::new("h".into(), "h".into(), 1_000);
        // The connect names the socket first; its ClientHello (with the SNI) follows.
        let c = ev(EventKind::Connect, 10_050, 4, 1, "/usr/bin/curl");
        let hello = ev(EventKind::TlsClientHello, 10_100, 4, 1, "/usr/bin/curl");
        for e in [&c, &hello] {
            agg.observe(e, &class());
            m.observe(&mut agg, e, &class(), e.time_ms);
        }
        let w1 = agg.close_if_due(11_000, false);
        assert_eq!(w1[0].count, 1, "a connect and its ClientHello are one use");
        m.src.live.insert(4, b(2_000, 20));
        m.tick(&mut agg, 11_200);
        let w2 = agg.close_if_due(12_000, false);
        assert_eq!(w2.len(), 1);
        assert_eq!(w2[0].bytes_out, Some(2_000));
        assert_eq!(w2[0].evidence.sni, vec!["api.openai.com".to_string()]);
        assert_eq!(w2[0].evidence.ips, vec!["10.0.0.1".to_string()]);
    }

    #[test]
    fn the_large_upload_flag_follows_the_threshold() {
        let h = Health::default();
        let mut m = Meter::new(Script::default(), h.clone());
        let mut agg = Aggregator::new("h".into(), "h".into(), 60_000).with_large_upload(1_000_000);
        let small = ev(EventKind::TlsClientHello, 61_000, 1, 1, "/usr/bin/curl");
        let big = ev(EventKind::TlsClientHello, 61_000, 2, 2, "/usr/bin/python3");
        for e in [&small, &big] {
            agg.observe(e, &class());
            m.observe(&mut agg, e, &class(), 61_000);
        }
        m.src.live.insert(1, b(999_999, 0));
        m.src.live.insert(2, b(1_000_001, 0));
        m.tick(&mut agg, 61_500);
        let f = agg.close_if_due(0, true);
        let flags = |exe: &str| {
            f.iter()
                .find(|f| f.process.exe == exe)
                .unwrap()
                .flags
                .clone()
        };
        assert!(flags("/usr/bin/curl").is_empty());
        assert_eq!(
            flags("/usr/bin/python3"),
            vec![shadowai_api::Flag::LargeUpload]
        );
    }

    #[test]
    fn floods_keep_both_tables_at_their_bounds_and_count_losses() {
        let h = Health::default();
        let mut m = Meter::new(Script::default(), h.clone());
        let mut agg = Aggregator::new("h".into(), "h".into(), 60_000);
        // Adversarial: many more AI sockets than the table holds, all from one process.
        for cookie in 1..=(MAX_TRACKED as u64 + 500) {
            let e = ev(EventKind::Connect, 61_000, cookie, 1, "/tmp/flood");
            m.observe(&mut agg, &e, &class(), 61_000);
        }
        assert_eq!(m.tracked(), MAX_TRACKED);
        assert_eq!(lost(&h, "tracked_table_full"), 500);
        assert!(m.tracked.order.len() <= 2 * MAX_TRACKED);
        // The newest is tracked: its counters still arrive.
        let newest = MAX_TRACKED as u64 + 500;
        m.src.live.insert(newest, b(42, 0));
        // And a flood of released non-AI sockets keeps the early table bounded.
        for cookie in 1_000_000..(1_000_000 + MAX_EARLY as u64 * 2) {
            m.src.closed.push(SockClosed {
                cookie,
                bytes: b(1, 1),
            });
        }
        m.src.lost = 17;
        m.tick(&mut agg, 61_500);
        assert_eq!(m.early(), MAX_EARLY);
        assert_eq!(lost(&h, "closed_ring_full"), 17);
        // Sockets that vanish without a record are given up after a few ticks, counted.
        m.tick(&mut agg, 62_000);
        m.tick(&mut agg, 62_500);
        assert_eq!(m.tracked(), 1, "only the socket with live counters is left");
        assert_eq!(lost(&h, "counter_vanished"), MAX_TRACKED as u64 - 1);
        // Early entries expire.
        m.tick(&mut agg, 61_500 + EARLY_TTL_MS);
        assert_eq!(m.early(), 0);
        let f = agg.close_if_due(0, true);
        assert_eq!(f[0].bytes_out, Some(42));
    }
}
