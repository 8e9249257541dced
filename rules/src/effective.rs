//! Effective verdicts: every (service × audience × moment) whose verdict becomes or stops
//! being an *enforced* `blocked` between two catalogue+policy pairs — the basis of the
//! two-person rule. A `blocked` verdict of an observe-only rule (`enforce = false`) refuses
//! nothing, so it counts as not blocked here: switching a rule from observe to enforce is a
//! new block, switching it back lifts one.
//!
//! An audience is one combination of what a policy can scope on: host tags (host groups are
//! expanded with each side's own definition), unix groups, a user and a tenant. The set of
//! combinations is infinite, but a rule only asks "is any of my values present", so two
//! values named by exactly the same rule lists behave identically: one representative per
//! such class, plus "none of them", covers every possible host and person. Host tags and
//! unix groups are sets (a host has several tags), so every subset of their classes is
//! evaluated; when that exceeds [`MAX_AUDIENCES`] for one service the comparison refuses to
//! guess and fails with [`TooComplex`].
//!
//! Exceptions expire, so a policy is evaluated at `now` and at every expiry time named on
//! either side: a block hidden behind an exception that expires tomorrow is still found.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Verdict;
use crate::catalogue::{Category, Service};
use crate::engine::{Engine, Query};
use crate::policy::{Policy, Rule};

/// Most audiences evaluated per service before [`TooComplex`].
pub const MAX_AUDIENCES: u64 = 1 << 14;

/// One concrete kind of use: a host with these tags, a person in these unix groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Audience {
    /// The host's tags (empty: a host with none of the tags any rule names).
    pub host_tags: Vec<String>,
    /// The person's unix groups.
    pub unix_groups: Vec<String>,
    /// The user (`None`: a user no rule names).
    pub user: Option<String>,
    /// The tenant (`None`: no tenant, or one no rule names).
    pub tenant: Option<String>,
    /// Risk flags the use carries (`permission_bypass`, …; empty: none a rule names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.host_tags.is_empty() {
            parts.push(format!("hosts tagged {}", self.host_tags.join("+")));
        }
        if !self.unix_groups.is_empty() {
            parts.push(format!("unix groups {}", self.unix_groups.join("+")));
        }
        if let Some(u) = &self.user {
            parts.push(format!("user {u}"));
        }
        if let Some(t) = &self.tenant {
            parts.push(format!("tenant {t}"));
        }
        if !self.flags.is_empty() {
            parts.push(format!("uses flagged {}", self.flags.join("+")));
        }
        if parts.is_empty() {
            f.write_str("everyone no narrower rule names")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Which way a block moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Not blocked before, blocked now.
    Blocks,
    /// Blocked before, not now (or the service is gone).
    Unblocks,
}

/// One use whose enforced-`blocked` status changes. `old` / `new` are the verdicts; a
/// `blocked` on the side that is not blocked is an observe-only rule's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockChange {
    /// Service id.
    pub service: String,
    /// The service's category (from the side where it exists, the new one first).
    pub category: Category,
    /// The service's jurisdiction.
    pub jurisdiction: String,
    /// For whom.
    pub audience: Audience,
    /// Unix seconds at which the difference holds (`now`, or an exception's expiry).
    pub at: i64,
    /// Blocks or unblocks.
    pub direction: Direction,
    /// Verdict before (`None`: service not in the old catalogue).
    pub old: Option<Verdict>,
    /// Verdict after (`None`: service not in the new catalogue).
    pub new: Option<Verdict>,
}

/// The comparison would need more evaluations than [`MAX_AUDIENCES`] for one service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "service `{service}`: the policies scope it {combinations} different ways (more than {max}); \
     split the rules so fewer host tags / unix groups / users / tenants / flags are combined for one service"
)]
pub struct TooComplex {
    /// The service.
    pub service: String,
    /// How many audiences it would take.
    pub combinations: u64,
    /// The limit.
    pub max: u64,
}

/// The scope values of one rule, host groups expanded with its own policy's definition.
struct Lists<'p> {
    tags: Vec<&'p str>,
    groups: &'p [String],
    users: &'p [String],
    tenants: Vec<String>,
    flags: &'p [String],
}

