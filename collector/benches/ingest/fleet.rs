//! The fleet simulation (see the bench's header): history seeded in bulk, two replicas on one
//! PostgreSQL, a replica killed mid-ingest, SOC queries timed through the API.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shadowai_api::IngestBatch;

use live_profile::LiveProfile;

use super::{
    Agent, Collector, DAY_MS, Pg, SERVICES, agent_ip, arg, client, enroll, finding, gzip, now_ms,
    num, upload,
};

/// The secondary indexes of `findings` (dropped for the bulk load, rebuilt after it, as a
/// restore would), with their definitions as the migrations create them.
const INDEXES: [(&str, &str); 7] = [
    shadowai_collector::store::WINDOW_COVER_INDEX,
    ("findings_service", "ON findings (service_id, verdict)"),
    ("findings_user", "ON findings (user_name)"),
    ("findings_host", "ON findings (host_id, window_start_ms)"),
    ("findings_exe", "ON findings (exe)"),
    (
        "findings_verdict_window",
        "ON findings (verdict, window_start_ms)",
    ),
    (
        "findings_long",
        "ON findings (window_end_ms) WHERE window_end_ms - window_start_ms > 3600000",
    ),
];

/// The columns of `findings` the seed fills (all but `seq` and `doc` are in `seed_rows`).
const COLUMNS: &str = "id, agent_id, host_id, hostname, window_start_ms, window_end_ms, \
     service_id, service_name, vendor, category, risk_score, verdict, action, user_name, uid, \
     exe, process_name, container_id, count, first_seen_ms, last_seen_ms, received_ms, \
     bytes_out, bytes_in, grp";

/// What a bulk load cost.
struct Seeded {
    /// The seed's rows without their documents, in an unlogged table.
    rows_secs: f64,
    insert_secs: f64,
    index_secs: f64,
    rollup_secs: f64,
    /// Back-fill of the per-day sums (`rollup_sums.rs`) and its row count.
    sums_secs: f64,
    /// The commit (every new file synced), `VACUUM` and `ANALYZE`.
    commit_secs: f64,
    sums_rows: i64,
    days_rows: i64,
    keys_rows: i64,
}

/// The SQL expression of a seed row's `doc`: a complete Finding (the API parses it) with the
/// row's values, as a concatenation of literal JSON pieces and the row's columns.
fn doc_expr() -> String {
    let template = serde_json::to_string(&finding(
        super::Mix::Distinct,
        "@ID@".into(),
        "@HOST@",
        0,
        111_111_111_111,
    ))
    .unwrap()
    .replace("\"@ID@\"", "to_json(id)::text")
    .replace("\"@HOST@\"", "to_json(host_id)::text")
    .replace(&format!("\"{}\"", SERVICES[0]), "to_json(service_id)::text")
    .replace("\"user0\"", "to_json(user_name)::text")
    .replace("\"/usr/bin/app0\"", "to_json(exe)::text")
    .replace("\"unsanctioned\"", "to_json(verdict)::text")
    .replace("\"allowed\"", "to_json(action)::text")
    .replace("\"risk_score\":60", "\"risk_score\":risk_score::text")
    .replace("111111171111", "window_end_ms::text")
    .replace("111111111611", "last_seen_ms::text")
    .replace("111111111111", "window_start_ms::text");
    let mut doc = String::from("''");
    let mut rest = template.as_str();
    let exprs = [
        "to_json(id)::text",
        "to_json(host_id)::text",
        "to_json(service_id)::text",
        "to_json(user_name)::text",
        "to_json(exe)::text",
        "to_json(verdict)::text",
        "to_json(action)::text",
        "risk_score::text",
        "window_end_ms::text",
        "last_seen_ms::text",
        "window_start_ms::text",
    ];
    while !rest.is_empty() {
        let next = exprs
            .iter()
            .filter_map(|e| rest.find(e).map(|i| (i, *e)))
            .min();
        match next {
            Some((i, e)) => {
                doc.push_str(&format!(" || '{}' || {e}", rest[..i].replace('\'', "''")));
                rest = &rest[i + e.len()..];
            }
            None => {
                doc.push_str(&format!(" || '{}'", rest.replace('\'', "''")));
                rest = "";
            }
        }
    }
    doc
}

