//! PostgreSQL backend, for fleets that run several collector replicas behind a load balancer.
//!
//! Replicas share the database; writes that must be serialised fleet-wide (the audit hash
//! chain, rollouts, proposals) take a transaction-scoped advisory lock. Uses the synchronous
//! `postgres` client (the store is called through `spawn_blocking`) with a small pool.
//! With a CA configured, connections use TLS (rustls, ring provider) with `sslmode=require`
//! and full certificate and host name verification; without one they are plain (a local
//! database, a unix socket or a private link).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use postgres::config::SslMode;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls, Statement};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;
use super::rows::{Backend, Dialect, Row, Tx, V};
use super::sql::SqlStore;

/// The advisory lock key for serialised writes ("shai").
const WRITE_LOCK: &str = "SELECT pg_advisory_xact_lock(1936220521)";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, created_ms BIGINT NOT NULL, revoked_ms BIGINT);
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, host_id TEXT NOT NULL,
    hostname TEXT NOT NULL, grp TEXT, enrolled_ms BIGINT NOT NULL, last_seen_ms BIGINT,
    agent_version TEXT, bundle_version TEXT, mode TEXT, lost_events BIGINT NOT NULL DEFAULT 0,
    revoked_ms BIGINT);
CREATE INDEX agents_host ON agents (host_id);
CREATE TABLE batches (
    host_id TEXT NOT NULL, batch_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    received_ms BIGINT NOT NULL, accepted BIGINT NOT NULL, duplicates BIGINT NOT NULL,
    PRIMARY KEY (host_id, batch_id));
CREATE TABLE findings (
    seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL, agent_id TEXT NOT NULL,
    host_id TEXT NOT NULL, hostname TEXT NOT NULL, window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL, service_id TEXT NOT NULL, service_name TEXT NOT NULL,
    vendor TEXT NOT NULL, category TEXT NOT NULL, risk_score BIGINT NOT NULL,
    verdict TEXT NOT NULL, action TEXT NOT NULL, user_name TEXT NOT NULL, uid BIGINT NOT NULL,
    exe TEXT NOT NULL, process_name TEXT NOT NULL, container_id TEXT, count BIGINT NOT NULL,
    first_seen_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL,
    doc TEXT NOT NULL, UNIQUE (host_id, id));
CREATE INDEX findings_window ON findings (window_start_ms);
CREATE INDEX findings_service ON findings (service_id, verdict);
CREATE INDEX findings_user ON findings (user_name);
CREATE TABLE proposals (
    id BIGSERIAL PRIMARY KEY, service_id TEXT NOT NULL, verdict TEXT NOT NULL,
    scope TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL, proposed_by TEXT NOT NULL,
    proposed_ms BIGINT NOT NULL, decided_by TEXT, decided_ms BIGINT, decision_note TEXT);
CREATE TABLE bundles (
    version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL, uploaded_ms BIGINT NOT NULL, note TEXT NOT NULL, bytes BYTEA NOT NULL);
