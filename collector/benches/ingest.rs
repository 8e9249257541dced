//! Durable ingest and the fleet simulation: `cargo bench -p shadowai-collector --bench ingest
//! -- MODE [options]`, run by `cargo xtask bench`, which reads the JSON line each trial prints.
//!
//! - `ingest --backend sqlite|postgres`: the real `shadowai-collector` binary over HTTPS (its
//!   generated certificate), `--agents` simulated agents (each from its own loopback address,
//!   enrolled with its own host key) uploading gzip batches of `--batch` findings back to back
//!   for `--secs`; SQLite with `synchronous=FULL`, PostgreSQL with `fsync=on` and
//!   `synchronous_commit=on` (an ack means the batch is on disk). Prints findings/s acked,
//!   request latency p50/p99, errors, and that the stored count equals the acked count.
//! - `fleet`: two collector replicas on one PostgreSQL database; `--history` rows of 90 days of
//!   findings seeded in bulk (SQL, as a migration would), then `--agents` simulated agents
//!   each uploading one batch, spread over both replicas; one replica is killed (SIGKILL)
//!   halfway and its agents retry on the other. Prints the overview and drill-down query
//!   times (HTTPS, through the API) before and after, and whether every finding is stored
//!   exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a failed unwrap is a failed run"
)]

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shadowai_api::{
    Action, EnrollRequest, EnrollResponse, Evidence, Finding, IngestBatch, ProcessRef, Verdict,
};

const SECRET: &str = "sae_ingest-bench-enrollment-secret";
const DAY_MS: i64 = 86_400_000;
/// Findings/s the pre-made batches can feed (far above the targets).
const CEILING: u64 = 80_000;
const SERVICES: [&str; 12] = [
    "openai-chatgpt",
    "openai-api",
    "anthropic-claude",
    "anthropic-api",
    "google-gemini",
    "mistral",
    "deepseek",
    "perplexity",
    "huggingface",
    "github-copilot",
    "cursor",
    "midjourney",
];

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name, &default.to_string()).parse().unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What the simulated findings' roll-up keys (host, user, program, service, verdict,
/// action, …) look like.
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// A host's day as agents report it: 2 users, 5 AI programs, each program talking to 2
    /// services; a service's verdict is the policy's (one per service) and the action follows
    /// it — 20 roll-up keys per host and day, every finding after the first 20 adds to one.
    Fleet,
    /// Every finding a new roll-up key (997 users, 17 programs, 12 services and 3 verdicts
    /// per host, independent of each other): the roll-up's worst case, where its fold writes
    /// as many rows as the ingest.
    Distinct,
}

