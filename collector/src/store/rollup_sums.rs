//! Per-day sums for the unfiltered day trend (issue 14): distinct hosts and users, events and
//! bytes sent per day × service × verdict, kept by triggers on `findings` (appended to both
//! stores' migrations after the daily roll-up of `rollup_sql.rs`).
//!
//! - `finding_day_hosts` / `finding_day_users`: one row per day × service × verdict × host
//!   (user) with how many findings it has. The row an insert creates is that host's (user's)
//!   first of the day, service and verdict; the row a delete empties was its last.
//! - `finding_day_sums`: one row per day × service × verdict × *shard* with the number of
//!   distinct hosts and users and the sums of events and bytes sent. A host (its events,
//!   bytes and distinct count) and a user (its distinct count) each belong to one shard, so the
//!   shards add up. SQLite serialises writers and uses one shard (0); PostgreSQL spreads the
//!   rows over 64 shards by a hash of the host id (user name) so that concurrent ingests of
//!   different hosts rarely wait on the same row until commit.
//!
//! A trend reads ≈ days × services × verdicts × shards rows instead of the roll-up's
//! day × host × user × executable rows. Sums saturate at the largest BIGINT (as the roll-up's
//! do); a saturated sum stays saturated when findings are deleted (it can only come from
//! absurd counters a host sent; the raw query cannot sum those either).

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
            " NOT NULL, service_id TEXT NOT NULL, verdict TEXT NOT NULL, shard ",
            $int,
            " NOT NULL, hosts ",
            $int,
            " NOT NULL, users ",
            $int,
            " NOT NULL, events ",
            $int,
            " NOT NULL, bytes_out ",
            $int,
            " NOT NULL, PRIMARY KEY (day, service_id, verdict, shard))",
            $without_rowid,
            ";\n"
        )
    };
}

