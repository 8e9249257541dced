//! Each key's sums over all its days in `finding_keys` (issue 14): a migration after the
//! daily roll-up's, using `rollup_sql.rs`'s macros.
//!
//! A report over all time (no `from`, no `to`) reads `finding_keys` — one row per key — instead
//! of every day of `finding_days`. The insert triggers add a finding to its key's totals in the
//! statement that adds it to its day; a delete recomputes the touched keys' totals from their
//! days (after the days were recomputed). Sums saturate at the largest BIGINT, as the days do.

/// The totals' columns in `finding_keys`, named as `finding_days` names its measures.
macro_rules! totals_columns {
    () => {
        "findings, events, bytes_out, bytes_in, bytes_known, first_seen_ms, last_seen_ms, \
         service_name, vendor"
    };
}

macro_rules! totals_add_columns {
    ($int:literal) => {
        concat!(
            "ALTER TABLE finding_keys ADD COLUMN findings ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN events ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN bytes_out ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN bytes_in ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN bytes_known ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN first_seen_ms ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN last_seen_ms ",
            $int,
            " NOT NULL DEFAULT 0;\n",
            "ALTER TABLE finding_keys ADD COLUMN service_name TEXT NOT NULL DEFAULT '';\n",
            "ALTER TABLE finding_keys ADD COLUMN vendor TEXT NOT NULL DEFAULT '';\n"
        )
    };
}

/// The totals of keys `$k` from their days `d` (`$c0`…`$c1` wraps a sum so it saturates).
macro_rules! totals_of_days {
    ($c0:literal, $c1:literal) => {
        concat!(
            $c0,
            "d.findings",
            $c1,
            ", ",
            $c0,
            "d.events",
            $c1,
            ", ",
            $c0,
            "d.bytes_out",
            $c1,
            ", ",
            $c0,
            "d.bytes_in",
            $c1,
            ", ",
            $c0,
            "d.bytes_known",
            $c1,
            ", MIN(d.first_seen_ms), MAX(d.last_seen_ms), MAX(d.service_name), MAX(d.vendor)"
        )
    };
}

/// Rebuilds `finding_keys` with its totals from `finding_days`.
macro_rules! totals_backfill {
    ($c0:literal, $c1:literal) => {
        concat!(
            "DELETE FROM finding_keys;\nINSERT INTO finding_keys (",
            key!(),
            ", first_day, last_day, ",
            totals_columns!(),
            ") SELECT ",
            key!(),
            ", MIN(d.day), MAX(d.day), ",
            totals_of_days!($c0, $c1),
            " FROM finding_days d GROUP BY ",
            key!(),
            ";\n"
        )
    };
}

/// `$c = $c + excluded.$c`, saturating (SQLite).
macro_rules! sat_add {
    ($c:literal) => {
        concat!(
            $c,
            " = CASE WHEN ",
            $c,
            " > ",
            big!(),
            " - excluded.",
            $c,
            " THEN ",
            big!(),
            " ELSE ",
            $c,
            " + excluded.",
            $c,
            " END"
        )
    };
}

/// SQLite: the roll-up's triggers again, the key's upsert now adding to its totals and a
/// delete recomputing them.
macro_rules! sqlite_totals_triggers {
    () => {
        concat!(
            "DROP TRIGGER finding_days_insert;\nDROP TRIGGER finding_days_delete;\n",
            "CREATE TRIGGER finding_days_insert AFTER INSERT ON findings BEGIN\n",
            sqlite_days_upsert!(),
            "INSERT INTO finding_keys (",
            key!(),
            ", first_day, last_day, ",
            totals_columns!(),
            ") VALUES (",
            key_of!("NEW"),
            ", NEW.window_start_ms / 86400000, NEW.window_start_ms / 86400000, 1, NEW.count, \
     COALESCE(NEW.bytes_out, 0), COALESCE(NEW.bytes_in, 0), NEW.bytes_out IS NOT NULL, \
     NEW.first_seen_ms, NEW.last_seen_ms, NEW.service_name, NEW.vendor) ON CONFLICT (",
            key!(),
            ") DO UPDATE SET first_day = MIN(first_day, excluded.first_day), \
     last_day = MAX(last_day, excluded.last_day), findings = findings + 1, ",
            sat_add!("events"),
            ", ",
            sat_add!("bytes_out"),
            ", ",
            sat_add!("bytes_in"),
            ", bytes_known = bytes_known + excluded.bytes_known, \
     first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms), \
     last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), \
     service_name = MAX(service_name, excluded.service_name), \
     vendor = MAX(vendor, excluded.vendor);\nEND;\n",
            "CREATE TRIGGER finding_days_delete AFTER DELETE ON findings BEGIN\n",
            sqlite_delete_body!(),
            "UPDATE finding_keys SET (",
            totals_columns!(),
            ") = (SELECT ",
            totals_of_days!("CAST(MIN(TOTAL(", "), 9223372036854775807.0) AS INTEGER)"),
            " FROM finding_days d WHERE ",
            key_eq!("d", "finding_keys"),
            ") WHERE (",
            key!(),
            ") = (",
            key_of!("OLD"),
            ");\nEND;\n"
        )
    };
}

