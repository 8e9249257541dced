//! Where the fleet's live phase spends its time: CPU seconds by process (PostgreSQL's
//! processes, each collector replica, the bench's own simulated agents, the rest of the
//! machine) from `/proc`, and what PostgreSQL's client backends are doing, sampled every
//! 20 ms from `pg_stat_activity` (on CPU, waiting on a lock, on the WAL's fsync, or idle in a
//! transaction waiting for the collector's next statement).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// utime + stime (+ the reaped children's with `children`) of `pid`, in clock ticks.
fn ticks(pid: u32, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // After the comm: state(0) … utime(11) stime(12) cutime(13) cstime(14).
    let own = f.get(11)? + f.get(12)?;
    Some(if children {
        own + f.get(13)? + f.get(14)?
    } else {
        own
    })
}

/// CPU ticks of every process named `postgres` plus what the postmaster reaped.
fn postgres_ticks(postmaster: u32) -> u64 {
    let mut sum = ticks(postmaster, true).unwrap_or(0);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return sum;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == postmaster {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            sum += ticks(pid, false).unwrap_or(0);
        }
    }
    sum
}

/// Busy ticks of the whole machine (all CPUs) from `/proc/stat`.
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0;
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    f.iter().take(8).sum::<u64>() - f.get(3).unwrap_or(&0) - f.get(4).unwrap_or(&0)
}

struct Ticks {
    postgres: u64,
    a: u64,
    b: u64,
    bench: u64,
    machine: u64,
}

pub struct LiveProfile {
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<(BTreeMap<String, u64>, u64, u64)>,
    start: Ticks,
    started: Instant,
    postmaster: u32,
    b: u32,
}

impl LiveProfile {
    /// Starts sampling; `a` is the replica that will be killed (its CPU is sampled until it
    /// dies).
    pub fn start(pg_url: &str, postmaster: u32, a: u32, b: u32) -> LiveProfile {
        let start = Ticks {
            postgres: postgres_ticks(postmaster),
            a: ticks(a, false).unwrap_or(0),
            b: ticks(b, false).unwrap_or(0),
            bench: ticks(std::process::id(), false).unwrap_or(0),
            machine: machine_ticks(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let url = pg_url.to_owned();
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut states: BTreeMap<String, u64> = BTreeMap::new();
            let (mut samples, mut a_last) = (0u64, 0u64);
            while !flag.load(Ordering::Relaxed) {
                if let Some(t) = ticks(a, false) {
                    a_last = t;
                }
                if let Ok(rows) = c.query(
                    "SELECT CASE WHEN state = 'idle in transaction' THEN 'idle in transaction' \
                     ELSE COALESCE(wait_event_type || ':' || wait_event, 'on CPU') END \
                     FROM pg_stat_activity WHERE backend_type = 'client backend' \
                     AND state <> 'idle' AND pid <> pg_backend_pid()",
                    &[],
                ) {
                    samples += 1;
                    for r in rows {
                        *states.entry(r.get::<_, String>(0)).or_insert(0) += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (states, samples, a_last)
        });
        LiveProfile {
            stop,
            sampler,
            start,
            started: Instant::now(),
            postmaster,
            b,
        }
    }

    /// Stops sampling; the profile as JSON.
    pub fn finish(self) -> serde_json::Value {
        let wall = self.started.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Relaxed);
        let (states, samples, a_last) = self.sampler.join().unwrap();
        let hz = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(100.0);
        let secs = |now: u64, then: u64| now.saturating_sub(then) as f64 / hz;
        let postgres = secs(postgres_ticks(self.postmaster), self.start.postgres);
        let a = secs(a_last, self.start.a);
        let b = secs(ticks(self.b, false).unwrap_or(0), self.start.b);
        let bench = secs(
            ticks(std::process::id(), false).unwrap_or(0),
            self.start.bench,
        );
        let machine = secs(machine_ticks(), self.start.machine);
        let mut waits: Vec<(String, f64)> = states
            .into_iter()
            .map(|(k, n)| (k, n as f64 / samples.max(1) as f64))
            .collect();
        waits.sort_by(|x, y| y.1.total_cmp(&x.1));
        serde_json::json!({
            "wall_secs": wall,
            "cpu_secs": {
                "postgres": postgres, "collector_a": a, "collector_b": b, "bench": bench,
                "machine": machine, "others": (machine - postgres - a - b - bench).max(0.0),
            },
            "samples": samples,
            "backends": waits.iter().take(10).map(|(k, v)| serde_json::json!({"state": k, "avg": v})).collect::<Vec<_>>(),
        })
    }
}
