//! One forwarder: a bounded in-memory queue, a task that cuts batches (by size or age),
//! sends them with retries and exponential backoff, and counters for everything that happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use shadowai_api::Finding;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::SiemError;
use crate::config::{DeliveryConfig, ForwarderConfig};
use crate::event::{Event, SiemEvent};
use crate::http::{HecSink, WebhookSink};
use crate::syslog::SyslogSink;

/// Why one send attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
    /// A delay the receiver asked for (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SendError {
    pub fn retry(message: String) -> Self {
        SendError {
            message,
            retryable: true,
            retry_after: None,
        }
    }
    pub fn permanent(message: String) -> Self {
        SendError {
            message,
            retryable: false,
            retry_after: None,
        }
    }
}

/// Counters of one forwarder, read with [`Forwarder::stats`]. Monotonic except `queued`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForwarderStats {
    pub name: String,
    pub kind: &'static str,
    /// Findings waiting in the queue now.
    pub queued: u64,
    /// Findings taken into the queue.
    pub events_accepted: u64,
    /// Findings skipped because their verdict is not in `verdicts`.
    pub events_filtered: u64,
    /// Findings refused because the queue was full.
    pub events_dropped_queue_full: u64,
    /// Findings delivered (acknowledged by HTTP 2xx, or written to the syslog socket).
    pub events_sent: u64,
    pub batches_sent: u64,
    /// Send attempts that failed (each retry that fails counts once).
    pub send_failures: u64,
    /// Batches given up (retries exhausted or a permanent error), and their findings.
    pub batches_failed: u64,
    pub events_failed: u64,
    /// The last failure's message, for the UI and logs.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    filtered: AtomicU64,
    dropped_full: AtomicU64,
    sent: AtomicU64,
    batches_sent: AtomicU64,
    send_failures: AtomicU64,
    batches_failed: AtomicU64,
    events_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn set_last_error(&self, message: &str) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(message.to_owned());
        }
    }
}

enum Sink {
    Webhook(Box<WebhookSink>),
    Hec(Box<HecSink>),
    Syslog(Box<SyslogSink>),
}

impl Sink {
    async fn send(&mut self, batch: &[Event]) -> Result<(), SendError> {
        match self {
            Sink::Webhook(s) => s.send(batch).await,
            Sink::Hec(s) => s.send(batch).await,
            Sink::Syslog(s) => s.send(batch).await,
        }
    }
}

