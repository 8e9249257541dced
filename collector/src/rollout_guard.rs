//! Halts a rollout on its own when its agents say the bundle is bad or stop heartbeating
//! during it: an agent that reports refusing the rollout's bundle in its heartbeat (bad
//! signature, expired, does not load…), or an agent of the canary group that sent a
//! heartbeat after the rollout started and has been silent for `halt_after` since ("the new
//! bundle broke it"). The rollout is rolled back by `system` (audited, with the hosts and
//! the reason); agents that have not loaded it stay where they are.

use std::sync::Arc;
use std::time::Duration;

use shadowai_api::{AgentInfo, Rollout, RolloutStage};

use crate::store::Store;

/// Canary agents that heartbeated after `r` started and then went silent for `halt_after_ms`.
pub fn lost_canaries<'a>(
    r: &Rollout,
    agents: &'a [AgentInfo],
    now_ms: i64,
    halt_after_ms: i64,
) -> Vec<&'a AgentInfo> {
    agents
        .iter()
        .filter(|a| !a.revoked && a.group.as_deref() == Some(r.canary_group.as_str()))
        .filter(|a| {
            a.last_seen_ms
                .is_some_and(|t| t >= r.created_ms && now_ms - t > halt_after_ms)
        })
        .collect()
}

/// Agents (any stage: the canary group first, then the percentage) that report refusing
/// the bundle of `r`.
pub fn refusing_agents<'a>(r: &Rollout, agents: &'a [AgentInfo]) -> Vec<&'a AgentInfo> {
    agents
        .iter()
        .filter(|a| !a.revoked)
        .filter(|a| {
            a.bundle_error
                .as_ref()
                .is_some_and(|e| e.version == r.bundle_version)
        })
        .collect()
}

fn halt_note(r: &Rollout, agents: &[AgentInfo], now_ms: i64, halt_after_ms: i64) -> Option<String> {
    let hosts = |list: &[&AgentInfo]| {
        list.iter()
            .map(|a| a.hostname.as_str())
            .take(20)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let refusing = refusing_agents(r, agents);
    if let Some(first) = refusing.first().and_then(|a| a.bundle_error.as_ref()) {
        return Some(format!(
            "halted automatically: {} agent(s) refused bundle {} ({}); first reason: {}",
            refusing.len(),
            r.bundle_version,
            hosts(&refusing),
            first.reason
        ));
    }
    let lost = lost_canaries(r, agents, now_ms, halt_after_ms);
    (!lost.is_empty()).then(|| {
        format!(
            "halted automatically: {} canary agent(s) stopped heartbeating during the rollout ({})",
            lost.len(),
            hosts(&lost)
        )
    })
}

/// One check: halts the rollout in progress if agents refuse its bundle or it lost
/// canaries. Returns the halted id. `halt_after_ms` ≤ 0 turns the silence check off.
pub fn check_once(
    store: &dyn Store,
    now_ms: i64,
    halt_after_ms: i64,
) -> Result<Option<i64>, crate::store::StoreError> {
    let rollouts = store.list_rollouts()?;
    let Some(r) = rollouts
        .iter()
        .find(|r| matches!(r.stage, RolloutStage::Canary | RolloutStage::Percent))
    else {
        return Ok(None);
    };
    let agents = store.list_agents()?;
    let silence = if halt_after_ms > 0 {
        halt_after_ms
    } else {
        i64::MAX
    };
    let Some(note) = halt_note(r, &agents, now_ms, silence) else {
        return Ok(None);
    };
    store.update_rollout(
        "system",
        r.id,
        RolloutStage::RolledBack,
        0,
        Some(&note),
        now_ms,
    )?;
    tracing::warn!(rollout = r.id, bundle = %r.bundle_version, reason = %note, "rollout halted");
    Ok(Some(r.id))
}

/// Checks every `period` until the process ends; store errors are logged and retried at
/// the next period (never in a tight loop).
pub async fn run(store: Arc<dyn Store>, halt_after: Duration) {
    let halt_after_ms = i64::try_from(halt_after.as_millis()).unwrap_or(i64::MAX);
    // Zero turns the silence check off; refusals are still looked for every 10 s.
    let period = if halt_after.is_zero() {
        Duration::from_secs(10)
    } else {
        (halt_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(10))
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = store.clone();
        let now = crate::server::now_ms();
        match tokio::task::spawn_blocking(move || check_once(&*s, now, halt_after_ms)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "rollout guard: store error; retrying next period")
            }
            Err(e) => tracing::error!(error = %e, "rollout guard: check task failed"),
        }
    }
}
