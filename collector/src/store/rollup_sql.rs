//! The daily roll-up's schema, triggers and back-fill (appended to both stores' migrations).
//!
//! `finding_days` holds one row per day × *key* — the columns the reports group or filter by:
//! service, verdict, action, host (id and name), user, executable (path and name), host
//! group, category and risk score — with the sums and extremes of the day's findings of that
//! key. `finding_keys` holds one row per key ever seen with its first and last day. Because the
//! host, user and executable are part of the key, distinct counts stay exact: a report counts
//! distinct hosts over the keys in its range instead of over the findings (see `rollup.rs`).
//!
//! Both tables are written by triggers on `findings`, in the statement that writes the
//! findings, so they can never disagree with it: an insert adds to the key's day (PostgreSQL:
//! once per statement from its transition table; SQLite: per row), a delete recomputes the
//! touched days and keys from what is left, `TRUNCATE` empties them, and an `UPDATE` of a
//! finding is refused (findings are immutable; a change is a delete and an insert).

/// The key columns, in primary-key order.
macro_rules! key {
    () => {
        "host_id, service_id, verdict, action, user_name, exe, process_name, hostname, grp, \
         category, risk_score"
    };
}

/// The key of a `findings` row `$r` (`NEW`, `OLD`, or a table alias), `grp` made non-null.
macro_rules! key_of {
    ($r:literal) => {
        concat!(
            $r,
            ".host_id, ",
            $r,
            ".service_id, ",
            $r,
            ".verdict, ",
            $r,
            ".action, ",
            $r,
            ".user_name, ",
            $r,
            ".exe, ",
            $r,
            ".process_name, ",
            $r,
            ".hostname, COALESCE(",
            $r,
            ".grp, ''), ",
            $r,
            ".category, ",
            $r,
            ".risk_score"
        )
    };
}

/// `$a`'s key equals `$b`'s (both roll-up tables or aliases with a non-null `grp`).
macro_rules! key_eq {
    ($a:literal, $b:literal) => {
        concat!(
            $a,
            ".host_id = ",
            $b,
            ".host_id AND ",
            $a,
            ".service_id = ",
            $b,
            ".service_id AND ",
            $a,
            ".verdict = ",
            $b,
            ".verdict AND ",
            $a,
            ".action = ",
            $b,
            ".action AND ",
            $a,
            ".user_name = ",
            $b,
            ".user_name AND ",
            $a,
            ".exe = ",
            $b,
            ".exe AND ",
            $a,
            ".process_name = ",
            $b,
            ".process_name AND ",
            $a,
            ".hostname = ",
            $b,
            ".hostname AND ",
            $a,
            ".grp = ",
            $b,
            ".grp AND ",
            $a,
            ".category = ",
            $b,
            ".category AND ",
            $a,
            ".risk_score = ",
            $b,
            ".risk_score"
        )
    };
}

/// A `findings` row `f`'s key equals roll-up key `$b` (`f.grp` may be NULL).
macro_rules! finding_key_eq {
    ($b:literal) => {
        concat!(
            "f.host_id = ",
            $b,
            ".host_id AND f.service_id = ",
            $b,
            ".service_id AND f.verdict = ",
            $b,
            ".verdict AND f.action = ",
            $b,
            ".action AND f.user_name = ",
            $b,
            ".user_name AND f.exe = ",
            $b,
            ".exe AND f.process_name = ",
            $b,
            ".process_name AND f.hostname = ",
            $b,
            ".hostname AND COALESCE(f.grp, '') = ",
            $b,
            ".grp AND f.category = ",
            $b,
            ".category AND f.risk_score = ",
            $b,
            ".risk_score"
        )
    };
}

/// The measures of a day, aggregated over findings `f` (shared by the back-fill and the
/// recomputation after a delete).
macro_rules! measures {
    () => {
        "COUNT(*), SUM(f.count), COALESCE(SUM(f.bytes_out), 0), COALESCE(SUM(f.bytes_in), 0), \
         COUNT(f.bytes_out), MIN(f.first_seen_ms), MAX(f.last_seen_ms), MAX(f.service_name), \
         MAX(f.vendor)"
    };
}

macro_rules! days_columns {
    () => {
        concat!(
            "day, ",
            key!(),
            ", findings, events, bytes_out, bytes_in, bytes_known, first_seen_ms, last_seen_ms, \
             service_name, vendor"
        )
    };
}

