//! The spool's own thread. It alone touches the store; the output stage hands it batches
//! through a bounded queue without waiting, and the uplink asks it for reads, acks and
//! quarantines with a deadline. So a disk that stops answering (a full disk, a dying
//! device, a store that hangs) can stall this one thread, but never the output stage, the
//! uplink's heartbeats or the agent's shutdown: batches that find the queue full are
//! dropped and counted (`shadowai_pipeline_dropped_total{stage="spool"}`,
//! `shadowai_spool_lost_findings_total`), and a call that misses its deadline is counted
//! (`shadowai_spool_stalls_total`) and logged once with the operation that holds the thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::health::{Health, Trouble};
use super::spool::{Batch, Spool, SpoolError};

/// Batches waiting for the spool thread at most (a window gives one batch per 500
/// findings).
pub const QUEUE: usize = 32;
/// Longest a caller waits for a spool call before it counts a stall and moves on.
pub const DEADLINE: Duration = Duration::from_secs(20);

type Call = Box<dyn FnOnce(&mut Spool) + Send>;

enum Job {
    Append(Batch),
    Call(&'static str, Call),
}

/// Why a spool call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the spool thread is busy (its queue is full)")]
    Busy,
    #[error("the spool thread gave no answer in time (busy with `{op}` for {busy_secs}s)")]
    Stalled { op: &'static str, busy_secs: u64 },
    #[error("the spool thread has stopped")]
    Stopped,
    #[error("spool {op}")]
    Spool {
        op: &'static str,
        #[source]
        source: SpoolError,
    },
}

/// What the thread is doing, readable by callers that time out.
#[derive(Default)]
struct Busy {
    /// Milliseconds since `epoch` at which the current job started, plus one (0: idle).
    since: AtomicU64,
    /// Index into [`OPS`] of the current job.
    op: AtomicU64,
}

const OPS: [&str; 6] = ["append", "pending", "ack", "quarantine", "len", "other"];

fn op_index(op: &str) -> u64 {
    OPS.iter().position(|o| *o == op).unwrap_or(OPS.len() - 1) as u64
}

/// The handle to the spool thread; cheap to clone.
#[derive(Clone)]
pub struct SpoolWorker {
    tx: SyncSender<Job>,
    busy: Arc<Busy>,
    epoch: Instant,
    deadline: Duration,
    health: Health,
    stall_trouble: Arc<Trouble>,
}

impl SpoolWorker {
    /// Starts the thread that owns `spool`; it ends once every handle is dropped and its
    /// queue is drained.
    pub fn spawn(
        spool: Spool,
        health: Health,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let w = Self {
            tx,
            busy: Arc::default(),
            epoch: Instant::now(),
            deadline: DEADLINE,
            health,
            stall_trouble: Arc::default(),
        };
        let thread = Thread {
            spool,
            busy: w.busy.clone(),
            epoch: w.epoch,
            health: w.health.clone(),
            append_trouble: Trouble::default(),
        };
        let h = std::thread::Builder::new()
            .name("shadowai-spool".into())
            .spawn(move || thread.run(rx))?;
        Ok((w, h))
    }

    /// Hands a batch to the spool thread without waiting. A full queue (the thread is
    /// behind or stalled) drops it, counted and logged once per run of drops.
    pub fn append(&self, batch: Batch) {
        let n = batch.findings.len() as u64;
        match self.tx.try_send(Job::Append(batch)) {
            Ok(()) => {
                if self.stall_trouble.ok() {
                    tracing::info!("the spool thread takes batches again");
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.health.drop_at("spool", "findings", n);
                self.health.spool_lost_batches.inc();
                self.health.spool_lost_findings.inc_by(n);
                if self.stall_trouble.fail() {
                    let (op, busy_secs) = self.busy_with();
                    tracing::error!(
                        findings = n,
                        op,
                        busy_secs,
                        "the spool thread is behind (queue full): batch dropped (counted); the agent keeps running"
                    );
                }
            }
        }
    }

    /// A shorter deadline for [`SpoolWorker::call`] (tests).
    #[cfg(test)]
    fn with_deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// Runs `f` on the spool thread and waits for its answer at most [`DEADLINE`].
    pub async fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit(op, f, move |r| {
            let _ = reply.send(r);
        })?;
        match tokio::time::timeout(self.deadline, rx).await {
            Ok(Ok(r)) => r.map_err(|source| CallError::Spool { op, source }),
            Ok(Err(_)) => Err(CallError::Stopped),
            Err(_) => Err(self.stalled()),
        }
    }

    /// The same, from a thread that may block (waits at most `deadline`).
    pub fn call_blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        deadline: Duration,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, CallError> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(op, f, move |r| {
            let _ = reply.try_send(r);
        })?;
        match rx.recv_timeout(deadline) {
            Ok(r) => r.map_err(|source| CallError::Spool { op, source }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Stopped),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(self.stalled()),
        }
    }

