//! (5b) The fleet simulation: two collector replicas on one PostgreSQL, the history seeded in
//! bulk, simulated agents uploading while one replica is killed, the SOC's queries timed (and
//! the two whose statements changed beside their previous statements). Runs the collector
//! crate's `ingest` bench binary in `fleet` mode and reads the JSON line it prints.

use std::time::Instant;

use anyhow::Result;
use serde_json::Value;

use super::Ctx;
use super::ingest::{bench, f};
use super::report::table;
use super::stats::num;

/// The queries timed, with what they show.
const QUERIES: [(&str, &str); 12] = [
    ("overview_24h", "overview: services × verdict, last 24 h"),
    ("overview_7d", "overview: services × verdict, last 7 days"),
    ("overview_90d", "overview: services × verdict, all 90 days"),
    ("trend_90d", "overview: trend per day, all 90 days"),
    ("trend_7d", "overview: trend per hour, last 7 days"),
    ("uploaders_90d", "overview: top 5 uploaders, all 90 days"),
    (
        "who_users_90d",
        "Who: group by user, first page of 50, all 90 days",
    ),
    ("facets_90d", "findings: pickers, all 90 days"),
    ("findings_page", "findings: newest 100"),
    ("drill_user", "drill-down: one user's findings, newest 100"),
    (
        "drill_service_verdict",
        "drill-down: service + verdict, newest 100",
    ),
    ("drill_host", "drill-down: one host's findings, newest 100"),
];

fn secs(v: &Value, k: &str) -> String {
    format!("{:.0}", f(v, k))
}

fn mib(v: &Value, k: &str) -> String {
    num(f(v, k) / 1_048_576.0, 0)
}

/// Step 2 of the report: how the history was seeded and what each step took.
fn seeding(v: &Value) -> String {
    format!(
        "2. History seeded in bulk, as a restore would: {} findings spread over the 90 days \
            before now (60 s windows), {} hosts with one user each (1 finding in 20 a second \
            user's), a main, second and third AI service per host (75 / 18 / 7 %). Timed \
            steps: the rows without their JSON documents generated inside PostgreSQL into an \
            unlogged table by two parallel `INSERT … SELECT generate_series` ({} s); `findings` \
            truncated, its secondary indexes and roll-up insert triggers dropped (a disabled trigger still collects its transition table), \
            and loaded by one `INSERT … SELECT` of the rows with their documents built there, in \
            that same transaction on a server running `wal_level=minimal` — no WAL for a table \
            truncated in the loading transaction ({} s, {} rows/s); the 7 indexes rebuilt ({} s, parallel workers, 1 GB \
            `maintenance_work_mem`); the roll-up and the keys' totals filled by the migrations' \
            back-fill statements reading the narrow rows instead of `findings` ({} s: {} day \
            rows, {} key rows, {} MiB); the per-day sums likewise ({} s: {} rows, {} MiB with \
            their per-host and per-user day rows); commit, `VACUUM` (the visibility map, as the insert-driven autovacuum keeps it on a \
            live table) and `ANALYZE` ({} s); the server \
            restarted with the default `wal_level` before the collectors start ({} s). \
            `findings` is then {} MiB; the database {} MiB.\n",
        num(f(v, "history"), 0),
        num(f(v, "agents"), 0),
        secs(v, "seed_rows_secs"),
        secs(v, "seed_insert_secs"),
        num(f(v, "history") / f(v, "seed_insert_secs"), 0),
        secs(v, "seed_index_secs"),
        secs(v, "seed_rollup_secs"),
        num(f(v, "rollup_days_rows"), 0),
        num(f(v, "rollup_keys_rows"), 0),
        mib(v, "rollup_bytes"),
        secs(v, "seed_sums_secs"),
        num(f(v, "sums_rows"), 0),
        mib(v, "sums_bytes"),
        secs(v, "seed_commit_secs"),
        secs(v, "restart_secs"),
        mib(v, "table_bytes"),
        mib(v, "db_bytes"),
    )
}

