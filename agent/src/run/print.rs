//! `run --print`: one line per classified use on stdout, written by a thread of its own.
//! The classify stage only formats the line and hands it over without waiting: a slow or
//! stalled terminal (a paused pager, a full pipe) costs printed lines, counted in
//! `shadowai_pipeline_dropped_total{stage="print",unit="lines"}`, never classification.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use super::health::Health;

/// Lines waiting for stdout at most.
pub const QUEUE: usize = 4096;

/// The classify stage's end of the printer.
pub struct PrintSender {
    tx: SyncSender<String>,
    health: Health,
    /// The printer has stopped (stdout closed): nothing more is formatted.
    closed: bool,
}

impl PrintSender {
    /// Starts the printer thread; it ends when the sender is dropped.
    pub fn spawn(health: Health) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let h = std::thread::Builder::new()
            .name("shadowai-print".into())
            .spawn(move || print_lines(rx, std::io::stdout()))?;
        Ok((
            Self {
                tx,
                health,
                closed: false,
            },
            h,
        ))
    }

    /// Whether a line would still be printed (callers skip formatting otherwise).
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    /// Hands a line over; a full queue drops it (counted).
    pub fn send(&mut self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.health.drop_at("print", "lines", 1),
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

/// Writes each line; returns once the sender is gone or `out` refuses a write (a closed
/// stdout, logged once).
fn print_lines(rx: Receiver<String>, mut out: impl Write) {
    for line in rx {
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            tracing::warn!("stdout is closed: uses are no longer printed");
            return;
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

    /// A terminal that never takes anything (a stalled pipe).
    struct Stalled(std::sync::mpsc::Receiver<()>);
    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stdout_costs_counted_lines_never_a_wait() {
        let health = Health::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let (unblock, stalled) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || print_lines(rx, Stalled(stalled)));
        let mut p = PrintSender {
            tx,
            health: health.clone(),
            closed: false,
        };
        // The printer takes one line and blocks on it; the queue fills; the rest is dropped.
        for i in 0..(QUEUE + 100) {
            p.send(format!("line {i}"));
        }
        let dropped = health
            .dropped
            .get_or_create(&vec![("stage", "print"), ("unit", "lines")])
            .get();
        assert!((99..=100).contains(&dropped), "{dropped}");
        // stdout closes: the printer stops, the sender notices and stops formatting.
        unblock.send(()).unwrap();
        t.join().unwrap();
        p.send("after".into());
        assert!(!p.is_open());
    }
}
