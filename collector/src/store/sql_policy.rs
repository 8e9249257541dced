//! Proposals and approvals, effective policy, bundles and rollouts.

use std::collections::HashMap;

use shadowai_api::discovery::MAX_PENDING_PROPOSALS;
use shadowai_api::{
    BundleInfo, PolicyEntry, Proposal, ProposalRequest, ProposalStatus, Rollout, RolloutStage,
};

use super::rows::{Backend, Row, Tx};
use super::sql::{SqlStore, audit_in, verdict_from, verdict_str};
use super::{StoreError, scope_from_str, scope_to_str};

const PROPOSAL_COLS: &str = "id, service_id, verdict, scope, reason, status, proposed_by, \
     proposed_ms, decided_by, decided_ms, decision_note";

fn proposal_row(r: &Row) -> Result<Proposal, StoreError> {
    Ok(Proposal {
        id: r.i64(0)?,
        service_id: r.text(1)?,
        verdict: r.parsed(2, "verdict", verdict_from)?,
        scope: r.parsed(3, "scope", scope_from_str)?,
        reason: r.text(4)?,
        status: r.parsed(5, "proposal status", ProposalStatus::parse)?,
        proposed_by: r.text(6)?,
        proposed_ms: r.i64(7)?,
        decided_by: r.opt_text(8)?,
        decided_ms: r.opt_i64(9)?,
        decision_note: r.opt_text(10)?,
    })
}

const BUNDLE_COLS: &str = "version, sha256, size, uploaded_by, uploaded_ms, note";

fn bundle_row(r: &Row) -> Result<BundleInfo, StoreError> {
    Ok(BundleInfo {
        version: r.text(0)?,
        sha256: r.text(1)?,
        size: r.u64(2)?,
        uploaded_by: r.text(3)?,
        uploaded_ms: r.i64(4)?,
        note: r.text(5)?,
    })
}

const ROLLOUT_COLS: &str = "id, bundle_version, previous_version, stage, canary_group, percent, \
     created_by, created_ms, updated_ms";

fn rollout_row(r: &Row) -> Result<Rollout, StoreError> {
    Ok(Rollout {
        id: r.i64(0)?,
        bundle_version: r.text(1)?,
        previous_version: r.opt_text(2)?,
        stage: r.parsed(3, "rollout stage", RolloutStage::parse)?,
        canary_group: r.text(4)?,
        percent: u8::try_from(r.i64(5)?).unwrap_or(0),
        created_by: r.text(6)?,
        created_ms: r.i64(7)?,
        updated_ms: r.i64(8)?,
    })
}

/// All rollouts, newest first.
pub(super) fn rollouts_in(tx: &mut dyn Tx) -> Result<Vec<Rollout>, StoreError> {
    tx.query(
        "rollouts",
        &format!("SELECT {ROLLOUT_COLS} FROM rollouts ORDER BY id DESC"),
        &[],
    )?
    .iter()
    .map(rollout_row)
    .collect()
}

