//! The source of events shared by `watch` and `run`: kernel ring buffer → correlation →
//! attributed [`Event`]s, with housekeeping and the sensor's metrics snapshot. It knows
//! nothing of the daemon: what consumes the events is the caller's business.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use crate::correlate::{Clock, Correlator, monotonic_ns};
use crate::error::AgentError;
use crate::event::{Event, EventKind};
use crate::metrics::{SensorCollector, Shared, Snapshot};
use crate::sensor::quic_ids::RecentInitials;
use crate::sensor::records::{self, KernelEvent, Packet};
use crate::sensor::teardown::{self, Teardown};
use crate::sensor::{Sensor, SensorOptions};

/// Bulk records drained per turn at most (about a millisecond or two of work): the
/// decision ring is checked between turns, so a flood of bulk events never holds back a
/// held hello's decision for long.
const BULK_MAX: usize = 2048;

/// Counts per event kind, in a fixed order for metrics.
#[derive(Default)]
struct Counts([u64; 5]);

impl Counts {
    const NAMES: [&'static str; 5] = [
        "dns_query",
        "dns_response",
        "tls_client_hello",
        "quic_client_hello",
        "connect",
    ];
    fn add(&mut self, k: &EventKind) {
        let i = match k {
            EventKind::DnsQuery => 0,
            EventKind::DnsResponse => 1,
            EventKind::TlsClientHello => 2,
            EventKind::QuicClientHello => 3,
            EventKind::Connect => 4,
        };
        self.0[i] += 1;
    }
    fn pairs(&self) -> Vec<(&'static str, u64)> {
        Self::NAMES
            .iter()
            .copied()
            .zip(self.0.iter().copied())
            .collect()
    }
}

pub struct Live {
    sensor: Sensor,
    teardown: Teardown,
    /// Connection ids of recent QUIC Initials (enforce mode answers refusals with them).
    initials: RecentInitials,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Refusals and held hellos (see `sensor::Rings`): drained before `ring`.
    decisions: AsyncFd<RingBuf<MapData>>,
    /// The last drain of `ring` stopped at [`BULK_MAX`] records: go on without waiting.
    more: bool,
    /// Hold expiries (`hold_expired`) already reported in the log.
    holds_expired: u64,
    /// Events throttled under a flood as of the last housekeeping tick.
    throttled: u64,
    pub corr: Correlator,
    counts: Counts,
    record_errors: u64,
    poll: tokio::time::Interval,
    housekeeping: tokio::time::Interval,
    sigterm: tokio::signal::unix::Signal,
    metrics: Shared,
    /// Ring-buffer-full drops, refreshed once a second.
    lost_events: u64,
    /// The inventory of AI agents at work, when the caller keeps one.
    inventory: Option<crate::inventory::feed::SharedTracker>,
}

impl Live {
    /// The sensor's hooks that did not attach (each logged and shown as
    /// `shadowai_hook_attached{hook} 0` already).
    pub fn hooks_missing(&self) -> Vec<String> {
        self.sensor
            .hooks
            .iter()
            .filter(|h| !h.attached)
            .map(|h| h.name.to_owned())
            .collect()
    }

