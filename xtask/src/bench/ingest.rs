//! (5) Collector ingest over HTTPS, durable, SQLite and PostgreSQL alternating; and the fleet
//! simulation. Both run the collector crate's `ingest` bench binary (the real
//! `shadowai-collector` binary, real HTTPS clients) and read the JSON line it prints.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Ctx;
use super::report::table;
use super::stats::{Trials, num};

/// The collector's `ingest` bench executable with `args` (run directly: a nested `cargo bench`
/// from inside `cargo xtask` may rebuild the dependency tree).
fn bench_cmd(ctx: &Ctx, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(super::bench_exe(&ctx.target, "ingest")?);
    cmd.args(args)
        .arg("--work")
        .arg(ctx.work.join("collector"))
        .current_dir(&ctx.root)
        .stderr(std::process::Stdio::inherit());
    Ok(cmd)
}

fn bench(ctx: &Ctx, args: &[&str]) -> Result<Value> {
    let out = bench_cmd(ctx, args)?
        .output()
        .context("running the collector's ingest bench")?;
    if !out.status.success() {
        bail!("ingest bench {args:?} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("ingest bench {args:?} printed no result"))?;
    Ok(serde_json::from_str(line)?)
}

/// The pid of a child of `parent` whose command name is `comm`.
fn child_named(parent: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid …": comm may hold spaces, so split at the last ')'.
        let (head, rest) = stat.rsplit_once(") ")?;
        let name = head.split_once(" (")?.1;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && name == comm).then_some(pid)
    })
}

/// One more SQLite ingest trial with `perf record -g` attached to the collector for its
/// middle seconds: where the collector's time goes (self time by symbol).
fn profile_sqlite(ctx: &Ctx, common: &[&str]) -> Result<String> {
    let mut args = vec!["ingest", "--backend", "sqlite"];
    args.extend(common);
    let mut child = bench_cmd(ctx, &args)?
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting the ingest bench")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let pid = loop {
        // The kernel truncates command names to 15 bytes.
        if let Some(pid) = child_named(child.id(), "shadowai-collec") {
            break pid;
        }
        if std::time::Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no collector process under the ingest bench within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Enrollment and batch encoding come first; sample while uploads run.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let data = ctx.work.join("collector-sqlite.perf.data");
    let secs = ctx.ingest_secs.saturating_sub(2).max(2).to_string();
    let st = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string(), "--", "sleep", &secs])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("starting perf")?;
    let waited = child.wait()?;
    if !st.success() {
        bail!("perf record failed: {st}");
    }
    if !waited.success() {
        bail!("the profiled ingest trial failed: {waited}");
    }
    super::replay::perf_top(&data)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// One side of the ingest comparison: a store and a collector build.
struct Side {
    store: &'static str,
    /// An earlier collector (`--collector-before`), else this build's.
    before: Option<std::path::PathBuf>,
    rate: Trials,
    p50: Trials,
    p99: Trials,
    exact: bool,
    errors: u64,
}

impl Side {
    fn new(store: &'static str, before: Option<&std::path::Path>) -> Side {
        Side {
            store,
            before: before.map(std::path::Path::to_path_buf),
            rate: Trials::default(),
            p50: Trials::default(),
            p99: Trials::default(),
            exact: true,
            errors: 0,
        }
    }

    fn name(&self) -> String {
        match self.before {
            Some(_) => format!("{} (before)", self.store),
            None => self.store.to_owned(),
        }
    }

    fn trial(&mut self, ctx: &Ctx, common: &[&str]) -> Result<()> {
        let mut args = vec!["ingest", "--backend", self.store];
        args.extend(common);
        let exe = self.before.as_ref().map(|p| p.display().to_string());
        if let Some(exe) = &exe {
            args.extend(["--collector", exe.as_str()]);
        }
        let v = bench(ctx, &args)?;
        self.rate.push(f(&v, "findings_per_sec"));
        self.p50.push(f(&v, "p50_ms"));
        self.p99.push(f(&v, "p99_ms"));
        self.exact &= v["acked"] == v["stored"];
        self.errors += v["errors"].as_u64().unwrap_or(0);
        Ok(())
    }