CREATE TABLE rollouts (
    id BIGSERIAL PRIMARY KEY, bundle_version TEXT NOT NULL, previous_version TEXT,
    stage TEXT NOT NULL, canary_group TEXT NOT NULL, percent BIGINT NOT NULL,
    created_by TEXT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE FUNCTION shadowai_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $f$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION shadowai_audit_append_only();
"#,
    // ---- 2: host identity, enrollment keys, batch content hashes (issue 13) ----
    r#"
CREATE TABLE hosts (
    host_id TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL, agent_id TEXT NOT NULL,
    bound_ms BIGINT NOT NULL, revoked_ms BIGINT, conflicts BIGINT NOT NULL DEFAULT 0,
    last_conflict_ms BIGINT, last_conflict_audit_ms BIGINT);
CREATE INDEX hosts_agent ON hosts (agent_id);
CREATE TABLE enrollment_keys (
    id BIGSERIAL PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, note TEXT NOT NULL,
    created_by TEXT NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT, max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0, revoked_ms BIGINT);
ALTER TABLE batches ADD COLUMN content_sha256 TEXT;
UPDATE findings SET count = 4294967295 WHERE count > 4294967295;
"#,
    // ---- 3 (naming): unknown-AI discovery candidates (issue 17) ----
    r#"
CREATE TABLE discovery (
    name TEXT NOT NULL, host_id TEXT NOT NULL, exe TEXT NOT NULL, reason TEXT NOT NULL,
    alongside TEXT, hits BIGINT NOT NULL, first_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL,
    PRIMARY KEY (name, host_id, exe));
CREATE INDEX discovery_host ON discovery (host_id);
CREATE INDEX discovery_last ON discovery (last_ms);
"#,
    // ---- 4 (sessions): inventory of AI agents, MCP servers and local runtimes (issue 12) ----
    r#"
CREATE TABLE inventory_items (
    host_id TEXT NOT NULL, kind TEXT NOT NULL, item_id TEXT NOT NULL, hostname TEXT NOT NULL,
    name TEXT NOT NULL, flags TEXT NOT NULL, first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL, ended BIGINT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (host_id, kind, item_id));
CREATE INDEX inventory_items_last ON inventory_items (last_seen_ms);
"#,
    // ---- 5 (govern): who created each person token; the bundle each agent refused (issue 10) ----
    r#"
ALTER TABLE tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN bundle_error_version TEXT;
ALTER TABLE agents ADD COLUMN bundle_error TEXT;
"#,
    // ---- 6 (usage): the agent's pipeline health from its heartbeats (issue 8) ----
    r#"
ALTER TABLE agents ADD COLUMN pipeline TEXT;
"#,
    // ---- 7 (soc): issue 15 report columns, first uses, first-use alerts ----
    r#"
ALTER TABLE findings ADD COLUMN bytes_out BIGINT;
ALTER TABLE findings ADD COLUMN bytes_in BIGINT;
ALTER TABLE findings ADD COLUMN policy_version TEXT;
ALTER TABLE findings ADD COLUMN layer TEXT;
ALTER TABLE findings ADD COLUMN grp TEXT;
UPDATE findings SET grp = (SELECT a.grp FROM agents a WHERE a.agent_id = findings.agent_id);
CREATE INDEX findings_host ON findings (host_id, window_start_ms);
CREATE INDEX findings_exe ON findings (exe);
CREATE INDEX findings_verdict_window ON findings (verdict, window_start_ms);
CREATE TABLE first_uses (
    scope TEXT NOT NULL, subject TEXT NOT NULL, service_id TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL, PRIMARY KEY (scope, subject, service_id));
INSERT INTO first_uses (scope, subject, service_id, first_seen_ms)
    SELECT 'fleet', verdict, service_id, MIN(first_seen_ms) FROM findings GROUP BY verdict, service_id;
INSERT INTO first_uses (scope, subject, service_id, first_seen_ms)
    SELECT 'host', host_id, '', MIN(first_seen_ms) FROM findings GROUP BY host_id;
INSERT INTO first_uses (scope, subject, service_id, first_seen_ms)
    SELECT 'user', user_name, '', MIN(first_seen_ms) FROM findings GROUP BY user_name;
INSERT INTO first_uses (scope, subject, service_id, first_seen_ms)
    SELECT 'process', exe, '', MIN(first_seen_ms) FROM findings GROUP BY exe;
INSERT INTO first_uses (scope, subject, service_id, first_seen_ms)
    SELECT 'group', COALESCE(grp, ''), '', MIN(first_seen_ms) FROM findings GROUP BY COALESCE(grp, '');
CREATE TABLE alert_keys (
    scope TEXT NOT NULL, subject TEXT NOT NULL, service_id TEXT NOT NULL,
    alert_id BIGINT NOT NULL, PRIMARY KEY (scope, subject, service_id));
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY, created_ms BIGINT NOT NULL, service_id TEXT NOT NULL,
    doc TEXT NOT NULL);
INSERT INTO alert_keys (scope, subject, service_id, alert_id)
    SELECT DISTINCT 'fleet', '', service_id, 0 FROM findings WHERE verdict IN ('unsanctioned', 'blocked');
INSERT INTO alert_keys (scope, subject, service_id, alert_id)
    SELECT DISTINCT 'host', host_id, service_id, 0 FROM findings WHERE verdict IN ('unsanctioned', 'blocked');
INSERT INTO alert_keys (scope, subject, service_id, alert_id)
    SELECT DISTINCT 'user', user_name, service_id, 0 FROM findings WHERE verdict IN ('unsanctioned', 'blocked');
