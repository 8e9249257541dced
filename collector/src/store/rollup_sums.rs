//! Per-day sums for the unfiltered day trend (issue 14): distinct hosts and users, events and
//! bytes sent per day × service × verdict, kept by triggers on `findings` (appended to both
//! stores' migrations after the daily roll-up of `rollup_sql.rs`).
//!
//! - `finding_day_hosts` / `finding_day_users`: one row per day × service × verdict × host
//!   (user). The row an insert creates is that host's (user's) first of the day, service and
//!   verdict, and adds one to the distinct count.
//! - `finding_day_sums`: one row per day × service × verdict with the distinct hosts and users
//!   and the sums of events and bytes sent; `finding_day_pending`: deltas not yet folded into
//!   it. A trend adds up both, so it reads ≈ days × services × verdicts rows instead of the
//!   roll-up's day × host × user × executable rows.
//!
//! SQLite (one writer) upserts the sums per row and keeps in each helper row how many
//! findings it has, so a delete takes one away in O(1) and the row it empties takes one from
//! the distinct count. PostgreSQL must not make concurrent ingests update rows shared by
//! hosts (a sums row, or a user seen on many hosts, would be held until each commit and
//! deadlock across a batch's statements): an insert only adds helper rows (`ON CONFLICT DO
//! NOTHING`: no lock on a row that exists) and appends its deltas to `finding_day_pending`;
//! one statement in 32 folds the pending deltas into `finding_day_sums` under a
//! try-advisory-lock (one folder at a time, the others skip). A delete (retention, clean-up)
//! takes that lock, waits for in-flight ingests (`SHARE ROW EXCLUSIVE` on the helper tables),
//! and recomputes the touched days × services × verdicts from the already recomputed
//! `finding_days` (PostgreSQL fires triggers in name order: `finding_days_delete` first);
//! its helper rows carry no count (`findings` is 0 there).
//!
//! Sums saturate at the largest BIGINT (as the roll-up's do); on SQLite a saturated sum stays
//! saturated when findings are deleted (it can only come from absurd counters a host sent;
//! the raw query cannot sum those either).

/// The largest BIGINT.
macro_rules! big {
    () => {
        "9223372036854775807"
    };
}

macro_rules! tables {
    ($int:literal, $without_rowid:literal) => {
        concat!(
            "CREATE TABLE finding_day_hosts (day ",
            $int,
            " NOT NULL, service_id TEXT NOT NULL, verdict TEXT NOT NULL, host_id TEXT NOT NULL, \
             findings ",
            $int,
            " NOT NULL, PRIMARY KEY (day, service_id, verdict, host_id))",
            $without_rowid,
            ";\nCREATE TABLE finding_day_users (day ",
            $int,
            " NOT NULL, service_id TEXT NOT NULL, verdict TEXT NOT NULL, user_name TEXT NOT NULL, \
             findings ",
            $int,
            " NOT NULL, PRIMARY KEY (day, service_id, verdict, user_name))",
            $without_rowid,
            ";\nCREATE TABLE finding_day_sums (day ",
            $int,
            " NOT NULL, service_id TEXT NOT NULL, verdict TEXT NOT NULL, hosts ",
            $int,
            " NOT NULL, users ",
            $int,
            " NOT NULL, events ",
            $int,
            " NOT NULL, bytes_out ",
            $int,
            " NOT NULL, PRIMARY KEY (day, service_id, verdict))",
            $without_rowid,
            ";\nCREATE TABLE finding_day_pending (day ",
            $int,
            " NOT NULL, service_id TEXT NOT NULL, verdict TEXT NOT NULL, hosts ",
            $int,
            " NOT NULL, users ",
            $int,
            " NOT NULL, events ",
            $int,
            " NOT NULL, bytes_out ",
            $int,
            " NOT NULL);\nCREATE INDEX finding_day_pending_day ON finding_day_pending (day);\n"
        )
    };
}

