//! Helpers for the byte-accounting and pipeline tests (branch `usage`): a packet capture
//! in a test's namespace and what tcpdump counts in it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Topology, sh};

/// `tcpdump` writing headers of the TCP traffic on port `port` in namespace `ns` to a file;
/// stopped (and flushed) by [`Capture::finish`] or on drop.
pub struct Capture {
    child: Option<Child>,
    pub file: PathBuf,
    /// tcpdump's stderr lines after "listening on" (its closing statistics).
    lines: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Starts capturing and waits until tcpdump says it is listening.
    pub fn start(t: &Topology, ns: &str, port: u16, file: &Path) -> Result<Self> {
        let mut child = t
            .cmd(ns, "tcpdump")
            .args(["-i", "any", "-nn", "-U", "-s", "128", "-B", "32768", "-w"])
            .arg(file)
            .args(["tcp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (install: .ci/deps/usage.sh)")?;
        let err = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[tcpdump] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("listening on") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    bail!("tcpdump did not start listening within 20 s");
                }
            }
        }
        Ok(Self {
            child: Some(child),
            file: file.to_path_buf(),
            lines: rx,
        })
    }

    /// Stops the capture once tcpdump has written everything it received (on a busy
    /// machine it lags the traffic: stopping it at once would lose the buffered packets),
    /// and fails if the kernel dropped any (the capture would undercount).
    pub fn finish(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let size = || std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
        let (mut last, mut still) = (size(), 0);
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(500));
            let now = size();
            still = if now == last { still + 1 } else { 0 };
            last = now;
            if still >= 3 {
                break;
            }
        }
        sh(Command::new("kill").args(["-INT", &c.id().to_string()]))?;
        c.wait()?;
        let mut dropped = None;
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
                dropped = n.trim().parse::<u64>().ok();
                break;
            }
        }
        match dropped {
            Some(0) => Ok(()),
            Some(n) => bail!("tcpdump: the kernel dropped {n} packets; the capture undercounts"),
            None => bail!("tcpdump did not report its drop count"),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// TCP payload bytes sent from `src` to `dst` in a capture, as tcpdump counts them
/// (`tcpdump -q` prints each segment's payload length as `tcp N`).
pub fn tcp_payload_bytes(file: &Path, src: &str, dst: &str) -> Result<u64> {
    let out = sh(Command::new("tcpdump")
        .args(["-nn", "-q", "-r"])
        .arg(file)
        .args(["tcp", "and", "src", "host", src, "and", "dst", "host", dst]))?;
    let mut total = 0;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = words.iter().rposition(|w| *w == "tcp") else {
            continue;
        };
        let n: u64 = words
            .get(i + 1)
            .with_context(|| format!("no length in {line:?}"))?
            .parse()
            .with_context(|| format!("length in {line:?}"))?;
        total += n;
    }
    Ok(total)
}