fn lists_of<'p>(p: &'p Policy, r: &'p Rule) -> Lists<'p> {
    let mut tags: Vec<&str> = r.host_tags.iter().map(String::as_str).collect();
    for g in &r.host_groups {
        tags.extend(
            p.host_groups
                .get(g)
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
    }
    Lists {
        tags,
        groups: &r.unix_groups,
        users: &r.users,
        tenants: r.tenants.iter().map(|t| t.to_ascii_lowercase()).collect(),
        flags: &r.flags,
    }
}

/// Values of one dimension → the ids of the lists naming them; one representative per
/// distinct set of lists.
#[derive(Default)]
struct Classes {
    by_value: BTreeMap<String, BTreeSet<usize>>,
}

impl Classes {
    fn add_list<'a>(&mut self, list_id: usize, values: impl IntoIterator<Item = &'a str>) {
        for v in values {
            self.by_value
                .entry(v.to_owned())
                .or_default()
                .insert(list_id);
        }
    }

    fn representatives(&self) -> Vec<String> {
        let mut seen: BTreeSet<&BTreeSet<usize>> = BTreeSet::new();
        self.by_value
            .iter()
            .filter(|(_, sig)| seen.insert(sig))
            .map(|(v, _)| v.clone())
            .collect()
    }
}

