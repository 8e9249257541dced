//! The roll-up kept off the ingest statement (issue 14): the schema of the fold (a migration
//! appended to both stores', after the roll-up's, totals' and day sums'), using the macros of
//! `rollup_sql.rs`. The Rust side (the fold, its bound) is `fold.rs`.
//!
//! An ingest only records which findings are not folded yet; a background folder (`fold.rs`)
//! adds them to `finding_days`, `finding_keys` (with its totals) and the per-day sums in bulk,
//! one grouped upsert per table per fold. Reports read the roll-up plus `findings_unfolded`
//! (`rollup.rs`), so each finding is counted once at every moment: a fold moves findings from
//! one side to the other in one transaction.
//!
//! - **SQLite** (one writer, `seq` assigned in commit order and never reused: AUTOINCREMENT):
//!   a watermark. `finding_rollup_fold.folded_seq` is the last `seq` folded; findings above it
//!   are unfolded. An ingest writes nothing extra.
//! - **PostgreSQL** (transactions commit out of `seq` order, two replicas share a database):
//!   an append-only `finding_rollup_pending (seq)`, one row per finding, written by a
//!   statement-level insert trigger. A fold takes the fold lock (`pg_try_advisory_xact_lock`,
//!   the day sums' key: one folder at a time, the others skip), drains up to N rows with
//!   `DELETE … RETURNING` and inserts the findings' roll-up columns into `finding_fold_rows`,
//!   which now carries the roll-up's statement-level insert triggers (moved off `findings`,
//!   bodies unchanged), then empties it. A pending row committed after the fold's snapshot is
//!   simply left for the next fold.
//!
//! Deletes (retention, an admin's clean-up): the roll-up's delete triggers recompute touched
//! days and keys from the findings left, so every finding must be folded first. A `BEFORE
//! DELETE` trigger folds everything pending (SQLite: per row, only while anything is
//! unfolded; PostgreSQL: per statement, after taking the fold lock and `SHARE ROW EXCLUSIVE`
//! on the pending table, which waits for in-flight ingests and holds new ones until the delete
//! commits, so no unfolded finding appears before the recomputation). A finding deleted before
//! its fold is thus folded and then taken away by the recomputation; its pending row is gone.

/// `$e` summed over a group without overflow, saturating at the largest BIGINT (SQLite's
/// `SUM` fails on overflow, `TOTAL` rounds): the high and low 32 bits summed apart (neither
/// can overflow under 2^30 rows a fold), then joined. Values are non-negative.
macro_rules! sat_sum {
    ($e:literal) => {
        concat!(
            "(CASE WHEN SUM((",
            $e,
            ") >> 32) > (9223372036854775807 - SUM((",
            $e,
            ") & 4294967295)) / 4294967296 THEN 9223372036854775807 ELSE SUM((",
            $e,
            ") >> 32) * 4294967296 + SUM((",
            $e,
            ") & 4294967295) END)"
        )
    };
}

/// The columns of `findings` the roll-up's insert triggers and the SQLite fold read (`f`).
macro_rules! fold_columns {
    () => {
        "window_start_ms, host_id, service_id, verdict, action, user_name, exe, process_name, \
         hostname, grp, category, risk_score, count, bytes_out, bytes_in, first_seen_ms, \
         last_seen_ms, service_name, vendor"
    };
}

/// `$c = $c + excluded.$c`, saturating (SQLite).
macro_rules! fold_sat_add {
    ($c:literal) => {
        concat!(
            $c,
            " = CASE WHEN ",
            $c,
            " > 9223372036854775807 - excluded.",
            $c,
            " THEN 9223372036854775807 ELSE ",
            $c,
            " + excluded.",
            $c,
            " END"
        )
    };
}

/// The end of a SQLite fold's upsert into `finding_days` or `finding_keys`: known bytes
/// added, first/last seen and the names merged.
macro_rules! merge_seen {
    () => {
        ", bytes_known = bytes_known + excluded.bytes_known, \
         first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms), \
         last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), \
         service_name = MAX(service_name, excluded.service_name), \
         vendor = MAX(vendor, excluded.vendor);\n"
    };
}

/// `) SELECT` of one `finding_days` row per day and key from findings `f` (grouped by the
/// caller): the columns of `days_columns!` in order.
macro_rules! day_group_select {
    () => {
        concat!(
            ") SELECT f.window_start_ms / 86400000, ",
            key_of!("f"),
            ", COUNT(*), SUM(f.count), ",
            sat_sum!("COALESCE(f.bytes_out, 0)"),
            ", ",
            sat_sum!("COALESCE(f.bytes_in, 0)"),
            ", COUNT(f.bytes_out), MIN(f.first_seen_ms), MAX(f.last_seen_ms), \
             MAX(f.service_name), MAX(f.vendor)"
        )
    };
}