fn proposal_by_id(tx: &mut dyn Tx, id: i64) -> Result<Proposal, StoreError> {
    tx.query(
        "proposals",
        &format!("SELECT {PROPOSAL_COLS} FROM proposals WHERE id = $1"),
        &[id.into()],
    )?
    .first()
    .map(proposal_row)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound {
        what: format!("proposal {id}"),
    })
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn proposal_create(
        &self,
        actor: &str,
        req: &ProposalRequest,
        needs_approval: bool,
        now_ms: i64,
    ) -> Result<Proposal, StoreError> {
        let status = if needs_approval {
            ProposalStatus::Pending
        } else {
            ProposalStatus::Applied
        };
        self.tx(|tx| {
            self.lock(tx)?;
            // Analysts may propose too: the decisions waiting for a second person are
            // bounded, as catalogue proposals are, so a flood of them stores nothing.
            if needs_approval {
                let rows = tx.query(
                    "proposals",
                    "SELECT COUNT(*) FROM proposals WHERE status = 'pending'",
                    &[],
                )?;
                let n = rows.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0);
                if usize::try_from(n).unwrap_or(usize::MAX) >= MAX_PENDING_PROPOSALS {
                    return Err(StoreError::InvalidState {
                        what: "policy proposals".to_owned(),
                        reason: format!(
                            "{MAX_PENDING_PROPOSALS} are pending, the bound: decide some first"
                        ),
                    });
                }
            }
            let (decided_by, decided_ms) = if needs_approval {
                (None, None)
            } else {
                (Some(actor), Some(now_ms))
            };
            let rows = tx.query(
                "proposals",
                &format!(
                    "INSERT INTO proposals (service_id, verdict, scope, reason, status, proposed_by, \
                     proposed_ms, decided_by, decided_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     RETURNING {PROPOSAL_COLS}"
                ),
                &[
                    req.service_id.as_str().into(),
                    verdict_str(req.verdict).into(),
                    scope_to_str(&req.scope).into(),
                    req.reason.as_str().into(),
                    status.as_str().into(),
                    actor.into(),
                    now_ms.into(),
                    decided_by.into(),
                    decided_ms.into(),
                ],
            )?;
            let p = rows
                .first()
                .map(proposal_row)
                .transpose()?
                .ok_or(StoreError::NoRow { what: "INSERT … RETURNING" })?;
            let details = serde_json::json!({
                "service_id": p.service_id, "verdict": verdict_str(p.verdict),
                "scope": scope_to_str(&p.scope), "reason": p.reason, "status": status.as_str(),
            });
            let action = if needs_approval {
                "proposal.create"
            } else {
                "proposal.apply"
            };
            audit_in(tx, actor, action, &format!("proposal:{}", p.id), details, now_ms)?;
            Ok(p)
        })
    }

    pub(super) fn proposal_decide(
        &self,
        actor: &str,
        id: i64,
        approve: bool,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Proposal, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let p = proposal_by_id(tx, id)?;
            if p.status != ProposalStatus::Pending {
                return Err(StoreError::InvalidState {
                    what: format!("proposal {id}"),
                    reason: format!("already {}", p.status.as_str()),
                });
            }
            if crate::identity::same_person(&p.proposed_by, actor) {
                return Err(StoreError::SelfApproval {
                    person: actor.to_owned(),
                    proposal: id,
                });
            }
            let status = if approve {
                ProposalStatus::Approved
            } else {
                ProposalStatus::Rejected
            };
            tx.exec(
                "UPDATE proposals SET status = $1, decided_by = $2, decided_ms = $3, \
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
                "proposal.approve"
            } else {
                "proposal.reject"
            };
            audit_in(
                tx,
                actor,
                action,
                &format!("proposal:{id}"),
                serde_json::json!({"service_id": p.service_id, "verdict": verdict_str(p.verdict),
                                   "scope": scope_to_str(&p.scope), "proposed_by": p.proposed_by,
                                   "note": note}),
                now_ms,
            )?;
            proposal_by_id(tx, id)
        })
    }

    pub(super) fn proposal_list(
        &self,
        status: Option<ProposalStatus>,
    ) -> Result<Vec<Proposal>, StoreError> {
        self.tx(|tx| {
            let rows = match status {
                Some(s) => tx.query(
                    "proposals",
                    &format!(
                        "SELECT {PROPOSAL_COLS} FROM proposals WHERE status = $1 ORDER BY id DESC"
                    ),
                    &[s.as_str().into()],
                )?,
                None => tx.query(
                    "proposals",
                    &format!("SELECT {PROPOSAL_COLS} FROM proposals ORDER BY id DESC"),
                    &[],
                )?,
            };
            rows.iter().map(proposal_row).collect()
        })
    }

    /// Approved and applied proposals; the newest decision per (service, scope) wins.
    pub(super) fn policy_entries(&self) -> Result<Vec<PolicyEntry>, StoreError> {
        let decided = self.tx(|tx| {
            tx.query(
                "proposals",
                &format!(
                    "SELECT {PROPOSAL_COLS} FROM proposals WHERE status IN ('approved', 'applied') \
                     ORDER BY decided_ms, id"
                ),
                &[],
            )?
            .iter()
            .map(proposal_row)
            .collect::<Result<Vec<_>, _>>()
        })?;
        let mut latest: HashMap<(String, String), PolicyEntry> = HashMap::new();
        for p in decided {
            latest.insert(
                (p.service_id.clone(), scope_to_str(&p.scope)),
                PolicyEntry {
                    service_id: p.service_id,
                    verdict: p.verdict,
                    scope: p.scope,
                    proposal_id: p.id,
                    decided_by: p.decided_by,
                    effective_ms: p.decided_ms.unwrap_or(p.proposed_ms),
                },
            );
        }
        let mut out: Vec<PolicyEntry> = latest.into_values().collect();
        out.sort_by(|a, b| {
            (a.service_id.as_str(), scope_to_str(&a.scope))
                .cmp(&(b.service_id.as_str(), scope_to_str(&b.scope)))
        });
        Ok(out)
    }

    pub(super) fn bundle_put(
        &self,
        actor: &str,
        info: &BundleInfo,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let n = tx.exec(
                "INSERT INTO bundles (version, sha256, size, uploaded_by, uploaded_ms, note, bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (version) DO NOTHING",
                &[
                    info.version.as_str().into(),
                    info.sha256.as_str().into(),
                    info.size.into(),
                    info.uploaded_by.as_str().into(),
                    info.uploaded_ms.into(),
                    info.note.as_str().into(),
                    bytes.into(),
                ],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict {
                    what: format!("bundle version {:?}", info.version),
                });
            }
            audit_in(
                tx,
                actor,
                "bundle.upload",
                &format!("bundle:{}", info.version),
                serde_json::json!({"sha256": info.sha256, "size": info.size, "note": info.note}),
                info.uploaded_ms,
            )?;
            Ok(())
        })
    }

    pub(super) fn bundle_get(
        &self,
        version: &str,
    ) -> Result<Option<(BundleInfo, Vec<u8>)>, StoreError> {
        self.tx(|tx| {
            let rows = tx.query(
                "bundles",
                &format!("SELECT {BUNDLE_COLS}, bytes FROM bundles WHERE version = $1"),
                &[version.into()],
            )?;
            rows.first()
                .map(|r| Ok((bundle_row(r)?, r.bytes(6)?)))
                .transpose()
        })
    }

    pub(super) fn bundle_list(&self, version: Option<&str>) -> Result<Vec<BundleInfo>, StoreError> {
        self.tx(|tx| {
            let rows = match version {
                Some(v) => tx.query(
                    "bundles",
                    &format!("SELECT {BUNDLE_COLS} FROM bundles WHERE version = $1"),
                    &[v.into()],
                )?,
                None => tx.query(
                    "bundles",
                    &format!("SELECT {BUNDLE_COLS} FROM bundles ORDER BY uploaded_ms DESC"),
                    &[],
                )?,
            };
            rows.iter().map(bundle_row).collect()
        })
    }

    pub(super) fn rollout_create(
        &self,
        actor: &str,
        bundle_version: &str,
        canary_group: &str,
        now_ms: i64,
    ) -> Result<Rollout, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let existing = rollouts_in(tx)?;
            if let Some(r) = existing
                .iter()
                .find(|r| matches!(r.stage, RolloutStage::Canary | RolloutStage::Percent))
            {
                return Err(StoreError::InvalidState {
                    what: format!("rollout of {bundle_version:?}"),
                    reason: format!(
                        "rollout {} of {:?} is still in progress (advance or roll it back first)",
                        r.id, r.bundle_version
                    ),
                });
            }
            let known = tx.query(
                "bundles",
                "SELECT version FROM bundles WHERE version = $1",
                &[bundle_version.into()],
            )?;
            if known.is_empty() {
                return Err(StoreError::NotFound {
                    what: format!("bundle version {bundle_version:?}"),
                });
            }
            let previous = existing
                .iter()
                .find(|r| r.stage == RolloutStage::All)
                .map(|r| r.bundle_version.clone());
            let rows = tx.query(
                "rollouts",
                &format!(
                    "INSERT INTO rollouts (bundle_version, previous_version, stage, canary_group, \
                     percent, created_by, created_ms, updated_ms) VALUES ($1, $2, 'canary', $3, 0, \
                     $4, $5, $5) RETURNING {ROLLOUT_COLS}"
                ),
                &[
                    bundle_version.into(),
                    previous.clone().into(),
                    canary_group.into(),
                    actor.into(),
                    now_ms.into(),
                ],
            )?;
            let r = rows
                .first()
                .map(rollout_row)
                .transpose()?
                .ok_or(StoreError::NoRow {
                    what: "INSERT … RETURNING",
                })?;
            audit_in(
                tx,
                actor,
                "rollout.create",
                &format!("rollout:{}", r.id),
                serde_json::json!({"bundle_version": bundle_version, "previous_version": previous,
                                   "canary_group": canary_group}),
                now_ms,
            )?;
            Ok(r)
        })
    }

    pub(super) fn rollout_update(
        &self,
        actor: &str,
        id: i64,
        stage: RolloutStage,
        percent: u8,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Rollout, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let all = rollouts_in(tx)?;
            let cur = all
                .iter()
                .find(|r| r.id == id)
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("rollout {id}"),
                })?;
            let in_progress = matches!(cur.stage, RolloutStage::Canary | RolloutStage::Percent);
            let bad = |reason: String| StoreError::InvalidState {
                what: format!("rollout {id}"),
                reason,
            };
            let action = match stage {
                RolloutStage::Percent | RolloutStage::All => {
                    if !in_progress {
                        return Err(bad(format!("is {}, not in progress", cur.stage.as_str())));
                    }
                    if stage == RolloutStage::Percent
                        && cur.stage == RolloutStage::Percent
                        && percent <= cur.percent
                    {
                        return Err(bad(format!(
                            "already at {}%; advance to a larger percentage",
                            cur.percent
                        )));
                    }
                    "rollout.advance"
                }
                RolloutStage::RolledBack => {
                    let newest_live = all.iter().find(|r| r.stage != RolloutStage::RolledBack);
                    if newest_live.map(|r| r.id) != Some(id) {
                        return Err(bad(
                            "only the newest live rollout can be rolled back".to_owned()
                        ));
                    }
                    "rollout.rollback"
                }
                RolloutStage::Canary => {
                    return Err(bad("cannot move back to canary".to_owned()));
                }
            };
            let percent = match stage {
                RolloutStage::All => 100,
                RolloutStage::Percent => percent,
                _ => cur.percent,
            };
            tx.exec(
                "UPDATE rollouts SET stage = $1, percent = $2, updated_ms = $3 WHERE id = $4",
                &[
                    stage.as_str().into(),
                    i64::from(percent).into(),
                    now_ms.into(),
                    id.into(),
                ],
            )?;
            audit_in(
                tx,
                actor,
                action,
                &format!("rollout:{id}"),
                serde_json::json!({"bundle_version": cur.bundle_version, "from": cur.stage.as_str(),
                                   "to": stage.as_str(), "percent": percent, "note": note}),
                now_ms,
            )?;
            rollouts_in(tx)?
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("rollout {id}"),
                })
        })
    }
}
