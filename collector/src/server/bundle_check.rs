//! The two-person rule at the moments a bundle can reach agents: on upload and again when
//! a rollout starts. The baseline is what agents may be running — the stable bundle (the
//! newest rollout that reached `all`) and the bundle of a rollout in progress — never merely
//! the newest upload: an uploaded bundle that was never rolled out changed nothing any agent
//! sees, and a bundle uploaded long ago must not go out against a fleet that moved on.

use std::sync::Arc;

use shadowai_api::{Rollout, RolloutStage};
use shadowai_rules::twoperson::{self, Approval};
use shadowai_rules::{BundleBody, Catalogue, bundle};

use super::error::ApiError;
use super::{SharedState, now_ms};

/// Versions agents may be running: the stable one, then the one of a rollout in progress
/// (rollouts newest first). Empty when nothing was ever rolled out.
pub fn live_versions(rollouts: &[Rollout]) -> Vec<String> {
    let stable = rollouts.iter().find(|r| r.stage == RolloutStage::All);
    let active = rollouts
        .iter()
        .find(|r| matches!(r.stage, RolloutStage::Canary | RolloutStage::Percent));
    let mut out: Vec<String> = stable
        .into_iter()
        .chain(active)
        .map(|r| r.bundle_version.clone())
        .collect();
    out.dedup();
    out
}

/// Checks `body` against every live baseline (or the default policy when none) with the
/// approvals in force now. `exclude`: a version not to compare with itself (the bundle of
/// the rollout being started may already be live as the stable one).
pub async fn against_live(
    st: &SharedState,
    body: &BundleBody,
    exclude: Option<&str>,
) -> Result<(), ApiError> {
    let now_s = now_ms() / 1000;
    // naming (issue 17): bundles carry the shipped catalogue + approved overlay.
    let cat = crate::catalogue_overlay::effective(st).await?;
    let proposals = st.db(|s| s.list_proposals(None)).await?;
    let rollouts = st.db(|s| s.list_rollouts()).await?;
    let mut baselines = Vec::new();
    for v in live_versions(&rollouts) {
        if Some(v.as_str()) == exclude {
            continue;
        }
        let v2 = v.clone();
        let (_, bytes) =
            st.db(move |s| s.bundle(&v2))
                .await?
                .ok_or_else(|| ApiError::Internal {
                    what: format!("rolled-out bundle {v} is not stored"),
                })?;
        let parsed = bundle::read_unverified(&bytes).map_err(|e| ApiError::Internal {
            what: format!("stored bundle {v} does not parse: {e}"),
        })?;
        baselines.push(Some(parsed));
    }
    if baselines.is_empty() && exclude.is_none() {
        baselines.push(None);
    }
    let approvals = crate::bundles::approvals(&proposals);
    let b2 = body.clone();
    let changes =
        tokio::task::spawn_blocking(move || check_all(&cat, &baselines, &b2, &approvals, now_s))
            .await
            .map_err(|e| ApiError::Internal {
                what: format!("two-person check failed: {e}"),
            })?
            .map_err(|e| ApiError::Forbidden {
                message: format!("bundle {}: {e}", body.version),
            })?;
    tracing::info!(version = %body.version, block_changes = changes, "bundle passed the two-person rule");
    Ok(())
}

fn check_all(
    cat: &Arc<Catalogue>,
    baselines: &[Option<BundleBody>],
    body: &BundleBody,
    approvals: &[Approval],
    now_s: i64,
) -> Result<usize, twoperson::Refusal> {
    let mut changes = 0;
    for b in baselines {
        let prev = b.as_ref().map(|p| (&p.catalogue, &p.policy));
        changes +=
            twoperson::check(cat, prev, (&body.catalogue, &body.policy), approvals, now_s)?.len();
    }
    Ok(changes)
}
