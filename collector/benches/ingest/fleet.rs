//! The fleet simulation (see the bench's header): history seeded in bulk, two replicas on one
//! PostgreSQL, a replica killed mid-ingest, SOC queries timed through the API.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shadowai_api::IngestBatch;

use super::{
    Agent, Collector, DAY_MS, Pg, SERVICES, agent_ip, arg, client, enroll, finding, gzip, now_ms,
    num, upload,
};

/// Seeds `rows` findings over the 90 days before `now` for `hosts` hosts, in two parallel
/// `INSERT … SELECT generate_series` statements, secondary indexes dropped and rebuilt after
/// (what a bulk load does). Each row's `doc` is a complete Finding (the API parses it).
fn seed(pg: &Pg, rows: u64, hosts: u64, now: i64) -> (f64, f64) {
    let template = serde_json::to_string(&finding("@ID@".into(), "@HOST@", 0, 111_111_111_111))
        .unwrap()
        .replace("\"@ID@\"", "to_json(id)::text")
        .replace("\"@HOST@\"", "to_json(host)::text")
        .replace(&format!("\"{}\"", SERVICES[0]), "to_json(svc)::text")
        .replace("\"user0\"", "to_json(usr)::text")
        .replace("\"/usr/bin/app0\"", "to_json(exe)::text")
        .replace("\"unsanctioned\"", "to_json(verdict)::text")
        .replace("111111121111", "(ws + 10000)::text")
        .replace("111111111611", "(ws + 500)::text")
        .replace("111111111111", "ws::text");
    // The template becomes a concatenation of literal JSON pieces and SQL expressions.
    let mut doc = String::from("''");
    let mut rest = template.as_str();
    let exprs = [
        "to_json(id)::text",
        "to_json(host)::text",
        "to_json(svc)::text",
        "to_json(usr)::text",
        "to_json(exe)::text",
        "to_json(verdict)::text",
        "(ws + 10000)::text",
        "(ws + 500)::text",
        "ws::text",
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
    let services = SERVICES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let span = 90 * DAY_MS;
    let mut c = pg.client("bench");
    c.batch_execute(
        "DROP INDEX findings_window; DROP INDEX findings_service; DROP INDEX findings_user;",
    )
    .unwrap();
    let t = Instant::now();
    let threads: Vec<_> = (0..2u64)
        .map(|part| {
            let url = pg.url();
            let doc = doc.clone();
            let services = services.clone();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let (lo, hi) = (part * rows / 2, (part + 1) * rows / 2);
                let sql = format!(
                    "INSERT INTO findings (id, agent_id, host_id, hostname, window_start_ms, \
                     window_end_ms, service_id, service_name, vendor, category, risk_score, verdict, \
                     action, user_name, uid, exe, process_name, container_id, count, first_seen_ms, \
                     last_seen_ms, received_ms, doc) \
                     SELECT id, 'seed', host, host, ws, ws + 10000, svc, 'Service', 'Vendor', \
                     'chat_assistant', 60, verdict, 'allowed', usr, 1000, exe, 'app', NULL, 3, ws, \
                     ws + 500, ws, {doc} FROM ( \
                       SELECT 'h' || g AS id, 'host-' || lpad((g % {hosts})::text, 5, '0') AS host, \
                       {now} - {span} + (g * {span} / {rows}) AS ws, \
                       (ARRAY[{services}])[1 + g % {n}] AS svc, \
                       (ARRAY['unsanctioned','sanctioned','blocked'])[1 + g % 3] AS verdict, \
                       'user' || (g % 997) AS usr, '/usr/bin/app' || (g % 17) AS exe \
                       FROM generate_series({lo}, {hi} - 1) g) s",
                    n = SERVICES.len()
                );
                c.batch_execute(&sql).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let insert = t.elapsed().as_secs_f64();
    let t = Instant::now();
    c.batch_execute(
        "CREATE INDEX findings_window ON findings (window_start_ms); \
         CREATE INDEX findings_service ON findings (service_id, verdict); \
         CREATE INDEX findings_user ON findings (user_name); ANALYZE findings;",
    )
    .unwrap();
    (insert, t.elapsed().as_secs_f64())
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
        ("trend_7d", format!("/api/v1/reports/trend?from_ms={week}")),
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

pub fn run(work: &Path) {
    let (history, n_agents, per) = (
        num("--history", 2_000_000),
        num("--agents", 10_000),
        num("--batch", 20),
    );
    // Statements over 1 s are logged with their text: the slowest is explained below.
    let pg = Pg::start_with(work, "-c log_min_duration_statement=1000");
    let database = format!(
        "[database]\nkind = \"postgres\"\nurl = \"{}\"\npool = 8\n",
        pg.url()
    );
    let mut a = Collector::start(work, "fleet-a", &database);
    let b = Collector::start(work, "fleet-b", &database);
    let viewer = b.token("viewer");
    let now = now_ms();
    let (seed_insert, seed_index) = seed(&pg, history, n_agents, now);
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
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..128 {
            let (agents, urls, started, retried, failed, a_dead) = (
                agents.clone(),
                urls.clone(),
                started.clone(),
                retried.clone(),
                failed.clone(),
                a_dead.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = started.fetch_add(1, Ordering::Relaxed);
                    let Some(ag) = agents.get(i as usize) else {
                        return;
                    };
                    let body = gzip(&IngestBatch {
                        batch_id: format!("live-{i}"),
                        findings: (0..per)
                            .map(|k| finding(format!("live-{i}-{k}"), &ag.host, k, now_ms()))
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
        while started.load(Ordering::Relaxed) < kill_at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a_dead.store(true, Ordering::Relaxed);
        a.kill();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let live_secs = t.elapsed().as_secs_f64();
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
        .query_one("SELECT COUNT(*) FROM findings WHERE id LIKE 'live-%'", &[])
        .unwrap()
        .get(0);
    let size: i64 = c
        .query_one("SELECT pg_total_relation_size('findings')", &[])
        .unwrap()
        .get(0);
    let after = rt.block_on(queries(&b, &viewer, now_ms()));
    let (slowest_ms, slowest_plan) = explain_slowest(&pg, &mut c);
    let expected_live = n_agents * per;
    println!(
        "{}",
        serde_json::json!({
            "mode": "fleet", "history": history, "agents": n_agents, "batch": per,
            "seed_insert_secs": seed_insert, "seed_index_secs": seed_index,
            "enroll_secs": enroll_secs, "enrolled_via_api": via_api, "live_secs": live_secs,
            "live_findings_per_sec": expected_live as f64 / live_secs,
            "retries": retried.load(Ordering::Relaxed),
            "failed_batches": failed.load(Ordering::Relaxed),
            "expected_live": expected_live, "live_stored": live_stored,
            "stored": stored, "distinct": distinct, "table_bytes": size,
            "queries_before": before, "queries_after": after,
            "killed_replica_after_agents": kill_at,
            "slowest_query_ms": slowest_ms, "slowest_query_plan": slowest_plan,
            "work": arg("--work", ""),
        })
    );
}

/// The slowest statement PostgreSQL logged (`log_min_duration_statement`) that takes no
/// parameters, run again under `EXPLAIN (ANALYZE, BUFFERS)`: the profile of a slow report.
fn explain_slowest(pg: &Pg, c: &mut postgres::Client) -> (f64, String) {
    let log = std::fs::read_to_string(pg.dir.join("log")).unwrap_or_default();
    let slowest = log
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("duration: ")?.1;
            let (ms, rest) = rest.split_once(" ms")?;
            // "  execute <name>: SQL" (extended protocol) or "  statement: SQL".
            let sql = rest.split_once(": ")?.1;
            let ms: f64 = ms.trim().parse().ok()?;
            (sql.starts_with("SELECT") && !sql.contains('$')).then(|| (ms, sql.to_owned()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((ms, sql)) = slowest else {
        return (0.0, String::new());
    };
    let plan = match c.query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &[]) {
        Ok(rows) => rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("EXPLAIN failed: {e}"),
    };
    (ms, format!("{sql}\n\n{plan}"))
}