/// Fills the unlogged `seed_rows` (the columns of `findings` but `seq` and `doc`) with `rows`
/// findings over the 90 days before `now` for `hosts` hosts, generated inside PostgreSQL by
/// two parallel `INSERT … SELECT generate_series` (nothing crosses the socket).
///
/// The shape of a fleet: each host has one user (1 finding in 20 is a second user's, as on a
/// shared machine), a main AI service (75 % of its findings), a second (18 %) and a third;
/// an executable per service kind; the verdict, action, risk and category follow the service;
/// 60 s windows spread evenly over the 90 days; bytes known for 3 findings in 4.
fn seed_rows(pg: &Pg, rows: u64, hosts: u64, now: i64) {
    let services = SERVICES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let span = 90 * DAY_MS;
    pg.client("bench")
        .batch_execute(&format!(
            // (No autovacuum: the table lives for the seed only.)
            "CREATE UNLOGGED TABLE seed_rows WITH (autovacuum_enabled = false) AS \
             SELECT {COLUMNS} FROM findings WITH NO DATA"
        ))
        .unwrap();
    let threads: Vec<_> = (0..2u64)
        .map(|part| {
            let url = pg.url();
            let services = services.clone();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let (lo, hi) = (part * rows / 2, (part + 1) * rows / 2);
                // Per service (index 0..11): verdict, action, risk.
                let sql = format!(
                    "INSERT INTO seed_rows ({COLUMNS}) \
                     SELECT id, 'seed', host, host, ws, ws + 60000, svc, 'Service', 'Vendor', \
                     'chat_assistant', risk, verdict, act, usr, 1000, exe, 'app', NULL, 3, ws, \
                     ws + 500, ws, bo, bo / 10, grp FROM ( \
                       SELECT *, (ARRAY[{services}])[1 + si] AS svc, \
                       (ARRAY['sanctioned','sanctioned','tolerated','sanctioned','tolerated', \
                         'unsanctioned','blocked','unsanctioned','tolerated','sanctioned', \
                         'unsanctioned','blocked'])[1 + si] AS verdict, \
                       (ARRAY['allowed','allowed','allowed','allowed','allowed','would_block', \
                         'blocked','allowed','allowed','allowed','would_block','blocked'])[1 + si] AS act, \
                       (ARRAY[20,25,20,25,35,55,85,50,30,20,45,60])[1 + si] AS risk, \
                       '/usr/bin/app' || (si % 4) AS exe FROM ( \
                         SELECT 'h' || g AS id, 'host-' || lpad(hn::text, 5, '0') AS host, \
                         {now} - {span} + (g * {span} / {rows}) AS ws, \
                         CASE WHEN r < 75 THEN hn % 12 WHEN r < 93 THEN (hn * 7 + 3) % 12 \
                           ELSE (hn * 5 + 1) % 12 END AS si, \
                         'user' || CASE WHEN (k * 7 + hn) % 20 = 0 THEN (hn + 1) % {hosts} \
                           ELSE hn END AS usr, \
                         CASE WHEN g % 4 = 0 THEN NULL ELSE (g * 7919) % 5000000 END AS bo, \
                         (ARRAY['eng','finance','sales'])[1 + hn % 3] AS grp \
                         FROM (SELECT g, g % {hosts} AS hn, g / {hosts} AS k, \
                           ((g / {hosts}) * 2654435761 + (g % {hosts}) * 37) % 100 AS r \
                           FROM generate_series({lo}::BIGINT, {hi} - 1) g) g) k) s"
                );
                c.batch_execute(&sql).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Seeds the history as a restore would, in one transaction on a server running with
/// `wal_level=minimal` (the caller restarts it with the defaults afterwards):
/// 1. `seed_rows` made (see [`seed_rows`]);
/// 2. `findings` truncated, its secondary indexes and its roll-up insert triggers dropped
///    (re-created from their own definitions at the end), then loaded by one `INSERT … SELECT …, doc FROM seed_rows` (the documents
///    are built there): a table truncated in the loading transaction writes no WAL at this
///    level (measured beside `COPY … FREEZE` fed by a second connection's `COPY … TO
///    STDOUT`, 405 k rows, 3 alternating trials: 8.2 / 9.4 / 12.5 s against 12.6 / 26.3 /
///    24.7 s);
/// 3. the indexes rebuilt (parallel workers, 1 GB of `maintenance_work_mem`);
/// 4. the roll-up, the keys' totals and the per-day sums filled by the migrations' own
///    back-fill statements (`rollup_sql::BACKFILL`, …), reading `seed_rows` — the same key
///    columns as `findings` without the 800-byte documents — instead of `findings`;
/// 5. the triggers re-created, commit, `VACUUM` (the visibility map, as the insert-driven
///    autovacuum keeps it on a live table: index-only reads skip the heap), `ANALYZE`.
fn seed(pg: &Pg, rows: u64, hosts: u64, now: i64) -> Seeded {
    let t = Instant::now();
    seed_rows(pg, rows, hosts, now);
    let rows_secs = t.elapsed().as_secs_f64();
    let mut c = pg.client("bench");
    let mut tx = c.transaction().unwrap();
    let drop: String = INDEXES
        .iter()
        .map(|(name, _)| format!("DROP INDEX {name};"))
        .collect();
    // The insert triggers are dropped for the load, not disabled: PostgreSQL still collects
    // a disabled trigger's transition table (here 10 M rows of temporary files).
    let triggers: Vec<String> = tx
        .query(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'findings'::regclass \
             AND tgname = 'finding_rollup_pending_insert'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        triggers.len(),
        1,
        "the roll-up's pending-table insert trigger"
    );
    tx.batch_execute(&format!(
        "SET LOCAL maintenance_work_mem = '1GB'; SET LOCAL max_parallel_maintenance_workers = 2; \
         SET LOCAL work_mem = '1GB'; \
         DROP TRIGGER finding_rollup_pending_insert ON findings; \
         TRUNCATE findings; {drop}"
    ))
    .unwrap();
    let t = Instant::now();
    let copied = tx
        .execute(
            &format!(
                "INSERT INTO findings ({COLUMNS}, doc) SELECT {COLUMNS}, {} FROM seed_rows",
                doc_expr()
            ),
            &[],
        )
        .unwrap();
    assert_eq!(copied, rows, "the load inserted every seed row");
    let insert_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let create: String = INDEXES
        .iter()
        .map(|(name, def)| format!("CREATE INDEX {name} {def};"))
        .collect();
    tx.batch_execute(&create).unwrap();
    let index_secs = t.elapsed().as_secs_f64();
    let from_seed = |sql: &str| {
        let out = sql.replace("FROM findings", "FROM seed_rows");
        assert_ne!(out, sql, "a back-fill reads findings");
        out
    };
    let t = Instant::now();
    tx.batch_execute(&from_seed(shadowai_collector::store::rollup_sql::BACKFILL))
        .unwrap();
    tx.batch_execute(shadowai_collector::store::rollup_sql::POSTGRES_TOTALS_BACKFILL)
        .unwrap();
    let rollup_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    tx.batch_execute(&from_seed(
        shadowai_collector::store::rollup_sums::POSTGRES_BACKFILL,
    ))
    .unwrap();
    let sums_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for t in &triggers {
        tx.batch_execute(t).unwrap();
    }
    tx.commit().unwrap();
    // The visibility map, as the insert-driven autovacuum keeps it on a live table.
    c.batch_execute("VACUUM findings").unwrap();
    c.batch_execute(
        "DROP TABLE seed_rows; ANALYZE findings; ANALYZE finding_days; ANALYZE finding_keys; \
         ANALYZE finding_day_hosts; ANALYZE finding_day_users; ANALYZE finding_day_sums;",
    )
    .unwrap();
    let commit_secs = t.elapsed().as_secs_f64();
    let count = |c: &mut postgres::Client, t: &str| -> i64 {
        c.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[])
            .unwrap()
            .get(0)
    };
    Seeded {
        rows_secs,
        insert_secs,
        index_secs,
        rollup_secs,
        sums_secs,
        commit_secs,
        sums_rows: count(&mut c, "finding_day_sums"),
        days_rows: count(&mut c, "finding_days"),
        keys_rows: count(&mut c, "finding_keys"),
    }
}

/// Median of three timed GETs of `path` (ms), and the response size of the last.
async fn timed_get(http: &reqwest::Client, url: &str, token: &str, path: &str) -> (f64, usize) {
    let mut v = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = http
            .get(format!("{url}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        size = r.bytes().await.unwrap().len();
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    (v[1], size)
}

async fn queries(c: &Collector, token: &str, now: i64) -> serde_json::Value {
    let http = client(&[&c.ca], None);
    let day = now - DAY_MS;
    let week = now - 7 * DAY_MS;
    let mut out = serde_json::Map::new();
    for (name, path) in [
        (
            "overview_24h",
            format!("/api/v1/reports/services?from_ms={day}"),
        ),
        (
            "overview_7d",
            format!("/api/v1/reports/services?from_ms={week}"),
        ),
        ("overview_90d", "/api/v1/reports/services".to_owned()),
        ("trend_90d", "/api/v1/reports/trend?bucket=day".to_owned()),
        (
            "trend_7d",
            format!("/api/v1/reports/trend?from_ms={week}&bucket=hour"),
        ),
        (
            "uploaders_90d",
            "/api/v1/reports/uploaders?by=user&limit=5".to_owned(),
        ),
        (
            "who_users_90d",
            "/api/v1/reports/groups?by=user&limit=50".to_owned(),
        ),
        ("facets_90d", "/api/v1/reports/facets".to_owned()),
        ("findings_page", "/api/v1/findings?limit=100".to_owned()),
        (
            "drill_user",
            "/api/v1/findings?user=user42&limit=100".to_owned(),
        ),
        (
            "drill_service_verdict",
            "/api/v1/findings?service=deepseek&verdict=blocked&limit=100".to_owned(),
        ),
        (
            "drill_host",
            "/api/v1/findings?host=host-00042&limit=100".to_owned(),
        ),
    ] {
        let (ms, _) = timed_get(&http, &c.url, token, &path).await;
        out.insert(name.into(), serde_json::json!(ms));
    }
    serde_json::Value::Object(out)
}

/// The statements the store ran for two queries before `report_index.rs` (the plain hour
/// trend over the raw findings since `week`; one host's newest 101 by `host_id OR hostname`),
/// each timed directly on the database (with `jit = off`, as the collector runs reports)
/// alternating with the same query through B's API, 3 rounds: medians (ms) of both.
fn peers(
    rt: &tokio::runtime::Runtime,
    c: &Collector,
    token: &str,
    pg: &Pg,
    now: i64,
) -> serde_json::Value {
    let http = client(&[&c.ca], None);
    let week = now - 7 * DAY_MS;
    let back = week - 3_600_000;
    let raw = |cond: &str| {
        format!(
            "SELECT host_id, service_id, verdict, action, user_name, exe, process_name, \
             hostname, COALESCE(grp, '') AS grp, category, risk_score, \
             window_start_ms / 3600000 AS b, 1 AS findings, count AS events, bytes_out, \
             bytes_in, CASE WHEN bytes_out IS NULL THEN 0 ELSE 1 END AS bytes_known, \
             first_seen_ms, last_seen_ms, service_name, vendor FROM findings WHERE {cond}"
        )
    };
    let plain_trend = format!(
        "SELECT b, service_id, verdict, CAST(SUM(events) AS BIGINT), COUNT(DISTINCT host_id), \
         COUNT(DISTINCT user_name), CAST(COALESCE(SUM(bytes_out), 0) AS BIGINT) FROM ({} \
         UNION ALL {}) r GROUP BY b, service_id, verdict ORDER BY b, service_id, verdict",
        raw(&format!(
            "window_end_ms > {week} AND window_start_ms >= {back} \
             AND window_end_ms - window_start_ms <= 3600000"
        )),
        raw(&format!(
            "window_end_ms > {week} AND window_end_ms - window_start_ms > 3600000"
        )),
    );
    let plain_host = "SELECT seq, doc FROM findings WHERE (host_id = 'host-00042' \
         OR hostname = 'host-00042') ORDER BY seq DESC LIMIT 101"
        .to_owned();
    let mut db = pg.client("bench");
    let mut out = serde_json::Map::new();
    for (name, path, sql) in [
        (
            "trend_7d",
            format!("/api/v1/reports/trend?from_ms={week}&bucket=hour"),
            plain_trend,
        ),
        (
            "drill_host",
            "/api/v1/findings?host=host-00042&limit=100".to_owned(),
            plain_host,
        ),
    ] {
        let (mut api, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let t = Instant::now();
            rt.block_on(async {
                let r = http
                    .get(format!("{}{path}", c.url))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{path}");
                r.bytes().await.unwrap();
            });
            api.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let mut tx = db.transaction().unwrap();
            tx.batch_execute("SET LOCAL jit = off").unwrap();
            let rows = tx.query(&sql, &[]).unwrap();
            tx.commit().unwrap();
            plain.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(!rows.is_empty(), "{name}: the plain statement found rows");
        }
        api.sort_by(f64::total_cmp);
        plain.sort_by(f64::total_cmp);
        out.insert(
            name.into(),
            serde_json::json!({"api_ms": api[1], "plain_ms": plain[1],
                "api_all": api, "plain_all": plain}),
        );
    }
    serde_json::Value::Object(out)
}

pub fn run(work: &Path) {
    let (history, n_agents, per) = (
        num("--history", 10_000_000),
        num("--agents", 10_000),
        num("--batch", 20),
    );
    // Statements over 1 s (`--log-slow-ms`) are logged with their text and parameters: the
    // slowest are explained below. WAL capped at 1 GB (the bulk load writes the table's size
    // in WAL; the disk is shared).
    let slow_ms = num("--log-slow-ms", 1000);
    let serving = format!(
        "-c log_min_duration_statement={slow_ms} -c max_wal_size=1GB -c wal_compression=on"
    );
    // The bulk load runs with `wal_level=minimal` (see `seed`); the server is then restarted
    // with its defaults before any collector connects.
    let section = Instant::now();
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let pg = Pg::start_with(
        work,
        "-c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=1GB",
    );
    drop(shadowai_collector::store::postgres::open(&pg.url(), 1, None).unwrap());
    let now = now_ms();
    let seeded = seed(&pg, history, n_agents, now);
    let t = Instant::now();
    pg.restart_with(&serving);
    let restart_secs = t.elapsed().as_secs_f64();
    let database = format!(
        "[database]\nkind = \"postgres\"\nurl = \"{}\"\npool = 8\n",
        pg.url()
    );
    let mut a = Collector::start(work, "fleet-a", &database);
    let b = Collector::start(work, "fleet-b", &database);
    let viewer = b.token("viewer");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cas = [a.ca.clone(), b.ca.clone()];
    let (urls, kill_at) = ([a.url.clone(), b.url.clone()], n_agents / 2);
    let before = rt.block_on(queries(&b, &viewer, now));
    // The first `via_api` agents enroll over HTTPS (alternately through each replica, 64 at a
    // time: this is what enrollment costs); the rest are seeded in bulk like the history
    // (agents + hosts rows, token hash = SHA-256 of the token, as the collector stores it).
    let via_api = num("--enroll-api", 500).min(n_agents);
    let t = Instant::now();
    let mut agents: Vec<Arc<Agent>> = rt.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (next, urls, cas) = (next.clone(), urls.clone(), cas.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= via_api {
                        return mine;
                    }
                    let http = client(&[&cas[0], &cas[1]], Some(agent_ip(i)));
                    let token = enroll(&urls[(i % 2) as usize], &http, i).await.unwrap();
                    mine.push((
                        i,
                        Arc::new(Agent {
                            host: format!("host-{i:05}"),
                            token,
                            http,
                        }),
                    ));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, a)| a).collect()
    });
    let enroll_secs = t.elapsed().as_secs_f64();
    pg.client("bench")
        .batch_execute(&format!(
            "INSERT INTO agents (agent_id, token_hash, host_id, hostname, enrolled_ms, agent_version) \
             SELECT 'agt-fleet-' || g, encode(sha256(('saa_fleet-' || g)::bytea), 'hex'), \
             'host-' || lpad(g::text, 5, '0'), 'host-' || lpad(g::text, 5, '0'), {now}, 'bench' \
             FROM generate_series({via_api}, {n_agents} - 1) g; \
             INSERT INTO hosts (host_id, key_sha256, agent_id, bound_ms) \
             SELECT 'host-' || lpad(g::text, 5, '0'), encode(sha256(('key-' || g)::bytea), 'hex'), \
             'agt-fleet-' || g, {now} FROM generate_series({via_api}, {n_agents} - 1) g;"
        ))
        .unwrap();
    // Seeded agents share a client per source address (256 addresses, as hosts behind NAT).
    let shared: Vec<reqwest::Client> = (0..256)
        .map(|k| client(&[&cas[0], &cas[1]], Some(agent_ip(k))))
        .collect();
    for i in via_api..n_agents {
        agents.push(Arc::new(Agent {
            host: format!("host-{i:05}"),
            token: format!("saa_fleet-{i}"),
            http: shared[(i % 256) as usize].clone(),
        }));
    }
    // Live ingest: every agent uploads one batch to its replica; replica A is SIGKILLed once
    // half the agents have started, and its agents (and retries) go to B.
    let started = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let a_dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // `--live-secs N`: agents stop starting uploads after N s (0: every agent uploads once);
    // replica A is then killed at N / 2 s if half the agents have not started by then.
    let live_max = Duration::from_secs(num("--live-secs", 0));
    let begun = Arc::new(AtomicU64::new(0));
    let postmaster: u32 = std::fs::read_to_string(pg.dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let profile = LiveProfile::start(&pg.url(), postmaster, a.child.id(), b.child.id());
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..128 {
            let (agents, urls, started, retried, failed, a_dead, begun) = (
                agents.clone(),
                urls.clone(),
                started.clone(),
                retried.clone(),
                failed.clone(),
                a_dead.clone(),
                begun.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    if !live_max.is_zero() && t.elapsed() >= live_max {
                        return;
                    }
                    let i = started.fetch_add(1, Ordering::Relaxed);
                    let Some(ag) = agents.get(i as usize) else {
                        return;
                    };
                    begun.fetch_add(1, Ordering::Relaxed);
                    let body = gzip(&IngestBatch {
                        batch_id: format!("live-{i}"),
                        findings: (0..per)
                            .map(|k| {
                                finding(
                                    super::Mix::Distinct,
                                    format!("live-{i}-{k}"),
                                    &ag.host,
                                    k,
                                    now_ms(),
                                )
                            })
                            .collect(),
                    });
                    let mut replica = (i % 2) as usize;
                    // Bounded: a batch refused 50 times is counted as failed (never silently).
                    for attempt in 0.. {
                        if replica == 0 && a_dead.load(Ordering::Relaxed) {
                            replica = 1;
                        }
                        match upload(&urls[replica], ag, body.clone()).await {
                            Ok(()) => break,
                            Err(e) if attempt >= 50 => {
                                eprintln!("fleet: batch live-{i} failed for good: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(_) => {
                                retried.fetch_add(1, Ordering::Relaxed);
                                replica = 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            }));
        }
        while started.load(Ordering::Relaxed) < kill_at
            && (live_max.is_zero() || t.elapsed() < live_max / 2)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a_dead.store(true, Ordering::Relaxed);
        a.kill();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let live_secs = t.elapsed().as_secs_f64();
    let live_profile = profile.finish();
    let uploaded = begun.load(Ordering::Relaxed);
    let mut c = pg.client("bench");
    let stored: i64 = c
        .query_one("SELECT COUNT(*) FROM findings", &[])
        .unwrap()
        .get(0);
    let distinct: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM (SELECT DISTINCT host_id, id FROM findings) d",
            &[],
        )
        .unwrap()
        .get(0);
    let live_stored: i64 = c
        .query_one(
            // Live windows start at upload time, after every seeded one (by the window index).
            &format!(
                "SELECT COUNT(*) FROM findings WHERE window_start_ms >= {now} AND id LIKE 'live-%'"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    let size: i64 = c
        .query_one("SELECT pg_total_relation_size('findings')", &[])
        .unwrap()
        .get(0);
    let rollup_size: i64 = c
        .query_one(
            "SELECT pg_total_relation_size('finding_days') + pg_total_relation_size('finding_keys')",
            &[],
        )
        .unwrap()
        .get(0);
    let sums_size: i64 = c
        .query_one(
            "SELECT pg_total_relation_size('finding_day_sums') \
             + pg_total_relation_size('finding_day_hosts') \
             + pg_total_relation_size('finding_day_users')",
            &[],
        )
        .unwrap()
        .get(0);
    let db_size: i64 = c
        .query_one("SELECT pg_database_size(current_database())", &[])
        .unwrap()
        .get(0);
    // The roll-up is exact after the live phase (folded, plus what waits for its fold, in
    // one snapshot: what the reports count) as after the back-fill.
    let rollup_findings: i64 = c
        .query_one(
            "SELECT ((SELECT COALESCE(SUM(findings), 0) FROM finding_days) \
             + (SELECT COUNT(*) FROM findings_unfolded))::BIGINT",
            &[],
        )
        .unwrap()
        .get(0);
    let after = rt.block_on(queries(&b, &viewer, now_ms()));
    let peers = peers(&rt, &b, &viewer, &pg, now_ms());
    let slow_plans = explain_slow(&pg, &mut c, 8);
    let expected_live = uploaded * per;
    println!(
        "{}",
        serde_json::json!({
            "mode": "fleet", "history": history, "agents": n_agents, "batch": per,
            "seed_rows_secs": seeded.rows_secs, "seed_commit_secs": seeded.commit_secs,
            "restart_secs": restart_secs, "section_secs": section.elapsed().as_secs_f64(),
            "seed_insert_secs": seeded.insert_secs, "seed_index_secs": seeded.index_secs,
            "seed_rollup_secs": seeded.rollup_secs, "rollup_days_rows": seeded.days_rows,
            "seed_sums_secs": seeded.sums_secs, "sums_rows": seeded.sums_rows,
            "sums_bytes": sums_size, "slow_plans": slow_plans,
            "rollup_keys_rows": seeded.keys_rows, "rollup_bytes": rollup_size,
            "db_bytes": db_size, "rollup_findings": rollup_findings,
            "load_start": load_start.trim(),
            "load_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "enroll_secs": enroll_secs, "enrolled_via_api": via_api, "live_secs": live_secs,
            "live_findings_per_sec": expected_live as f64 / live_secs,
            "retries": retried.load(Ordering::Relaxed),
            "failed_batches": failed.load(Ordering::Relaxed),
            "expected_live": expected_live, "live_stored": live_stored,
            "stored": stored, "distinct": distinct, "table_bytes": size,
            "queries_before": before, "queries_after": after,
            "killed_replica_after_agents": kill_at, "live_profile": live_profile,
            "peers": peers,
            "agents_uploaded": uploaded, "live_secs_max": live_max.as_secs(),
            "work": arg("--work", ""),
        })
    );
}

/// The slow report statements PostgreSQL logged (`log_min_duration_statement`), the slowest
/// run of each distinct text with its logged parameters put back in, each run again under
/// `EXPLAIN (ANALYZE, BUFFERS)` with JIT off (as the collector runs reports): the profiles
/// of the SOC's slow queries, at most `max`, slowest first.
fn explain_slow(pg: &Pg, c: &mut postgres::Client, max: usize) -> serde_json::Value {
    let log = std::fs::read_to_string(pg.dir.join("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let mut slow: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((ms, rest)) = l
            .split_once("duration: ")
            .and_then(|(_, r)| r.split_once(" ms"))
        else {
            continue;
        };
        let Some((_, sql)) = rest.split_once(": ") else {
            continue;
        };
        let Ok(ms) = ms.trim().parse::<f64>() else {
            continue;
        };
        // The bench's own counting statements are not the SOC's.
        if !sql.starts_with("SELECT")
            || sql.contains("pg_")
            || sql.starts_with("SELECT COUNT(*) FROM")
            || sql.starts_with("SELECT COALESCE(SUM(findings), 0)")
        {
            continue;
        }
        let params = lines
            .get(i + 1)
            .filter(|d| d.contains("DETAIL:"))
            .and_then(|d| d.split_once("arameters: "))
            .map(|(_, p)| p)
            .unwrap_or("");
        let text = with_params(sql, params);
        let e = slow.entry(text).or_insert(0.0);
        *e = e.max(ms);
    }
    let mut slow: Vec<(f64, String)> = slow.into_iter().map(|(s, ms)| (ms, s)).collect();
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    let _ = c.batch_execute("SET jit = off");
    let plans: Vec<serde_json::Value> = slow
        .into_iter()
        .take(max)
        .map(|(ms, sql)| {
            let plan = match c.query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &[]) {
                Ok(rows) => rows
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => format!("EXPLAIN failed: {e}"),
            };
            serde_json::json!({"ms": ms, "sql": sql, "plan": plan})
        })
        .collect();
    serde_json::Value::Array(plans)
}

/// `sql` with `$n` replaced by the values of a logged `$1 = '…', $2 = '…'` list (highest
/// number first, so `$1` does not match the front of `$12`).
fn with_params(sql: &str, params: &str) -> String {
    let mut values: Vec<(usize, String)> = Vec::new();
    let mut rest = params;
    while let Some(p) = rest.strip_prefix('$') {
        let Some((n, after)) = p.split_once(" = ") else {
            break;
        };
        let Ok(n) = n.parse::<usize>() else {
            break;
        };
        // A value is NULL or a quoted literal with '' for a quote.
        let (value, tail) = if let Some(t) = after.strip_prefix("NULL") {
            ("NULL".to_owned(), t)
        } else if let Some(q) = after.strip_prefix('\'') {
            let mut end = None;
            let b = q.as_bytes();
            let mut k = 0;
            while k < b.len() {
                if b[k] == b'\'' {
                    if b.get(k + 1) == Some(&b'\'') {
                        k += 2;
                        continue;
                    }
                    end = Some(k);
                    break;
                }
                k += 1;
            }
            let Some(end) = end else { break };
            (format!("'{}'", &q[..end]), &q[end + 1..])
        } else {
            break;
        };
        values.push((n, value));
        rest = tail.trim_start_matches(", ");
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut out = sql.to_owned();
    for (n, v) in values {
        out = out.replace(&format!("${n}"), &v);
    }
    out
}

#[path = "live_profile.rs"]
mod live_profile;
