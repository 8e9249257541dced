//! The output stage: closed windows in, batches for the spool and local copies out. It
//! runs on a thread of its own because what it does blocks — hashing executables,
//! appending to the JSONL file — and none of that may delay the task that drains the ring
//! buffer.
//!
//! For each window: exe hashes are filled in (per-inode cache, byte budget), values are
//! made to fit the collector ([`super::fit`]), the window is split into batches that fit,
//! and each batch is handed, under a fresh random id, to the spool's own thread
//! ([`super::spool_worker`]) without waiting: a disk that stops answering stalls that
//! thread, never this stage. A failed write (full disk, a bad JSONL path) is counted and
//! logged when it starts and ends; the stage goes on.

use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use shadowai_api::Finding;

use super::fit;
use super::health::{Health, Trouble};
use super::spool::Batch;
use super::spool_worker::SpoolWorker;
use crate::enrich::exe_hash::{ExeHashes, Executed};

/// Windows waiting for the output stage at most (a window closes every `window_secs`).
pub const QUEUE: usize = 16;
/// Bytes of executables hashed per window at most.
pub const HASH_BUDGET: u64 = 256 * 1024 * 1024;

/// The findings of one closed window, with what their processes executed (per exe path).
#[derive(Debug)]
pub struct Window(pub Vec<Finding>, pub HashMap<String, Executed>);

/// The classify stage's end of the queue into the output stage.
#[derive(Clone)]
pub struct WindowSender {
    tx: SyncSender<Window>,
    health: Health,
}

impl WindowSender {
    /// Hands a window over without waiting; a full queue drops it (counted, logged).
    pub fn send(&self, w: Window) {
        let n = w.0.len() as u64;
        match self.tx.try_send(w) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.health.drop_at("output", "findings", n);
                self.health.spool_lost_findings.inc_by(n);
                tracing::error!(
                    findings = n,
                    "output stage is behind (queue full): window dropped"
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                self.health.drop_at("output", "findings", n);
                tracing::error!(findings = n, "output stage has stopped: window dropped");
            }
        }
    }
}

/// Where findings go besides the spool.
pub struct Outputs {
    pub jsonl: Option<std::fs::File>,
    /// Print each finding on stdout.
    pub print: bool,
}

pub struct Sink {
    spool: SpoolWorker,
    hashes: ExeHashes,
    outputs: Outputs,
    health: Health,
    id_trouble: Trouble,
    jsonl_trouble: Trouble,
    stdout_closed: bool,
}

impl Sink {
    pub fn new(spool: SpoolWorker, outputs: Outputs, health: Health) -> Self {
        Self {
            spool,
            hashes: ExeHashes::default(),
            outputs,
            health,
            id_trouble: Trouble::default(),
            jsonl_trouble: Trouble::default(),
            stdout_closed: false,
        }
    }

    /// Starts the stage on its own thread; it ends when every sender is dropped.
    pub fn spawn(self) -> std::io::Result<(WindowSender, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let health = self.health.clone();
        let h = std::thread::Builder::new()
            .name("shadowai-output".into())
            .spawn(move || self.run(rx))?;
        Ok((WindowSender { tx, health }, h))
    }

    fn run(mut self, rx: Receiver<Window>) {
        for w in rx {
            self.handle(w.0, &w.1);
            // A window's findings, JSON and hashing buffers are freed now.
            crate::memory::release_free_heap();
        }
    }

    /// One window through hashing, fitting, spooling and the local outputs.
    pub fn handle(&mut self, mut findings: Vec<Finding>, exes: &HashMap<String, Executed>) {
        let mut budget = HASH_BUDGET;
        for f in &mut findings {
            if f.process.exe.is_empty() {
                continue;
            }
            match self
                .hashes
                .get(&f.process.exe, exes.get(&f.process.exe), &mut budget)
            {
                Ok(h) => f.process.exe_sha256 = Some(h),
                Err(skip) => {
                    self.health
                        .exe_hash_skipped
                        .get_or_create(&vec![("reason", skip.as_str())])
                        .inc();
                }
            }
            if fit::sanitize(f) {
                self.health.findings_truncated.inc();
            }
        }
        self.write_local(&findings);
        for part in fit::split(findings) {
            self.spool_batch(part);
        }
    }

    fn spool_batch(&mut self, findings: Vec<Finding>) {
        let n = findings.len() as u64;
        let batch_id = match new_batch_id() {
            Ok(id) => id,
            Err(e) => {
                self.health.spool_write_failures.inc();
                self.health.spool_lost_findings.inc_by(n);
                if self.id_trouble.fail() {
                    tracing::error!(error = %e, findings = n, "the OS refused randomness for a batch id: batch not spooled (counted as lost)");
                }
                return;
            }
        };
        self.spool.append(Batch { batch_id, findings });
    }