/// Fills the helper and sums tables from `findings`. `$n`: a helper row's count (`COUNT(*)`,
/// or 0 on PostgreSQL); `$c0`…`$c1` wraps a sum so it saturates.
macro_rules! backfill {
    ($n:literal, $c0:literal, $c1:literal) => {
        concat!(
            "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) \
             SELECT window_start_ms / 86400000, service_id, verdict, host_id, ",
            $n,
            " FROM findings GROUP BY window_start_ms / 86400000, service_id, verdict, host_id;\n",
            "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) \
             SELECT window_start_ms / 86400000, service_id, verdict, user_name, ",
            $n,
            " FROM findings GROUP BY window_start_ms / 86400000, service_id, verdict, user_name;\n",
            "INSERT INTO finding_day_sums (day, service_id, verdict, hosts, users, events, \
             bytes_out) SELECT day, service_id, verdict, SUM(hosts), SUM(users), ",
            $c0,
            "events",
            $c1,
            ", ",
            $c0,
            "bytes_out",
            $c1,
            " FROM (SELECT day, service_id, verdict, 1 AS hosts, 0 AS users, 0 AS events, \
             0 AS bytes_out FROM finding_day_hosts UNION ALL SELECT day, service_id, verdict, \
             0, 1, 0, 0 FROM finding_day_users UNION ALL SELECT window_start_ms / 86400000, \
             service_id, verdict, 0, 0, count, COALESCE(bytes_out, 0) FROM findings) d \
             GROUP BY day, service_id, verdict;\n"
        )
    };
}

/// `$t.day`… equal the day, service and verdict of finding `$r` (`NEW`/`OLD`).
macro_rules! dsv_of {
    ($t:literal, $r:literal) => {
        concat!(
            $t,
            ".day = ",
            $r,
            ".window_start_ms / 86400000 AND ",
            $t,
            ".service_id = ",
            $r,
            ".service_id AND ",
            $t,
            ".verdict = ",
            $r,
            ".verdict"
        )
    };
}

/// SQLite's per-row triggers.
macro_rules! sqlite_triggers {
    () => {
        concat!(
            "CREATE TRIGGER finding_sums_insert AFTER INSERT ON findings BEGIN\n",
            "INSERT INTO finding_day_sums (day, service_id, verdict, hosts, users, events, \
             bytes_out) VALUES (NEW.window_start_ms / 86400000, NEW.service_id, NEW.verdict, \
             NOT EXISTS (SELECT 1 FROM finding_day_hosts h WHERE ",
            dsv_of!("h", "NEW"),
            " AND h.host_id = NEW.host_id), NOT EXISTS (SELECT 1 FROM finding_day_users u WHERE ",
            dsv_of!("u", "NEW"),
            " AND u.user_name = NEW.user_name), NEW.count, COALESCE(NEW.bytes_out, 0)) \
             ON CONFLICT (day, service_id, verdict) DO UPDATE SET \
             hosts = hosts + excluded.hosts, users = users + excluded.users, \
             events = CASE WHEN events > ", big!(), " - excluded.events THEN ", big!(),
            " ELSE events + excluded.events END, bytes_out = CASE WHEN bytes_out > ", big!(),
            " - excluded.bytes_out THEN ", big!(), " ELSE bytes_out + excluded.bytes_out END;\n",
            "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) VALUES \
             (NEW.window_start_ms / 86400000, NEW.service_id, NEW.verdict, NEW.host_id, 1) \
             ON CONFLICT (day, service_id, verdict, host_id) DO UPDATE SET findings = findings + 1;\n",
            "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) VALUES \
             (NEW.window_start_ms / 86400000, NEW.service_id, NEW.verdict, NEW.user_name, 1) \
             ON CONFLICT (day, service_id, verdict, user_name) DO UPDATE SET findings = findings + 1;\n",
            "END;\n",
            "CREATE TRIGGER finding_sums_delete AFTER DELETE ON findings BEGIN\n",
            "UPDATE finding_day_sums SET hosts = hosts - (SELECT COUNT(*) FROM finding_day_hosts h \
             WHERE ", dsv_of!("h", "OLD"),
            " AND h.host_id = OLD.host_id AND h.findings = 1), users = users - (SELECT COUNT(*) \
             FROM finding_day_users u WHERE ", dsv_of!("u", "OLD"),
            " AND u.user_name = OLD.user_name AND u.findings = 1), events = CASE WHEN events = ",
            big!(), " THEN events ELSE events - OLD.count END, bytes_out = CASE WHEN bytes_out = ",
            big!(), " THEN bytes_out ELSE bytes_out - COALESCE(OLD.bytes_out, 0) END WHERE ",
            dsv_of!("finding_day_sums", "OLD"), ";\n",
            "DELETE FROM finding_day_sums WHERE ", dsv_of!("finding_day_sums", "OLD"),
            " AND hosts = 0;\n",
            "UPDATE finding_day_hosts SET findings = findings - 1 WHERE ",
            dsv_of!("finding_day_hosts", "OLD"), " AND host_id = OLD.host_id;\n",
            "DELETE FROM finding_day_hosts WHERE ", dsv_of!("finding_day_hosts", "OLD"),
            " AND host_id = OLD.host_id AND findings <= 0;\n",
            "UPDATE finding_day_users SET findings = findings - 1 WHERE ",
            dsv_of!("finding_day_users", "OLD"), " AND user_name = OLD.user_name;\n",
            "DELETE FROM finding_day_users WHERE ", dsv_of!("finding_day_users", "OLD"),
            " AND user_name = OLD.user_name AND findings <= 0;\n",
            "END;\n"
        )
    };
}