/// Tables, written for both engines (`$int` is the integer type).
macro_rules! tables {
    ($int:literal, $without_rowid:literal) => {
        concat!(
            "CREATE TABLE finding_days (day ",
            $int,
            " NOT NULL, host_id TEXT NOT NULL, \
             service_id TEXT NOT NULL, verdict TEXT NOT NULL, action TEXT NOT NULL, \
             user_name TEXT NOT NULL, exe TEXT NOT NULL, process_name TEXT NOT NULL, \
             hostname TEXT NOT NULL, grp TEXT NOT NULL, category TEXT NOT NULL, risk_score ",
            $int,
            " NOT NULL, findings ",
            $int,
            " NOT NULL, events ",
            $int,
            " NOT NULL, \
             bytes_out ",
            $int,
            " NOT NULL, bytes_in ",
            $int,
            " NOT NULL, bytes_known ",
            $int,
            " NOT NULL, first_seen_ms ",
            $int,
            " NOT NULL, last_seen_ms ",
            $int,
            " NOT NULL, \
             service_name TEXT NOT NULL, vendor TEXT NOT NULL, PRIMARY KEY (",
            key!(),
            ", day))",
            $without_rowid,
            ";\nCREATE INDEX finding_days_day ON finding_days (day);\n\
             CREATE TABLE finding_keys (host_id TEXT NOT NULL, service_id TEXT NOT NULL, \
             verdict TEXT NOT NULL, action TEXT NOT NULL, user_name TEXT NOT NULL, \
             exe TEXT NOT NULL, process_name TEXT NOT NULL, hostname TEXT NOT NULL, \
             grp TEXT NOT NULL, category TEXT NOT NULL, risk_score ",
            $int,
            " NOT NULL, first_day ",
            $int,
            " NOT NULL, last_day ",
            $int,
            " NOT NULL, PRIMARY KEY (",
            key!(),
            "))",
            $without_rowid,
            ";\n\
             CREATE INDEX findings_long ON findings (window_end_ms) \
             WHERE window_end_ms - window_start_ms > 3600000;\n"
        )
    };
}

/// Fills both tables from `findings` (the migration's back-fill; the fleet bench runs the
/// same statements after its bulk load).
macro_rules! backfill {
    () => {
        concat!(
            "INSERT INTO finding_days (",
            days_columns!(),
            ") SELECT f.window_start_ms / 86400000, ",
            key_of!("f"),
            ", ",
            measures!(),
            " FROM findings f GROUP BY f.window_start_ms / 86400000, ",
            key_of!("f"),
            ";\nINSERT INTO finding_keys (",
            key!(),
            ", first_day, last_day) SELECT ",
            key!(),
            ", MIN(day), MAX(day) FROM finding_days GROUP BY ",
            key!(),
            ";\n"
        )
    };
}

/// The largest BIGINT: byte sums saturate there instead of failing an ingest.
macro_rules! big {
    () => {
        "9223372036854775807"
    };
}

/// SQLite: the statement adding a new finding (`NEW`) to its day in `finding_days`.
macro_rules! sqlite_days_upsert {
    () => { concat!(
    "INSERT INTO finding_days (",
    days_columns!(),
    ") VALUES (NEW.window_start_ms / 86400000, ",
    key_of!("NEW"),
    ", 1, NEW.count, COALESCE(NEW.bytes_out, 0), COALESCE(NEW.bytes_in, 0), \
     NEW.bytes_out IS NOT NULL, NEW.first_seen_ms, NEW.last_seen_ms, NEW.service_name, \
     NEW.vendor) ON CONFLICT (",
    key!(),
    ", day) DO UPDATE SET findings = findings + 1, events = events + excluded.events, \
     bytes_out = CASE WHEN bytes_out > ",
    big!(),
    " - excluded.bytes_out THEN ",
    big!(),
    " ELSE bytes_out + excluded.bytes_out END, bytes_in = CASE WHEN bytes_in > ",
    big!(),
    " - excluded.bytes_in THEN ",
    big!(),
    " ELSE bytes_in + excluded.bytes_in END, bytes_known = bytes_known + excluded.bytes_known, \
     first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms), \
     last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), \
     service_name = MAX(service_name, excluded.service_name), \
     vendor = MAX(vendor, excluded.vendor);\n",
    ) };
}

/// SQLite: what a deleted finding (`OLD`) recomputes — its day and key from what is left.
macro_rules! sqlite_delete_body {
    () => {
        concat!(
            "DELETE FROM finding_days WHERE day = OLD.window_start_ms / 86400000 AND (",
            key!(),
            ") = (",
            key_of!("OLD"),
            ");\n",
            "INSERT INTO finding_days (",
            days_columns!(),
            ") SELECT OLD.window_start_ms / 86400000, ",
            key_of!("OLD"),
            ", ",
            measures!(),
            " FROM findings f WHERE f.host_id = OLD.host_id \
     AND f.window_start_ms >= OLD.window_start_ms / 86400000 * 86400000 \
     AND f.window_start_ms < (OLD.window_start_ms / 86400000 + 1) * 86400000 AND (",
            key_of!("f"),
            ") = (",
            key_of!("OLD"),
            ") GROUP BY f.host_id;\n",
            "DELETE FROM finding_keys WHERE (",
            key!(),
            ") = (",
            key_of!("OLD"),
            ");\n",
            "INSERT INTO finding_keys (",
            key!(),
            ", first_day, last_day) SELECT ",
            key_of!("OLD"),
            ", MIN(day), MAX(day) FROM finding_days WHERE (",
            key!(),
            ") = (",
            key_of!("OLD"),
            ") GROUP BY host_id;\n"
        )
    };
}