    fn write_local(&mut self, findings: &[Finding]) {
        if let Some(w) = &mut self.outputs.jsonl {
            let mut lines = String::new();
            for f in findings {
                lines.push_str(&shadowai_api::ocsf::finding_to_ocsf(f).to_string());
                lines.push('\n');
            }
            match w.write_all(lines.as_bytes()) {
                Ok(()) => {
                    if self.jsonl_trouble.ok() {
                        tracing::info!("findings JSONL writes work again");
                    }
                }
                Err(e) => {
                    self.health
                        .output_failures
                        .get_or_create(&vec![("output", "jsonl")])
                        .inc();
                    if self.jsonl_trouble.fail() {
                        tracing::error!(error = %e, "writing findings JSONL failed (counted); the spool still has them");
                    }
                }
            }
        }
        if self.outputs.print && !self.stdout_closed {
            let mut out = std::io::stdout().lock();
            for f in findings {
                let r = writeln!(
                    out,
                    "FINDING {} by {} user={} host={} count={} verdict={:?} rule={}",
                    f.service_name, f.process.exe, f.user, f.hostname, f.count, f.verdict, f.rule
                );
                if r.is_err() {
                    self.stdout_closed = true;
                    tracing::warn!("stdout is closed: findings are no longer printed");
                    break;
                }
            }
        }
    }
}

/// 128 random bits as hex; an error when the OS refuses randomness (never a made-up id: a
/// repeated id would be acknowledged as a replay and its findings lost).
pub fn new_batch_id() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::run::findings::tests::finding;

    #[test]
    fn a_full_output_queue_drops_windows_and_counts_them() {
        let health = Health::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let s = WindowSender {
            tx,
            health: health.clone(),
        };
        for i in 0..5 {
            s.send(Window(
                vec![finding(&format!("a{i}")), finding(&format!("b{i}"))],
                HashMap::new(),
            ));
        }
        let dropped = health
            .dropped
            .get_or_create(&vec![("stage", "output"), ("unit", "findings")])
            .get();
        assert_eq!(dropped, 6, "3 windows of 2 findings did not fit");
        assert_eq!(rx.try_iter().count(), 2);
        drop(rx);
        s.send(Window(vec![finding("late")], HashMap::new()));
        assert_eq!(
            health
                .dropped
                .get_or_create(&vec![("stage", "output"), ("unit", "findings")])
                .get(),
            7,
            "a stopped stage counts too"
        );
    }

    #[test]
    fn the_output_stage_spools_fitted_batches_with_fresh_ids() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::default();
        let (spool, thread) = SpoolWorker::spawn(
            crate::run::spool::Spool::open(dir.path(), 1 << 30).unwrap(),
            health.clone(),
        )
        .unwrap();
        let mut sink = Sink::new(
            spool.clone(),
            Outputs {
                jsonl: None,
                print: false,
            },
            health.clone(),
        );
        let mut fs: Vec<Finding> = (0..1200).map(|i| finding(&format!("f{i}"))).collect();
        fs[7].process.exe = "/tmp/\u{1b}[2Jx".into();
        sink.handle(fs, &HashMap::new());
        let pending = spool
            .call_blocking("pending", std::time::Duration::from_secs(30), |s| {
                s.pending(100)
            })
            .unwrap();
        assert_eq!(pending.len(), 3, "1200 findings in batches of at most 500");
        let truncated: Vec<&Finding> = pending
            .iter()
            .flat_map(|(_, b)| &b.findings)
            .filter(|f| f.truncated)
            .collect();
        assert_eq!(truncated.len(), 1, "only the cleaned finding is marked");
        assert_eq!(truncated[0].process.exe, "/tmp/\\x1b[2Jx");
        let mut ids: Vec<&str> = pending.iter().map(|(_, b)| b.batch_id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| id.len() == 32 && *id != "0".repeat(32)));
        assert_eq!(health.findings_truncated.get(), 1);
        assert_eq!(health.spool_batches.get(), 3);
        drop((sink, spool));
        thread.join().unwrap();
    }

    /// The spooled finding carries the hash of the binary its process ran, though another
    /// binary was renamed over the path before the window closed.
    #[test]
    fn the_output_stage_hashes_the_file_that_ran() {
        use crate::enrich::exe_hash::ExeFile;
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("agent-test-prog");
        std::fs::copy("/bin/sleep", &prog).unwrap();
        let ran = hex::encode(sha2::Sha256::digest(std::fs::read(&prog).unwrap()));
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&prog).unwrap());
        let mut child = std::process::Command::new(&prog).arg("30").spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let file = loop {
            if let Some(f) = ExeFile::of_process(std::path::Path::new("/proc"), child.id())
                && f.ino == ino
            {
                break f;
            }
            assert!(std::time::Instant::now() < deadline, "the child never ran");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let other = dir.path().join("other");
        std::fs::copy("/bin/true", &other).unwrap();
        std::fs::rename(&other, &prog).unwrap();

        let health = Health::default();
        let (spool, thread) = SpoolWorker::spawn(
            crate::run::spool::Spool::open(&dir.path().join("spool"), 1 << 30).unwrap(),
            health.clone(),
        )
        .unwrap();
        let mut sink = Sink::new(
            spool.clone(),
            Outputs {
                jsonl: None,
                print: false,
            },
            health.clone(),
        );
        let path = prog.to_str().unwrap().to_string();
        let mut f = finding("x");
        f.process.exe = path.clone();
        let exes = HashMap::from([(
            path,
            Executed {
                pid: child.id(),
                file: Some(file),
                started_ms: None,
            },
        )]);
        sink.handle(vec![f], &exes);
        child.kill().unwrap();
        child.wait().unwrap();
        let pending = spool
            .call_blocking("pending", std::time::Duration::from_secs(30), |s| {
                s.pending(10)
            })
            .unwrap();
        assert_eq!(
            pending[0].1.findings[0].process.exe_sha256.as_deref(),
            Some(ran.as_str())
        );
        drop((sink, spool));
        thread.join().unwrap();
    }
}