    fn row(&self) -> Vec<String> {
        let target = if self.store == "sqlite" {
            50_000.0
        } else {
            20_000.0
        };
        vec![
            self.name(),
            self.rate.show(0),
            self.p50.show(0),
            self.p99.show(0),
            self.errors.to_string(),
            if self.exact { "yes" } else { "**no**" }.to_owned(),
            format!(
                "≥ {}: {}",
                num(target, 0),
                if self.rate.median() >= target {
                    "met"
                } else {
                    "**missed**"
                }
            ),
        ]
    }
}

/// The load average now (1, 5, 15 min).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let agents = ctx.ingest_agents.to_string();
    let secs = ctx.ingest_secs.to_string();
    let common = [
        "--agents",
        agents.as_str(),
        "--secs",
        secs.as_str(),
        "--batch",
        "500",
    ];
    let before = ctx.collector_before.as_deref();
    let mut sides = vec![Side::new("sqlite", None)];
    sides.extend(before.map(|b| Side::new("sqlite", Some(b))));
    sides.push(Side::new("postgres", None));
    sides.extend(before.map(|b| Side::new("postgres", Some(b))));
    let load_start = load();
    for trial in 0..ctx.trials {
        for side in sides.iter_mut() {
            eprintln!(
                "[bench] ingest {} trial {}/{}",
                side.name(),
                trial + 1,
                ctx.trials
            );
            side.trial(ctx, &common)?;
        }
    }
    let load_end = load();
    let rows: Vec<Vec<String>> = sides.iter().map(Side::row).collect();
    let mut body = format!(
        "`cargo bench -p shadowai-collector --bench ingest -- ingest --backend sqlite|postgres {}` \
         (the bench executable run directly), \
         {} alternating trials ({}). The real `shadowai-collector` (release) \
         over HTTPS with its generated certificate; {agents} simulated agents, each enrolled with \
         its own host key from its own loopback address, uploading gzip batches of 500 findings \
         back to back for {secs} s (batches made before the clock starts). Durable: SQLite WAL \
         with `synchronous=FULL` (group commit: batches that arrive while a transaction is \
         written share the next COMMIT; each is answered after it); PostgreSQL 15 with \
         `fsync=on`, `synchronous_commit=on`, pool 8. Per-token/IP rate limits raised so the \
         store is what is measured. *exact* = findings stored equal findings acknowledged. \
         Load average {load_start} at the start, {load_end} at the end.\n\n",
        common.join(" "),
        ctx.trials,
        sides.iter().map(Side::name).collect::<Vec<_>>().join(", ")
    );
    let sqlite_missed = sides.first().is_some_and(|s| s.rate.median() < 50_000.0);
    let profile = sqlite_missed.then(|| profile_sqlite(ctx, &common));
    body.push_str(&table(
        &[
            "store",
            "findings/s",
            "request p50 ms",
            "request p99 ms",
            "errors",
            "exact",
            "target",
        ],
        &rows,
    ));
    if let Some(b) = before {
        let ratio = |store: &str| {
            let now = sides
                .iter()
                .find(|s| s.store == store && s.before.is_none());
            let then = sides
                .iter()
                .find(|s| s.store == store && s.before.is_some());
            match (now, then) {
                (Some(n), Some(t)) => Trials::ratio(&n.rate, &t.rate).show(2),
                _ => "n/a".to_owned(),
            }
        };
        body.push_str(&format!(
            "\nThis build / the collector before (`{}`), findings/s per trial: SQLite {}, \
             PostgreSQL {}.\n",
            b.display(),
            ratio("sqlite"),
            ratio("postgres")
        ));
    }
    match profile {
        Some(Ok(p)) => body.push_str(&format!(
            "\nSQLite target missed: where the collector spends an ingest (`perf record -g -p \
             <collector>` during the middle of one more SQLite trial, self time by symbol; the \
             collector's threads only):\n\n```\n{p}\n```\n"
        )),
        Some(Err(e)) => body.push_str(&format!("\nThe SQLite ingest profile failed: {e:#}\n")),
        None => {}
    }
    match profile_postgres(ctx, &common) {
        Ok(p) => body.push_str(&p),
        Err(e) => body.push_str(&format!("\nThe PostgreSQL ingest profile failed: {e:#}\n")),
    }
    Ok(body)
}

