//! The organisation's policy as the collector holds it: the decisions in force (approved or
//! applied proposals, newest per target and scope) composed into one `shadowai_rules`
//! policy that `shadowai rules publish` signs. Nobody writes policy TOML by hand.
//!
//! Order (first match wins in the engine): a decision about one service beats one about a
//! category, which beats one about a jurisdiction, which beats one about every service; at
//! the same level a group decision beats a fleet one; then the newest decision first. A
//! fleet-wide decision about every service (`*`) is the policy default.

use shadowai_api::{PolicyScope, Proposal};
use shadowai_rules::catalogue::Category;
use shadowai_rules::policy::{Mode, Rule};
use shadowai_rules::twoperson::Target;
use shadowai_rules::{Policy, Verdict};

/// The composed policy and the proposals it is made of.
pub struct Composed {
    pub policy: Policy,
    pub proposals: Vec<i64>,
}

fn rank(t: &Target) -> u8 {
    match t {
        Target::Service(_) => 0,
        Target::Category(_) => 1,
        Target::Jurisdiction(_) => 2,
        Target::Any => 3,
        Target::Mode(_) => 4,
    }
}

fn rule_of(p: &Proposal, t: &Target) -> Rule {
    let mut r = Rule {
        id: format!("proposal-{}", p.id),
        verdict: p.verdict,
        services: Vec::new(),
        categories: Vec::new(),
        jurisdictions: Vec::new(),
        host_groups: Vec::new(),
        host_tags: Vec::new(),
        unix_groups: Vec::new(),
        users: Vec::new(),
        tenants: Vec::new(),
        flags: Vec::new(),
        comment: p.reason.chars().take(200).collect(),
        reason: String::new(),
        approver: String::new(),
        expires_at: None,
        enforce: true,
    };
    match t {
        Target::Service(s) => r.services.push(s.clone()),
        Target::Category(c) => r.categories.push(*c),
        Target::Jurisdiction(j) => r.jurisdictions.push(j.clone()),
        Target::Any => r.categories.extend(Category::ALL),
        Target::Mode(_) => {}
    }
    if let PolicyScope::Group { group } = &p.scope {
        r.host_tags.push(group.clone());
    }
    r
}

/// Composes the decisions in force into a policy in `mode`.
pub fn compose(proposals: &[Proposal], mode: Mode) -> Composed {
    let mut entries: Vec<(&Proposal, Target)> = crate::bundles::in_force(proposals)
        .into_iter()
        .filter_map(|p| Target::parse(&p.service_id).map(|t| (p, t)))
        .filter(|(_, t)| !matches!(t, Target::Mode(_)))
        .collect();
    entries.sort_by_key(|(p, t)| {
        (
            rank(t),
            matches!(p.scope, PolicyScope::Fleet),
            std::cmp::Reverse((p.decided_ms.unwrap_or(p.proposed_ms), p.id)),
        )
    });
    let mut policy = Policy {
        mode,
        default_verdict: Verdict::Unsanctioned,
        ..Policy::default()
    };
    let mut ids = Vec::new();
    for (p, t) in &entries {
        ids.push(p.id);
        if *t == Target::Any && p.scope == PolicyScope::Fleet {
            policy.default_verdict = p.verdict;
        } else {
            policy.rules.push(rule_of(p, t));
        }
    }
    ids.sort_unstable();
    Composed {
        policy,
        proposals: ids,
    }
}
