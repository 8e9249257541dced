//! Checks on uploaded rules bundles and proposals: well-formed and signed (verified when the
//! collector knows the public key), proposals validated against the collector's catalogue,
//! and the two-person rule decided on effective verdicts (see `shadowai_rules::twoperson`):
//! every use whose `blocked` status the bundle changes, compared with the last accepted
//! bundle, must be covered by a proposal a different person approved.

use std::collections::{BTreeSet, HashMap};

use shadowai_api::{PolicyScope, Proposal, ProposalStatus, Verdict};
use shadowai_rules::bundle::{self, VerifyOptions};
use shadowai_rules::twoperson::{Approval, Scope, Target};
use shadowai_rules::{BundleBody, Catalogue};

use crate::identity::same_person;
use crate::server::error::{ApiError, bad};

/// Parses (and verifies, with the key of `keys` it names) a signed bundle.
pub fn check_bundle(
    bytes: &[u8],
    keys: Option<&shadowai_rules::keyset::KeySet>,
    now_s: i64,
) -> Result<BundleBody, ApiError> {
    match keys {
        Some(k) => {
            let opts = VerifyOptions {
                now: now_s,
                in_use: None,
                agent_version: None,
            };
            k.verify(bytes, &opts)
                .map(|v| v.body)
                .map_err(|e| bad(format!("bundle: {e}")))
        }
        None => {
            let env: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| bad(format!("bundle: not JSON: {e}")))?;
            if !env.get("signature").is_some_and(|s| s.is_string()) {
                return Err(bad(
                    "bundle: unsigned (sign it with `shadowai-rules sign` first)",
                ));
            }
            bundle::read_unverified(bytes).map_err(|e| bad(format!("bundle: {e}")))
        }
    }
}

/// A proposal's target, checked against the catalogue: a known service id,
/// `category:<name>`, `jurisdiction:<code>` some service has, or `*`.
pub fn check_target(cat: &Catalogue, target: &str) -> Result<Target, ApiError> {
    let t = Target::parse(target).ok_or_else(|| {
        bad(format!(
            "service_id: {target:?} is not a service id, `category:<name>`, `jurisdiction:<code>` or `*`"
        ))
    })?;
    match &t {
        Target::Service(s) if cat.service(s).is_none() => Err(bad(format!(
            "service_id: unknown service {s:?} (not in the collector's catalogue)"
        ))),
        Target::Jurisdiction(j) if !cat.services.iter().any(|s| s.risk.jurisdiction == *j) => {
            Err(bad(format!(
                "service_id: no catalogue service is in jurisdiction {j:?}"
            )))
        }
        _ => Ok(t),
    }
}

/// A mode decision (`mode:enforce` / `mode:monitor`) is fleet-wide and carries the verdict
/// whose effect it decides, `blocked`.
pub fn check_mode_decision(
    t: &Target,
    verdict: Verdict,
    scope: &PolicyScope,
) -> Result<(), ApiError> {
    if !matches!(t, Target::Mode(_)) {
        return Ok(());
    }
    if verdict != Verdict::Blocked {
        return Err(bad(
            "verdict: a mode decision (`mode:enforce` / `mode:monitor`) is about what `blocked` verdicts do: its verdict is `blocked`",
        ));
    }
    if *scope != PolicyScope::Fleet {
        return Err(bad(
            "scope: the mode applies to the whole bundle: a mode decision is fleet-wide",
        ));
    }
    Ok(())
}

/// The service ids a target covers.
fn services_of<'c>(cat: &'c Catalogue, t: &Target) -> BTreeSet<&'c str> {
    cat.services
        .iter()
        .filter(|s| match t {
            Target::Service(id) => s.id == *id,
            Target::Category(c) => s.category == *c,
            Target::Jurisdiction(j) => s.risk.jurisdiction == *j,
            Target::Any => true,
            Target::Mode(_) => false,
        })
        .map(|s| s.id.as_str())
        .collect()
}

/// The decisions in force: approved or applied proposals, the newest decision per
/// (target, scope) winning.
pub(crate) fn in_force(proposals: &[Proposal]) -> Vec<&Proposal> {
    let mut decided: Vec<&Proposal> = proposals
        .iter()
        .filter(|p| matches!(p.status, ProposalStatus::Approved | ProposalStatus::Applied))
        .collect();
    decided.sort_by_key(|p| (p.decided_ms.unwrap_or(p.proposed_ms), p.id));
    let mut latest: HashMap<(&str, &PolicyScope), &Proposal> = HashMap::new();
    for p in decided {
        // `mode:enforce` and `mode:monitor` decide one thing: the newest wins.
        let key = if p.service_id.starts_with("mode:") {
            "mode:"
        } else {
            p.service_id.as_str()
        };
        latest.insert((key, &p.scope), p);
    }
    let mut out: Vec<&Proposal> = latest.into_values().collect();
    out.sort_by_key(|p| p.id);
    out
}

/// Does a new proposal for `target` need a second person? Blocking does, so does any
/// verdict that would replace a block in force on one of the same services, and so does
/// every mode decision.
pub fn needs_approval(
    cat: &Catalogue,
    proposals: &[Proposal],
    target: &Target,
    verdict: Verdict,
) -> bool {
    if verdict == Verdict::Blocked || matches!(target, Target::Mode(_)) {
        return true;
    }
    let mine = services_of(cat, target);
    in_force(proposals)
        .into_iter()
        .filter(|p| p.verdict == Verdict::Blocked)
        .filter_map(|p| Target::parse(&p.service_id))
        .any(|t| !services_of(cat, &t).is_disjoint(&mine))
}

/// The approvals a second person gave and that are still in force: approved (not merely
/// applied) proposals whose decider is not their proposer under identity normalisation.
pub fn approvals(proposals: &[Proposal]) -> Vec<Approval> {
    in_force(proposals)
        .into_iter()
        .filter(|p| p.status == ProposalStatus::Approved)
        .filter(|p| {
            p.decided_by
                .as_deref()
                .is_some_and(|d| !same_person(d, &p.proposed_by))
        })
        .filter_map(|p| {
            let target = Target::parse(&p.service_id)?;
            let scope = match &p.scope {
                PolicyScope::Fleet => Scope::Fleet,
                PolicyScope::Group { group } => Scope::HostTag(group.clone()),
            };
            Some(Approval {
                proposal: p.id,
                target,
                verdict: p.verdict,
                scope,
            })
        })
        .collect()
}
