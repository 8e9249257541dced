//! SQLite backend: the embedded default (one file, nothing to install).
//!
//! One connection behind a mutex, WAL journal with `synchronous=FULL` so a transaction is on
//! disk when `COMMIT` returns (an ingest ack means the batch survives a crash or power loss).
//! An ingest encodes its rows before it takes the writer (see `sql_findings`), binds them
//! without copying, and checkpoints rarely (64 MiB of WAL).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;
use super::rows::{Backend, Dialect, Row, Tx, V};
use super::sql::SqlStore;

/// Schema migrations, applied in order; `schema_version` holds how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL, revoked_ms INTEGER);
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, host_id TEXT NOT NULL,
    hostname TEXT NOT NULL, grp TEXT, enrolled_ms INTEGER NOT NULL, last_seen_ms INTEGER,
    agent_version TEXT, bundle_version TEXT, mode TEXT, lost_events INTEGER NOT NULL DEFAULT 0,
    revoked_ms INTEGER);
CREATE INDEX agents_host ON agents (host_id);
CREATE TABLE batches (
    host_id TEXT NOT NULL, batch_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL, accepted INTEGER NOT NULL, duplicates INTEGER NOT NULL,
    PRIMARY KEY (host_id, batch_id));
CREATE TABLE findings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, agent_id TEXT NOT NULL,
    host_id TEXT NOT NULL, hostname TEXT NOT NULL, window_start_ms INTEGER NOT NULL,
    window_end_ms INTEGER NOT NULL, service_id TEXT NOT NULL, service_name TEXT NOT NULL,
    vendor TEXT NOT NULL, category TEXT NOT NULL, risk_score INTEGER NOT NULL,
    verdict TEXT NOT NULL, action TEXT NOT NULL, user_name TEXT NOT NULL, uid INTEGER NOT NULL,
    exe TEXT NOT NULL, process_name TEXT NOT NULL, container_id TEXT, count INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
    doc TEXT NOT NULL, UNIQUE (host_id, id));
CREATE INDEX findings_window ON findings (window_start_ms);
CREATE INDEX findings_service ON findings (service_id, verdict);
CREATE INDEX findings_user ON findings (user_name);
CREATE TABLE proposals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, service_id TEXT NOT NULL, verdict TEXT NOT NULL,
    scope TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL, proposed_by TEXT NOT NULL,
    proposed_ms INTEGER NOT NULL, decided_by TEXT, decided_ms INTEGER, decision_note TEXT);
CREATE TABLE bundles (
    version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    uploaded_by TEXT NOT NULL, uploaded_ms INTEGER NOT NULL, note TEXT NOT NULL, bytes BLOB NOT NULL);
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, bundle_version TEXT NOT NULL, previous_version TEXT,
    stage TEXT NOT NULL, canary_group TEXT NOT NULL, percent INTEGER NOT NULL,
    created_by TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // ---- 2: host identity, enrollment keys, batch content hashes (issue 13) ----
    r#"
CREATE TABLE hosts (
    host_id TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL, agent_id TEXT NOT NULL,
    bound_ms INTEGER NOT NULL, revoked_ms INTEGER, conflicts INTEGER NOT NULL DEFAULT 0,
    last_conflict_ms INTEGER, last_conflict_audit_ms INTEGER);
CREATE INDEX hosts_agent ON hosts (agent_id);
CREATE TABLE enrollment_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key_hash TEXT NOT NULL UNIQUE, note TEXT NOT NULL,
    created_by TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER, max_uses INTEGER,
    uses INTEGER NOT NULL DEFAULT 0, revoked_ms INTEGER);
ALTER TABLE batches ADD COLUMN content_sha256 TEXT;
UPDATE findings SET count = 4294967295 WHERE count > 4294967295;
"#,
    // ---- 3 (naming): unknown-AI discovery candidates (issue 17) ----
    r#"
CREATE TABLE discovery (
    name TEXT NOT NULL, host_id TEXT NOT NULL, exe TEXT NOT NULL, reason TEXT NOT NULL,
    alongside TEXT, hits INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
    PRIMARY KEY (name, host_id, exe));