/// The conflict clause of a SQLite fold's upsert into `finding_days`: the day's sums added,
/// first/last seen and the names merged.
macro_rules! days_upsert {
    () => {
        concat!(
            "ON CONFLICT (",
            key!(),
            ", day) DO UPDATE SET findings = findings + excluded.findings, \
             events = events + excluded.events, ",
            fold_sat_add!("bytes_out"),
            ", ",
            fold_sat_add!("bytes_in"),
            merge_seen!()
        )
    };
}

/// The conflict clause of a SQLite fold's upsert into `finding_keys`: the days widened, the
/// sums added, first/last seen and the names merged.
macro_rules! keys_upsert {
    () => {
        concat!(
            "ON CONFLICT (",
            key!(),
            ") DO UPDATE SET first_day = MIN(first_day, excluded.first_day), \
             last_day = MAX(last_day, excluded.last_day), findings = findings + excluded.findings, ",
            fold_sat_add!("events"),
            ", ",
            fold_sat_add!("bytes_out"),
            ", ",
            fold_sat_add!("bytes_in"),
            merge_seen!()
        )
    };
}

/// The findings a SQLite fold reads: above the watermark, up to `$hi` (a parameter, or the
/// newest `seq` when a delete folds everything).
macro_rules! unfolded {
    ($hi:literal) => {
        concat!(
            " FROM findings f WHERE f.seq > (SELECT folded_seq FROM finding_rollup_fold) \
             AND f.seq <= ",
            $hi,
            " "
        )
    };
}

/// SQLite: one fold of the findings `$from` reads as `f` (up to `seq` `$hi`) — the per-day
/// sums first (a host or user counts as new for its day, service and verdict when it has no
/// helper row yet), then the helper rows, the days, the keys with their totals, and the
/// watermark.
macro_rules! sqlite_fold {
    ($from:expr, $hi:literal) => {
        concat!(
            "INSERT INTO finding_day_sums (day, service_id, verdict, hosts, users, events, \
             bytes_out) SELECT f.window_start_ms / 86400000, f.service_id, f.verdict, \
             COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM finding_day_hosts h WHERE \
             h.day = f.window_start_ms / 86400000 AND h.service_id = f.service_id AND \
             h.verdict = f.verdict AND h.host_id = f.host_id) THEN f.host_id END), \
             COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM finding_day_users u WHERE \
             u.day = f.window_start_ms / 86400000 AND u.service_id = f.service_id AND \
             u.verdict = f.verdict AND u.user_name = f.user_name) THEN f.user_name END), ",
            sat_sum!("f.count"),
            ", ",
            sat_sum!("COALESCE(f.bytes_out, 0)"),
            $from,
            "GROUP BY 1, 2, 3 ON CONFLICT (day, service_id, verdict) DO UPDATE SET \
             hosts = hosts + excluded.hosts, users = users + excluded.users, ",
            fold_sat_add!("events"),
            ", ",
            fold_sat_add!("bytes_out"),
            ";\n",
            "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) \
             SELECT f.window_start_ms / 86400000, f.service_id, f.verdict, f.host_id, COUNT(*)",
            $from,
            "GROUP BY 1, 2, 3, 4 ON CONFLICT (day, service_id, verdict, host_id) DO UPDATE SET \
             findings = findings + excluded.findings;\n",
            "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) \
             SELECT f.window_start_ms / 86400000, f.service_id, f.verdict, f.user_name, COUNT(*)",
            $from,
            "GROUP BY 1, 2, 3, 4 ON CONFLICT (day, service_id, verdict, user_name) DO UPDATE SET \
             findings = findings + excluded.findings;\n",
            "INSERT INTO finding_days (",
            days_columns!(),
            day_group_select!(),
            $from,
            "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 ",
            days_upsert!(),
            "INSERT INTO finding_keys (",
            key!(),
            ", first_day, last_day, findings, events, bytes_out, bytes_in, bytes_known, \
             first_seen_ms, last_seen_ms, service_name, vendor) SELECT ",
            key_of!("f"),
            ", MIN(f.window_start_ms / 86400000), MAX(f.window_start_ms / 86400000), COUNT(*), ",
            sat_sum!("f.count"),
            ", ",
            sat_sum!("COALESCE(f.bytes_out, 0)"),
            ", ",
            sat_sum!("COALESCE(f.bytes_in, 0)"),
            ", COUNT(f.bytes_out), MIN(f.first_seen_ms), MAX(f.last_seen_ms), \
             MAX(f.service_name), MAX(f.vendor)",
            $from,
            "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 ",
            keys_upsert!(),
            "UPDATE finding_rollup_fold SET folded_seq = MAX(folded_seq, ",
            $hi,
            ");\n"
        )
    };
}