impl Mix {
    fn parse(s: &str) -> Mix {
        match s {
            "fleet" => Mix::Fleet,
            "distinct" => Mix::Distinct,
            other => panic!("--mix {other}: expected fleet or distinct"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mix::Fleet => "fleet",
            Mix::Distinct => "distinct",
        }
    }
}

/// The AI programs of a [`Mix::Fleet`] host.
const FLEET_EXES: [&str; 5] = [
    "/usr/bin/node",
    "/usr/bin/python3.11",
    "/usr/bin/curl",
    "/usr/lib/firefox/firefox",
    "/usr/share/code/code",
];

/// Finding `n` of `host`'s upload: its user, program, service and verdict under `mix`.
fn key_of(mix: Mix, host: &str, n: u64) -> (String, String, usize, Verdict) {
    const VERDICTS: [Verdict; 4] = [
        Verdict::Sanctioned,
        Verdict::Tolerated,
        Verdict::Unsanctioned,
        Verdict::Blocked,
    ];
    match mix {
        Mix::Fleet => {
            let exe = n as usize % FLEET_EXES.len();
            let service = (exe * 2 + (n as usize / FLEET_EXES.len()) % 2) % SERVICES.len();
            (
                format!("{host}-user{}", (n / 10) % 2),
                FLEET_EXES[exe].to_owned(),
                service,
                VERDICTS[service % VERDICTS.len()],
            )
        }
        Mix::Distinct => (
            format!("user{}", n % 997),
            format!("/usr/bin/app{}", n % 17),
            n as usize % SERVICES.len(),
            [Verdict::Unsanctioned, Verdict::Sanctioned, Verdict::Blocked][n as usize % 3],
        ),
    }
}

fn finding(mix: Mix, id: String, host: &str, n: u64, window_start_ms: i64) -> Finding {
    let (user, exe, service, verdict) = key_of(mix, host, n);
    Finding {
        layer: None,
        policy_version: None,
        bytes_out: None,
        bytes_in: None,
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id,
        host_id: host.to_owned(),
        hostname: host.to_owned(),
        window_start_ms,
        window_end_ms: window_start_ms + 60_000,
        service_id: SERVICES[service].to_owned(),
        service_name: "Service".to_owned(),
        vendor: "Vendor".to_owned(),
        category: "chat_assistant".to_owned(),
        risk_score: 60,
        verdict,
        action: if verdict == Verdict::Blocked {
            Action::Blocked
        } else {
            Action::Allowed
        },
        rule: "catalogue".to_owned(),
        process: ProcessRef {
            exe,
            name: "app".to_owned(),
            exe_sha256: None,
            container_id: None,
            systemd_unit: None,
        },
        user,
        uid: 1000,
        count: 3,
        first_seen_ms: window_start_ms,
        last_seen_ms: window_start_ms + 500,
        evidence: Evidence {
            dns_names: vec!["api.example.ai".to_owned()],
            sni: vec!["api.example.ai".to_owned()],
            ips: vec!["192.0.2.1".to_owned()],
            ports: vec![443],
            protocols: vec!["tls".to_owned()],
        },
    }
}

// ---- PostgreSQL, durable (fsync on) ----

struct Pg {
    dir: PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_bin(name: &str) -> PathBuf {
    for dir in ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn as_postgres(name: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(pg_bin(name));
    c
}

impl Pg {
    fn start(work: &Path) -> Pg {
        Self::start_with(work, "")
    }

    /// `extra`: more `-c name=value` server options.
    fn start_with(work: &Path, extra: &str) -> Pg {
        let dir = work.join(format!("pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success()
        );
        let data = dir.join("data");
        let out = as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Pg {
            dir,
            port: free_port(),
        };
        pg.pg_ctl_start(extra);
        pg.client("postgres")
            .batch_execute("CREATE DATABASE bench")
            .unwrap();
        pg
    }

    fn pg_ctl_start(&self, extra: &str) {
        // Durable: fsync and synchronous_commit stay on (the defaults); memory sized for a
        // small shared machine.
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=512MB \
             -c max_wal_size=4GB -c checkpoint_timeout=15min -c max_connections=200 \
             -c fsync=on -c synchronous_commit=on {extra}",
            self.port,
            self.dir.display()
        );
        let out = as_postgres("pg_ctl")
            .args(["-w", "-t", "120", "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server cleanly (a checkpoint) and starts it again with other options.
    fn restart_with(&self, extra: &str) {
        let out = as_postgres("pg_ctl")
            .args(["-w", "-t", "300", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.pg_ctl_start(extra);
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=bench",
            self.port
        )
    }

    fn client(&self, db: &str) -> postgres::Client {
        let url = format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        );
        postgres::Client::connect(&url, postgres::NoTls).unwrap()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- the collector binary over HTTPS ----

/// The collector executable: `--collector EXE` (an earlier build, to measure it beside this
/// one in the same run), else the one built with this bench.
fn collector_exe() -> PathBuf {
    PathBuf::from(arg("--collector", env!("CARGO_BIN_EXE_shadowai-collector")))
}

struct Collector {
    child: Child,
    url: String,
    cfg: PathBuf,
    ca: Vec<u8>,
}

impl Collector {
    fn start(work: &Path, name: &str, database: &str) -> Collector {
        let dir = work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let cfg = dir.join("collector.toml");
        let catalogue = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        // Rate limits raised so the bench measures the store, not the per-token bucket.
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nenrollment_secret = \"{SECRET}\"\n\
                 catalogue = \"{}\"\n{database}\n[limits]\nrate_per_sec = 100000.0\nrate_burst = 100000.0\n\
                 ip_rate_per_sec = 100000.0\nip_rate_burst = 100000.0\nenroll_rate_per_sec = 100000.0\n\
                 enroll_rate_burst = 100000.0\n",
                dir.join("data").display(),
                catalogue.display()
            ),
        )
        .unwrap();
        let child = Command::new(collector_exe())
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("SHADOWAI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("collector.log")).unwrap())
            .spawn()
            .unwrap();
        let cert = dir.join("data/tls/cert.pem");
        let t = Instant::now();
        while !cert.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "collector {name} made no certificate"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        let c = Collector {
            child,
            url: format!("https://localhost:{port}"),
            cfg,
            ca: std::fs::read(&cert).unwrap(),
        };
        let http = client(&[&c.ca], None);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for _ in 0..600 {
                if http
                    .get(format!("{}/healthz", c.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("collector {name} did not come up");
        });
        c
    }

    fn token(&self, role: &str) -> String {
        let out = Command::new(collector_exe())
            .args([
                "token",
                "create",
                "--role",
                role,
                "--name",
                &format!("bench-{role}"),
                "--config",
            ])
            .arg(&self.cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client(cas: &[&[u8]], from: Option<IpAddr>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(4);
    for ca in cas {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap());
    }
    if let Some(ip) = from {
        b = b.local_address(ip);
    }
    b.build().unwrap()
}

/// The loopback address of simulated agent `i` (127.2.0.0/16 and up).
fn agent_ip(i: u64) -> IpAddr {
    IpAddr::from([
        127,
        2 + (i >> 16) as u8,
        (i >> 8) as u8,
        (i & 0xff).max(1) as u8,
    ])
}

struct Agent {
    host: String,
    token: String,
    http: reqwest::Client,
}

async fn enroll(url: &str, http: &reqwest::Client, i: u64) -> Result<String, String> {
    let host = format!("host-{i:05}");
    let req = EnrollRequest {
        secret: SECRET.into(),
        host_id: host.clone(),
        hostname: host,
        group: None,
        agent_version: "bench".into(),
        host_key: format!("{:064x}", i + 1),
    };
    let r = http
        .post(format!("{url}/api/v1/enroll"))
        .json(&req)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("enroll: {}", r.status()));
    }
    let e: EnrollResponse = r.json().await.map_err(|e| e.to_string())?;
    Ok(e.token)
}

fn gzip(batch: &IngestBatch) -> Vec<u8> {
    let json = serde_json::to_vec(batch).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&json).unwrap();
    enc.finish().unwrap()
}

async fn upload(url: &str, a: &Agent, body: Vec<u8>) -> Result<(), String> {
    let r = a
        .http
        .post(format!("{url}/api/v1/ingest"))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() == 200 {
        Ok(())
    } else {
        Err(format!("ingest: {}", r.status()))
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

// ---- mode: ingest ----

fn ingest(work: &Path) {
    let backend = arg("--backend", "sqlite");
    let (n_agents, secs, batch) = (num("--agents", 64), num("--secs", 10), num("--batch", 500));
    let mix = Mix::parse(&arg("--mix", "fleet"));
    // `--pg-profile yes`: statement statistics and session states sampled during the uploads.
    let profile = backend == "postgres" && arg("--pg-profile", "") == "yes";
    let pg = (backend == "postgres").then(|| {
        if profile {
            let pg = Pg::start_with(work, pgprofile::SERVER_OPTIONS);
            pgprofile::prepare(&pg);
            pg
        } else {
            Pg::start(work)
        }
    });
    let database = match &pg {
        Some(pg) => format!(
            "[database]\nkind = \"postgres\"\nurl = \"{}\"\npool = 8\n",
            pg.url()
        ),
        None => String::new(),
    };
    let c = Collector::start(work, &format!("ingest-{backend}"), &database);
    // `--no-rollup yes`: nothing recorded for the roll-up's fold and nothing folded
    // (PostgreSQL: the pending table's insert trigger dropped; SQLite: the fold's watermark
    // moved past any finding) — to measure what keeping the roll-up costs an ingest beside
    // it in the same run (the reports are then wrong: a measurement aid only).
    let rollup_off = arg("--no-rollup", "") == "yes";
    if rollup_off {
        match &pg {
            Some(pg) => pg
                .client("bench")
                .batch_execute("DROP TRIGGER finding_rollup_pending_insert ON findings")
                .unwrap(),
            None => {
                let db = work.join("ingest-sqlite/data/collector.db");
                rusqlite::Connection::open(db)
                    .unwrap()
                    .execute_batch(
                        "UPDATE finding_rollup_fold SET folded_seq = 9223372036854775807",
                    )
                    .unwrap();
            }
        }
    }
    // `--drop-index a,b` (SQLite): those indexes on `findings` dropped once the collector
    // made them — to measure what each costs an ingest (searches then scan: a measurement
    // aid only).
    let dropped = arg("--drop-index", "");
    if let (false, None) = (dropped.is_empty(), &pg) {
        let db = work.join("ingest-sqlite/data/collector.db");
        let c = rusqlite::Connection::open(db).unwrap();
        for name in dropped.split(',') {
            c.execute_batch(&format!("DROP INDEX {name}")).unwrap();
        }
    }
    // `--window-index plain`: PostgreSQL's window index as it was before the covering one
    // (`findings_window_cover`), to measure what the included columns cost an ingest.
    let plain_window = arg("--window-index", "cover") == "plain";
    if let (true, Some(pg)) = (plain_window, &pg) {
        pg.client("bench")
            .batch_execute(
                "DROP INDEX findings_window_cover; \
                 CREATE INDEX findings_window ON findings (window_start_ms);",
            )
            .unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (rate, acked, errors, lat, sampler) = rt.block_on(async {
        let mut agents = Vec::new();
        for i in 0..n_agents {
            let http = client(&[&c.ca], Some(agent_ip(i)));
            let token = enroll(&c.url, &http, i).await.unwrap();
            agents.push(Arc::new(Agent {
                host: format!("host-{i:05}"),
                token,
                http,
            }));
        }
        // Batches are made and compressed before the clock starts (enough for `CEILING`
        // findings/s over the run): the bench measures the collector, not its own clients.
        let per_agent = (CEILING * secs).div_ceil(n_agents * batch).max(1);
        let bodies: Vec<Vec<Vec<u8>>> = agents
            .iter()
            .map(|a| {
                (0..per_agent)
                    .map(|n| {
                        gzip(&IngestBatch {
                            batch_id: format!("b{n}"),
                            findings: (0..batch)
                                .map(|k| {
                                    finding(
                                        mix,
                                        format!("{}-{n}-{k}", a.host),
                                        &a.host,
                                        n * batch + k,
                                        now_ms(),
                                    )
                                })
                                .collect(),
                        })
                    })
                    .collect()
            })
            .collect();
        let acked = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(Lat::default());
        let sampler = pg
            .as_ref()
            .filter(|_| profile)
            .map(pgprofile::Sampler::start);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for (a, bodies) in agents.iter().zip(bodies) {
            let (a, url, acked, errors, lat) = (
                a.clone(),
                c.url.clone(),
                acked.clone(),
                errors.clone(),
                lat.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut bodies = bodies.into_iter();
                let mut body = bodies.next();
                while let Some(b) = body.take() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    match upload(&url, &a, b.clone()).await {
                        Ok(()) => {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            acked.fetch_add(batch, Ordering::Relaxed);
                            body = bodies.next();
                        }
                        Err(_) => {
                            // The same batch again, as a real agent retries from its spool.
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            body = Some(b);
                        }
                    }
                }
            }));
        }
        let t0 = Instant::now();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let acked = acked.load(Ordering::Relaxed);
        (
            acked as f64 / elapsed,
            acked,
            errors.load(Ordering::Relaxed),
            lat.take(),
            sampler,
        )
    });
    // Outside the runtime: the synchronous PostgreSQL client runs its own.
    let pg_profile = match (sampler, &pg) {
        (Some(s), Some(pg)) => s.finish(pg),
        _ => serde_json::Value::Null,
    };
    // The roll-up is folded in the background: the sustained rate counts the time until
    // every acknowledged finding is in it too (uploads + the fold's catch-up).
    let drain = (!rollup_off).then(|| {
        let t = Instant::now();
        while count(&c, "findings_unfolded") > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "the roll-up did not catch up within 600 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        t.elapsed().as_secs_f64()
    });
    let folded_rate = drain.map(|d| acked as f64 / (acked as f64 / rate + d));
    let stored = count(&c, "findings");
    let mut lat = lat;
    println!(
        "{}",
        serde_json::json!({
            "mode": "ingest", "backend": backend, "agents": n_agents, "batch": batch, "secs": secs,
            "rollup_off": rollup_off, "mix": mix.name(), "dropped_indexes": dropped, "plain_window_index": plain_window,
            "findings_per_sec": rate, "acked": acked, "errors": errors,
            "fold_drain_secs": drain, "folded_per_sec": folded_rate,
            "p50_ms": pct(&mut lat, 0.5), "p99_ms": pct(&mut lat, 0.99),
            "requests": lat.len(), "stored": stored, "pg_profile": pg_profile,
        })
    );
    drop(c);
    drop(pg);
}

/// Rows of `table` (a table or view), counted in the database itself (the API has no
/// count endpoint).
fn count(c: &Collector, table: &str) -> u64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let text = std::fs::read_to_string(&c.cfg).unwrap();
    if let Some(url) = text
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
    {
        let mut pg = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let n: i64 = pg.query_one(sql.as_str(), &[]).unwrap().get(0);
        return n as u64;
    }
    let db = c.cfg.parent().unwrap().join("data/collector.db");
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// Request latencies (ms) collected from many tasks.
#[derive(Default)]
struct Lat(std::sync::Mutex<Vec<f64>>);

impl Lat {
    fn push(&self, v: f64) {
        self.0.lock().unwrap().push(v);
    }

    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let work = PathBuf::from(arg("--work", "/tmp/shadowai-bench"));
    std::fs::create_dir_all(&work).unwrap();
    match mode.as_str() {
        "ingest" => ingest(&work),
        "fleet" => fleet::run(&work),
        // `cargo bench` without a mode (as in `cargo bench -p shadowai-collector`): a short
        // SQLite ingest run.
        _ => ingest(&work),
    }
}

#[path = "ingest/fleet.rs"]
mod fleet;
#[path = "ingest/pgprofile.rs"]
mod pgprofile;