/// Every subset of `items` (bit i of the index picks item i).
fn subsets(items: &[String]) -> Vec<Vec<String>> {
    (0..1u64 << items.len())
        .map(|mask| {
            items
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .collect()
}

/// The audiences that tell apart every outcome of the rules targeting `svc` on both sides.
/// `extra_tags` (e.g. host groups of approvals) each get their own class, so an audience
/// always says whether it is inside them.
fn audiences(
    sides: [(&Policy, Option<&Service>); 2],
    extra_tags: &[String],
    now: i64,
) -> Result<Vec<Audience>, TooComplex> {
    let (mut tags, mut groups, mut users, mut tenants) = Default::default();
    let mut flags = Classes::default();
    let (tags, groups, users, tenants): (&mut Classes, &mut Classes, &mut Classes, &mut Classes) =
        (&mut tags, &mut groups, &mut users, &mut tenants);
    let mut list_id = 0usize;
    let mut service_id = String::new();
    for (p, svc) in sides {
        let Some(svc) = svc else { continue };
        service_id.clone_from(&svc.id);
        let active = p
            .exceptions
            .iter()
            .filter(|r| r.expires_at.is_some_and(|t| t > now));
        for r in active.chain(&p.rules).filter(|r| r.targets(svc)) {
            let l = lists_of(p, r);
            list_id += 1;
            tags.add_list(list_id, l.tags.iter().copied());
            groups.add_list(list_id, l.groups.iter().map(String::as_str));
            users.add_list(list_id, l.users.iter().map(String::as_str));
            tenants.add_list(list_id, l.tenants.iter().map(String::as_str));
            flags.add_list(list_id, l.flags.iter().map(String::as_str));
        }
    }
    for t in extra_tags {
        list_id += 1;
        tags.add_list(list_id, [t.as_str()]);
    }
    let (tags, groups) = (tags.representatives(), groups.representatives());
    let (users, tenants) = (users.representatives(), tenants.representatives());
    let flags = flags.representatives();
    // A use carries a set of flags, like a host its tags: every subset is an audience.
    let width = tags.len() + groups.len() + flags.len();
    let combinations = u32::try_from(width)
        .ok()
        .and_then(|w| 1u64.checked_shl(w))
        .and_then(|s| s.checked_mul(users.len() as u64 + 1))
        .and_then(|s| s.checked_mul(tenants.len() as u64 + 1))
        .unwrap_or(u64::MAX);
    if combinations > MAX_AUDIENCES {
        return Err(TooComplex {
            service: service_id,
            combinations,
            max: MAX_AUDIENCES,
        });
    }
    let users: Vec<Option<String>> = std::iter::once(None)
        .chain(users.into_iter().map(Some))
        .collect();
    let tenants: Vec<Option<String>> = std::iter::once(None)
        .chain(tenants.into_iter().map(Some))
        .collect();
    let group_sets = subsets(&groups);
    let flag_sets = subsets(&flags);
    let mut out = Vec::new();
    for t in subsets(&tags) {
        for g in &group_sets {
            for u in &users {
                for n in &tenants {
                    for f in &flag_sets {
                        out.push(Audience {
                            host_tags: t.clone(),
                            unix_groups: g.clone(),
                            user: u.clone(),
                            tenant: n.clone(),
                            flags: f.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The verdict, and whether its rule enforces it (`false`: observe-only).
fn verdict(e: &Engine, service: &str, a: &Audience, at: i64) -> Option<(Verdict, bool)> {
    let tags: Vec<&str> = a.host_tags.iter().map(String::as_str).collect();
    let groups: Vec<&str> = a.unix_groups.iter().map(String::as_str).collect();
    let q = Query {
        user: a.user.as_deref(),
        unix_groups: &groups,
        host_tags: &tags,
        ..Query::default()
    };
    let flags: Vec<&str> = a.flags.iter().map(String::as_str).collect();
    e.verdict_for_flagged(service, &q, a.tenant.as_deref(), &flags, at)
        .map(|(v, by)| (v, by.enforces()))
}

/// Refused when the policy enforces: verdict `blocked` by a rule that is not observe-only.
fn enforced_block(v: Option<(Verdict, bool)>) -> bool {
    v == Some((Verdict::Blocked, true))
}

/// The moments to evaluate: `now` and every later exception expiry on either side.
fn moments(old: &Policy, new: &Policy, now: i64) -> Vec<i64> {
    let mut t: BTreeSet<i64> = BTreeSet::from([now]);
    t.extend(
        old.exceptions
            .iter()
            .chain(&new.exceptions)
            .filter_map(|r| r.expires_at)
            .filter(|x| *x > now),
    );
    t.into_iter().collect()
}

/// Every use whose `blocked` status differs between `old` and `new`, at `now` or when a
/// later exception expires. `extra_tags` are host tags that later checks ask about (the
/// groups approvals are scoped to). Each service's catalogue facts (category,
/// jurisdiction) come from its own side, so a redefinition inside a bundle is evaluated
/// as the agent would evaluate it.
pub fn block_changes(
    old: &Engine,
    new: &Engine,
    extra_tags: &[String],
    now: i64,
) -> Result<Vec<BlockChange>, TooComplex> {
    let (op, np) = (old.policy(), new.policy());
    let ids: BTreeSet<&str> = old
        .catalogue()
        .services
        .iter()
        .chain(&new.catalogue().services)
        .map(|s| s.id.as_str())
        .collect();
    let times = moments(op, np, now);
    let mut out = Vec::new();
    for id in ids {
        let (os, ns) = (old.catalogue().service(id), new.catalogue().service(id));
        let Some(facts) = ns.or(os) else { continue };
        // Coverage depends on the audience, the new verdict and the direction, so that is
        // what is deduplicated.
        let mut seen: BTreeSet<(Audience, Option<Verdict>, bool)> = BTreeSet::new();
        for &at in &times {
            for a in audiences([(op, os), (np, ns)], extra_tags, at)? {
                let (ov, nv) = (verdict(old, id, &a, at), verdict(new, id, &a, at));
                let (ob, nb) = (enforced_block(ov), enforced_block(nv));
                let (o, n) = (ov.map(|(v, _)| v), nv.map(|(v, _)| v));
                if ob == nb || !seen.insert((a.clone(), n, nb)) {
                    continue;
                }
                out.push(BlockChange {
                    service: id.to_owned(),
                    category: facts.category,
                    jurisdiction: facts.risk.jurisdiction.clone(),
                    audience: a,
                    at,
                    direction: if nb {
                        Direction::Blocks
                    } else {
                        Direction::Unblocks
                    },
                    old: o,
                    new: n,
                });
            }
        }
    }
    Ok(out)
}
