//! `diff OLD NEW`: which services change verdict, for whom.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::Verdict;
use crate::engine::{DecidedBy, Engine, Query, verdict_str};
use crate::policy::{Mode, Rule};

/// One audience: who a verdict applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Audience {
    /// Human description ("unix group eng, host tag ci" / "everyone else").
    pub who: String,
    user: Option<String>,
    unix_group: Option<String>,
    host_tag: Option<String>,
    tenant: Option<String>,
}

/// A service whose verdict changes for an audience.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerdictChange {
    /// Service id.
    pub service: String,
    /// Who is affected.
    pub who: String,
    /// Verdict before (`None`: service not in the old catalogue).
    pub old: Option<Verdict>,
    /// Verdict after (`None`: service removed).
    pub new: Option<Verdict>,
    /// Deciding rule before.
    pub old_rule: String,
    /// Deciding rule after.
    pub new_rule: String,
}

/// Everything that differs between two catalogue+policy pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    /// Services only in NEW.
    pub added_services: Vec<String>,
    /// Services only in OLD.
    pub removed_services: Vec<String>,
    /// Services in both whose patterns, risk or metadata changed.
    pub changed_services: Vec<String>,
    /// Mode change.
    pub mode: Option<(Mode, Mode)>,
    /// Verdict changes, by service then audience.
    pub verdict_changes: Vec<VerdictChange>,
}

impl DiffReport {
    /// No difference at all.
    pub fn is_empty(&self) -> bool {
        self.added_services.is_empty()
            && self.removed_services.is_empty()
            && self.changed_services.is_empty()
            && self.mode.is_none()
            && self.verdict_changes.is_empty()
    }
}

fn describe(a: &Audience) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &a.host_tag {
        parts.push(format!("host tag {t}"));
    }
    if let Some(g) = &a.unix_group {
        parts.push(format!("unix group {g}"));
    }
    if let Some(u) = &a.user {
        parts.push(format!("user {u}"));
    }
    if let Some(t) = &a.tenant {
        parts.push(format!("tenant {t}"));
    }
    if parts.is_empty() {
        "everyone".into()
    } else {
        parts.join(", ")
    }
}

/// One audience per value named in a rule's scope (each user, group, tag, tenant), the other
/// dimensions set to the rule's first value, so every person a rule names is evaluated.
fn audiences_of(
    rules: &[Rule],
    groups: &std::collections::BTreeMap<String, Vec<String>>,
    out: &mut BTreeSet<Audience>,
) {
    for r in rules {
        let mut tags: Vec<String> = r.host_tags.clone();
        for g in &r.host_groups {
            tags.extend(groups.get(g).into_iter().flatten().cloned());
        }
        let first = Audience {
            who: String::new(),
            user: r.users.first().cloned(),
            unix_group: r.unix_groups.first().cloned(),
            host_tag: tags.first().cloned(),
            tenant: r.tenants.first().cloned(),
        };
        let mut variants = vec![first.clone()];
        variants.extend(r.users.iter().map(|u| Audience {
            user: Some(u.clone()),
            ..first.clone()
        }));
        variants.extend(r.unix_groups.iter().map(|g| Audience {
            unix_group: Some(g.clone()),
            ..first.clone()
        }));
        variants.extend(tags.iter().map(|t| Audience {
            host_tag: Some(t.clone()),
            ..first.clone()
        }));
        variants.extend(r.tenants.iter().map(|t| Audience {
            tenant: Some(t.clone()),
            ..first.clone()
        }));
        for mut a in variants {
            a.who = describe(&a);
            out.insert(a);
        }
    }
}

fn rule_name(d: &DecidedBy<'_>) -> String {
    match d {
        DecidedBy::Exception(r) => format!("exception:{}", r.id),
        DecidedBy::Rule(r) => format!("rule:{}", r.id),
        DecidedBy::Default => "default".into(),
    }
}

/// Compare two engines at time `now`.
pub fn diff(old: &Engine, new: &Engine, now: i64) -> DiffReport {
    let mut report = DiffReport::default();
    let oc = old.catalogue();
    let nc = new.catalogue();
    let old_ids: BTreeSet<&str> = oc.services.iter().map(|s| s.id.as_str()).collect();
    let new_ids: BTreeSet<&str> = nc.services.iter().map(|s| s.id.as_str()).collect();
    report.added_services = new_ids
        .difference(&old_ids)
        .map(|s| s.to_string())
        .collect();
    report.removed_services = old_ids
        .difference(&new_ids)
        .map(|s| s.to_string())
        .collect();
    report.changed_services = old_ids
        .intersection(&new_ids)
        .filter(|id| oc.service(id) != nc.service(id))
        .map(|s| s.to_string())
        .collect();
    if old.mode() != new.mode() {
        report.mode = Some((old.mode(), new.mode()));
    }
    let mut audiences = BTreeSet::new();
    for p in [old.policy(), new.policy()] {
        audiences_of(&p.rules, &p.host_groups, &mut audiences);
        audiences_of(&p.exceptions, &p.host_groups, &mut audiences);
    }
    let everyone = Audience {
        who: "everyone".into(),
        user: None,
        unix_group: None,
        host_tag: None,
        tenant: None,
    };
    audiences.insert(everyone);
    for id in old_ids.union(&new_ids) {
        let mut seen_for: Vec<(Option<Verdict>, Option<Verdict>, String)> = Vec::new();
        for a in &audiences {
            let groups: Vec<&str> = a.unix_group.iter().map(String::as_str).collect();
            let tags: Vec<&str> = a.host_tag.iter().map(String::as_str).collect();
            let q = Query {
                user: a.user.as_deref(),
                unix_groups: &groups,
                host_tags: &tags,
                ..Query::default()
            };
            let o = old.verdict_for(id, &q, a.tenant.as_deref(), now);
            let n = new.verdict_for(id, &q, a.tenant.as_deref(), now);
            let (ov, nv) = (o.map(|x| x.0), n.map(|x| x.0));
            if ov != nv {
                let key = (ov, nv, a.who.clone());
                if seen_for.contains(&key) {
                    continue;
                }
                seen_for.push(key);
                report.verdict_changes.push(VerdictChange {
                    service: id.to_string(),
                    who: if a.who == "everyone" {
                        "everyone (no narrower rule)".into()
                    } else {
                        a.who.clone()
                    },
                    old: ov,
                    new: nv,
                    old_rule: o.map_or_else(|| "absent".into(), |x| rule_name(&x.1)),
                    new_rule: n.map_or_else(|| "absent".into(), |x| rule_name(&x.1)),
                });
            }
        }
    }
    report
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no differences");
        }
        if let Some((a, b)) = self.mode {
            writeln!(f, "mode: {a:?} -> {b:?}")?;
        }
        for s in &self.added_services {
            writeln!(f, "+ service {s}")?;
        }
        for s in &self.removed_services {
            writeln!(f, "- service {s}")?;
        }
        for s in &self.changed_services {
            writeln!(f, "~ service {s} (patterns, risk or metadata changed)")?;
        }
        let v = |x: Option<Verdict>| x.map_or("absent", verdict_str);
        for c in &self.verdict_changes {
            writeln!(
                f,
                "{}: for {}: {} -> {} ({} -> {})",
                c.service,
                c.who,
                v(c.old),
                v(c.new),
                c.old_rule,
                c.new_rule
            )?;
        }
        Ok(())
    }
}