/// One more PostgreSQL trial with `--pg-profile yes`: the collector's sessions sampled every
/// 10 ms (`pg_stat_activity`) and its statements by total time (`pg_stat_statements`).
fn profile_postgres(ctx: &Ctx, common: &[&str]) -> Result<String> {
    let mut args = vec!["ingest", "--backend", "postgres", "--pg-profile", "yes"];
    args.extend(common);
    eprintln!("[bench] ingest postgres profile trial");
    let v = bench(ctx, &args)?;
    let p = &v["pg_profile"];
    let states: Vec<Vec<String>> = p["states"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            vec![
                s["state"].as_str().unwrap_or("?").to_owned(),
                format!("{:.1} %", 100.0 * s["share"].as_f64().unwrap_or(f64::NAN)),
            ]
        })
        .collect();
    let statements: Vec<Vec<String>> = p["statements"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let calls = s["calls"].as_f64().unwrap_or(f64::NAN);
            let ms = s["total_ms"].as_f64().unwrap_or(f64::NAN);
            vec![
                format!(
                    "`{}`",
                    s["query"].as_str().unwrap_or("?").replace('|', "\\|")
                ),
                num(calls, 0),
                num(ms, 0),
                num(1000.0 * ms / calls, 0),
            ]
        })
        .collect();
    Ok(format!(
        "\nWhere a PostgreSQL ingest's time goes (one more trial, {} findings/s): the \
         collector's sessions sampled every 10 ms from `pg_stat_activity` (`active` + its wait \
         event, `cpu` = none; `idle in transaction` = the session waits for the collector \
         between statements)\n\n{}\nand its statements by total execution time \
         (`pg_stat_statements`):\n\n{}",
        num(f(&v, "findings_per_sec"), 0),
        table(&["session state", "share of samples"], &states),
        table(
            &["statement", "calls", "total ms", "µs per call"],
            &statements
        ),
    ))
}

