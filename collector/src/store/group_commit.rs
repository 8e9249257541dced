//! Group commit for a single-writer store (SQLite): ingests that arrive while a transaction
//! is being written wait in a queue; the next writer takes every queued job at once, runs
//! them in one transaction (one job's failure is only its own: `sql_ingest_group.rs`) and
//! commits once, so many batches share one fsync. Every job is answered only
//! after that commit returned, so an acknowledged batch is on disk as before.
//!
//! There is no writer thread: the first caller that finds no group running leads the next
//! one, on its own thread, and the others wait on a condition variable for their answer (or
//! for their turn to lead). A group holds at most [`MAX_BATCHES`] jobs and
//! [`MAX_FINDINGS`] findings (one job always fits); the queue itself holds one job per
//! caller waiting in `Store::ingest`, which the server's blocking pool and admission bound.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::StoreError;

/// Most jobs in one transaction.
pub(super) const MAX_BATCHES: usize = 64;
/// Most findings in one transaction (a job larger than this runs alone).
pub(super) const MAX_FINDINGS: usize = 20_000;

/// A job's size, for the group bound.
pub(super) trait GroupJob {
    /// Findings the job writes.
    fn findings(&self) -> usize;
}

struct State<J, R> {
    queue: VecDeque<(u64, J)>,
    answers: HashMap<u64, Result<R, StoreError>>,
    leading: bool,
    next_id: u64,
}

pub(super) struct Combiner<J, R> {
    state: Mutex<State<J, R>>,
    turn: Condvar,
    /// Groups run and jobs they held, since start.
    groups: AtomicU64,
    jobs: AtomicU64,
}

impl<J: GroupJob, R> Default for Combiner<J, R> {
    fn default() -> Self {
        Combiner {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                answers: HashMap::new(),
                leading: false,
                next_id: 0,
            }),
            turn: Condvar::new(),
            groups: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
        }
    }
}

/// Answers a leader's group when it ends, also by unwinding: jobs it took but did not answer
/// get [`StoreError::GroupAborted`], and the next caller may lead.
struct Leading<'a, J, R> {
    combiner: &'a Combiner<J, R>,
    /// The leader's own job: when its thread unwinds, nobody is left to read its answer.
    me: u64,
    ids: Vec<u64>,
    answers: Vec<Result<R, StoreError>>,
}

impl<J, R> Drop for Leading<'_, J, R> {
    fn drop(&mut self) {
        let mut st = self.combiner.state.lock();
        let mut answers = std::mem::take(&mut self.answers).into_iter();
        let unwinding = std::thread::panicking();
        for id in self.ids.drain(..) {
            let a = answers.next().unwrap_or(Err(StoreError::GroupAborted));
            if !(unwinding && id == self.me) {
                st.answers.insert(id, a);
            }
        }
        st.leading = false;
        drop(st);
        self.combiner.turn.notify_all();
    }
}

impl<J: GroupJob, R> Combiner<J, R> {
    /// Queues `job` and returns its answer once the transaction that ran it has ended.
    /// `run` gets a group of jobs in arrival order and returns one answer per job, in order
    /// (an `Err` from `run` answers every job of the group with it).
    pub(super) fn submit(
        &self,
        job: J,
        run: impl Fn(Vec<J>) -> Result<Vec<Result<R, StoreError>>, StoreError>,
    ) -> Result<R, StoreError> {
        let mut st = self.state.lock();
        let me = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        st.queue.push_back((me, job));
        loop {
            if let Some(a) = st.answers.remove(&me) {
                return a;
            }
            if st.leading {
                self.turn.wait(&mut st);
                continue;
            }
            st.leading = true;
            let (ids, jobs) = take_group(&mut st.queue);
            drop(st);
            self.groups.fetch_add(1, Ordering::Relaxed);
            self.jobs.fetch_add(ids.len() as u64, Ordering::Relaxed);
            let mut lead = Leading {
                combiner: self,
                me,
                ids,
                answers: Vec::new(),
            };
            lead.answers = match run(jobs) {
                Ok(answers) => answers,
                Err(e) => {
                    let shared = std::sync::Arc::new(e);
                    (0..lead.ids.len())
                        .map(|_| {
                            Err(StoreError::GroupFailed {
                                source: shared.clone(),
                            })
                        })
                        .collect()
                }
            };
            drop(lead);
            st = self.state.lock();
        }
    }
}