/// What SQLite's per-row triggers do: add a new finding to its day and key; recompute the
/// day and key of a deleted one from the findings left.
macro_rules! sqlite_triggers {
    () => {
        concat!(
            "CREATE TRIGGER finding_days_insert AFTER INSERT ON findings BEGIN\n",
            sqlite_days_upsert!(),
            "INSERT INTO finding_keys (",
            key!(),
            ", first_day, last_day) VALUES (",
            key_of!("NEW"),
            ", NEW.window_start_ms / 86400000, NEW.window_start_ms / 86400000) ON CONFLICT (",
            key!(),
            ") DO UPDATE SET first_day = MIN(first_day, excluded.first_day), \
     last_day = MAX(last_day, excluded.last_day);\nEND;\n",
            "CREATE TRIGGER finding_days_delete AFTER DELETE ON findings BEGIN\n",
            sqlite_delete_body!(),
            "END;\n",
            "CREATE TRIGGER findings_immutable BEFORE UPDATE ON findings BEGIN SELECT RAISE(ABORT, \
     'findings are immutable (the daily roll-up is kept from inserts and deletes): delete and \
     insert instead'); END;\n"
        )
    };
}

/// Migration for SQLite: tables, back-fill, triggers.
pub(super) const SQLITE_MIGRATION: &str = concat!(
    "\n-- ---- rollup: the daily roll-up for the SOC's reports (issue 14) ----\n",
    tables!("INTEGER", " WITHOUT ROWID"),
    backfill!(),
    sqlite_triggers!(),
    "ANALYZE;\n"
);

/// The (day, key) pairs a statement's deleted rows touched.
macro_rules! touched {
    () => {
        "(SELECT DISTINCT f.window_start_ms / 86400000 AS day, f.host_id, f.service_id, \
         f.verdict, f.action, f.user_name, f.exe, f.process_name, f.hostname, \
         COALESCE(f.grp, '') AS grp, f.category, f.risk_score FROM old_rows f)"
    };
}

/// PostgreSQL: the statement adding a statement's new findings (`new_rows`) to their days.
macro_rules! pg_days_upsert {
    () => { concat!(
    "INSERT INTO finding_days AS d (",
    days_columns!(),
    ") SELECT f.window_start_ms / 86400000, ",
    key_of!("f"),
    ", COUNT(*), SUM(f.count), LEAST(COALESCE(SUM(f.bytes_out), 0), ",
    big!(),
    "), LEAST(COALESCE(SUM(f.bytes_in), 0), ",
    big!(),
    "), COUNT(f.bytes_out), MIN(f.first_seen_ms), MAX(f.last_seen_ms), MAX(f.service_name), \
     MAX(f.vendor) FROM new_rows f GROUP BY f.window_start_ms / 86400000, ",
    key_of!("f"),
    " ORDER BY 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1 ON CONFLICT (",
    key!(),
    ", day) DO UPDATE SET findings = d.findings + excluded.findings, \
     events = d.events + excluded.events, \
     bytes_out = LEAST(d.bytes_out::NUMERIC + excluded.bytes_out, ",
    big!(),
    "), bytes_in = LEAST(d.bytes_in::NUMERIC + excluded.bytes_in, ",
    big!(),
    "), bytes_known = d.bytes_known + excluded.bytes_known, \
     first_seen_ms = LEAST(d.first_seen_ms, excluded.first_seen_ms), \
     last_seen_ms = GREATEST(d.last_seen_ms, excluded.last_seen_ms), \
     service_name = GREATEST(d.service_name, excluded.service_name), \
     vendor = GREATEST(d.vendor, excluded.vendor);\n",
    ) };
}