/// Step 4: the live phase and where its time went.
fn live(v: &Value) -> String {
    let p = &v["live_profile"];
    let cpu = |k: &str| format!("{:.0}", p["cpu_secs"][k].as_f64().unwrap_or(f64::NAN));
    let states: Vec<String> = p["backends"]
        .as_array()
        .map(|a| {
            a.iter()
                .take(5)
                .map(|s| {
                    format!(
                        "{} {:.2}",
                        s["state"].as_str().unwrap_or("?"),
                        s["avg"].as_f64().unwrap_or(f64::NAN)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let bound = match v["live_secs_max"].as_u64() {
        Some(0) | None => "until every agent has uploaded once".to_owned(),
        Some(s) => format!("for {s} s (agents start no upload after that)"),
    };
    format!(
        "4. Live ingest {bound}: agents upload one batch each to their replica, in order, 128 \
            at a time; replica A is killed with SIGKILL once half the agents have started or \
            half the time has passed; uploads to it fail and are retried on B with the same \
            batch id ({} retries). {} of {} agents uploaded in {:.1} s: {} findings/s. Where the \
            time went (sampled during the phase): CPU seconds — PostgreSQL {}, replica A {} \
            (until killed), replica B {}, the simulated agents {}, the rest of the machine {} \
            (other work on the shared machine), of {} busy CPU-seconds on 2 cores; \
            PostgreSQL's client backends, on average: {}.\n",
        v["retries"],
        num(f(v, "agents_uploaded"), 0),
        num(f(v, "agents"), 0),
        f(v, "live_secs"),
        num(f(v, "live_findings_per_sec"), 0),
        cpu("postgres"),
        cpu("collector_a"),
        cpu("collector_b"),
        cpu("bench"),
        cpu("others"),
        cpu("machine"),
        states.join(", "),
    )
}

/// The two queries whose statements changed, beside their previous statements.
fn peers(v: &Value) -> String {
    let rows: Vec<Vec<String>> = [
        ("trend_7d", "trend per hour, last 7 days"),
        ("drill_host", "one host's findings, newest 100"),
    ]
    .iter()
    .map(|(k, what)| {
        let p = &v["peers"][k];
        let (api, plain) = (
            p["api_ms"].as_f64().unwrap_or(f64::NAN),
            p["plain_ms"].as_f64().unwrap_or(f64::NAN),
        );
        vec![
            (*what).to_owned(),
            num(api, 0),
            num(plain, 0),
            format!("{:.1}×", plain / api),
        ]
    })
    .collect();
    format!(
        "\nThe two queries whose statements changed, after the live phase, beside the \
         statement the store ran before (run on the database directly, `jit = off` as the \
         collector runs reports, so it pays no HTTPS), alternating, median of 3 (ms):\n\n{}",
        table(
            &[
                "query",
                "now, through the API",
                "previous statement, direct",
                "previous / now"
            ],
            &rows
        )
    )
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let history = ctx.fleet_history.to_string();
    let agents = ctx.fleet_agents.to_string();
    let live_secs = ctx.fleet_live_secs.to_string();
    let args = [
        "fleet",
        "--history",
        history.as_str(),
        "--agents",
        agents.as_str(),
        "--batch",
        "20",
        "--live-secs",
        live_secs.as_str(),
    ];
    eprintln!("[bench] fleet simulation");
    let t = Instant::now();
    let v = bench(ctx, &args)?;
    let wall = t.elapsed().as_secs_f64();
    let q = |phase: &str, k: &str| num(v[phase][k].as_f64().unwrap_or(f64::NAN), 0);
    let rows: Vec<Vec<String>> = QUERIES
        .iter()
        .map(|(k, what)| {
            let after = v["queries_after"][k].as_f64().unwrap_or(f64::NAN);
            vec![
                (*what).to_owned(),
                q("queries_before", k),
                q("queries_after", k),
                if after < 2000.0 { "yes" } else { "**no**" }.to_owned(),
            ]
        })
        .collect();
    let expected = v["expected_live"].as_i64().unwrap_or(-1);
    let live_stored = v["live_stored"].as_i64().unwrap_or(-2);
    let exact = expected == live_stored
        && expected > 0
        && v["stored"] == v["distinct"]
        && v["stored"] == v["rollup_findings"]
        && v["failed_batches"].as_u64().unwrap_or(0) == 0;
    let via_api = f(&v, "enrolled_via_api");
    let mut body = format!(
        "`cargo bench -p shadowai-collector --bench ingest -- {}`. {} rows of history and {} \
         simulated agents ({}), one batch of 20 findings per agent in the live phase. The \
         section took {:.0} s in all (wall clock, from starting PostgreSQL to the last plan). \
         Load average {} at the start, {} at the end.\n\n\
         1. One PostgreSQL 15 (durable: `fsync=on`, `synchronous_commit=on`), two \
            `shadowai-collector` replicas (A and B, pool 8 each) on the same database, each \
            with its own HTTPS certificate.\n{}\
         3. {} agents: the first {} enrolled through the replicas alternately over HTTPS, each \
            from its own loopback address with its own host key ({:.0} s), the rest seeded in \
            bulk into `agents`/`hosts` (token hash as the collector stores it).\n{}\
         5. SOC queries through B's API (HTTPS, viewer token), median of 3, before and after \
            the live phase.\n\n\
         **No finding lost or duplicated: {}** — {} of {} live findings stored; {} rows in all, \
         {} distinct (host, id); the roll-up counts {} findings.\n\n",
        args.join(" "),
        num(f(&v, "history"), 0),
        num(f(&v, "agents"), 0),
        if f(&v, "history") >= 10_000_000.0 && f(&v, "agents") >= 10_000.0 {
            "the issue's sizes: tens of millions of rows, 10,000 agents"
        } else {
            "scaled down from the issue's tens of millions of rows and 10,000 agents"
        },
        wall,
        v["load_start"].as_str().unwrap_or("?"),
        v["load_end"].as_str().unwrap_or("?"),
        seeding(&v),
        num(f(&v, "agents"), 0),
        num(via_api, 0),
        f(&v, "enroll_secs"),
        live(&v),
        if exact { "yes" } else { "NO" },
        num(live_stored as f64, 0),
        num(expected as f64, 0),
        num(f(&v, "stored"), 0),
        num(f(&v, "distinct"), 0),
        num(f(&v, "rollup_findings"), 0),
    );
    body.push_str(&table(&["query", "ms before", "ms after", "< 2 s"], &rows));
    body.push_str(&peers(&v));
    if let Some(plans) = v["slow_plans"].as_array().filter(|p| !p.is_empty()) {
        body.push_str(
            "\nEvery report statement PostgreSQL logged over 1 s during the run (the slowest \
             run of each, its logged parameters put back), run again after the live phase \
             under `EXPLAIN (ANALYZE, BUFFERS)` with JIT off:\n",
        );
        for p in plans {
            body.push_str(&format!(
                "\n{} ms logged:\n\n```\n{}\n\n{}\n```\n",
                num(p["ms"].as_f64().unwrap_or(f64::NAN), 0),
                p["sql"].as_str().unwrap_or(""),
                p["plan"].as_str().unwrap_or(""),
            ));
        }
    } else {
        body.push_str("\nNo report statement took over 1 s during the run.\n");
    }
    Ok(body)
}
