//! Catalogue proposals: a new catalogue entry (usually promoted from a discovery candidate)
//! that waits for a different person to approve it. Approved entries are the collector's
//! catalogue overlay. Bounded: at most [`MAX_PENDING_PROPOSALS`] pending and
//! [`MAX_OVERLAY_ENTRIES`] approved; one open proposal per entry id. Every decision, and
//! every proposal, is audited in the same transaction.

use shadowai_api::ProposalStatus;
use shadowai_api::discovery::{
    CandidateProposal, CatalogueEntry, CatalogueProposal, CatalogueProposalRequest,
    MAX_OVERLAY_ENTRIES, MAX_PENDING_PROPOSALS,
};

use super::StoreError;
use super::rows::{Backend, Row, Tx};
use super::sql::{SqlStore, audit_in};

/// Rows a listing returns at most (newest first).
pub const LIST_LIMIT: i64 = 500;

const COLS: &str = "id, candidate, entry, reason, status, proposed_by, proposed_ms, decided_by, \
     decided_ms, decision_note";

/// Storage of catalogue proposals.
pub trait CatalogueProposalStore {
    /// Stores a pending proposal by `actor`; refuses a second open proposal for the same
    /// entry id and any proposal past the bounds.
    fn create_catalogue_proposal(
        &self,
        actor: &str,
        req: &CatalogueProposalRequest,
        now_ms: i64,
    ) -> Result<CatalogueProposal, StoreError>;
    /// Approves or rejects a pending proposal; `actor` must not be its proposer.
    fn decide_catalogue_proposal(
        &self,
        actor: &str,
        id: i64,
        approve: bool,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<CatalogueProposal, StoreError>;
    /// Newest first, at most [`LIST_LIMIT`].
    fn list_catalogue_proposals(
        &self,
        status: Option<ProposalStatus>,
    ) -> Result<Vec<CatalogueProposal>, StoreError>;
    /// One proposal.
    fn catalogue_proposal(&self, id: i64) -> Result<CatalogueProposal, StoreError>;
    /// The approved entries (the overlay), oldest approval first, with their proposal ids.
    fn catalogue_overlay(&self) -> Result<Vec<(i64, CatalogueEntry)>, StoreError>;
}

fn row(r: &Row) -> Result<CatalogueProposal, StoreError> {
    let entry_json = r.text(2)?;
    let entry: CatalogueEntry =
        serde_json::from_str(&entry_json).map_err(|e| StoreError::Corrupt {
            table: "catalogue_proposals",
            reason: format!("entry of proposal {}: {e}", r.i64(0).unwrap_or(0)),
        })?;
    Ok(CatalogueProposal {
        id: r.i64(0)?,
        candidate: r.opt_text(1)?,
        entry,
        reason: r.text(3)?,
        status: r.parsed(4, "proposal status", ProposalStatus::parse)?,
        proposed_by: r.text(5)?,
        proposed_ms: r.i64(6)?,
        decided_by: r.opt_text(7)?,
        decided_ms: r.opt_i64(8)?,
        decision_note: r.opt_text(9)?,
        impact: None,
    })
}

fn by_id(tx: &mut dyn Tx, id: i64) -> Result<CatalogueProposal, StoreError> {
    tx.query(
        "catalogue_proposals",
        &format!("SELECT {COLS} FROM catalogue_proposals WHERE id = $1"),
        &[id.into()],
    )?
    .first()
    .map(row)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound {
        what: format!("catalogue proposal {id}"),
    })
}

fn count_status(tx: &mut dyn Tx, status: ProposalStatus) -> Result<usize, StoreError> {
    let rows = tx.query(
        "catalogue_proposals",
        "SELECT COUNT(*) FROM catalogue_proposals WHERE status = $1",
        &[status.as_str().into()],
    )?;
    let n = rows.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0);
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn overlay_full(tx: &mut dyn Tx) -> Result<Option<StoreError>, StoreError> {
    Ok(
        (count_status(tx, ProposalStatus::Approved)? >= MAX_OVERLAY_ENTRIES).then(|| {
            StoreError::InvalidState {
                what: "the catalogue overlay".to_owned(),
                reason: format!(
                    "holds {MAX_OVERLAY_ENTRIES} approved entries, its bound: move entries into \
                     the shipped catalogue first"
                ),
            }
        }),
    )
}

/// The newest catalogue proposal per candidate name.
pub(super) fn proposals_of_candidates(
    tx: &mut dyn Tx,
) -> Result<std::collections::HashMap<String, CandidateProposal>, StoreError> {
    let rows = tx.query(
        "catalogue_proposals",
        &format!(
            "SELECT {COLS} FROM catalogue_proposals WHERE candidate IS NOT NULL \
             ORDER BY id DESC LIMIT $1"
        ),
        &[(LIST_LIMIT * 4).into()],
    )?;
    let mut out = std::collections::HashMap::new();
    for r in &rows {
        let p = row(r)?;
        if let Some(c) = p.candidate {
            out.entry(c).or_insert(CandidateProposal {
                id: p.id,
                entry_id: p.entry.id,
                status: p.status,
            });
        }
    }
    Ok(out)
}