"#,
    // ---- soc: durable alert outbox, per-host alert budgets (issues 15, 13) ----
    r#"
CREATE TABLE alert_outbox (
    id BIGSERIAL PRIMARY KEY, created_ms BIGINT NOT NULL, host_id TEXT NOT NULL,
    kind TEXT NOT NULL, doc TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL, last_error TEXT, done_ms BIGINT);
CREATE INDEX alert_outbox_due ON alert_outbox (state, next_ms);
CREATE INDEX alert_outbox_state_id ON alert_outbox (state, id);
CREATE TABLE alert_budget (
    host_id TEXT NOT NULL, window_ms BIGINT NOT NULL, raised BIGINT NOT NULL,
    suppressed BIGINT NOT NULL, noticed BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (host_id, window_ms));
CREATE INDEX alert_budget_window ON alert_budget (window_ms);
"#,
    // ---- naming: catalogue proposals, the collector's catalogue overlay (issue 17) ----
    r#"
CREATE TABLE catalogue_proposals (
    id BIGSERIAL PRIMARY KEY, entry_id TEXT NOT NULL, candidate TEXT, entry TEXT NOT NULL,
    reason TEXT NOT NULL, status TEXT NOT NULL, proposed_by TEXT NOT NULL,
    proposed_ms BIGINT NOT NULL, decided_by TEXT, decided_ms BIGINT, decision_note TEXT);
CREATE INDEX catalogue_proposals_entry ON catalogue_proposals (entry_id, status);
CREATE INDEX catalogue_proposals_status ON catalogue_proposals (status);
CREATE INDEX catalogue_proposals_candidate ON catalogue_proposals (candidate);
"#,
    // ---- rollup: the daily roll-up behind the SOC's reports (issue 14) ----
    super::rollup_sql::POSTGRES_MIGRATION,
    super::rollup_sums::POSTGRES_MIGRATION,
    super::rollup_sql::POSTGRES_TOTALS_MIGRATION,
    // ---- report indexes: the hour trend and one host's findings at fleet scale (issue 14) ----
    super::report_index::POSTGRES_MIGRATION,
    // ---- planner statistics on the window length: without them PostgreSQL gives
    // `window_end_ms - window_start_ms > 3600000` a default third of the table and scans it
    // in parallel instead of reading the (nearly empty) partial index `findings_long` —
    // 2.1 s of the 7-day hour trend at 10 M rows on a cold cache (bench/REPORT.md 5b) ----
    "CREATE STATISTICS findings_window_len ON (window_end_ms - window_start_ms) FROM findings;\n\
     ANALYZE findings;\n",
    // ---- fold: the roll-up kept off the ingest statement (issue 14) ----
    super::rollup_sql::POSTGRES_FOLD_MIGRATION,
];

pub struct Postgres {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    pool: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

/// A pooled connection and the write statements prepared on it.
struct Conn {
    client: Client,
    /// Statements [`Tx::exec`] ran on this connection, by their SQL: each is parsed once per
    /// connection instead of once per execution (an ingest's multi-row `INSERT`s carry
    /// 1,792 parameters), and runs in one round trip instead of two. Reads are not kept:
    /// their plans depend on the values (a report's time range).
    prepared: HashMap<String, Statement>,
}

/// Statements kept per connection; the cache starts over when it is full.
const PREPARED_MAX: usize = 128;

/// Connects (`host=… user=… dbname=…` or a `postgresql://` URL) and migrates. With `ca`
/// (PEM), every connection is TLS and the server certificate must chain to it.
pub fn open(
    conn: &str,
    pool_size: usize,
    ca: Option<&Path>,
) -> Result<SqlStore<Postgres>, StoreError> {
    let mut config: Config = conn.parse()?;
    let tls = match ca {
        None => None,
        Some(path) => {
            config.ssl_mode(SslMode::Require);
            Some(tls_connector(path)?)
        }
    };
    let pool = (0..pool_size.max(1)).map(|_| Mutex::new(None)).collect();
    let backend = Postgres {
        config,
        tls,
        pool,
        next: AtomicUsize::new(0),
    };
    backend.migrate()?;
    Ok(SqlStore::new(backend))
}

fn tls_connector(ca: &Path) -> Result<MakeRustlsConnect, StoreError> {
    let bad = |reason: String| StoreError::TlsCa {
        path: ca.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(cfg))
}

impl Drop for Postgres {
    /// `postgres::Client` blocks on its own runtime when dropped, which panics on a tokio
    /// worker thread; close the connections on a plain thread instead.
    fn drop(&mut self) {
        let clients: Vec<Conn> = self
            .pool
            .iter_mut()
            .filter_map(|m| m.get_mut().unwrap_or_else(|p| p.into_inner()).take())
            .collect();
        if !clients.is_empty() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(clients));
        }
    }
}