/// Migration for SQLite: tables, back-fill, triggers.
pub(super) const SQLITE_MIGRATION: &str = concat!(
    "\n-- ---- day sums: distinct hosts and users per day for the trend (issue 14) ----\n",
    tables!("INTEGER", " WITHOUT ROWID"),
    backfill!(
        "COUNT(*)",
        "CAST(MIN(TOTAL(",
        "), 9223372036854775807.0) AS INTEGER)"
    ),
    sqlite_triggers!(),
    "ANALYZE;\n"
);

/// The advisory lock key of the fold ("shaj").
macro_rules! fold_lock {
    () => {
        "1936220522"
    };
}

/// The day × service × verdict groups a statement's rows `$rows` touch.
macro_rules! pg_groups {
    ($rows:literal) => {
        concat!(
            "(SELECT DISTINCT f.window_start_ms / 86400000 AS day, f.service_id, f.verdict \
             FROM ",
            $rows,
            " f)"
        )
    };
}

/// `$t`'s day, service and verdict equal `g`'s.
macro_rules! dsv_eq {
    ($t:literal) => {
        concat!(
            $t,
            ".day = g.day AND ",
            $t,
            ".service_id = g.service_id AND ",
            $t,
            ".verdict = g.verdict"
        )
    };
}

/// PostgreSQL: the pending deltas folded into `finding_day_sums` (under the fold lock).
macro_rules! pg_pending_fold {
    () => {
        concat!(
            "WITH p AS (DELETE FROM finding_day_pending RETURNING *) \
     INSERT INTO finding_day_sums AS t (day, service_id, verdict, hosts, users, events, \
     bytes_out) SELECT day, service_id, verdict, SUM(hosts), SUM(users), \
     LEAST(SUM(events), ",
            big!(),
            "), LEAST(SUM(bytes_out), ",
            big!(),
            ") FROM p \
     GROUP BY day, service_id, verdict ORDER BY 1, 2, 3 \
     ON CONFLICT (day, service_id, verdict) DO UPDATE SET hosts = t.hosts + excluded.hosts, \
     users = t.users + excluded.users, \
     events = LEAST(t.events::NUMERIC + excluded.events, ",
            big!(),
            "), \
     bytes_out = LEAST(t.bytes_out::NUMERIC + excluded.bytes_out, ",
            big!(),
            ")"
        )
    };
}

/// The pending deltas folded into the sums: each roll-up fold runs it (`fold.rs`).
pub(super) const POSTGRES_PENDING_FOLD: &str = pg_pending_fold!();

