//! Group commit of ingests (SQLite's one writer): the batches queued behind a running
//! transaction are written together in the next one, each answered on its own.

use super::StoreError;
use super::rows::Backend;
use super::sql::SqlStore;
use super::sql_findings::{Begun, IngestJob, Ingested, begin_batch, write_batch, write_fresh};

impl<B: Backend> SqlStore<B> {
    /// One transaction for a group of batches. A batch refused by its checks (revoked agent,
    /// foreign host, reused batch id) has written nothing and is answered with its error;
    /// the others commit together. A batch that fails after it began writing (a refused
    /// row, a storage error) rolls the whole transaction back, and the group is written
    /// again with each batch behind a savepoint ([`Self::write_group_isolated`]), so that
    /// batch alone is rolled back. Savepoints are not taken up front: every page a batch
    /// changes first would be copied to the savepoint journal (≈ 10 % of an ingest's
    /// time, BENCHMARKS.md). If the transaction itself fails (the commit fails), every
    /// batch of the group fails and none is stored.
    pub(super) fn write_group(
        &self,
        mut jobs: Vec<IngestJob>,
    ) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
        let mut learned = Vec::new();
        let mut wrote_and_failed = false;
        let answers = self.tx(|tx| {
            learned.clear();
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs.iter_mut() {
                match begin_batch(tx, job) {
                    Ok(Begun::Replayed(w)) => answers.push(Ok((w.ack, w.noted.raised))),
                    Ok(Begun::Fresh { host_id, group }) => {
                        match write_fresh(tx, job, &self.known, &host_id, group) {
                            Ok(w) => {
                                learned.extend(w.noted.learned);
                                answers.push(Ok((w.ack, w.noted.raised)));
                            }
                            Err(e) => {
                                wrote_and_failed = true;
                                return Err(e);
                            }
                        }
                    }
                    Err(e) => answers.push(Err(e)),
                }
            }
            Ok(answers)
        });
        match answers {
            Ok(answers) => {
                self.known.learn(learned);
                Ok(answers)
            }
            Err(_) if wrote_and_failed => {
                self.ingest_group_rewrites
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.write_group_isolated(jobs)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Self::write_group`] with each batch behind a savepoint: a batch that fails is
    /// rolled back alone and answered with its error; the others commit together.
    fn write_group_isolated(
        &self,
        mut jobs: Vec<IngestJob>,
    ) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
        let mut learned = Vec::new();
        let answers = self.tx(|tx| {
            learned.clear();
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs.iter_mut() {
                tx.exec("SAVEPOINT ingest", &[])?;
                match write_batch(tx, job, &self.known) {
                    Ok(w) => {
                        tx.exec("RELEASE SAVEPOINT ingest", &[])?;
                        learned.extend(w.noted.learned);
                        answers.push(Ok((w.ack, w.noted.raised)));
                    }
                    Err(e) => {
                        tx.exec("ROLLBACK TO SAVEPOINT ingest", &[])?;
                        tx.exec("RELEASE SAVEPOINT ingest", &[])?;
                        answers.push(Err(e));
                    }
                }
            }
            Ok(answers)
        })?;
        self.known.learn(learned);
        Ok(answers)
    }
}
