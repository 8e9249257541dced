//! The source stage: the live sensor's events, in batches, into the classify stage's
//! bounded queue. When that queue is full the batch is held ([`Carry`]) and the bulk ring
//! is left to fill until the queue has room: the kernel then shares the ring out per
//! process and user (`agent-ebpf/src/share.rs`), so a flood that outruns the classify
//! stage loses its own events, not everyone's — where dropping whole batches here would
//! lose events at random, whoever they were of. The decision ring keeps being drained and
//! decided meanwhile. It also keeps the kernel's enforcement filters in step with the rules
//! in use.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use shadowai_rules::Engine;
use shadowai_rules::policy::Mode;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;

use super::enforce;
use super::health::Health;
use crate::event::{Event, EventKind};
use crate::live::Live;

pub struct Source {
    pub live: Live,
    pub engine_rx: watch::Receiver<Arc<Engine>>,
    pub tags: Vec<String>,
    pub health: Health,
}

/// Events held for the classify stage at most while its queue is full (a held batch of at
/// most 2,048 bulk records, and the decisions drained while it waits); beyond it they are
/// dropped and counted.
pub const CARRY_MAX: usize = 16_384;

/// A batch the classify stage had no room for, held until it has.
#[derive(Default)]
struct Carry {
    events: Vec<Event>,
}

impl Carry {
    fn holding(&self) -> bool {
        !self.events.is_empty()
    }