/// PostgreSQL: statement-level triggers over the transition tables; see the module's doc.
macro_rules! postgres_triggers {
    () => { concat!(
    "CREATE SEQUENCE finding_day_fold_seq;\n",
    "CREATE FUNCTION shadowai_sums_insert() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "WITH h AS (INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) \
     SELECT DISTINCT f.window_start_ms / 86400000, f.service_id, f.verdict, f.host_id, 0 \
     FROM new_rows f ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING \
     RETURNING day, service_id, verdict), \
     u AS (INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) \
     SELECT DISTINCT f.window_start_ms / 86400000, f.service_id, f.verdict, f.user_name, 0 \
     FROM new_rows f ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING \
     RETURNING day, service_id, verdict), \
     d AS (SELECT day, service_id, verdict, 1 AS hosts, 0 AS users, 0::NUMERIC AS events, \
     0::NUMERIC AS bytes_out FROM h UNION ALL SELECT day, service_id, verdict, 0, 1, 0, 0 \
     FROM u UNION ALL SELECT f.window_start_ms / 86400000, f.service_id, f.verdict, 0, 0, \
     f.count, COALESCE(f.bytes_out, 0) FROM new_rows f) \
     INSERT INTO finding_day_pending (day, service_id, verdict, hosts, users, events, bytes_out) \
     SELECT day, service_id, verdict, SUM(hosts), SUM(users), LEAST(SUM(events), ", big!(),
    "), LEAST(SUM(bytes_out), ", big!(), ") FROM d GROUP BY day, service_id, verdict;\n",
    "IF nextval('finding_day_fold_seq') % 32 = 0 AND pg_try_advisory_xact_lock(", fold_lock!(),
    ") THEN\n",
    pg_pending_fold!(),
    ";\n",
    "END IF;\nRETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_sums_insert AFTER INSERT ON findings REFERENCING NEW TABLE AS \
     new_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_sums_insert();\n",
    "CREATE FUNCTION shadowai_sums_delete() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "PERFORM pg_advisory_xact_lock(", fold_lock!(), ");\n",
    "LOCK TABLE finding_day_hosts, finding_day_users IN SHARE ROW EXCLUSIVE MODE;\n",
    "DELETE FROM finding_day_hosts x USING ", pg_groups!("old_rows"), " g WHERE ",
    dsv_eq!("x"), ";\n",
    "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) \
     SELECT DISTINCT d.day, d.service_id, d.verdict, d.host_id, 0 FROM finding_days d JOIN ",
    pg_groups!("old_rows"), " g ON ", dsv_eq!("d"), ";\n",
    "DELETE FROM finding_day_users x USING ", pg_groups!("old_rows"), " g WHERE ",
    dsv_eq!("x"), ";\n",
    "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) \
     SELECT DISTINCT d.day, d.service_id, d.verdict, d.user_name, 0 FROM finding_days d JOIN ",
    pg_groups!("old_rows"), " g ON ", dsv_eq!("d"), ";\n",
    "DELETE FROM finding_day_pending x USING ", pg_groups!("old_rows"), " g WHERE ",
    dsv_eq!("x"), ";\n",
    "DELETE FROM finding_day_sums x USING ", pg_groups!("old_rows"), " g WHERE ",
    dsv_eq!("x"), ";\n",
    "INSERT INTO finding_day_sums (day, service_id, verdict, hosts, users, events, bytes_out) \
     SELECT g.day, g.service_id, g.verdict, (SELECT COUNT(*) FROM finding_day_hosts x WHERE ",
    dsv_eq!("x"), "), (SELECT COUNT(*) FROM finding_day_users x WHERE ", dsv_eq!("x"),
    "), LEAST(SUM(d.events), ", big!(), "), LEAST(SUM(d.bytes_out), ", big!(), ") FROM ",
    pg_groups!("old_rows"), " g JOIN finding_days d ON ", dsv_eq!("d"),
    " GROUP BY g.day, g.service_id, g.verdict;\n",
    "RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_sums_delete AFTER DELETE ON findings REFERENCING OLD TABLE AS \
     old_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_sums_delete();\n",
    "CREATE FUNCTION shadowai_sums_truncate() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
     TRUNCATE finding_day_hosts, finding_day_users, finding_day_sums, finding_day_pending; \
     RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_sums_truncate AFTER TRUNCATE ON findings FOR EACH STATEMENT \
     EXECUTE FUNCTION shadowai_sums_truncate();\n"
    ) };
}

/// Migration for PostgreSQL: tables, back-fill, triggers.
pub(super) const POSTGRES_MIGRATION: &str = concat!(
    "\n-- ---- day sums: distinct hosts and users per day for the trend (issue 14) ----\n",
    tables!("BIGINT", ""),
    backfill!("0", "LEAST(SUM(", "), 9223372036854775807)"),
    postgres_triggers!(),
    "ANALYZE finding_day_hosts; ANALYZE finding_day_users; ANALYZE finding_day_sums;\n"
);

/// The SQLite back-fill alone (tests rebuild the tables with it and compare).
pub const SQLITE_BACKFILL: &str = backfill!(
    "COUNT(*)",
    "CAST(MIN(TOTAL(",
    "), 9223372036854775807.0) AS INTEGER)"
);

/// The PostgreSQL back-fill alone: the fleet bench loads `findings` in bulk with the insert
/// triggers disabled and then fills these tables as the migration does.
pub const POSTGRES_BACKFILL: &str = backfill!("0", "LEAST(SUM(", "), 9223372036854775807)");