/// Migration for SQLite: the totals' columns, back-fill, triggers.
pub(in crate::store) const SQLITE_TOTALS_MIGRATION: &str = concat!(
    "\n-- ---- totals: each key's sums over all time in finding_keys (issue 14) ----\n",
    totals_add_columns!("INTEGER"),
    totals_backfill!("CAST(MIN(TOTAL(", "), 9223372036854775807.0) AS INTEGER)"),
    sqlite_totals_triggers!(),
    "ANALYZE;\n"
);

/// The SQLite totals back-fill alone (tests rebuild `finding_keys` with it and compare).
pub const SQLITE_TOTALS_BACKFILL: &str =
    totals_backfill!("CAST(MIN(TOTAL(", "), 9223372036854775807.0) AS INTEGER)");

/// PostgreSQL: the insert function again (the key's upsert adding to its totals), and a
/// delete trigger recomputing the touched keys' totals, named to fire after the roll-up's
/// (PostgreSQL fires a table's triggers in name order).
macro_rules! postgres_totals_triggers {
    () => { concat!(
    "CREATE OR REPLACE FUNCTION shadowai_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS \
     $f$ BEGIN\n",
    pg_days_upsert!(),
    "INSERT INTO finding_keys AS k (",
    key!(),
    ", first_day, last_day, ",
    totals_columns!(),
    ") SELECT ",
    key_of!("f"),
    ", MIN(f.window_start_ms / 86400000), MAX(f.window_start_ms / 86400000), COUNT(*), \
     LEAST(SUM(f.count), ", big!(), "), LEAST(COALESCE(SUM(f.bytes_out), 0), ", big!(),
    "), LEAST(COALESCE(SUM(f.bytes_in), 0), ", big!(), "), COUNT(f.bytes_out), \
     MIN(f.first_seen_ms), MAX(f.last_seen_ms), MAX(f.service_name), MAX(f.vendor) \
     FROM new_rows f GROUP BY ",
    key_of!("f"),
    " ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 ON CONFLICT (",
    key!(),
    ") DO UPDATE SET first_day = LEAST(k.first_day, excluded.first_day), \
     last_day = GREATEST(k.last_day, excluded.last_day), \
     findings = k.findings + excluded.findings, \
     events = LEAST(k.events::NUMERIC + excluded.events, ", big!(), "), \
     bytes_out = LEAST(k.bytes_out::NUMERIC + excluded.bytes_out, ", big!(), "), \
     bytes_in = LEAST(k.bytes_in::NUMERIC + excluded.bytes_in, ", big!(), "), \
     bytes_known = k.bytes_known + excluded.bytes_known, \
     first_seen_ms = LEAST(k.first_seen_ms, excluded.first_seen_ms), \
     last_seen_ms = GREATEST(k.last_seen_ms, excluded.last_seen_ms), \
     service_name = GREATEST(k.service_name, excluded.service_name), \
     vendor = GREATEST(k.vendor, excluded.vendor);\n",
    "RETURN NULL; END $f$;\n",
    "CREATE FUNCTION shadowai_totals_delete() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "UPDATE finding_keys k SET (", totals_columns!(), ") = (SELECT ",
    totals_of_days!("LEAST(SUM(", "), 9223372036854775807)"),
    " FROM finding_days d WHERE ", key_eq!("d", "k"), ") FROM (SELECT DISTINCT ",
    key!(),
    " FROM ", touched!(), " u) t WHERE ", key_eq!("k", "t"), ";\n",
    "RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_keys_totals_delete AFTER DELETE ON findings REFERENCING OLD TABLE \
     AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_totals_delete();\n"
    ) };
}

/// Migration for PostgreSQL: the totals' columns, back-fill, triggers.
pub(in crate::store) const POSTGRES_TOTALS_MIGRATION: &str = concat!(
    "\n-- ---- totals: each key's sums over all time in finding_keys (issue 14) ----\n",
    totals_add_columns!("BIGINT"),
    totals_backfill!("LEAST(SUM(", "), 9223372036854775807)"),
    postgres_totals_triggers!(),
    "ANALYZE finding_keys;\n"
);

/// The PostgreSQL totals back-fill alone: the fleet bench runs it after `rollup_sql::BACKFILL`.
pub const POSTGRES_TOTALS_BACKFILL: &str =
    totals_backfill!("LEAST(SUM(", "), 9223372036854775807)");
