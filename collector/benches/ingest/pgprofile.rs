//! Where a PostgreSQL ingest's time goes (`ingest --backend postgres --pg-profile yes`):
//! `pg_stat_statements` (every statement the collector ran, by total execution time) and
//! `pg_stat_activity` sampled every 10 ms during the uploads (what each of the collector's
//! sessions was doing: running, waiting on a lock, on the WAL flush, or idle in the
//! transaction while the collector worked between statements).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Pg;

/// Server options that load the statement statistics.
pub const SERVER_OPTIONS: &str = "-c shared_preload_libraries=pg_stat_statements \
     -c pg_stat_statements.track=all -c pg_stat_statements.max=1000 -c track_io_timing=on";

/// Creates the extension in the bench database (before the collector migrates).
pub fn prepare(pg: &Pg) {
    pg.client("bench")
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
}

/// Samples the collector's sessions until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<BTreeMap<String, u64>>,
}

impl Sampler {
    /// Resets the statement statistics and starts sampling; returns once both are done.
    /// (Callable from async code: the synchronous client lives on the sampler's own thread.)
    pub fn start(pg: &Pg) -> Sampler {
        let url = pg.url();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready, started) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .batch_execute("SELECT pg_stat_statements_reset()")
                .unwrap();
            ready.send(()).unwrap();
            let mut seen: BTreeMap<String, u64> = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                let rows = client
                    .query(
                        "SELECT state, COALESCE(wait_event_type || ':' || wait_event, 'cpu') \
                         FROM pg_stat_activity WHERE datname = 'bench' \
                         AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                        &[],
                    )
                    .unwrap();
                for r in rows {
                    let state: Option<String> = r.get(0);
                    let wait: String = r.get(1);
                    let key = match state.as_deref() {
                        Some("active") => format!("active {wait}"),
                        Some(s) => s.to_owned(),
                        None => "unknown".to_owned(),
                    };
                    *seen.entry(key).or_default() += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        });
        started.recv().unwrap();
        Sampler { stop, handle }
    }

    /// Stops sampling; returns the profile as JSON: session states with their share of the
    /// samples, and the statements that took the most time.
    pub fn finish(self, pg: &Pg) -> serde_json::Value {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.handle.join().unwrap();
        let total: u64 = seen.values().sum::<u64>().max(1);
        let mut states: Vec<(String, u64)> = seen.into_iter().collect();
        states.sort_by_key(|s| std::cmp::Reverse(s.1));
        let states: Vec<serde_json::Value> = states
            .into_iter()
            .map(|(k, n)| serde_json::json!({"state": k, "share": n as f64 / total as f64}))
            .collect();
        let rows = pg
            .client("bench")
            .query(
                "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 140) \
                 FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' \
                 ORDER BY total_exec_time DESC LIMIT 12",
                &[],
            )
            .unwrap();
        let statements: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let calls: i64 = r.get(0);
                let ms: f64 = r.get(1);
                let n: i64 = r.get(2);
                let q: String = r.get(3);
                serde_json::json!({"calls": calls, "total_ms": ms, "rows": n, "query": q})
            })
            .collect();
        serde_json::json!({"states": states, "statements": statements})
    }
}