/// Fills the three tables from `findings`. `$hs`/`$us`: the shard of `host_id`/`user_name`;
/// `$c0`…`$c1` wraps a sum so it saturates.
macro_rules! backfill {
    ($hs:literal, $us:literal, $c0:literal, $c1:literal) => {
        concat!(
            "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) \
             SELECT window_start_ms / 86400000, service_id, verdict, host_id, COUNT(*) \
             FROM findings GROUP BY window_start_ms / 86400000, service_id, verdict, host_id;\n",
            "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) \
             SELECT window_start_ms / 86400000, service_id, verdict, user_name, COUNT(*) \
             FROM findings GROUP BY window_start_ms / 86400000, service_id, verdict, user_name;\n",
            "INSERT INTO finding_day_sums (day, service_id, verdict, shard, hosts, users, events, \
             bytes_out) SELECT day, service_id, verdict, shard, SUM(hosts), SUM(users), ",
            $c0,
            "events",
            $c1,
            ", ",
            $c0,
            "bytes_out",
            $c1,
            " FROM (SELECT day, service_id, verdict, ",
            $hs,
            " AS shard, 1 AS hosts, 0 AS users, 0 AS events, 0 AS bytes_out \
             FROM finding_day_hosts UNION ALL SELECT day, service_id, verdict, ",
            $us,
            ", 0, 1, 0, 0 FROM finding_day_users UNION ALL SELECT window_start_ms / 86400000, \
             service_id, verdict, ",
            $hs,
            ", 0, 0, count, COALESCE(bytes_out, 0) FROM findings) d \
             GROUP BY day, service_id, verdict, shard;\n"
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

/// SQLite's per-row triggers (one shard).
macro_rules! sqlite_triggers {
    () => {
        concat!(
            "CREATE TRIGGER finding_sums_insert AFTER INSERT ON findings BEGIN\n",
            "INSERT INTO finding_day_sums (day, service_id, verdict, shard, hosts, users, events, \
             bytes_out) VALUES (NEW.window_start_ms / 86400000, NEW.service_id, NEW.verdict, 0, \
             NOT EXISTS (SELECT 1 FROM finding_day_hosts h WHERE ",
            dsv_of!("h", "NEW"),
            " AND h.host_id = NEW.host_id), NOT EXISTS (SELECT 1 FROM finding_day_users u WHERE ",
            dsv_of!("u", "NEW"),
            " AND u.user_name = NEW.user_name), NEW.count, COALESCE(NEW.bytes_out, 0)) \
             ON CONFLICT (day, service_id, verdict, shard) DO UPDATE SET \
             hosts = hosts + excluded.hosts, users = users + excluded.users, \
             events = CASE WHEN events > ",
            big!(),
            " - excluded.events THEN ",
            big!(),
            " ELSE events + excluded.events END, bytes_out = CASE WHEN bytes_out > ",
            big!(),
            " - excluded.bytes_out THEN ",
            big!(),
            " ELSE bytes_out + excluded.bytes_out END;\n",
            "INSERT INTO finding_day_hosts (day, service_id, verdict, host_id, findings) VALUES \
             (NEW.window_start_ms / 86400000, NEW.service_id, NEW.verdict, NEW.host_id, 1) \
             ON CONFLICT (day, service_id, verdict, host_id) DO UPDATE SET findings = findings + 1;\n",
            "INSERT INTO finding_day_users (day, service_id, verdict, user_name, findings) VALUES \
             (NEW.window_start_ms / 86400000, NEW.service_id, NEW.verdict, NEW.user_name, 1) \
             ON CONFLICT (day, service_id, verdict, user_name) DO UPDATE SET findings = findings + 1;\n",
            "END;\n",
            "CREATE TRIGGER finding_sums_delete AFTER DELETE ON findings BEGIN\n",
            "UPDATE finding_day_sums SET hosts = hosts - (SELECT COUNT(*) FROM finding_day_hosts h \
             WHERE ",
            dsv_of!("h", "OLD"),
            " AND h.host_id = OLD.host_id AND h.findings = 1), users = users - (SELECT COUNT(*) \
             FROM finding_day_users u WHERE ",
            dsv_of!("u", "OLD"),
            " AND u.user_name = OLD.user_name AND u.findings = 1), events = CASE WHEN events = ",
            big!(),
            " THEN events ELSE events - OLD.count END, bytes_out = CASE WHEN bytes_out = ",
            big!(),
            " THEN bytes_out ELSE bytes_out - COALESCE(OLD.bytes_out, 0) END WHERE ",
            dsv_of!("finding_day_sums", "OLD"),
            " AND shard = 0;\n",
            "DELETE FROM finding_day_sums WHERE ",
            dsv_of!("finding_day_sums", "OLD"),
            " AND shard = 0 AND hosts = 0 AND users = 0;\n",
            "UPDATE finding_day_hosts SET findings = findings - 1 WHERE ",
            dsv_of!("finding_day_hosts", "OLD"),
            " AND host_id = OLD.host_id;\n",
            "DELETE FROM finding_day_hosts WHERE ",
            dsv_of!("finding_day_hosts", "OLD"),
            " AND host_id = OLD.host_id AND findings <= 0;\n",
            "UPDATE finding_day_users SET findings = findings - 1 WHERE ",
            dsv_of!("finding_day_users", "OLD"),
            " AND user_name = OLD.user_name;\n",
            "DELETE FROM finding_day_users WHERE ",
            dsv_of!("finding_day_users", "OLD"),
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
        "0",
        "0",
        "CAST(MIN(TOTAL(",
        "), 9223372036854775807.0) AS INTEGER)"
    ),
    sqlite_triggers!(),
    "ANALYZE;\n"
);

/// PostgreSQL's shard of a text column (64 shards).
macro_rules! pg_shard {
    ($c:literal) => {
        concat!("(hashtext(", $c, ") & 63)")
    };
}

/// Per day × service × verdict × `$col`: how many of the statement's rows (`$rows`) it has.
macro_rules! pg_per {
    ($rows:literal, $col:literal) => {
        concat!(
            "SELECT f.window_start_ms / 86400000 AS day, f.service_id, f.verdict, f.",
            $col,
            ", COUNT(*) AS n FROM ",
            $rows,
            " f GROUP BY f.window_start_ms / 86400000, f.service_id, f.verdict, f.",
            $col
        )
    };
}

/// The rows of the sums a statement's findings `$rows` add or take away: one per host (user)
/// whose per-day row the statement created or emptied (CTEs `h`/`hn`, `u`/`un`, the
/// condition on the returned row `$first`), and the events and bytes of each finding.
macro_rules! pg_delta {
    ($rows:literal, $first:literal) => {
        concat!(
            "SELECT h.day, h.service_id, h.verdict, ",
            pg_shard!("h.host_id"),
            " AS shard, 1 AS hosts, 0 AS users, 0::NUMERIC AS events, 0::NUMERIC AS bytes_out \
             FROM h JOIN hn USING (day, service_id, verdict, host_id) WHERE ",
            $first,
            " UNION ALL SELECT u.day, u.service_id, u.verdict, ",
            pg_shard!("u.user_name"),
            ", 0, 1, 0, 0 FROM u JOIN un USING (day, service_id, verdict, user_name) WHERE ",
            $first,
            " UNION ALL SELECT f.window_start_ms / 86400000, f.service_id, f.verdict, ",
            pg_shard!("f.host_id"),
            ", 0, 0, f.count, COALESCE(f.bytes_out, 0) FROM ",
            $rows,
            " f"
        )
    };
}

/// PostgreSQL: statement-level triggers over the transition tables. The sums are written in
/// key order, as the roll-up's are.
macro_rules! postgres_triggers {
    () => { concat!(
    "CREATE FUNCTION shadowai_sums_insert() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "WITH hn AS (", pg_per!("new_rows", "host_id"), "), \
     h AS (INSERT INTO finding_day_hosts AS x (day, service_id, verdict, host_id, findings) \
     SELECT day, service_id, verdict, host_id, n FROM hn ORDER BY 1, 2, 3, 4 \
     ON CONFLICT (day, service_id, verdict, host_id) DO UPDATE SET \
     findings = x.findings + excluded.findings \
     RETURNING x.day, x.service_id, x.verdict, x.host_id, x.findings), \
     un AS (", pg_per!("new_rows", "user_name"), "), \
     u AS (INSERT INTO finding_day_users AS x (day, service_id, verdict, user_name, findings) \
     SELECT day, service_id, verdict, user_name, n FROM un ORDER BY 1, 2, 3, 4 \
     ON CONFLICT (day, service_id, verdict, user_name) DO UPDATE SET \
     findings = x.findings + excluded.findings \
     RETURNING x.day, x.service_id, x.verdict, x.user_name, x.findings), \
     d AS (", pg_delta!("new_rows", "findings = n"), ") \
     INSERT INTO finding_day_sums AS t (day, service_id, verdict, shard, hosts, users, events, \
     bytes_out) SELECT day, service_id, verdict, shard, SUM(hosts), SUM(users), \
     LEAST(SUM(events), ", big!(), "), LEAST(SUM(bytes_out), ", big!(), ") FROM d \
     GROUP BY day, service_id, verdict, shard ORDER BY 1, 2, 3, 4 \
     ON CONFLICT (day, service_id, verdict, shard) DO UPDATE SET \
     hosts = t.hosts + excluded.hosts, users = t.users + excluded.users, \
     events = LEAST(t.events::NUMERIC + excluded.events, ", big!(), "), \
     bytes_out = LEAST(t.bytes_out::NUMERIC + excluded.bytes_out, ", big!(), ");\n",
    "RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_sums_insert AFTER INSERT ON findings REFERENCING NEW TABLE AS \
     new_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_sums_insert();\n",
    "CREATE FUNCTION shadowai_sums_delete() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN\n",
    "WITH hn AS (", pg_per!("old_rows", "host_id"), "), \
     h AS (UPDATE finding_day_hosts x SET findings = x.findings - hn.n FROM hn \
     WHERE x.day = hn.day AND x.service_id = hn.service_id AND x.verdict = hn.verdict \
     AND x.host_id = hn.host_id RETURNING x.day, x.service_id, x.verdict, x.host_id, x.findings), \
     un AS (", pg_per!("old_rows", "user_name"), "), \
     u AS (UPDATE finding_day_users x SET findings = x.findings - un.n FROM un \
     WHERE x.day = un.day AND x.service_id = un.service_id AND x.verdict = un.verdict \
     AND x.user_name = un.user_name \
     RETURNING x.day, x.service_id, x.verdict, x.user_name, x.findings), \
     d AS (", pg_delta!("old_rows", "findings <= 0"), ") \
     UPDATE finding_day_sums t SET hosts = t.hosts - s.hosts, users = t.users - s.users, \
     events = CASE WHEN t.events = ", big!(), " THEN t.events ELSE t.events - s.events END, \
     bytes_out = CASE WHEN t.bytes_out = ", big!(), " THEN t.bytes_out \
     ELSE t.bytes_out - s.bytes_out END FROM (SELECT day, service_id, verdict, shard, \
     SUM(hosts) AS hosts, SUM(users) AS users, SUM(events) AS events, \
     SUM(bytes_out) AS bytes_out FROM d GROUP BY day, service_id, verdict, shard) s \
     WHERE t.day = s.day AND t.service_id = s.service_id AND t.verdict = s.verdict \
     AND t.shard = s.shard;\n",
    "DELETE FROM finding_day_hosts x USING (", pg_per!("old_rows", "host_id"), ") o \
     WHERE x.day = o.day AND x.service_id = o.service_id AND x.verdict = o.verdict \
     AND x.host_id = o.host_id AND x.findings <= 0;\n",
    "DELETE FROM finding_day_users x USING (", pg_per!("old_rows", "user_name"), ") o \
     WHERE x.day = o.day AND x.service_id = o.service_id AND x.verdict = o.verdict \
     AND x.user_name = o.user_name AND x.findings <= 0;\n",
    "DELETE FROM finding_day_sums t USING (SELECT DISTINCT f.window_start_ms / 86400000 AS day, \
     f.service_id, f.verdict FROM old_rows f) o WHERE t.day = o.day \
     AND t.service_id = o.service_id AND t.verdict = o.verdict AND t.hosts = 0 AND t.users = 0;\n",
    "RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_sums_delete AFTER DELETE ON findings REFERENCING OLD TABLE AS \
     old_rows FOR EACH STATEMENT EXECUTE FUNCTION shadowai_sums_delete();\n",
    "CREATE FUNCTION shadowai_sums_truncate() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
     TRUNCATE finding_day_hosts, finding_day_users, finding_day_sums; RETURN NULL; END $f$;\n",
    "CREATE TRIGGER finding_sums_truncate AFTER TRUNCATE ON findings FOR EACH STATEMENT \
     EXECUTE FUNCTION shadowai_sums_truncate();\n"
    ) };
}

/// Migration for PostgreSQL: tables, back-fill, triggers.
pub(super) const POSTGRES_MIGRATION: &str = concat!(
    "\n-- ---- day sums: distinct hosts and users per day for the trend (issue 14) ----\n",
    tables!("BIGINT", ""),
    backfill!(
        "(hashtext(host_id) & 63)",
        "(hashtext(user_name) & 63)",
        "LEAST(SUM(",
        "), 9223372036854775807)"
    ),
    postgres_triggers!(),
    "ANALYZE finding_day_hosts; ANALYZE finding_day_users; ANALYZE finding_day_sums;\n"
);

/// The SQLite back-fill alone (tests rebuild the tables with it and compare).
pub const SQLITE_BACKFILL: &str = backfill!(
    "0",
    "0",
    "CAST(MIN(TOTAL(",
    "), 9223372036854775807.0) AS INTEGER)"
);

/// The PostgreSQL back-fill alone: the fleet bench loads `findings` in bulk with the insert
/// triggers disabled and then fills these tables as the migration does.
pub const POSTGRES_BACKFILL: &str = backfill!(
    "(hashtext(host_id) & 63)",
    "(hashtext(user_name) & 63)",
    "LEAST(SUM(",
    "), 9223372036854775807)"
);