pub fn fleet(ctx: &Ctx) -> Result<String> {
    let history = ctx.fleet_history.to_string();
    let agents = ctx.fleet_agents.to_string();
    let args = [
        "fleet",
        "--history",
        history.as_str(),
        "--agents",
        agents.as_str(),
        "--batch",
        "20",
    ];
    eprintln!("[bench] fleet simulation");
    let v = bench(ctx, &args)?;
    let q = |phase: &str, k: &str| num(v[phase][k].as_f64().unwrap_or(f64::NAN), 0);
    let names = [
        ("overview_24h", "overview: services × verdict, last 24 h"),
        ("overview_7d", "overview: services × verdict, last 7 days"),
        ("overview_90d", "overview: services × verdict, all 90 days"),
        ("trend_90d", "overview: trend per day, all 90 days"),
        (
            "trend_7d",
            "overview: trend per hour, last 7 days (raw findings)",
        ),
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
    let rows: Vec<Vec<String>> = names
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
    let live = v["live_stored"].as_i64().unwrap_or(-2);
    let exact = expected == live
        && v["stored"] == v["distinct"]
        && v["stored"] == v["rollup_findings"]
        && v["failed_batches"].as_u64().unwrap_or(0) == 0;
    let rows_total = v["stored"].as_f64().unwrap_or(f64::NAN);
    // Older bench builds enrolled every agent over the API.
    let via_api = v["enrolled_via_api"]
        .as_f64()
        .unwrap_or_else(|| f(&v, "agents"));
    let mut body = format!(
        "`cargo bench -p shadowai-collector --bench ingest -- {}`. {} rows of history and {} \
         simulated agents ({}), one batch of 20 findings each in the live phase.\n\n\
         1. One PostgreSQL 15 (durable settings as above), two `shadowai-collector` replicas \
            (A and B, pool 8 each) on the same database, each with its own HTTPS certificate.\n\
         2. History seeded in bulk: {} findings spread over the 90 days before now (60 s \
            windows), {} hosts with one user each (1 finding in 20 a second user's), a main, \
            second and third AI service per host (75 / 18 / 7 %), by two parallel `INSERT … \
            SELECT generate_series` inside PostgreSQL ({:.0} s, {} rows/s) with the secondary \
            indexes dropped and the roll-up's trigger disabled; indexes rebuilt after ({:.0} s), \
            then the roll-up filled by the migration's back-fill ({:.0} s): {} day rows and {} \
            key rows ({} MiB). `findings` is then {} MiB; the database {} MiB. Load average \
            {} at the start, {} at the end.\n\
         3. {} agents: the first {} enrolled through the replicas alternately over HTTPS, each \
            from its own loopback address with its own host key ({:.0} s, {:.0} enrollments/s — \
            at that rate all of them would take {:.0} s of the 15 minutes), the rest seeded in \
            bulk into `agents`/`hosts` like the history (token hash as the collector stores it).\n\
         4. Live ingest: each agent uploads one batch to its replica, 128 at a time; replica A \
            is killed with SIGKILL once half the agents have started; uploads to it fail and \
            are retried on B with the same batch id ({} retries). {:.1} s, {} findings/s.\n\
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
        num(f(&v, "history"), 0),
        num(f(&v, "agents"), 0),
        f(&v, "seed_insert_secs"),
        num(f(&v, "history") / f(&v, "seed_insert_secs"), 0),
        f(&v, "seed_index_secs"),
        f(&v, "seed_rollup_secs"),
        num(f(&v, "rollup_days_rows"), 0),
        num(f(&v, "rollup_keys_rows"), 0),
        num(f(&v, "rollup_bytes") / 1048576.0, 0),
        num(f(&v, "table_bytes") / 1048576.0, 0),
        num(f(&v, "db_bytes") / 1048576.0, 0),
        v["load_start"].as_str().unwrap_or("?"),
        v["load_end"].as_str().unwrap_or("?"),
        num(f(&v, "agents"), 0),
        num(via_api, 0),
        f(&v, "enroll_secs"),
        via_api / f(&v, "enroll_secs"),
        f(&v, "agents") * f(&v, "enroll_secs") / via_api,
        v["retries"],
        f(&v, "live_secs"),
        num(f(&v, "live_findings_per_sec"), 0),
        if exact { "yes" } else { "NO" },
        num(live as f64, 0),
        num(expected as f64, 0),
        num(rows_total, 0),
        num(f(&v, "distinct"), 0),
        num(f(&v, "rollup_findings"), 0),
    );
    body.push_str(&table(&["query", "ms before", "ms after", "< 2 s"], &rows));
    body.push_str(&format!(
        "\nThe unfiltered day trend reads the per-day sums (distinct hosts and users, events, \
         bytes per day × service × verdict, kept by triggers): back-filled in {:.0} s, \
         {} rows ({} MiB with their per-host and per-user day rows).\n",
        f(&v, "seed_sums_secs"),
        num(f(&v, "sums_rows"), 0),
        num(f(&v, "sums_bytes") / 1048576.0, 0),
    ));
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
    }
    let slowest = names
        .iter()
        .filter(|(k, _)| !k.starts_with("drill") && *k != "findings_page")
        .map(|(k, _)| (v["queries_after"][k].as_f64().unwrap_or(f64::NAN), *k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let days_rows = f(&v, "rollup_days_rows");
    if let Some((ms, k)) = slowest {
        body.push_str(&format!(
            "\nWhere one PostgreSQL stops being enough: each report's cost follows what it reads, \
             not the findings. Over all time the services, Who, uploaders and pickers reports \
             read one row per key (`finding_keys`, {} rows: hosts × the services, users and \
             executables each uses); the day trend reads one row per day × service × verdict \
             ({} rows); a report with a start reads the roll-up's days in its range ({} day rows \
             in all, {:.1} findings each) plus the raw findings of its first, partial day; the \
             hour trend reads the raw findings of its range (days cannot give hours). The \
             slowest overview query here: {k}, {} ms. Past this: an hourly roll-up for the hour \
             trend and the partial first day, monthly partitions of the findings and the \
             roll-up (retention = `DROP PARTITION`), read replicas for the SOC's queries, and a \
             columnar store for raw evidence once findings pass ~10⁹.\n",
            num(f(&v, "rollup_keys_rows"), 0),
            num(f(&v, "sums_rows"), 0),
            num(days_rows, 0),
            rows_total / days_rows,
            num(ms, 0),
        ));
    }
    Ok(body)
}