    /// Hands `batch` on, or holds it when the queue is full; while a batch is held, new
    /// events join it (up to [`CARRY_MAX`]; the rest dropped and counted as
    /// `{stage="classify", unit="events"}`, also in the heartbeat's `lost_events`). False
    /// once the classify stage is gone.
    fn push(&mut self, out: &mpsc::Sender<Vec<Event>>, batch: Vec<Event>, health: &Health) -> bool {
        if self.holding() {
            let room = CARRY_MAX.saturating_sub(self.events.len());
            if batch.len() > room {
                health.drop_at("classify", "events", (batch.len() - room) as u64);
            }
            self.events.extend(batch.into_iter().take(room));
            return true;
        }
        match out.try_send(batch) {
            Ok(()) => true,
            Err(TrySendError::Full(b)) => {
                self.events = b;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Hands what is held on if the queue has room now. False once the stage is gone.
    fn flush(&mut self, out: &mpsc::Sender<Vec<Event>>) -> bool {
        if !self.holding() {
            return true;
        }
        match out.try_send(std::mem::take(&mut self.events)) {
            Ok(()) => true,
            Err(TrySendError::Full(b)) => {
                self.events = b;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl Source {
    /// Runs until SIGTERM/SIGINT or until the classify stage is gone.
    pub async fn run(mut self, out: mpsc::Sender<Vec<Event>>) {
        let engine = self.engine_rx.borrow_and_update().clone();
        self.apply_blocklist(&engine);
        self.apply_resolvers(&engine);
        let mut events = Vec::new();
        let mut engine = engine;
        let mut carry = Carry::default();
        loop {
            // While a batch is held, the bulk ring is not read: wake for the decision ring,
            // the timers, or room in the queue.
            let go_on = if carry.holding() {
                tokio::select! {
                    biased;
                    go = self.live.wait(false) => go,
                    permit = out.reserve() => match permit {
                        Ok(p) => {
                            p.send(std::mem::take(&mut carry.events));
                            true
                        }
                        Err(_) => false,
                    },
                }
            } else {
                self.live.wait(true).await
            };
            if !carry.flush(&out) {
                tracing::error!("the classify stage has stopped; stopping the source");
                break;
            }
            if self.engine_rx.has_changed().unwrap_or(false) {
                engine = self.engine_rx.borrow_and_update().clone();
                self.apply_blocklist(&engine);
                self.apply_resolvers(&engine);
            }
            let enforce = engine.policy().mode == Mode::Enforce;
            // Held hellos are decided before any bulk event is even read: a flood of
            // junk events cannot push a decision past the kernel's hold.
            self.live.drain_decisions(&mut events);
            if enforce {
                self.refuse_in_userspace(&engine, &mut events);
            }
            let decided = events.len();
            if !carry.holding() {
                self.live.drain_bulk(&mut events);
                if enforce {
                    self.refuse_in_userspace(&engine, &mut events[decided..]);
                }
            }
            self.live.finish_batch(&mut events);
            self.health
                .kernel_lost_events
                .store(self.live.lost_events(), Ordering::Relaxed);
            if !events.is_empty() && !carry.push(&out, std::mem::take(&mut events), &self.health) {
                tracing::error!("the classify stage has stopped; stopping the source");
                break;
            }
            if !go_on {
                break;
            }
        }
    }

    /// Recognises the rules' local resolvers; a catalogue without a list keeps the
    /// built-in one (an empty list would make every resolver look like a user).
    fn apply_resolvers(&mut self, engine: &Engine) {
        let list = &engine.catalogue().local_resolvers;
        if !list.is_empty() {
            self.live.corr.set_local_resolvers(list);
        }
    }

    /// What only userspace can decide (enforce mode): a ClientHello whose SNI the kernel
    /// did not see in the first segment, a QUIC Initial (decrypted here), and every block
    /// that depends on the process (users, unix groups incl. supplementary ones, and
    /// exceptions that lift a host-wide block for some of them). Decided by the SNI alone —
    /// never by an address other names may share — with the verdict for this process
    /// (observe-only rules refuse nothing); refused sockets are dropped in the kernel and
    /// torn down.
    fn refuse_in_userspace(&mut self, engine: &Engine, events: &mut [Event]) {
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        for e in events.iter_mut() {
            if e.blocked
                || !matches!(
                    e.kind,
                    EventKind::TlsClientHello | EventKind::QuicClientHello
                )
            {
                continue;
            }
            let named = e.tls.as_ref().and_then(|t| t.sni.as_ref()).is_some();
            // Decide on the process as it is now, not as first recorded (a few /proc
            // reads, only for the hellos the kernel hands up for a decision).
            if named
                && let Some(pid) = e.process.as_ref().map(|p| p.pid)
                && let Some(now) = self.live.corr.procs.refresh(pid)
            {
                e.process = Some(now);
            }
            let blocked = named
                .then(|| super::classify::refused_service(engine, e, &tags))
                .flatten();
            let Some(service) = blocked else {
                // Not refused: a QUIC flow held for this verdict goes on.
                if let Err(err) = self.live.allow(e) {
                    self.health
                        .output_failures
                        .get_or_create(&vec![("output", "kernel_allow")])
                        .inc();
                    tracing::warn!(error = %err, cookie = e.cookie, "could not release a held QUIC flow; it is released when the hold expires");
                }
                continue;
            };
            match self.live.refuse(e) {
                Ok(()) => e.blocked = true,
                Err(err) => {
                    self.health
                        .output_failures
                        .get_or_create(&vec![("output", "kernel_refuse")])
                        .inc();
                    tracing::error!(error = %err, service = %service, cookie = e.cookie, "could not refuse a blocked connection (counted)");
                }
            }
        }
    }

    /// Loads what the rules block on this host into the kernel (enforce mode only). A
    /// refused update is logged and counted; the agent keeps observing.
    fn apply_blocklist(&mut self, engine: &Engine) {
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let b = enforce::blocklist(engine, &tags);
        match self.live.set_blocklist(&b) {
            Ok(()) if engine.policy().mode == Mode::Enforce => {
                tracing::info!(services = ?b.services, names = b.names.len(), networks = b.nets4.len() + b.nets6.len(), per_process = ?b.per_process, hellos_to_agent = b.scoped, "enforcing blocks in the kernel");
            }
            Ok(()) => {}
            Err(e) => {
                self.health
                    .output_failures
                    .get_or_create(&vec![("output", "kernel_blocklist")])
                    .inc();
                tracing::error!(error = %e, "updating the kernel's block filters failed; blocks in force may be stale or off");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::event::EventKind;
    use crate::run::findings::tests::ev;

    #[test]
    fn a_full_classify_queue_holds_one_batch_then_drops_beyond_the_carry_and_counts() {
        let health = Health::default();
        let (tx, mut rx) = mpsc::channel(1);
        let batch = |n: u64| -> Vec<Event> {
            (0..n)
                .map(|i| ev(EventKind::Connect, 1_000, i + 1, 1, "/usr/bin/curl"))
                .collect()
        };
        let dropped = || {
            health
                .dropped
                .get_or_create(&vec![("stage", "classify"), ("unit", "events")])
                .get()
        };
        let mut carry = Carry::default();
        // The queue takes one batch; the next is held, whole, not dropped.
        assert!(carry.push(&tx, batch(3), &health));
        assert!(carry.push(&tx, batch(5), &health));
        assert!(carry.holding());
        assert_eq!(dropped(), 0);
        // What arrives while one is held joins it, up to the bound; the rest is counted.
        assert!(carry.push(&tx, batch(CARRY_MAX as u64), &health));
        assert_eq!(carry.events.len(), CARRY_MAX);
        assert_eq!(dropped(), 5, "5 + CARRY_MAX events for CARRY_MAX places");
        assert_eq!(health.lost_events(), 5, "and the heartbeat reports them");
        // No room yet: still held. Room: handed on, in order, nothing lost.
        assert!(carry.flush(&tx));
        assert!(carry.holding());
        assert_eq!(rx.try_recv().unwrap().len(), 3);
        assert!(carry.flush(&tx));
        assert!(!carry.holding());
        assert_eq!(rx.try_recv().unwrap().len(), CARRY_MAX);
        drop(rx);
        assert!(
            !carry.push(&tx, batch(1), &health),
            "a stopped stage stops the source"
        );
    }
}