/// A running forwarder. Dropping it stops intake; [`Forwarder::shutdown`] also drains.
pub struct Forwarder {
    name: String,
    kind: &'static str,
    filter: Vec<shadowai_api::Verdict>,
    tx: Option<mpsc::Sender<Event>>,
    capacity: usize,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Builds the sink (TLS roots, HTTP client) and spawns the delivery task on the current
    /// tokio runtime. Fails on configuration problems only; receivers are contacted later.
    pub fn start(config: &ForwarderConfig) -> Result<Self, SiemError> {
        let sink = match config {
            ForwarderConfig::Webhook(c) => Sink::Webhook(Box::new(WebhookSink::new(c)?)),
            ForwarderConfig::SplunkHec(c) => Sink::Hec(Box::new(HecSink::new(c)?)),
            ForwarderConfig::Syslog(c) => Sink::Syslog(Box::new(SyslogSink::new(c)?)),
        };
        let delivery = config.delivery().clone();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SiemError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(delivery.queue_capacity);
        let counters = Arc::new(Counters::default());
        let name = config.name().to_owned();
        let task = runtime.spawn(run(
            name.clone(),
            rx,
            sink,
            delivery.clone(),
            counters.clone(),
        ));
        Ok(Forwarder {
            name,
            kind: config.kind(),
            filter: config.verdicts().to_vec(),
            tx: Some(tx),
            capacity: delivery.queue_capacity,
            counters,
            task: Some(task),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues a finding without waiting. Returns false when it was filtered out or dropped
    /// because the queue is full (both counted).
    pub fn forward(&self, finding: &Finding) -> bool {
        if !self.filter.is_empty() && !self.filter.contains(&finding.verdict) {
            self.counters.filtered.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.queue(Event::Finding(Box::new(finding.clone())))
    }

    /// Queues a finding or an alert without waiting (the verdict filter applies to both).
    pub fn forward_event(&self, event: Event) -> bool {
        // Notices and audit heads carry no verdict: every forwarder takes them.
        if let Some(v) = event.verdict()
            && !self.filter.is_empty()
            && !self.filter.contains(&v)
        {
            self.counters.filtered.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.queue(event)
    }

    fn queue(&self, event: Event) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(event) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn stats(&self) -> ForwarderStats {
        let c = &self.counters;
        let queued = self
            .tx
            .as_ref()
            .map(|tx| (self.capacity - tx.capacity()) as u64)
            .unwrap_or(0);
        ForwarderStats {
            name: self.name.clone(),
            kind: self.kind,
            queued,
            events_accepted: c.accepted.load(Ordering::Relaxed),
            events_filtered: c.filtered.load(Ordering::Relaxed),
            events_dropped_queue_full: c.dropped_full.load(Ordering::Relaxed),
            events_sent: c.sent.load(Ordering::Relaxed),
            batches_sent: c.batches_sent.load(Ordering::Relaxed),
            send_failures: c.send_failures.load(Ordering::Relaxed),
            batches_failed: c.batches_failed.load(Ordering::Relaxed),
            events_failed: c.events_failed.load(Ordering::Relaxed),
            last_error: c.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Stops intake and waits up to `grace` for queued findings to be delivered; whatever is
    /// still pending then is abandoned (and not counted as sent).
    pub async fn shutdown(mut self, grace: Duration) -> ForwarderStats {
        self.tx = None;
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            task.abort();
        }
        self.stats()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    name: String,
    mut rx: mpsc::Receiver<Event>,
    mut sink: Sink,
    delivery: DeliveryConfig,
    counters: Arc<Counters>,
) {
    let max_wait = Duration::from_millis(delivery.batch_max_wait_ms);
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        let deadline = Instant::now() + max_wait;
        let mut closed = false;
        while batch.len() < delivery.batch_max_events {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => batch.push(f),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        deliver(&name, &mut sink, &batch, &delivery, &counters).await;
        if closed {
            break;
        }
    }
}

async fn deliver(
    name: &str,
    sink: &mut Sink,
    batch: &[Event],
    delivery: &DeliveryConfig,
    counters: &Counters,
) {
    let mut backoff = Duration::from_millis(delivery.initial_backoff_ms);
    let max_backoff = Duration::from_millis(delivery.max_backoff_ms);
    for attempt in 1..=delivery.max_attempts {
        match sink.send(batch).await {
            Ok(()) => {
                counters
                    .sent
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                counters.batches_sent.fetch_add(1, Ordering::Relaxed);
                if attempt > 1 {
                    tracing::info!(
                        forwarder = name,
                        attempt,
                        events = batch.len(),
                        "SIEM batch delivered after retry"
                    );
                }
                return;
            }
            Err(e) => {
                counters.send_failures.fetch_add(1, Ordering::Relaxed);
                counters.set_last_error(&e.message);
                let last = attempt == delivery.max_attempts || !e.retryable;
                if last {
                    tracing::warn!(forwarder = name, attempt, events = batch.len(), error = %e.message, retryable = e.retryable, "SIEM batch given up");
                    counters.batches_failed.fetch_add(1, Ordering::Relaxed);
                    counters
                        .events_failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                let wait = e
                    .retry_after
                    .map_or(backoff, |r| r.max(backoff))
                    .min(max_backoff);
                tracing::debug!(forwarder = name, attempt, error = %e.message, wait_ms = wait.as_millis() as u64, "SIEM send failed; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}