    fn submit<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
        reply: impl FnOnce(Result<T, SpoolError>) + Send + 'static,
    ) -> Result<(), CallError> {
        let call: Call = Box::new(move |s| reply(f(s)));
        match self.tx.try_send(Job::Call(op, call)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(CallError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(CallError::Stopped),
        }
    }

    /// Counts a missed deadline; logs the first of a run.
    fn stalled(&self) -> CallError {
        self.health.spool_stalls.inc();
        let (op, busy_secs) = self.busy_with();
        if self.stall_trouble.fail() {
            tracing::error!(
                op,
                busy_secs,
                "the spool thread missed its deadline (disk not answering?): uploads wait, new batches are dropped and counted once its queue is full"
            );
        }
        CallError::Stalled { op, busy_secs }
    }

    /// The job the thread is on and for how long (seconds).
    fn busy_with(&self) -> (&'static str, u64) {
        let since = self.busy.since.load(Ordering::Acquire);
        if since == 0 {
            return ("none", 0);
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let op = OPS
            .get(self.busy.op.load(Ordering::Relaxed) as usize)
            .copied()
            .unwrap_or("other");
        (op, now.saturating_sub(since) / 1000)
    }
}

/// The spool thread's state.
struct Thread {
    spool: Spool,
    busy: Arc<Busy>,
    epoch: Instant,
    health: Health,
    append_trouble: Trouble,
}

impl Thread {
    fn run(mut self, rx: Receiver<Job>) {
        for job in rx {
            let op = match &job {
                Job::Append(_) => "append",
                Job::Call(op, _) => op,
            };
            self.busy.op.store(op_index(op), Ordering::Relaxed);
            self.busy.since.store(
                self.epoch.elapsed().as_millis() as u64 + 1,
                Ordering::Release,
            );
            match job {
                Job::Append(b) => self.append(&b),
                Job::Call(_, f) => f(&mut self.spool),
            }
            self.busy.since.store(0, Ordering::Release);
        }
    }

    /// Stores one batch; every loss is counted (dropped to make room, or refused).
    fn append(&mut self, batch: &Batch) {
        let n = batch.findings.len() as u64;
        let before = self.spool.dropped;
        let r = self.spool.append(batch);
        let after = self.spool.dropped;
        self.health.spool_batches.set(self.spool.len() as i64);
        self.health
            .spool_bytes
            .set(i64::try_from(self.spool.size_on_disk()).unwrap_or(i64::MAX));
        self.health
            .spool_lost_batches
            .inc_by(after.batches - before.batches);
        self.health
            .spool_lost_bytes
            .inc_by(after.bytes - before.bytes);
        self.health
            .spool_lost_findings
            .inc_by(after.findings - before.findings);
        match r {
            Ok(()) => {
                if self.append_trouble.ok() {
                    tracing::info!("spool writes work again");
                }
            }
            Err(e) => {
                self.health.spool_write_failures.inc();
                self.health.spool_lost_batches.inc();
                self.health.spool_lost_findings.inc_by(n);
                if self.append_trouble.fail() {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), disk_full = e.is_disk_full(), findings = n, "spooling a batch failed: its findings are lost (counted); the agent keeps running");
                }
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
    use crate::run::findings::tests::finding;

    fn batch(id: &str, n: usize) -> Batch {
        Batch {
            batch_id: id.into(),
            findings: (0..n).map(|i| finding(&format!("{id}-{i}"))).collect(),
        }
    }

    fn dropped(h: &Health) -> u64 {
        h.dropped
            .get_or_create(&vec![("stage", "spool"), ("unit", "findings")])
            .get()
    }

    /// A store that stops answering (the thread is held inside a spool call) costs
    /// counted batches and missed deadlines, never a caller that waits: appends return at
    /// once, calls return at their deadline, and everything resumes once it answers.
    #[test]
    fn a_spool_thread_that_stops_answering_holds_up_no_caller() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::default();
        let (w, thread) =
            SpoolWorker::spawn(Spool::open(dir.path(), 1 << 30).unwrap(), health.clone()).unwrap();
        let w = w.with_deadline(Duration::from_millis(300));
        // Hold the thread inside a call, as a disk that does not answer would.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        w.submit(
            "append",
            move |_s| {
                entered_tx.send(()).unwrap();
                let _ = held.recv();
                Ok(())
            },
            |_: Result<(), SpoolError>| {},
        )
        .unwrap();
        entered.recv_timeout(Duration::from_secs(10)).unwrap();

        let t0 = Instant::now();
        for i in 0..(QUEUE + 10) {
            w.append(batch(&format!("b{i}"), 3));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "appends never wait on the spool thread"
        );
        assert_eq!(dropped(&health), 10 * 3, "the batches past the queue");
        assert_eq!(health.spool_lost_findings.get(), 10 * 3);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let t0 = Instant::now();
        let r = rt.block_on(w.call("len", |s| Ok(s.len())));
        assert!(
            matches!(r, Err(CallError::Busy) | Err(CallError::Stalled { .. })),
            "{r:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a call has a deadline"
        );
        let r = w.call_blocking("len", Duration::from_millis(200), |s| Ok(s.len()));
        assert!(
            matches!(r, Err(CallError::Busy)),
            "{r:?}: the queue is full"
        );

        // It answers again: the queued batches are written, calls work.
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = loop {
            match w.call_blocking("len", Duration::from_secs(30), |s| Ok(s.len())) {
                Ok(n) => break n,
                Err(CallError::Busy) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the spool thread did not come back: {e}"),
            }
        };
        assert_eq!(n, QUEUE, "every queued batch was written");
        assert_eq!(health.spool_batches.get(), QUEUE as i64);
        drop(w);
        thread.join().unwrap();
    }

    #[test]
    fn a_call_that_misses_its_deadline_is_counted_and_says_what_holds_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::default();
        let (w, thread) =
            SpoolWorker::spawn(Spool::open(dir.path(), 1 << 30).unwrap(), health.clone()).unwrap();
        let w = w.with_deadline(Duration::from_millis(200));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let r = rt.block_on(w.call("pending", move |s| {
            let _ = held.recv();
            s.pending(1)
        }));
        match r {
            Err(CallError::Stalled { op, .. }) => assert_eq!(op, "pending"),
            other => panic!("{other:?}"),
        }
        assert_eq!(health.spool_stalls.get(), 1);
        release.send(()).unwrap();
        let n = rt
            .block_on(
                w.with_deadline(Duration::from_secs(30))
                    .call("len", |s| Ok(s.len())),
            )
            .unwrap();
        assert_eq!(n, 0);
        thread.join().unwrap();
    }
}
