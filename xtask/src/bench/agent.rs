//! The agent as the benchmarks run it: `shadowai-agent run` on the shipped catalogue, no
//! collector, metrics on loopback; its CPU time, memory and counters read from outside.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `shadowai-agent run`, stopped (SIGTERM) when dropped.
pub struct Agent {
    child: Child,
    pub metrics: String,
    /// Spawn to "agent running" (programs loaded and attached).
    pub attach: Duration,
}

impl Agent {
    pub fn start(bin: &Path, root: &Path, work: &Path, metrics_port: u16) -> Result<Self> {
        let state = work.join("agent-state");
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state)?;
        let metrics = format!("127.0.0.1:{metrics_port}");
        let config = work.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = \"{}\"\nhostname = \"bench-host\"\nhost_id = \"bench-host\"\n\n\
                 [rules]\ncatalogue = \"{}\"\n\n[output]\nmetrics = \"{metrics}\"\n",
                state.display(),
                root.join("rules/catalogue").display()
            ),
        )?;
        let started = Instant::now();
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("SHADOWAI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("agent has no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("agent running") {
                    let _ = tx.send(());
                    sent = true;
                }
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("[agent] {line}");
                }
            }
        });
        let mut agent = Self {
            child,
            metrics,
            attach: Duration::ZERO,
        };
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            bail!("shadowai-agent run did not say \"agent running\" within 120 s");
        }
        agent.attach = started.elapsed();
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of the samples of one metric family whose labels contain every `filter` pair.
    pub fn counter(&self, name: &str, filter: &[(&str, &str)]) -> Result<f64> {
        let text = scrape(&self.metrics)?;
        Ok(sum_metric(&text, name, filter))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` over plain HTTP/1.0.
pub fn scrape(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Sums `name` and `name_total` samples whose label set contains every `filter` pair.
pub fn sum_metric(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric != name && metric.strip_suffix("_total") != Some(name) {
            continue;
        }
        if filter
            .iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
        {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

/// CPU time (user + system) of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (field(11) + field(12)) as f64 / hz
}

/// (VmRSS, VmHWM) of a process in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// Resident memory of a process by what it is (MiB): BPF maps mapped into it (the ring
/// buffer: kernel memory, counted in RSS because it is mmapped), the heap and other anonymous
/// memory, and the pages of its binary and libraries.
pub fn rss_by_kind(pid: u32) -> (f64, f64, f64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut bpf, mut anon, mut file) = (0.0, 0.0, 0.0);
    let mut kind = 0;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            kind = if path.starts_with("anon_inode:bpf") {
                0
            } else if path.is_empty() || path.starts_with('[') {
                1
            } else {
                2
            };
        } else if first == "Rss:" {
            let kib: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            match kind {
                0 => bpf += kib,
                1 => anon += kib,
                _ => file += kib,
            }
        }
    }
    (bpf / 1024.0, anon / 1024.0, file / 1024.0)
}

/// A free loopback TCP port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The work directory of the run (`target/bench`).
pub fn work_dir(target: &Path) -> PathBuf {
    target.join("bench")
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    #[test]
    fn sums_matching_series() {
        let t = "# HELP x\nshadowai_events_total{kind=\"dns_query\"} 3\n\
                 shadowai_events_total{kind=\"connect\"} 4\n\
                 shadowai_kernel_drops_total{program=\"a\",reason=\"ringbuf_full\"} 2\n";
        assert_eq!(sum_metric(t, "shadowai_events", &[]), 7.0);
        assert_eq!(
            sum_metric(t, "shadowai_events", &[("kind", "dns_query")]),
            3.0
        );
        assert_eq!(sum_metric(t, "shadowai_kernel_drops", &[]), 2.0);
    }
}