impl Postgres {
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Prefer an idle connection; else wait for one round-robin.
        let mut guard = None;
        for slot in &self.pool {
            if let Ok(g) = slot.try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
                self.pool
                    .get(i)
                    .ok_or(StoreError::Poisoned)?
                    .lock()
                    .map_err(|_| StoreError::Poisoned)?
            }
        };
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            let client = match &self.tls {
                Some(tls) => self.config.connect(tls.clone())?,
                None => self.config.connect(NoTls)?,
            };
            *guard = Some(Conn {
                client,
                prepared: HashMap::new(),
            });
        }
        match guard.as_mut() {
            Some(c) => f(c),
            None => Err(StoreError::Poisoned),
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.with_client(|c| {
            let mut tx = c.client.transaction()?;
            tx.batch_execute(WRITE_LOCK)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            )?;
            let current: Option<i64> = tx
                .query_one("SELECT MAX(version) FROM schema_version", &[])?
                .get(0);
            let current = current.unwrap_or(0);
            let known = MIGRATIONS.len() as i64;
            if current > known {
                return Err(StoreError::SchemaTooNew {
                    found: current,
                    known,
                });
            }
            for (i, m) in MIGRATIONS.iter().enumerate().skip(current as usize) {
                tx.batch_execute(m)?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&(i as i64 + 1)],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

fn params(p: &[V]) -> Vec<Box<dyn ToSql + Sync>> {
    p.iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                V::Int(i) => Box::new(*i),
                V::Text(s) => Box::new(s.clone()),
                V::Bytes(b) => Box::new(b.clone()),
            }
        })
        .collect()
}

struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    prepared: &'a mut HashMap<String, Statement>,
}

impl Tx for PgTx<'_, '_> {
    fn exec(&mut self, sql: &str, p: &[V]) -> Result<u64, StoreError> {
        let boxed = params(p);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let stmt = match self.prepared.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.tx.prepare(sql)?;
                if self.prepared.len() >= PREPARED_MAX {
                    self.prepared.clear();
                }
                self.prepared.insert(sql.to_owned(), s.clone());
                s
            }
        };
        Ok(self.tx.execute(&stmt, &refs)?)
    }

    fn query(&mut self, table: &'static str, sql: &str, p: &[V]) -> Result<Vec<Row>, StoreError> {
        let boxed = params(p);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self.tx.query(sql, &refs)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut cols = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let t = c.type_();
                let v = if *t == Type::INT8 {
                    V::Int(r.try_get::<_, Option<i64>>(i)?)
                } else if *t == Type::INT4 {
                    V::Int(r.try_get::<_, Option<i32>>(i)?.map(i64::from))
                } else if *t == Type::INT2 {
                    V::Int(r.try_get::<_, Option<i16>>(i)?.map(i64::from))
                } else if *t == Type::BYTEA {
                    V::Bytes(r.try_get::<_, Option<Vec<u8>>>(i)?.unwrap_or_default())
                } else {
                    V::Text(r.try_get::<_, Option<String>>(i)?)
                };
                cols.push(v);
            }
            out.push(Row { table, cols });
        }
        Ok(out)
    }
}

impl Backend for Postgres {
    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with_client(|c| {
            let mut tx = c.client.transaction()?;
            f(&mut PgTx {
                tx: &mut tx,
                prepared: &mut c.prepared,
            })?;
            tx.commit()?;
            Ok(())
        })
    }

    fn lock_sql(&self) -> Option<&'static str> {
        Some(WRITE_LOCK)
    }

    fn report_setup_sql(&self) -> Option<&'static str> {
        Some("SET LOCAL jit = off")
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}