impl<J, R> Combiner<J, R> {
    /// (groups run, jobs they held) since start.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.groups.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
        )
    }
}

/// The jobs at the head of the queue that fit one group (at least one).
fn take_group<J: GroupJob>(queue: &mut VecDeque<(u64, J)>) -> (Vec<u64>, Vec<J>) {
    let (mut ids, mut jobs, mut findings) = (Vec::new(), Vec::new(), 0usize);
    while let Some((_, j)) = queue.front() {
        let n = j.findings();
        if !jobs.is_empty() && (jobs.len() >= MAX_BATCHES || findings + n > MAX_FINDINGS) {
            break;
        }
        let Some((id, j)) = queue.pop_front() else {
            break;
        };
        findings += n;
        ids.push(id);
        jobs.push(j);
    }
    (ids, jobs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Combiner, GroupJob, MAX_BATCHES};
    use crate::store::StoreError;

    struct Job(usize, usize);
    impl GroupJob for Job {
        fn findings(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn every_job_gets_its_own_answer_and_groups_form_under_contention() {
        let c: Arc<Combiner<Job, usize>> = Arc::new(Combiner::default());
        let groups = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (c, groups) = (c.clone(), groups.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let n = t * 1_000 + i;
                        let got = c.submit(Job(n, 500), |jobs| {
                            groups.fetch_add(1, Ordering::Relaxed);
                            assert!(jobs.len() <= MAX_BATCHES);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok(jobs
                                .into_iter()
                                .map(|j| {
                                    if j.0 % 7 == 0 {
                                        Err(StoreError::Conflict {
                                            what: format!("job {}", j.0),
                                        })
                                    } else {
                                        Ok(j.0)
                                    }
                                })
                                .collect())
                        });
                        match got {
                            Ok(v) => assert_eq!(v, n),
                            Err(StoreError::Conflict { what }) => {
                                assert_eq!(what, format!("job {n}"));
                                assert_eq!(n % 7, 0);
                            }
                            Err(e) => panic!("job {n}: {e}"),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let groups = groups.load(Ordering::Relaxed);
        assert!(groups < 16 * 200, "{groups} groups for 3,200 jobs");
    }

    #[test]
    fn a_failed_group_fails_each_of_its_jobs_and_the_next_group_runs() {
        let c: Combiner<Job, usize> = Combiner::default();
        let r = c.submit(Job(1, 1), |_| {
            Err(StoreError::InvalidState {
                what: "commit".into(),
                reason: "disk full".into(),
            })
        });
        assert!(matches!(r, Err(StoreError::GroupFailed { .. })), "{r:?}");
        assert_eq!(
            c.submit(Job(2, 1), |j| Ok(j.into_iter().map(|j| Ok(j.0)).collect()))
                .ok(),
            Some(2)
        );
    }

    #[test]
    fn a_panicking_leader_answers_its_group_and_frees_the_turn() {
        let c: Arc<Combiner<Job, usize>> = Arc::new(Combiner::default());
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            c2.submit(
                Job(1, 1),
                |_| -> Result<Vec<Result<usize, StoreError>>, StoreError> {
                    panic!("leader fails")
                },
            )
        });
        assert!(t.join().is_err());
        assert_eq!(
            c.submit(Job(2, 1), |j| Ok(j.into_iter().map(|j| Ok(j.0)).collect()))
                .ok(),
            Some(2)
        );
    }

    #[test]
    fn a_group_stops_at_the_findings_bound_but_takes_one_large_job() {
        let mut q = std::collections::VecDeque::new();
        q.push_back((0, Job(0, 30_000)));
        q.push_back((1, Job(1, 10)));
        let (ids, _) = super::take_group(&mut q);
        assert_eq!(ids, vec![0]);
        for i in 2..200 {
            q.push_back((i, Job(i as usize, 100)));
        }
        let (ids, _) = super::take_group(&mut q);
        assert_eq!(ids.len(), MAX_BATCHES);
    }
}