    pub fn start(opts: &SensorOptions, poll: Duration) -> Result<Self, AgentError> {
        let (sensor, rings) = Sensor::start(opts)?;
        let attached: Vec<&str> = sensor
            .hooks
            .iter()
            .filter(|h| h.attached)
            .map(|h| h.name)
            .collect();
        tracing::info!(hooks = ?attached, "sensor started");
        let register = |r: RingBuf<MapData>| {
            // SAFETY: the ring buffer owns its map fd and moves into the AsyncFd, so the fd
            // stays open for exactly as long as it is registered.
            unsafe { AsyncFd::register(r) }.map_err(|e| AgentError::Io {
                what: "registering a ring buffer with the event loop".into(),
                source: e.into(),
            })
        };
        let ring = register(rings.events)?;
        let decisions = register(rings.decisions)?;
        let shared: Shared = Default::default();
        let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| AgentError::Io {
                what: "installing the SIGTERM handler".into(),
                source,
            })?;
        let mut corr = Correlator::new(Clock::system());
        // Answers the kernel stops repeating must stay named for as long as it does.
        corr.dns.set_min_lifetime(opts.dedup);
        match shadowai_rules::catalogue::builtin_local_resolvers() {
            Ok(list) => corr.set_local_resolvers(&list),
            // Only a broken build gets here (the list is checked by the rules tests).
            Err(e) => {
                tracing::error!(error = %e, "the built-in local-resolver list is invalid: resolvers' upstream lookups will look like their own")
            }
        }
        let teardown = Teardown::start().map_err(|source| AgentError::Io {
            what: "starting the socket teardown thread".into(),
            source,
        })?;
        Ok(Self {
            sensor,
            teardown,
            initials: RecentInitials::default(),
            ring,
            decisions,
            more: false,
            holds_expired: 0,
            throttled: 0,
            corr,
            counts: Counts::default(),
            record_errors: 0,
            poll: tokio::time::interval(poll),
            housekeeping: tokio::time::interval(Duration::from_secs(1)),
            sigterm,
            metrics: shared,
            lost_events: 0,
            inventory: None,
        })
    }

    /// Feeds exec/exit records and events to an inventory tracker from now on.
    pub fn set_inventory(&mut self, t: crate::inventory::feed::SharedTracker) {
        self.inventory = Some(t);
    }

    /// The sensor's metrics, for a registry: encoded from the latest snapshot per scrape.
    pub fn collector(&self) -> SensorCollector {
        SensorCollector(self.metrics.clone())
    }

    /// Replaces the kernel's enforcement filters.
    pub fn set_blocklist(
        &mut self,
        b: &crate::sensor::blocklist::Blocklist,
    ) -> Result<(), AgentError> {
        self.sensor.set_blocklist(b)
    }

    /// The per-socket byte counters, for the one consumer that attributes them (once).
    pub fn take_byte_counters(&mut self) -> Option<crate::sensor::bytes::ByteCounters> {
        self.sensor.bytes.take()
    }

    /// Refuses a connection the kernel let through because only userspace could name it
    /// (a ClientHello spanning segments, a QUIC Initial, a rule scoped to users or unix
    /// groups): the kernel drops the socket's later egress payload, and the socket is
    /// destroyed so the client fails at once. Other events are not refusable here.
    pub fn refuse(&mut self, e: &Event) -> Result<(), AgentError> {
        let (Some(local), true) = (e.src, e.cookie != 0) else {
            return Ok(());
        };
        let protocol = match e.kind {
            EventKind::TlsClientHello => libc::IPPROTO_TCP as u8,
            EventKind::QuicClientHello => libc::IPPROTO_UDP as u8,
            _ => return Ok(()),
        };
        self.sensor.block_flow(e.cookie)?;
        let quic = self.initials.take(e.cookie);
        if protocol == libc::IPPROTO_UDP as u8 && quic.is_none() {
            // Its Initial was not seen (evicted): the kernel still drops the flow.
            return Ok(());
        }
        self.teardown.request(teardown::Request {
            cookie: e.cookie,
            protocol,
            local,
            remote: e.dst,
            netns: 0,
            pid: e.process.as_ref().map_or(0, |p| p.pid),
            quic,
        });
        Ok(())
    }

    /// Lets a flow the kernel holds for the agent's verdict go on (enforce mode, allowed):
    /// a QUIC socket's held answers, a TCP socket's egress after its ClientHello.
    pub fn allow(&mut self, e: &Event) -> Result<(), AgentError> {
        if e.cookie == 0 {
            return Ok(());
        }
        match e.kind {
            EventKind::QuicClientHello => {
                self.initials.take(e.cookie);
            }
            EventKind::TlsClientHello => {}
            _ => return Ok(()),
        }
        self.sensor.allow_flow(e.cookie)
    }

    /// Kernel-side losses (ring buffer full, or throttled under a flood) as of the last
    /// housekeeping tick.
    pub fn lost_events(&self) -> u64 {
        self.lost_events
    }

    /// Waits for the next batch of events; `false` once the agent should stop.
    pub async fn next_batch(&mut self, events: &mut Vec<Event>) -> bool {
        if !self.wait(true).await {
            return false;
        }
        self.drain_decisions(events);
        self.drain_bulk(events);
        self.finish_batch(events);
        true
    }

    /// Waits until a ring buffer has records (or the poll timer fires); `false` once the
    /// agent should stop. Returns at once while the bulk ring has more than one drain held.
    /// Without `bulk`, the bulk ring is not waited for (the caller is not draining it: its
    /// consumer is behind), only the decision ring, the timers and the signals.
    pub async fn wait(&mut self, bulk: bool) -> bool {
        let more = bulk && std::mem::take(&mut self.more);
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => return false,
            _ = self.sigterm.recv() => return false,
            r = self.decisions.readable_mut() => { if let Ok(mut g) = r { g.clear_ready(); } }
            () = std::future::ready(()), if more => {}
            r = self.ring.readable_mut(), if bulk => { if let Ok(mut g) = r { g.clear_ready(); } }
            _ = self.poll.tick() => {}
            _ = self.housekeeping.tick() => self.housekeep(),
        }
        true
    }

    /// Drains the decision ring (refusals, held hellos: small, never flooded by bulk
    /// events) into `events`.
    pub fn drain_decisions(&mut self, events: &mut Vec<Event>) {
        loop {
            let rec = {
                let Some(item) = self.decisions.get_mut().next() else {
                    return;
                };
                records::parse(&item)
            };
            self.record(rec, events);
        }
    }

    /// Drains at most [`BULK_MAX`] records of the bulk ring into `events`; the next
    /// [`Live::wait`] returns at once when more are left, after the decision ring had
    /// its turn.
    pub fn drain_bulk(&mut self, events: &mut Vec<Event>) {
        let mut n = 0;
        while n < BULK_MAX {
            let rec = {
                let Some(item) = self.ring.get_mut().next() else {
                    return;
                };
                records::parse(&item)
            };
            self.record(rec, events);
            n += 1;
        }
        self.more = true;
    }

    /// Book-keeping once a batch is complete (inventory feed, counts per kind).
    pub fn finish_batch(&mut self, events: &mut [Event]) {
        if let Some(t) = &self.inventory {
            let lineage = self.sensor.lineage.as_ref();
            let parent_of = |pid| lineage.and_then(|l| l.parent_of(pid));
            crate::inventory::feed::on_events(t, &mut self.corr.procs, events, &parent_of);
        }
        for e in events {
            self.counts.add(&e.kind);
        }
    }

    fn record(&mut self, rec: Result<KernelEvent, records::RecordError>, events: &mut Vec<Event>) {
        match rec {
            Ok(KernelEvent::Exec(e)) => {
                self.corr.on_exec(&e);
                if let Some(t) = &self.inventory {
                    let lineage = self.sensor.lineage.as_ref();
                    let parent_of = |pid| lineage.and_then(|l| l.parent_of(pid));
                    crate::inventory::feed::on_exec(t, &mut self.corr.procs, &e, &parent_of);
                }
            }
            Ok(KernelEvent::Exit { pid, ts_ns }) => {
                self.corr.on_exit(pid, ts_ns);
                if let Some(t) = &self.inventory {
                    crate::inventory::feed::on_exit(t, pid);
                }
            }
            Ok(KernelEvent::Connect(c)) => events.push(self.corr.on_connect(&c)),
            Ok(KernelEvent::Packet(p)) => {
                torn_down_by_kernel(&self.teardown, &p);
                if p.meta.payload == shadowai_common::payload::QUIC
                    && p.meta.flags & shadowai_common::flags::URGENT != 0
                {
                    self.initials.note(p.meta.cookie, &p.data);
                }
                self.corr.on_kernel_packet(&p, events);
            }
            Err(err) => {
                self.record_errors += 1;
                tracing::debug!(?err, "unreadable ring-buffer record");
            }
        }
    }

    /// Logs the processes that went over their share of the ring under a flood, once each
    /// (`sensor/share.rs`): what the SOC's "lost events" for this host came from.
    fn name_flooders(&mut self, throttled: u64) {
        for (pid, charged) in self.sensor.shares.new_flooders() {
            let p = self.corr.procs.get(pid);
            tracing::warn!(
                pid,
                process = p.as_ref().map_or("-", |p| p.name.as_str()),
                user = p.as_ref().map_or("-", |p| p.user.as_str()),
                charged,
                throttled_total = throttled,
                "a flood of events: this process went over its share of the kernel's event ring (its user's too); the events beyond are counted in shadowai_kernel_drops_total{{reason=\"throttled\"}}, not reported"
            );
        }
    }

    fn housekeep(&mut self) {
        self.corr.tick(monotonic_ns());
        let drops = self.sensor.drops();
        let total = |reason: &str| -> u64 {
            drops
                .iter()
                .filter(|(_, r, _)| *r == reason)
                .map(|(_, _, n)| n)
                .sum()
        };
        // Events not reported: the ring had no room, or a flood's share was used up.
        let throttled = total("throttled");
        self.lost_events = total("ringbuf_full") + throttled;
        if throttled > self.throttled {
            self.name_flooders(throttled);
            self.throttled = throttled;
        }
        let expired: u64 = drops
            .iter()
            .filter(|(_, r, _)| *r == "hold_expired")
            .map(|(_, _, n)| n)
            .sum();
        if expired > self.holds_expired {
            // Once per housekeeping tick at most, with how many since the last line.
            tracing::warn!(
                new = expired - self.holds_expired,
                total = expired,
                hold_ms = shadowai_common::flow::HOLD_MS,
                "flows held for the agent's decision were let through undecided (fail-open); see shadowai_kernel_drops_total{{reason=\"hold_expired\"}}"
            );
            self.holds_expired = expired;
        }
        let mut s = Snapshot {
            events: self.counts.pairs(),
            record_errors: self.record_errors,
            drops,
            dns_deduplicated: self.sensor.dns_dedup.counts(),
            hooks: self
                .sensor
                .hooks
                .iter()
                .map(|h| (h.name, h.attached))
                .collect(),
            decode: self.corr.decode_stats().clone(),
            processes: self.corr.procs.len(),
            dns_cache_entries: self.corr.dns.len(),
            teardowns: self.teardown.stats.pairs(),
        };
        std::mem::swap(&mut *self.metrics.lock(), &mut s);
    }
}

/// A TCP socket the kernel refused (blocked DNS-over-TCP query, blocked SNI in the first
/// ClientHello segment): its segments are being dropped, so destroy it.
fn torn_down_by_kernel(teardown: &Teardown, p: &Packet) {
    if p.meta.flags & shadowai_common::flags::BLOCKED == 0 || p.meta.protocol != 6 {
        return;
    }
    teardown.request(teardown::Request {
        cookie: p.meta.cookie,
        protocol: p.meta.protocol,
        local: p.src,
        remote: p.dst,
        netns: p.meta.owner.netns,
        pid: p.meta.owner.pid,
        quic: None,
    });
}
