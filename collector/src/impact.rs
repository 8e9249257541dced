//! What a proposal would change, shown before anyone approves it: every service whose
//! verdict changes and for whom (the policy in force vs the same with the proposal decided,
//! evaluated by the rules engine over the collector's catalogue), and from recent findings
//! the hosts, users and processes that use those services (within the proposal's group).

use std::collections::{BTreeMap, BTreeSet};

use shadowai_api::{
    AffectedUse, Finding, FindingQuery, ImpactChange, PolicyScope, Proposal, ProposalImpact,
    ProposalStatus,
};
use shadowai_rules::policy::Mode;
use shadowai_rules::{Catalogue, Engine};

use crate::compose::compose;
use crate::server::error::ApiError;

/// Findings looked at per affected service (newest first).
pub const FINDINGS_PER_SERVICE: u32 = 1000;
/// Hosts / users / processes listed per service.
pub const LISTED: usize = 20;
/// How far back findings are read.
pub const WINDOW_MS: i64 = 7 * 86_400_000;

fn engine(cat: &Catalogue, proposals: &[Proposal]) -> Result<Engine, ApiError> {
    let c = compose(proposals, Mode::Monitor);
    Engine::new(cat.clone(), c.policy).map_err(|e| ApiError::Internal {
        what: format!("the composed policy does not load: {e}"),
    })
}

/// The verdict changes `p` brings, against the decisions in force.
pub fn changes(
    cat: &Catalogue,
    proposals: &[Proposal],
    p: &Proposal,
    now_ms: i64,
) -> Result<Vec<ImpactChange>, ApiError> {
    let before = engine(cat, proposals)?;
    let mut with: Vec<Proposal> = proposals.iter().filter(|x| x.id != p.id).cloned().collect();
    let mut decided = p.clone();
    decided.status = ProposalStatus::Approved;
    decided.decided_ms = Some(now_ms);
    with.push(decided);
    let after = engine(cat, &with)?;
    let report = shadowai_rules::diff::diff(&before, &after, now_ms / 1000);
    Ok(report
        .verdict_changes
        .into_iter()
        .map(|c| ImpactChange {
            service_id: c.service,
            who: c.who,
            old: c.old,
            new: c.new,
        })
        .collect())
}

/// Hosts, users and processes seen using one service in `findings`, limited to `hosts`
/// when the proposal is scoped to a group.
pub fn affected(
    service_id: &str,
    findings: &[Finding],
    hosts: Option<&BTreeSet<String>>,
) -> AffectedUse {
    let mut by_host = BTreeSet::new();
    let mut users = BTreeMap::<&str, u64>::new();
    let mut procs = BTreeMap::<&str, u64>::new();
    let mut n = 0u64;
    for f in findings
        .iter()
        .filter(|f| hosts.is_none_or(|h| h.contains(&f.host_id)))
    {
        n += 1;
        by_host.insert(f.hostname.as_str());
        *users.entry(f.user.as_str()).or_default() += f.count;
        *procs.entry(f.process.exe.as_str()).or_default() += f.count;
    }
    let top = |m: BTreeMap<&str, u64>| {
        let mut v: Vec<(&str, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter()
            .take(LISTED)
            .map(|(k, _)| k.to_owned())
            .collect()
    };
    AffectedUse {
        service_id: service_id.to_owned(),
        findings: n,
        hosts: by_host
            .into_iter()
            .take(LISTED)
            .map(str::to_owned)
            .collect(),
        users: top(users),
        processes: top(procs),
    }
}

/// The service ids under which findings of `service_id` are stored: its own, and
/// `runtime:<kind>` for each local runtime the catalogue ties to it (`service` in
/// `_agents.toml`): a listening runtime is a finding of its own, judged as the service.
pub fn finding_services(cat: &Catalogue, service_id: &str) -> Vec<String> {
    std::iter::once(service_id.to_owned())
        .chain(
            cat.inventory_hints
                .runtime
                .iter()
                .filter(|h| h.service.as_deref() == Some(service_id))
                .map(|h| format!("runtime:{}", h.kind)),
        )
        .collect()
}

/// The finding query for one service over the impact window.
pub fn query(service_id: &str, now_ms: i64) -> FindingQuery {
    FindingQuery {
        service: Some(service_id.to_owned()),
        from_ms: Some(now_ms - WINDOW_MS),
        ..FindingQuery::default()
    }
}

/// The group a proposal is scoped to, if any.
pub fn group_of(p: &Proposal) -> Option<&str> {
    match &p.scope {
        PolicyScope::Group { group } => Some(group),
        PolicyScope::Fleet => None,
    }
}

/// Assembles the answer.
pub fn impact(
    p: &Proposal,
    changes: Vec<ImpactChange>,
    affected: Vec<AffectedUse>,
) -> ProposalImpact {
    ProposalImpact {
        proposal: p.id,
        changes,
        affected,
        window_ms: WINDOW_MS,
    }
}
