//! The source stage: the live sensor's events, in batches, into the classify stage's
//! bounded queue. When that queue is full the batch is dropped and counted — the ring
//! buffer must keep draining, or the kernel starts losing events it cannot attribute.
//! It also keeps the kernel's enforcement filters in step with the rules in use.

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

impl Source {
    /// Runs until SIGTERM/SIGINT or until the classify stage is gone.
    pub async fn run(mut self, out: mpsc::Sender<Vec<Event>>) {
        let engine = self.engine_rx.borrow_and_update().clone();
        self.apply_blocklist(&engine);
        self.apply_resolvers(&engine);
        let mut events = Vec::new();
        let mut engine = engine;
        loop {
            let go_on = self.live.wait().await;
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
            self.live.drain_bulk(&mut events);
            if enforce {
                self.refuse_in_userspace(&engine, &mut events[decided..]);
            }
            self.live.finish_batch(&mut events);
            self.health
                .kernel_lost_events
                .store(self.live.lost_events(), Ordering::Relaxed);
            if !events.is_empty() && !forward(&out, std::mem::take(&mut events), &self.health) {
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

/// Hands a batch to the classify stage without waiting: when its queue is full the batch is
/// dropped and counted (`{stage="classify", unit="events"}`, also in the heartbeat's
/// `lost_events`). False once the classify stage is gone.
fn forward(out: &mpsc::Sender<Vec<Event>>, batch: Vec<Event>, health: &Health) -> bool {
    match out.try_send(batch) {
        Ok(()) => true,
        Err(TrySendError::Full(b)) => {
            health.drop_at("classify", "events", b.len() as u64);
            true
        }
        Err(TrySendError::Closed(_)) => false,
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
    fn a_full_classify_queue_drops_batches_counts_them_and_never_waits() {
        let health = Health::default();
        let (tx, mut rx) = mpsc::channel(2);
        let batch = |n: u64| -> Vec<Event> {
            (0..n)
                .map(|i| ev(EventKind::Connect, 1_000, i + 1, 1, "/usr/bin/curl"))
                .collect()
        };
        // A stalled classify stage: nothing is received while the source keeps draining.
        for _ in 0..5 {
            assert!(forward(&tx, batch(3), &health));
        }
        let dropped = health
            .dropped
            .get_or_create(&vec![("stage", "classify"), ("unit", "events")])
            .get();
        assert_eq!(dropped, 9, "three batches of three events did not fit");
        assert_eq!(health.lost_events(), 9, "and the heartbeat reports them");
        assert_eq!(
            rx.try_recv().unwrap().len(),
            3,
            "the queued batches are intact"
        );
        drop(rx);
        assert!(
            !forward(&tx, batch(1), &health),
            "a stopped stage stops the source"
        );
    }
}