CREATE INDEX discovery_host ON discovery (host_id);
CREATE INDEX discovery_last ON discovery (last_ms);
"#,
    // ---- 4 (sessions): inventory of AI agents, MCP servers and local runtimes (issue 12) ----
    r#"
CREATE TABLE inventory_items (
    host_id TEXT NOT NULL, kind TEXT NOT NULL, item_id TEXT NOT NULL, hostname TEXT NOT NULL,
    name TEXT NOT NULL, flags TEXT NOT NULL, first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL, ended INTEGER NOT NULL, doc TEXT NOT NULL,
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
ALTER TABLE findings ADD COLUMN bytes_out INTEGER;
ALTER TABLE findings ADD COLUMN bytes_in INTEGER;
ALTER TABLE findings ADD COLUMN policy_version TEXT;
ALTER TABLE findings ADD COLUMN layer TEXT;
ALTER TABLE findings ADD COLUMN grp TEXT;
UPDATE findings SET grp = (SELECT a.grp FROM agents a WHERE a.agent_id = findings.agent_id);
CREATE INDEX findings_host ON findings (host_id, window_start_ms);
CREATE INDEX findings_exe ON findings (exe);
CREATE INDEX findings_verdict_window ON findings (verdict, window_start_ms);
CREATE TABLE first_uses (
    scope TEXT NOT NULL, subject TEXT NOT NULL, service_id TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL, PRIMARY KEY (scope, subject, service_id));
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
    alert_id INTEGER NOT NULL, PRIMARY KEY (scope, subject, service_id));
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, service_id TEXT NOT NULL,
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
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, host_id TEXT NOT NULL,
    kind TEXT NOT NULL, doc TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL, last_error TEXT, done_ms INTEGER);
CREATE INDEX alert_outbox_due ON alert_outbox (state, next_ms);
CREATE INDEX alert_outbox_state_id ON alert_outbox (state, id);
CREATE TABLE alert_budget (
    host_id TEXT NOT NULL, window_ms INTEGER NOT NULL, raised INTEGER NOT NULL,
    suppressed INTEGER NOT NULL, noticed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (host_id, window_ms));
CREATE INDEX alert_budget_window ON alert_budget (window_ms);
"#,
    // ---- naming: catalogue proposals, the collector's catalogue overlay (issue 17) ----
    r#"
CREATE TABLE catalogue_proposals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, entry_id TEXT NOT NULL, candidate TEXT, entry TEXT NOT NULL,
    reason TEXT NOT NULL, status TEXT NOT NULL, proposed_by TEXT NOT NULL,
    proposed_ms INTEGER NOT NULL, decided_by TEXT, decided_ms INTEGER, decision_note TEXT);
CREATE INDEX catalogue_proposals_entry ON catalogue_proposals (entry_id, status);
CREATE INDEX catalogue_proposals_status ON catalogue_proposals (status);
CREATE INDEX catalogue_proposals_candidate ON catalogue_proposals (candidate);
"#,
    // ---- rollup: the daily roll-up behind the SOC's reports (issue 14) ----
    super::rollup_sql::SQLITE_MIGRATION,
    super::rollup_sums::SQLITE_MIGRATION,
    super::rollup_sql::SQLITE_TOTALS_MIGRATION,
    // ---- report indexes: the hour trend and one host's findings at fleet scale (issue 14) ----
    super::report_index::SQLITE_MIGRATION,
    // ---- fold: the roll-up kept off the ingest statement (issue 14) ----
    super::rollup_sql::SQLITE_FOLD_MIGRATION,
];

