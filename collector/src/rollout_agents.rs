//! Who a rollout reaches, per stage, so nobody advances a canary that has no agents or whose
//! agents went silent.

use shadowai_api::{AgentInfo, Rollout, RolloutAgents, RolloutStage, StageAgents};

use crate::store::bucket;

/// No heartbeat for this long counts as silent.
pub const SILENT_AFTER_MS: i64 = 5 * 60_000;

/// Counts agents per stage of `r` at `now_ms` (revoked agents are not counted).
pub fn count(r: &Rollout, agents: &[AgentInfo], now_ms: i64) -> RolloutAgents {
    let (mut canary, mut percent, mut rest) = <(StageAgents, StageAgents, StageAgents)>::default();
    let pct = if r.stage == RolloutStage::Percent {
        r.percent
    } else {
        0
    };
    for a in agents.iter().filter(|a| !a.revoked) {
        let stage = if a.group.as_deref() == Some(r.canary_group.as_str()) {
            &mut canary
        } else if bucket(&a.agent_id) < pct {
            &mut percent
        } else {
            &mut rest
        };
        stage.agents += 1;
        if a.bundle_version.as_deref() == Some(r.bundle_version.as_str()) {
            stage.on_version += 1;
        }
        if a.last_seen_ms.is_none_or(|t| now_ms - t > SILENT_AFTER_MS) {
            stage.silent += 1;
        }
    }
    let mut warnings = Vec::new();
    if canary.agents == 0 {
        warnings.push(format!(
            "canary group {:?} has no agents: the canary stage tests nothing",
            r.canary_group
        ));
    } else if canary.silent > 0 {
        warnings.push(format!(
            "{} of {} canary agents sent no heartbeat in the last 5 minutes",
            canary.silent, canary.agents
        ));
    }
    if r.stage == RolloutStage::Percent && percent.agents == 0 {
        warnings.push(format!(
            "stage {}% reaches no agent outside the canary group",
            r.percent
        ));
    }
    RolloutAgents {
        rollout: r.id,
        bundle_version: r.bundle_version.clone(),
        canary,
        percent,
        rest,
        warnings,
    }
}
