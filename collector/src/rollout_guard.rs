//! Halts a rollout on its own when canary agents stop heartbeating during it: an agent of
//! the canary group that sent a heartbeat after the rollout started and has been silent for
//! `halt_after` since is taken as "the new bundle broke it". The rollout is rolled back by
//! `system` (audited, with the hosts); agents that have not loaded it stay where they are.

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

/// One check: halts the rollout in progress if it lost canaries. Returns the halted id.
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
    let lost = lost_canaries(r, &agents, now_ms, halt_after_ms);
    if lost.is_empty() {
        return Ok(None);
    }
    let hosts: Vec<&str> = lost.iter().map(|a| a.hostname.as_str()).take(20).collect();
    let note = format!(
        "halted automatically: {} canary agent(s) stopped heartbeating during the rollout ({})",
        lost.len(),
        hosts.join(", ")
    );
    store.update_rollout(
        "system",
        r.id,
        RolloutStage::RolledBack,
        0,
        Some(&note),
        now_ms,
    )?;
    tracing::warn!(rollout = r.id, bundle = %r.bundle_version, lost = lost.len(), "rollout halted: canary agents went silent");
    Ok(Some(r.id))
}

/// Checks every `period` until the process ends; store errors are logged and retried at
/// the next period (never in a tight loop).
pub async fn run(store: Arc<dyn Store>, halt_after: Duration) {
    let halt_after_ms = i64::try_from(halt_after.as_millis()).unwrap_or(i64::MAX);
    let period = (halt_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
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