/// Migration for SQLite: the watermark (everything stored so far was folded by the
/// triggers), the insert triggers dropped, the unfolded findings' view, and the fold before
/// a delete.
pub(in crate::store) const SQLITE_FOLD_MIGRATION: &str = concat!(
    "\n-- ---- fold: the roll-up kept off the ingest statement (issue 14) ----\n",
    "CREATE TABLE finding_rollup_fold (id INTEGER PRIMARY KEY CHECK (id = 1), \
     folded_seq INTEGER NOT NULL);\n",
    "INSERT INTO finding_rollup_fold (id, folded_seq) VALUES (1, \
     COALESCE((SELECT MAX(seq) FROM findings), 0));\n",
    "DROP TRIGGER finding_days_insert;\nDROP TRIGGER finding_sums_insert;\n",
    "CREATE VIEW findings_unfolded AS SELECT * FROM findings \
     WHERE seq > (SELECT folded_seq FROM finding_rollup_fold);\n",
    "CREATE TRIGGER finding_rollup_fold_delete BEFORE DELETE ON findings \
     WHEN (SELECT folded_seq FROM finding_rollup_fold) < (SELECT MAX(seq) FROM findings) BEGIN\n",
    sqlite_fold!(
        unfolded!("(SELECT MAX(seq) FROM findings)"),
        "(SELECT MAX(seq) FROM findings)"
    ),
    "END;\n"
);

/// SQLite: the fold's findings grouped once by day and roll-up key (`finding_days`' own
/// grain) into a temporary table, one row per group with its sums. The fold's upserts then
/// read these groups (a few per host and day) instead of every finding once per roll-up
/// table: sorting the fold's findings by their eleven-column key was most of a fold. A
/// group's sums cannot overflow (counts are at most 2^32, a fold adds at most 2^30
/// findings; bytes saturate).
pub(in crate::store) const SQLITE_FOLD_GROUPS: &str = concat!(
    "CREATE TEMP TABLE IF NOT EXISTS finding_fold_groups (",
    days_columns!(),
    ");\nDELETE FROM temp.finding_fold_groups;\n\
     INSERT INTO temp.finding_fold_groups (",
    days_columns!(),
    day_group_select!(),
    unfolded!("$1"),
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12;\n"
);

/// SQLite: one bounded fold of `temp.finding_fold_groups` (`$1`: the last `seq` it folds) —
/// the same upserts, in the same order, as `sqlite_fold!` over the findings themselves.
pub(in crate::store) const SQLITE_FOLD_GROUPED: &str = concat!(
    "INSERT INTO finding_day_sums (day, service_id, verdict, hosts, users, events, bytes_out) \
     SELECT g.day, g.service_id, g.verdict, \
     COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM finding_day_hosts h WHERE \
     h.day = g.day AND h.service_id = g.service_id AND h.verdict = g.verdict AND \
     h.host_id = g.host_id) THEN g.host_id END), \
     COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM finding_day_users u WHERE \
     u.day = g.day AND u.service_id = g.service_id AND u.verdict = g.verdict AND \
     u.user_name = g.user_name) THEN g.user_name END), ",
    sat_sum!("g.events"),
    ", ",
    sat_sum!("g.bytes_out"),
    " FROM temp.finding_fold_groups g GROUP BY 1, 2, 3 ON CONFLICT (day, service_id, verdict) \
     DO UPDATE SET hosts = hosts + excluded.hosts, users = users + excluded.users, ",
    fold_sat_add!("events"),
    ", ",
    fold_sat_add!("bytes_out"),
    ";\n",
    "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) \
     SELECT day, service_id, verdict, host_id, SUM(findings) FROM temp.finding_fold_groups \
     GROUP BY 1, 2, 3, 4 ON CONFLICT (day, service_id, verdict, host_id) DO UPDATE SET \
     findings = findings + excluded.findings;\n",
    "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) \
     SELECT day, service_id, verdict, user_name, SUM(findings) FROM temp.finding_fold_groups \
     GROUP BY 1, 2, 3, 4 ON CONFLICT (day, service_id, verdict, user_name) DO UPDATE SET \
     findings = findings + excluded.findings;\n",
    "INSERT INTO finding_days (",
    days_columns!(),
    ") SELECT ",
    days_columns!(),
    " FROM temp.finding_fold_groups WHERE 1 ",
    days_upsert!(),
    "INSERT INTO finding_keys (",
    key!(),
    ", first_day, last_day, findings, events, bytes_out, bytes_in, bytes_known, \
     first_seen_ms, last_seen_ms, service_name, vendor) SELECT ",
    key!(),
    ", MIN(day), MAX(day), SUM(findings), ",
    sat_sum!("events"),
    ", ",
    sat_sum!("bytes_out"),
    ", ",
    sat_sum!("bytes_in"),
    ", SUM(bytes_known), MIN(first_seen_ms), MAX(last_seen_ms), MAX(service_name), \
     MAX(vendor) FROM temp.finding_fold_groups GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 ",
    keys_upsert!(),
    "UPDATE finding_rollup_fold SET folded_seq = MAX(folded_seq, $1);\n"
);

