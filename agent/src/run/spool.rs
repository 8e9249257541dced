//! The durable outbox between finding aggregation and upload.
//!
//! Contract (tested on its own, independent of the store behind it): `append` returns only
//! once the batch is on disk; `pending` yields batches oldest first; `ack` deletes a batch
//! and is the only way one leaves, except the size cap, which drops the oldest batches and
//! counts them as lost. A batch keeps its id across restarts, so a retry after a crash is
//! recognised by the collector and never stored twice.
//!
//! sled is behind this small interface (it carries unmaintained-dependency advisories), so
//! replacing it touches one file.

use std::path::Path;

use serde::{Deserialize, Serialize};
use shadowai_api::Finding;

use crate::error::AgentError;

/// One upload unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    pub findings: Vec<Finding>,
}

pub struct Spool {
    db: sled::Db,
    tree: sled::Tree,
    max_bytes: u64,
    /// Bytes stored (kept current on append/ack/drop).
    bytes: u64,
    /// Batches dropped by the size cap since start.
    pub lost_batches: u64,
    pub lost_findings: u64,
}

fn err(what: &str) -> impl Fn(sled::Error) -> AgentError + '_ {
    move |e| AgentError::Spool {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, AgentError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| AgentError::Spool {
                what: format!("opening {}", dir.display()),
                reason: e.to_string(),
            })?;
        let tree = db.open_tree("batches").map_err(err("opening tree"))?;
        let bytes = tree
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|v| v.len() as u64)
            .sum();
        Ok(Self {
            db,
            tree,
            max_bytes,
            bytes,
            lost_batches: 0,
            lost_findings: 0,
        })
    }

    /// Stores a batch durably (flushed before returning).
    pub fn append(&mut self, batch: &Batch) -> Result<(), AgentError> {
        let seq = self
            .db
            .generate_id()
            .map_err(err("allocating a sequence number"))?;
        let bytes = serde_json::to_vec(batch).map_err(|e| AgentError::Spool {
            what: "encoding a batch".into(),
            reason: e.to_string(),
        })?;
        self.bytes += bytes.len() as u64;
        self.tree
            .insert(seq.to_be_bytes(), bytes)
            .map_err(err("writing a batch"))?;
        self.enforce_cap()?;
        self.tree.flush().map_err(err("flushing"))?;
        Ok(())
    }

    /// Up to `n` batches, oldest first, with their keys for [`Spool::ack`]. A stored batch
    /// that no longer decodes (disk corruption) is moved aside and counted, not fatal.
    pub fn pending(&mut self, n: usize) -> Result<Vec<(u64, Batch)>, AgentError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(err("reading"))?;
            let key = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            match serde_json::from_slice::<Batch>(&v) {
                Ok(b) => out.push((key, b)),
                Err(e) => {
                    tracing::error!(key, error = %e, "spooled batch does not decode; dropping it");
                    bad.push(k);
                }
            }
            if out.len() >= n {
                break;
            }
        }
        for k in bad {
            if let Some(v) = self
                .tree
                .remove(k)
                .map_err(err("dropping a corrupt batch"))?
            {
                self.bytes = self.bytes.saturating_sub(v.len() as u64);
            }
            self.lost_batches += 1;
        }
        Ok(out)
    }

    /// The collector acknowledged this batch: delete it.
    pub fn ack(&mut self, key: u64) -> Result<(), AgentError> {
        if let Some(v) = self
            .tree
            .remove(key.to_be_bytes())
            .map_err(err("deleting an acked batch"))?
        {
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
        }
        self.tree.flush().map_err(err("flushing"))?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    fn enforce_cap(&mut self) -> Result<(), AgentError> {
        while self.bytes > self.max_bytes && self.tree.len() > 1 {
            let Some((k, v)) = self
                .tree
                .pop_min()
                .map_err(err("dropping the oldest batch"))?
            else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
            self.lost_batches += 1;
            if let Ok(b) = serde_json::from_slice::<Batch>(&v) {
                self.lost_findings += b.findings.len() as u64;
            }
            tracing::warn!(key = ?k, "spool over its size cap: oldest batch dropped (counted as lost)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use proptest::prelude::*;

    fn batch(id: &str, n: usize) -> Batch {
        Batch {
            batch_id: id.into(),
            findings: (0..n)
                .map(|i| crate::run::findings::tests::finding(&format!("{id}-{i}")))
                .collect(),
        }
    }

    #[test]
    fn survives_reopen_and_acks_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
            s.append(&batch("a", 2)).unwrap();
            s.append(&batch("b", 1)).unwrap();
        }
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        let p = s.pending(10).unwrap();
        assert_eq!(
            p.iter()
                .map(|(_, b)| b.batch_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        s.ack(p[0].0).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        let p = s.pending(10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.batch_id, "b");
        assert_eq!(p[0].1.findings.len(), 1);
    }

    #[test]
    fn cap_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 4096).unwrap();
        for i in 0..20 {
            s.append(&batch(&format!("b{i}"), 2)).unwrap();
        }
        assert!(s.lost_batches > 0);
        assert_eq!(s.lost_findings, s.lost_batches * 2);
        let p = s.pending(100).unwrap();
        assert_eq!(
            p.last().unwrap().1.batch_id,
            "b19",
            "the newest batch is kept"
        );
        assert_eq!(p.len() as u64 + s.lost_batches, 20);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append,
        AckOldest,
        Reopen,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Model test: the spool behaves like a FIFO queue across any mix of appends, acks
        /// and reopens (crash = drop without anything else).
        #[test]
        fn behaves_like_a_fifo(ops in proptest::collection::vec(prop_oneof![Just(Op::Append), Just(Op::AckOldest), Just(Op::Reopen)], 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
            let mut model: std::collections::VecDeque<String> = Default::default();
            let mut n = 0;
            for op in ops {
                match op {
                    Op::Append => {
                        let id = format!("x{n}");
                        n += 1;
                        s.append(&batch(&id, 1)).unwrap();
                        model.push_back(id);
                    }
                    Op::AckOldest => {
                        if let Some((k, b)) = s.pending(1).unwrap().into_iter().next() {
                            prop_assert_eq!(Some(b.batch_id), model.pop_front());
                            s.ack(k).unwrap();
                        } else {
                            prop_assert!(model.is_empty());
                        }
                    }
                    Op::Reopen => {
                        drop(s);
                        s = Spool::open(dir.path(), 1 << 30).unwrap();
                    }
                }
            }
            let ids: Vec<String> = s.pending(1000).unwrap().into_iter().map(|(_, b)| b.batch_id).collect();
            prop_assert_eq!(ids, model.into_iter().collect::<Vec<_>>());
        }
    }
}