pub struct Sqlite {
    conn: Mutex<Connection>,
    /// The background checkpointer's connection (`wal.rs`).
    checkpointer: Mutex<Connection>,
    /// Read-only connections for searches, reports and exports: on WAL they read a snapshot
    /// without waiting for (or holding up) the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

/// The writer's page cache (negative: KiB, SQLite's convention).
const WRITER_CACHE_KIB: i64 = -65_536;

/// WAL pages (4 KiB) past which the writer checkpoints itself after a commit: a backstop
/// only, as the background checkpointer (`wal.rs`) copies the log every fraction of a second.
const WAL_BACKSTOP_PAGES: i64 = 65_536;

/// Bytes the WAL file is cut back to after the log restarts (it keeps its largest size
/// otherwise).
const WAL_FILE_KEEP_BYTES: i64 = 64 << 20;

/// Reader connections beside the writer.
const READERS: usize = 2;

/// Opens (creating if needed) the database file and migrates it.
pub fn open(path: &Path) -> Result<SqlStore<Sqlite>, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Ingest writes one row into each of the findings table's indexes per finding: keep
    // their hot pages in the writer's cache (64 MiB) rather than re-reading them.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    // The background checkpointer copies the log into the database file (`wal.rs`); the
    // writer checkpoints itself only past 256 MiB of WAL. Durability does not change: every
    // COMMIT still fsyncs its WAL frames (synchronous=FULL).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_FILE_KEEP_BYTES)?;
    // Statement and savepoint journals in memory: a multi-row INSERT inside a transaction
    // keeps a statement journal (a NOT NULL violation aborts the statement alone), and a
    // group commit that falls back to savepoints copies every page a batch changes first —
    // to a temporary file by default (a write system call per page).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let checkpointer = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })?;
    // The database file is fsynced after a checkpoint copied frames into it.
    checkpointer.pragma_update(None, "synchronous", "FULL")?;
    let mut backend = Sqlite {
        conn: Mutex::new(conn),
        checkpointer: Mutex::new(checkpointer),
        readers: Vec::new(),
        next_reader: std::sync::atomic::AtomicUsize::new(0),
    };
    backend.migrate()?;
    for _ in 0..READERS {
        let r = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        r.busy_timeout(std::time::Duration::from_secs(10))?;
        backend.readers.push(Mutex::new(r));
    }
    Ok(SqlStore::new(backend))
}

impl Sqlite {
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
        let current: Option<i64> =
            tx.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
        let current = current.unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(m)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// `$1` → `?1` (SQLite's numbered parameters).
fn to_sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A parameter bound by reference: SQLite copies the bytes while binding, so nothing is
/// cloned per value (an ingest binds 28 per finding).
struct Bound<'a>(&'a V);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            V::Int(Some(i)) => ValueRef::Integer(*i),
            V::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            V::Int(None) | V::Text(None) => ValueRef::Null,
            V::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

fn bind(params: &[V]) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(params.iter().map(Bound))
}

struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(&to_sqlite(sql))?;
        let n = stmt.execute(bind(params))?;
        Ok(n as u64)
    }

    fn query(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[V],
    ) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.0.prepare_cached(&to_sqlite(sql))?;
        let ncols = stmt.column_count();
        let mut rows = stmt.query(bind(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut cols = Vec::with_capacity(ncols);
            for i in 0..ncols {
                cols.push(match r.get_ref(i)? {
                    ValueRef::Null => V::Int(None),
                    ValueRef::Integer(v) => V::Int(Some(v)),
                    ValueRef::Real(f) => V::Int(Some(f as i64)),
                    ValueRef::Text(t) => V::Text(Some(String::from_utf8_lossy(t).into_owned())),
                    ValueRef::Blob(b) => V::Bytes(b.to_vec()),
                });
            }
            out.push(Row { table, cols });
        }
        Ok(out)
    }
}

impl Backend for Sqlite {
    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        f(&mut SqliteTx(&tx))?;
        tx.commit()?;
        Ok(())
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // An idle reader if there is one, else wait for one in turn.
        let mut guard = self.readers.iter().find_map(|m| m.try_lock().ok());
        if guard.is_none() {
            let i = self
                .next_reader
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % self.readers.len().max(1);
            match self.readers.get(i) {
                Some(m) => guard = Some(m.lock().map_err(|_| StoreError::Poisoned)?),
                None => return self.transaction(f),
            }
        }
        let Some(mut conn) = guard else {
            return self.transaction(f);
        };
        // A deferred transaction: one consistent snapshot for the whole read.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        f(&mut SqliteTx(&tx))?;
        tx.commit()?;
        Ok(())
    }

    fn lock_sql(&self) -> Option<&'static str> {
        // The connection mutex plus BEGIN IMMEDIATE already serialise writers.
        None
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn group_commit(&self) -> bool {
        true
    }

    fn checkpoint_wal(&self) -> Result<Option<super::WalCheckpoint>, StoreError> {
        let conn = self.checkpointer.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(Some(super::wal::passive(&conn)?))
    }
}