/// The fold lock: the per-day sums' advisory lock key (`rollup_sums.rs`), so a fold, the
/// sums' own fold and a delete's recomputation never run at once.
macro_rules! pg_fold_lock {
    () => {
        "1936220522"
    };
}

/// Migration for PostgreSQL; see the module's doc.
pub(in crate::store) const POSTGRES_FOLD_MIGRATION: &str = concat!(
    "\n-- ---- fold: the roll-up kept off the ingest statement (issue 14) ----\n",
    "CREATE TABLE finding_rollup_pending (seq BIGINT PRIMARY KEY);\n",
    "CREATE TABLE finding_fold_rows AS SELECT ",
    fold_columns!(),
    " FROM findings WITH NO DATA;\n",
    "DROP TRIGGER finding_days_insert ON findings;\n\
     DROP TRIGGER finding_sums_insert ON findings;\n",
    "CREATE TRIGGER finding_days_insert AFTER INSERT ON finding_fold_rows REFERENCING NEW \
     TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_rollup_insert();\n",
    "CREATE TRIGGER finding_sums_insert AFTER INSERT ON finding_fold_rows REFERENCING NEW \
     TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_sums_insert();\n",
    "CREATE FUNCTION shadowai_rollup_pending() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
     INSERT INTO finding_rollup_pending (seq) SELECT seq FROM new_rows; RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_rollup_pending_insert AFTER INSERT ON findings REFERENCING NEW \
     TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_rollup_pending();\n",
    "CREATE VIEW findings_unfolded AS SELECT f.* FROM finding_rollup_pending p \
     JOIN findings f ON f.seq = p.seq;\n",
    // The fold (the caller holds the fold lock): returns the pending rows drained and the
    // findings folded (a finding deleted meanwhile has no row left to fold). `lim` NULL: all.
    // The `seq`s to drain are read first, as an array, then deleted and their findings read
    // by `= ANY` (primary keys), each statement planned for its actual values (`EXECUTE`):
    // with a cached generic plan, or joins with the drained rows, PostgreSQL chose scans of
    // the whole pending table or of `findings` — a 20,000-row fold ran for over 20 s at
    // 450,000 rows pending (BENCHMARKS.md).
    "CREATE FUNCTION shadowai_rollup_fold(lim BIGINT, OUT drained BIGINT, OUT folded BIGINT) \
     LANGUAGE plpgsql AS $f$ DECLARE seqs BIGINT[]; BEGIN\n",
    "EXECUTE 'SELECT ARRAY(SELECT seq FROM finding_rollup_pending ORDER BY seq LIMIT $1)' \
     INTO seqs USING lim;\n\
     EXECUTE 'DELETE FROM finding_rollup_pending WHERE seq = ANY($1)' USING seqs;\n\
     GET DIAGNOSTICS drained = ROW_COUNT;\n",
    "EXECUTE 'INSERT INTO finding_fold_rows SELECT ",
    fold_columns!(),
    " FROM findings f WHERE f.seq = ANY($1)' USING seqs;\n\
     GET DIAGNOSTICS folded = ROW_COUNT;\n",
    "DELETE FROM finding_fold_rows;\nEND $f$;\n",
    "CREATE FUNCTION shadowai_rollup_fold_all() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "PERFORM pg_advisory_xact_lock(",
    pg_fold_lock!(),
    ");\nLOCK TABLE finding_rollup_pending IN SHARE ROW EXCLUSIVE MODE;\n\
     PERFORM shadowai_rollup_fold(NULL);\nRETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_rollup_fold_delete BEFORE DELETE ON findings FOR EACH STATEMENT \
     EXECUTE FUNCTION shadowai_rollup_fold_all();\n",
    "CREATE FUNCTION shadowai_rollup_pending_truncate() RETURNS trigger LANGUAGE plpgsql AS \
     $f$ BEGIN TRUNCATE finding_rollup_pending; RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_rollup_pending_truncate AFTER TRUNCATE ON findings FOR EACH \
     STATEMENT EXECUTE FUNCTION shadowai_rollup_pending_truncate();\n"
);

/// PostgreSQL: take the fold lock if free (1: this transaction folds, 0: another does).
pub(in crate::store) const POSTGRES_TRY_LOCK: &str = concat!(
    "SELECT CASE WHEN pg_try_advisory_xact_lock(",
    pg_fold_lock!(),
    ") THEN 1 ELSE 0 END"
);
