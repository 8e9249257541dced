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
use crate::event::Event;
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
        loop {
            let go_on = self.live.next_batch(&mut events).await;
            if self.engine_rx.has_changed().unwrap_or(false) {
                let engine = self.engine_rx.borrow_and_update().clone();
                self.apply_blocklist(&engine);
                self.apply_resolvers(&engine);
            }
            self.health
                .kernel_lost_events
                .store(self.live.lost_events(), Ordering::Relaxed);
            if !events.is_empty() {
                let batch = std::mem::take(&mut events);
                match out.try_send(batch) {
                    Ok(()) => {}
                    Err(TrySendError::Full(b)) => {
                        self.health.drop_at("classify", "events", b.len() as u64);
                    }
                    Err(TrySendError::Closed(_)) => {
                        tracing::error!("the classify stage has stopped; stopping the source");
                        break;
                    }
                }
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

    /// Loads what the rules block on this host into the kernel (enforce mode only). A
    /// refused update is logged and counted; the agent keeps observing.
    fn apply_blocklist(&mut self, engine: &Engine) {
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let b = enforce::blocklist(engine, &tags);
        match self.live.set_blocklist(&b) {
            Ok(()) if engine.policy().mode == Mode::Enforce => {
                tracing::info!(services = ?b.services, names = b.names.len(), networks = b.nets4.len() + b.nets6.len(), "enforcing blocks in the kernel");
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
