//! Ingest, search and reports over the `findings` table.

use std::sync::Arc;

use shadowai_api::{Finding, IngestAck, IngestBatch};

use super::first_uses::{Noted, note_first_uses};
use super::group_commit::GroupJob;
use super::known_keys::KnownKeys;
use super::sql_outbox::AlertPolicy;
use super::sql_reports::Raised;

use super::rows::{Backend, Tx, V};
use super::sql::{SqlStore, verdict_str};
use super::{FindingFilter, StoreError};

/// Builds `WHERE …` for a filter; returns the clause and its parameters.
pub(super) fn where_clause(f: &FindingFilter, params: &mut Vec<V>) -> String {
    let mut conds: Vec<String> = Vec::new();
    let add = |params: &mut Vec<V>, v: V| {
        params.push(v);
        format!("${}", params.len())
    };
    if let Some(from) = f.from_ms {
        conds.push(format!("window_end_ms > {}", add(params, from.into())));
    }
    if let Some(to) = f.to_ms {
        conds.push(format!("window_start_ms < {}", add(params, to.into())));
    }
    if let Some(s) = &f.service {
        conds.push(format!("service_id = {}", add(params, s.into())));
    }
    if let Some(c) = &f.category {
        conds.push(format!("category = {}", add(params, c.into())));
    }
    if let Some(v) = f.verdict {
        conds.push(format!("verdict = {}", add(params, verdict_str(v).into())));
    }
    if let Some(h) = &f.host {
        let p = add(params, h.into());
        conds.push(format!("(host_id = {p} OR hostname = {p})"));
    }
    if let Some(u) = &f.user {
        conds.push(format!("user_name = {}", add(params, u.into())));
    }
    if let Some(pr) = &f.process {
        let p = add(params, pr.into());
        conds.push(format!("(exe = {p} OR process_name = {p})"));
    }
    if let Some(c) = &f.container {
        conds.push(format!("container_id = {}", add(params, c.into())));
    }
    super::sql_reports::more_conditions(f, params, &mut conds);
    if conds.is_empty() {
        "1 = 1".to_owned()
    } else {
        conds.join(" AND ")
    }
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's civil_from_days).
pub fn day_string(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// SHA-256 of the batch as the collector re-encodes it (field order and formatting of the
/// sender do not matter; any change of a value does).
fn batch_sha256(batch: &IngestBatch) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(batch).map_err(|e| StoreError::Corrupt {
        table: "batches",
        reason: format!("cannot encode batch {:?}: {e}", batch.batch_id),
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The `findings` columns an ingest writes, in the order [`push_finding_values`] pushes them.
const FINDING_COLUMNS: &str = "id, agent_id, host_id, hostname, window_start_ms, window_end_ms, \
     service_id, service_name, vendor, category, risk_score, verdict, action, user_name, uid, exe, \
     process_name, container_id, count, first_seen_ms, last_seen_ms, received_ms, doc, bytes_out, \
     bytes_in, policy_version, layer, grp";
const FINDING_COLUMN_COUNT: usize = 28;

/// Rows per `INSERT` statement. One multi-row statement instead of one per finding: a
/// PostgreSQL round trip (parse + execute) and an SQLite statement step per chunk, not per
/// finding. Chunk sizes come from this short list so the prepared-statement cache holds a
/// handful of statements; 64 × 28 parameters stays far below both engines' limits.
const INSERT_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// The largest chunk size that fits `remaining` findings.
fn insert_rows(remaining: usize) -> usize {
    INSERT_CHUNKS
        .into_iter()
        .find(|&n| n <= remaining)
        .unwrap_or(1)
}

/// `INSERT INTO findings (…) VALUES (…), (…) … ON CONFLICT DO NOTHING` for `rows` findings.
fn insert_sql(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = format!("INSERT INTO findings ({FINDING_COLUMNS}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..FINDING_COLUMN_COUNT {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", r * FINDING_COLUMN_COUNT + c + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (host_id, id) DO NOTHING");
    sql
}

/// Index of the `grp` column in a row (the last): only known inside the transaction.
const GROUP_COLUMN: usize = FINDING_COLUMN_COUNT - 1;

/// The values of one finding's row, in [`FINDING_COLUMNS`] order, with `grp` left NULL for
/// [`set_group`] to fill once the transaction has read the agent's group.
fn push_finding_values(
    params: &mut Vec<V>,
    f: &Finding,
    agent_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let doc = super::finding_doc::encode(f).map_err(|e| StoreError::Corrupt {
        table: "findings",
        reason: format!("cannot encode finding {:?}: {e}", f.id),
    })?;
    params.extend([
        f.id.as_str().into(),
        agent_id.into(),
        f.host_id.as_str().into(),
        f.hostname.as_str().into(),
        f.window_start_ms.into(),
        f.window_end_ms.into(),
        f.service_id.as_str().into(),
        f.service_name.as_str().into(),
        f.vendor.as_str().into(),
        f.category.as_str().into(),
        i64::from(f.risk_score).into(),
        verdict_str(f.verdict).into(),
        f.action.as_str().into(),
        f.user.as_str().into(),
        i64::from(f.uid).into(),
        f.process.exe.as_str().into(),
        f.process.name.as_str().into(),
        f.process.container_id.clone().into(),
        f.count.into(),
        f.first_seen_ms.into(),
        f.last_seen_ms.into(),
        now_ms.into(),
        doc.into(),
        f.bytes_out.map(super::sql_reports::clamp_i64).into(),
        f.bytes_in.map(super::sql_reports::clamp_i64).into(),
        f.policy_version.clone().into(),
        f.layer.map(|l| l.as_str()).into(),
        V::Text(None),
    ]);
    Ok(())
}

/// One multi-row `INSERT` of a batch: its row count and parameters.
struct Chunk {
    rows: usize,
    params: Vec<V>,
}

/// Every `INSERT` of a batch, encoded before the transaction: the JSON docs and parameter
/// values are the per-finding CPU work of an ingest, and none of it needs the write lock.
fn encode_chunks(
    findings: &[Finding],
    agent_id: &str,
    now_ms: i64,
) -> Result<Vec<Chunk>, StoreError> {
    let mut chunks = Vec::new();
    let mut rest = findings;
    while !rest.is_empty() {
        let rows = insert_rows(rest.len());
        let (chunk, tail) = rest.split_at(rows);
        let mut params = Vec::with_capacity(rows * FINDING_COLUMN_COUNT);
        for f in chunk {
            push_finding_values(&mut params, f, agent_id, now_ms)?;
        }
        chunks.push(Chunk { rows, params });
        rest = tail;
    }
    Ok(chunks)
}

/// Fill the `grp` column of every row of `chunk`.
fn set_group(chunk: &mut Chunk, group: Option<&str>) {
    for r in 0..chunk.rows {
        if let Some(v) = chunk
            .params
            .get_mut(r * FINDING_COLUMN_COUNT + GROUP_COLUMN)
        {
            *v = group.into();
        }
    }
}

/// One batch ready to be written: its rows encoded and its content hashed before any lock,
/// owned so that the writer of a group (SQLite) can run it on its own thread.
pub(super) struct IngestJob {
    agent_id: String,
    batch: Arc<IngestBatch>,
    content: String,
    chunks: Vec<Chunk>,
    policy: AlertPolicy,
    now_ms: i64,
}

impl IngestJob {
    fn new(
        agent_id: &str,
        batch: Arc<IngestBatch>,
        policy: &AlertPolicy,
        now_ms: i64,
    ) -> Result<IngestJob, StoreError> {
        Ok(IngestJob {
            agent_id: agent_id.to_owned(),
            content: batch_sha256(&batch)?,
            chunks: encode_chunks(&batch.findings, agent_id, now_ms)?,
            batch,
            policy: policy.clone(),
            now_ms,
        })
    }
}

impl GroupJob for IngestJob {
    fn findings(&self) -> usize {
        self.batch.findings.len()
    }
}

/// A written batch: its answer, and the first-use keys its transaction stored.
pub(super) struct Written {
    pub(super) ack: IngestAck,
    pub(super) noted: Noted,
}

/// What an ingest answers.
pub(super) type Ingested = (IngestAck, Raised);

/// Writes one batch in `tx`: idempotent by batch id (a replay answers what was stored, a
/// reused id with other content is a conflict) and by finding id.
pub(super) fn write_batch(
    tx: &mut dyn Tx,
    job: &mut IngestJob,
    known: &KnownKeys,
) -> Result<Written, StoreError> {
    match begin_batch(tx, job)? {
        Begun::Replayed(w) => Ok(w),
        Begun::Fresh { host_id, group } => write_fresh(tx, job, known, &host_id, group),
    }
}

/// A batch past [`begin_batch`].
pub(super) enum Begun {
    /// Its id was stored before, with the same content: the answer then.
    Replayed(Written),
    /// Its id is new and now recorded: its findings are to be written.
    Fresh {
        host_id: String,
        group: Option<String>,
    },
}

/// The checks of a batch and the record of its id. An `Err` here has written nothing (the
/// batch id's insert is the last statement and inserted no row when it is a replay), so a
/// group commit needs no savepoint to answer it alone.
pub(super) fn begin_batch(tx: &mut dyn Tx, job: &IngestJob) -> Result<Begun, StoreError> {
    let (agent_id, batch, now_ms) = (job.agent_id.as_str(), &*job.batch, job.now_ms);
    let agent = tx.query(
        "agents",
        "SELECT host_id, grp FROM agents WHERE agent_id = $1 AND revoked_ms IS NULL",
        &[agent_id.into()],
    )?;
    let row = agent.first().ok_or_else(|| StoreError::NotFound {
        what: format!("active agent {agent_id:?}"),
    })?;
    let (host_id, group) = (row.text(0)?, row.opt_text(1)?);
    if let Some(f) = batch.findings.iter().find(|f| f.host_id != host_id) {
        return Err(StoreError::InvalidState {
            what: format!("finding {:?}", f.id),
            reason: format!("host_id {:?} is not the agent's host", f.host_id),
        });
    }
    let fresh = tx.exec(
        "INSERT INTO batches (host_id, batch_id, agent_id, received_ms, accepted, duplicates, \
         content_sha256) VALUES ($1, $2, $3, $4, 0, 0, $5) \
         ON CONFLICT (host_id, batch_id) DO NOTHING",
        &[
            host_id.as_str().into(),
            batch.batch_id.as_str().into(),
            agent_id.into(),
            now_ms.into(),
            job.content.as_str().into(),
        ],
    )?;
    if fresh == 0 {
        return replayed(tx, &host_id, batch, &job.content).map(Begun::Replayed);
    }
    Ok(Begun::Fresh { host_id, group })
}

/// The findings of a batch [`begin_batch`] recorded, its first uses and its counts.
pub(super) fn write_fresh(
    tx: &mut dyn Tx,
    job: &mut IngestJob,
    known: &KnownKeys,
    host_id: &str,
    group: Option<String>,
) -> Result<Written, StoreError> {
    let (batch, now_ms) = (&*job.batch, job.now_ms);
    let mut accepted = 0u64;
    for chunk in job.chunks.iter_mut() {
        set_group(chunk, group.as_deref());
        accepted += tx.exec(&insert_sql(chunk.rows), &chunk.params)?;
    }
    let duplicates = (batch.findings.len() as u64).saturating_sub(accepted);
    // First uses are noted for the whole batch: a duplicate was stored before, so its
    // keys exist already and it raises nothing.
    let stored: Vec<&Finding> = batch.findings.iter().collect();
    let noted = note_first_uses(tx, &stored, group.as_deref(), &job.policy, now_ms, known)?;
    tx.exec(
        "UPDATE batches SET accepted = $1, duplicates = $2 WHERE host_id = $3 AND batch_id = $4",
        &[
            accepted.into(),
            duplicates.into(),
            host_id.into(),
            batch.batch_id.as_str().into(),
        ],
    )?;
    Ok(Written {
        ack: IngestAck {
            batch_id: batch.batch_id.clone(),
            accepted,
            duplicates,
            replayed: false,
        },
        noted,
    })
}

/// The answer to a batch id stored before: what was stored then, if the content is the same.
fn replayed(
    tx: &mut dyn Tx,
    host_id: &str,
    batch: &IngestBatch,
    content: &str,
) -> Result<Written, StoreError> {
    let rows = tx.query(
        "batches",
        "SELECT accepted, duplicates, content_sha256 FROM batches \
         WHERE host_id = $1 AND batch_id = $2",
        &[host_id.into(), batch.batch_id.as_str().into()],
    )?;
    let r = rows.first().ok_or_else(|| StoreError::NotFound {
        what: format!("batch {:?}", batch.batch_id),
    })?;
    // Batches stored before content hashes existed (NULL) are taken as replays.
    if r.opt_text(2)?.is_some_and(|h| h != content) {
        return Err(StoreError::Conflict {
            what: format!(
                "batch {:?} with other content (a batch id is committed once; \
                 new findings need a new batch id)",
                batch.batch_id
            ),
        });
    }
    Ok(Written {
        ack: IngestAck {
            batch_id: batch.batch_id.clone(),
            accepted: r.u64(0)?,
            duplicates: r.u64(1)?,
            replayed: true,
        },
        noted: Noted {
            raised: Raised::default(),
            learned: Vec::new(),
        },
    })
}

impl<B: Backend> SqlStore<B> {
    /// Stores a batch: in a transaction of its own (PostgreSQL: concurrent ingests run on
    /// the pool's connections), or in the next group commit (SQLite: one writer).
    pub(super) fn ingest_batch(
        &self,
        agent_id: &str,
        batch: Arc<IngestBatch>,
        policy: &AlertPolicy,
        now_ms: i64,
    ) -> Result<Ingested, StoreError> {
        let mut job = IngestJob::new(agent_id, batch, policy, now_ms)?;
        // Past the bound of findings waiting for the roll-up's fold, fold first (`fold.rs`).
        self.fold_if_backlogged()?;
        let out = if self.backend.group_commit() {
            self.ingest_group
                .submit(job, |jobs| self.write_group(jobs))?
        } else {
            let written = self.tx(|tx| write_batch(tx, &mut job, &self.known))?;
            self.known.learn(written.noted.learned);
            (written.ack, written.noted.raised)
        };
        self.fold_note_stored(out.0.accepted);
        Ok(out)
    }

    pub(super) fn search_findings(
        &self,
        filter: &FindingFilter,
        limit: u32,
        cursor: Option<i64>,
    ) -> Result<(Vec<Finding>, Option<i64>), StoreError> {
        self.read_tx(|tx| {
            let mut params = Vec::new();
            let mut clause = where_clause(filter, &mut params);
            // One host's findings through an index (`report_index.rs`).
            if let (Some(h), true) = (&filter.host, self.uses_rollup()) {
                match super::report_index::host_ids(tx, h, &mut params)? {
                    Some(ids) => clause.push_str(&ids),
                    None => return Ok((Vec::new(), None)),
                }
            }
            if let Some(c) = cursor {
                params.push(c.into());
                clause = format!("{clause} AND seq < ${}", params.len());
            }
            params.push((i64::from(limit) + 1).into());
            let sql = format!(
                "SELECT seq, doc, {} FROM findings WHERE {clause} ORDER BY seq DESC LIMIT ${}",
                super::finding_doc::READ_COLUMNS,
                params.len()
            );
            let rows = tx.query("findings", &sql, &params)?;
            let more = rows.len() > limit as usize;
            let page = &rows[..rows.len().min(limit as usize)];
            let next = if more {
                page.last().map(|r| r.i64(0)).transpose()?
            } else {
                None
            };
            let items = page
                .iter()
                .map(super::finding_doc::decode)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((items, next))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        FINDING_COLUMN_COUNT, FINDING_COLUMNS, GROUP_COLUMN, day_string, insert_rows, insert_sql,
    };

    #[test]
    fn civil_dates() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(20_414), "2025-11-22");
        assert_eq!(day_string(11_016), "2000-02-29");
        assert_eq!(day_string(-1), "1969-12-31");
    }

    #[test]
    fn chunks_cover_any_batch_with_few_statement_shapes() {
        for len in 0..300 {
            let (mut left, mut shapes) = (len, std::collections::BTreeSet::new());
            while left > 0 {
                let n = insert_rows(left);
                assert!(n >= 1 && n <= left);
                shapes.insert(n);
                left -= n;
            }
            assert!(shapes.len() <= 4);
        }
    }

    #[test]
    fn insert_statement_numbers_every_parameter_once() {
        assert_eq!(FINDING_COLUMNS.split(',').count(), FINDING_COLUMN_COUNT);
        assert_eq!(
            FINDING_COLUMNS.split(',').nth(GROUP_COLUMN).map(str::trim),
            Some("grp")
        );
        let sql = insert_sql(3);
        assert!(sql.contains(&format!("${}", 3 * FINDING_COLUMN_COUNT)));
        assert!(!sql.contains(&format!("${}", 3 * FINDING_COLUMN_COUNT + 1)));
        assert_eq!(sql.matches("), (").count(), 2);
    }
}