impl<B: Backend> CatalogueProposalStore for SqlStore<B> {
    fn create_catalogue_proposal(
        &self,
        actor: &str,
        req: &CatalogueProposalRequest,
        now_ms: i64,
    ) -> Result<CatalogueProposal, StoreError> {
        let entry_json = serde_json::to_string(&req.entry).map_err(|e| StoreError::Corrupt {
            table: "catalogue_proposals",
            reason: format!("entry does not serialise: {e}"),
        })?;
        self.tx(|tx| {
            self.lock(tx)?;
            let open = tx.query(
                "catalogue_proposals",
                "SELECT id, status FROM catalogue_proposals WHERE entry_id = $1 \
                 AND status IN ('pending', 'approved') ORDER BY id LIMIT 1",
                &[req.entry.id.as_str().into()],
            )?;
            if let Some(r) = open.first() {
                return Err(StoreError::Conflict {
                    what: format!(
                        "catalogue entry `{}` (proposal {}, {})",
                        req.entry.id,
                        r.i64(0)?,
                        r.text(1)?
                    ),
                });
            }
            if count_status(tx, ProposalStatus::Pending)? >= MAX_PENDING_PROPOSALS {
                return Err(StoreError::InvalidState {
                    what: "catalogue proposals".to_owned(),
                    reason: format!(
                        "{MAX_PENDING_PROPOSALS} are pending, the bound: decide some first"
                    ),
                });
            }
            if let Some(e) = overlay_full(tx)? {
                return Err(e);
            }
            let rows = tx.query(
                "catalogue_proposals",
                &format!(
                    "INSERT INTO catalogue_proposals (entry_id, candidate, entry, reason, status, \
                     proposed_by, proposed_ms) VALUES ($1, $2, $3, $4, 'pending', $5, $6) \
                     RETURNING {COLS}"
                ),
                &[
                    req.entry.id.as_str().into(),
                    req.candidate.as_deref().into(),
                    entry_json.as_str().into(),
                    req.reason.as_str().into(),
                    actor.into(),
                    now_ms.into(),
                ],
            )?;
            let p = rows
                .first()
                .map(row)
                .transpose()?
                .ok_or(StoreError::NoRow {
                    what: "INSERT … RETURNING",
                })?;
            audit_in(
                tx,
                actor,
                "catalogue.propose",
                &format!("catalogue-proposal:{}", p.id),
                serde_json::json!({
                    "entry_id": p.entry.id, "candidate": p.candidate, "reason": p.reason,
                    "domains": p.entry.domains, "hosts": p.entry.hosts,
                    "category": p.entry.category, "source": p.entry.source,
                }),
                now_ms,
            )?;
            Ok(p)
        })
    }

    fn decide_catalogue_proposal(
        &self,
        actor: &str,
        id: i64,
        approve: bool,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<CatalogueProposal, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let p = by_id(tx, id)?;
            if p.status != ProposalStatus::Pending {
                return Err(StoreError::InvalidState {
                    what: format!("catalogue proposal {id}"),
                    reason: format!("already {}", p.status.as_str()),
                });
            }
            if crate::identity::same_person(&p.proposed_by, actor) {
                return Err(StoreError::SelfApproval {
                    person: actor.to_owned(),
                    proposal: id,
                });
            }
            if approve && let Some(e) = overlay_full(tx)? {
                return Err(e);
            }
            let status = if approve {
                ProposalStatus::Approved
            } else {
                ProposalStatus::Rejected
            };
            tx.exec(
                "UPDATE catalogue_proposals SET status = $1, decided_by = $2, decided_ms = $3, \
                 decision_note = $4 WHERE id = $5 AND status = 'pending'",
                &[
                    status.as_str().into(),
                    actor.into(),
                    now_ms.into(),
                    note.into(),
                    id.into(),
                ],
            )?;
            let action = if approve {
                "catalogue.approve"
            } else {
                "catalogue.reject"
            };
            audit_in(
                tx,
                actor,
                action,
                &format!("catalogue-proposal:{id}"),
                serde_json::json!({"entry_id": p.entry.id, "candidate": p.candidate,
                                   "proposed_by": p.proposed_by, "note": note}),
                now_ms,
            )?;
            by_id(tx, id)
        })
    }

    fn list_catalogue_proposals(
        &self,
        status: Option<ProposalStatus>,
    ) -> Result<Vec<CatalogueProposal>, StoreError> {
        self.read_tx(|tx| {
            let rows = match status {
                Some(s) => tx.query(
                    "catalogue_proposals",
                    &format!(
                        "SELECT {COLS} FROM catalogue_proposals WHERE status = $1 \
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &[s.as_str().into(), LIST_LIMIT.into()],
                )?,
                None => tx.query(
                    "catalogue_proposals",
                    &format!("SELECT {COLS} FROM catalogue_proposals ORDER BY id DESC LIMIT $1"),
                    &[LIST_LIMIT.into()],
                )?,
            };
            rows.iter().map(row).collect()
        })
    }

    fn catalogue_proposal(&self, id: i64) -> Result<CatalogueProposal, StoreError> {
        self.read_tx(|tx| by_id(tx, id))
    }

    fn catalogue_overlay(&self) -> Result<Vec<(i64, CatalogueEntry)>, StoreError> {
        // Read on the writer's connection: an approval is visible to the next publish at once.
        self.tx(|tx| {
            tx.query(
                "catalogue_proposals",
                &format!(
                    "SELECT {COLS} FROM catalogue_proposals WHERE status = 'approved' \
                     ORDER BY decided_ms, id LIMIT $1"
                ),
                &[i64::try_from(MAX_OVERLAY_ENTRIES)
                    .unwrap_or(i64::MAX)
                    .into()],
            )?
            .iter()
            .map(|r| row(r).map(|p| (p.id, p.entry)))
            .collect()
        })
    }
}