/// PostgreSQL: statement-level triggers over transition tables (one aggregate per statement,
/// not one upsert per row).
macro_rules! postgres_triggers {
    () => { concat!(
    "CREATE FUNCTION shadowai_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    pg_days_upsert!(),
    "INSERT INTO finding_keys AS k (",
    key!(),
    ", first_day, last_day) SELECT ",
    key_of!("f"),
    ", MIN(f.window_start_ms / 86400000), MAX(f.window_start_ms / 86400000) FROM new_rows f \
     GROUP BY ",
    key_of!("f"),
    " ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 ON CONFLICT (",
    key!(),
    ") DO UPDATE SET first_day = LEAST(k.first_day, excluded.first_day), \
     last_day = GREATEST(k.last_day, excluded.last_day);\n",
    "RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_days_insert AFTER INSERT ON findings REFERENCING NEW TABLE AS \
     new_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_rollup_insert();\n",
    "CREATE FUNCTION shadowai_rollup_delete() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "DELETE FROM finding_days d USING ", touched!(), " t WHERE d.day = t.day AND ",
    key_eq!("d", "t"),
    ";\n",
    "INSERT INTO finding_days (",
    days_columns!(),
    ") SELECT t.day, t.host_id, t.service_id, t.verdict, t.action, t.user_name, t.exe, \
     t.process_name, t.hostname, t.grp, t.category, t.risk_score, ",
    measures!(),
    " FROM ", touched!(), " t JOIN findings f ON f.window_start_ms >= t.day * 86400000 \
     AND f.window_start_ms < (t.day + 1) * 86400000 AND ",
    finding_key_eq!("t"),
    " GROUP BY t.day, t.host_id, t.service_id, t.verdict, t.action, t.user_name, t.exe, \
     t.process_name, t.hostname, t.grp, t.category, t.risk_score;\n",
    "DELETE FROM finding_keys k USING (SELECT DISTINCT ",
    key!(),
    " FROM ", touched!(), " u) t WHERE ",
    key_eq!("k", "t"),
    ";\n",
    "INSERT INTO finding_keys (",
    key!(),
    ", first_day, last_day) SELECT t.host_id, t.service_id, t.verdict, t.action, t.user_name, \
     t.exe, t.process_name, t.hostname, t.grp, t.category, t.risk_score, MIN(d.day), MAX(d.day) \
     FROM (SELECT DISTINCT ",
    key!(),
    " FROM ", touched!(), " u) t JOIN finding_days d ON ",
    key_eq!("d", "t"),
    " GROUP BY t.host_id, t.service_id, t.verdict, t.action, t.user_name, t.exe, \
     t.process_name, t.hostname, t.grp, t.category, t.risk_score;\n",
    "RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_days_delete AFTER DELETE ON findings REFERENCING OLD TABLE AS \
     old_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_rollup_delete();\n",
    "CREATE FUNCTION shadowai_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
     TRUNCATE finding_days, finding_keys; RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_days_truncate AFTER TRUNCATE ON findings FOR EACH STATEMENT \
     EXECUTE FUNCTION shadowai_rollup_truncate();\n",
    "CREATE FUNCTION shadowai_findings_immutable() RETURNS trigger LANGUAGE plpgsql AS $f$ \
     BEGIN RAISE EXCEPTION 'findings are immutable (the daily roll-up is kept from inserts \
     and deletes): delete and insert instead'; END; $f$;\n",
    "CREATE TRIGGER findings_immutable BEFORE UPDATE ON findings FOR EACH STATEMENT \
     EXECUTE FUNCTION shadowai_findings_immutable();\n"
    ) };
}

/// Migration for PostgreSQL: tables, back-fill, triggers.
pub(super) const POSTGRES_MIGRATION: &str = concat!(
    "\n-- ---- rollup: the daily roll-up for the SOC's reports (issue 14) ----\n",
    tables!("BIGINT", ""),
    backfill!(),
    postgres_triggers!(),
    "ANALYZE finding_days; ANALYZE finding_keys;\n"
);

/// The back-fill alone: the fleet bench loads `findings` in bulk with the insert trigger
/// disabled and then fills the roll-up with these statements, as the migration does.
pub const BACKFILL: &str = backfill!();

/// `finding_days d` holds a day of the `finding_keys` row the query is at.
pub(super) const DAYS_OF_KEY: &str = key_eq!("d", "finding_keys");

// The keys' totals (a later migration) use the macros above.
#[path = "rollup_totals.rs"]
mod totals;
pub use totals::{POSTGRES_TOTALS_BACKFILL, SQLITE_TOTALS_BACKFILL};
pub(super) use totals::{POSTGRES_TOTALS_MIGRATION, SQLITE_TOTALS_MIGRATION};

// The fold that keeps the roll-up off the ingest statement (a later migration).
#[path = "rollup_fold_sql.rs"]
mod fold_sql;
pub(super) use fold_sql::{
    POSTGRES_FOLD_MIGRATION, POSTGRES_TRY_LOCK, SQLITE_FOLD_GROUPED, SQLITE_FOLD_GROUPS,
    SQLITE_FOLD_MIGRATION,
};
