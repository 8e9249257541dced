//! The organisation's policy file (TOML): verdicts per service, category or jurisdiction,
//! scoped by host group/tag, unix group, user and tenant; time-boxed exceptions; a default;
//! monitor or enforce mode.
//!
//! Evaluation: unexpired `[[exceptions]]` in file order, then `[[rules]]` in file order; the
//! first whose target and scope match decides; otherwise `default_verdict`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::Verdict;
use crate::catalogue::{Catalogue, Category};
use crate::error::RulesError;
use crate::report::{Report, SourceMap};
use crate::time::{format_rfc3339, toml_datetime_to_unix};

/// Monitor (report only) or enforce (the agent blocks `blocked` verdicts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Report only.
    Monitor,
    /// Block what is `blocked`.
    Enforce,
}

/// One rule or exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id within the policy.
    pub id: String,
    /// The verdict it gives.
    pub verdict: Verdict,
    /// Target: service ids.
    #[serde(default)]
    pub services: Vec<String>,
    /// Target: categories.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Target: provider jurisdictions (`CN`, `EU`, ...).
    #[serde(default)]
    pub jurisdictions: Vec<String>,
    /// Scope: named host groups (each a set of host tags).
    #[serde(default)]
    pub host_groups: Vec<String>,
    /// Scope: host tags.
    #[serde(default)]
    pub host_tags: Vec<String>,
    /// Scope: unix groups.
    #[serde(default)]
    pub unix_groups: Vec<String>,
    /// Scope: user names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Scope: enterprise tenants (from the service's tenant hints, e.g. Azure resource name).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Scope: uses carrying any of these risk flags ([`RISK_FLAGS`]: e.g. a use from an AI
    /// agent session started with `permission_bypass`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub comment: String,
    /// Exceptions: why.
    #[serde(default)]
    pub reason: String,
    /// Exceptions: who approved.
    #[serde(default)]
    pub approver: String,
    /// Exceptions: unix seconds after which it no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// `false` (policy `enforce = false`): observe only. A `blocked` verdict of this rule is
    /// reported as `would_block` and nothing is refused for it, even in enforce mode.
    /// Serialised only when `false`, so bundles without observe-only rules are unchanged.
    #[serde(default = "enforced", skip_serializing_if = "is_enforced")]
    pub enforce: bool,
}

fn enforced() -> bool {
    true
}

fn is_enforced(v: &bool) -> bool {
    *v
}

impl Rule {
    /// True when the rule applies to everyone (no scope).
    pub fn unscoped(&self) -> bool {
        self.host_groups.is_empty()
            && self.host_tags.is_empty()
            && self.unix_groups.is_empty()
            && self.users.is_empty()
            && self.tenants.is_empty()
            && self.flags.is_empty()
    }

    /// Does this rule target `svc` (by id, category or jurisdiction)? Scope aside.
    pub fn targets(&self, svc: &crate::catalogue::Service) -> bool {
        self.services.contains(&svc.id)
            || self.categories.contains(&svc.category)
            || self.jurisdictions.contains(&svc.risk.jurisdiction)
    }

    /// "for unix group eng, host tag ci" or "for everyone".
    pub fn scope_text(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |what: &str, v: &[String]| {
            if !v.is_empty() {
                parts.push(format!("{what} {}", v.join("|")));
            }
        };
        add("host group", &self.host_groups);
        add("host tag", &self.host_tags);
        add("unix group", &self.unix_groups);
        add("user", &self.users);
        add("tenant", &self.tenants);
        add("flag", &self.flags);
        if parts.is_empty() {
            "everyone".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The risk flags a rule may scope on (`Finding.flags` on the wire). `large_upload` and
/// `low_confidence` are decided when a window closes, after the verdict: not scopable.
pub const RISK_FLAGS: [&str; 6] = [
    "permission_bypass",
    "unpinned_mcp_server",
    "runtime_exposed",
    "off_catalogue_contact",
    "agent_as_root",
    "personal_tenant",
];

fn check_flags(
    id: &str,
    flags: Vec<Spanned<String>>,
    sm: &SourceMap,
    report: &mut Report,
) -> Vec<String> {
    let mut out = Vec::with_capacity(flags.len());
    for f in flags {
        let off = f.span().start;
        let f = f.into_inner();
        if !RISK_FLAGS.contains(&f.as_str()) {
            report.push(sm.error(
                Some(off),
                format!(
                    "rule `{id}`: unknown flag `{f}` (one of: {})",
                    RISK_FLAGS.join(", ")
                ),
            ));
        }
        out.push(f);
    }
    out
}

/// A policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Monitor or enforce.
    pub mode: Mode,
    /// Verdict for AI services no rule covers.
    pub default_verdict: Verdict,
    /// Host group name → host tags (a host is in the group if it has any of them).
    #[serde(default)]
    pub host_groups: BTreeMap<String, Vec<String>>,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Time-boxed exceptions, checked before the rules.
    #[serde(default)]
    pub exceptions: Vec<Rule>,
}

impl Default for Policy {
    /// Monitor everything, every AI service `unsanctioned`.
    fn default() -> Self {
        Self {
            mode: Mode::Monitor,
            default_verdict: Verdict::Unsanctioned,
            host_groups: BTreeMap::new(),
            rules: Vec::new(),
            exceptions: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    verdict: Verdict,
    #[serde(default)]
    services: Vec<Spanned<String>>,
    #[serde(default)]
    categories: Vec<Category>,
    #[serde(default)]
    jurisdictions: Vec<Spanned<String>>,
    #[serde(default)]
    host_groups: Vec<Spanned<String>>,
    #[serde(default)]
    host_tags: Vec<String>,
    #[serde(default)]
    unix_groups: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    flags: Vec<Spanned<String>>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    approver: Option<String>,
    #[serde(default)]
    expires: Option<Spanned<toml::value::Datetime>>,
    #[serde(default)]
    enforce: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Mode,
    default_verdict: Verdict,
    #[serde(default)]
    host_groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    exceptions: Vec<Spanned<RawRule>>,
}

fn convert(
    raw: Spanned<RawRule>,
    exception: bool,
    sm: &SourceMap,
    cat: &Catalogue,
    groups: &BTreeMap<String, Vec<String>>,
    now: i64,
    report: &mut Report,
) -> (Rule, usize) {
    let start = raw.span().start;
    let r = raw.into_inner();
    let id_off = r.id.span().start;
    let id = r.id.into_inner();
    if id.trim().is_empty() {
        report.push(sm.error(Some(id_off), "rule id must not be empty".into()));
    }
    let mut services = Vec::new();
    for s in r.services {
        let off = s.span().start;
        let s = s.into_inner();
        if cat.service(&s).is_none() {
            report.push(sm.error(Some(off), format!("rule `{id}`: unknown service `{s}`")));
        }
        services.push(s);
    }
    let mut jurisdictions = Vec::new();
    for j in r.jurisdictions {
        let off = j.span().start;
        let j = j.into_inner();
        if !(j.len() == 2 && j.bytes().all(|b| b.is_ascii_uppercase()) || j == "LOCAL") {
            report.push(sm.error(
                Some(off),
                format!(
                    "rule `{id}`: jurisdiction `{j}` is not an upper-case ISO code, `EU` or `LOCAL`"
                ),
            ));
        }
        jurisdictions.push(j);
    }
    let mut host_groups = Vec::new();
    for g in r.host_groups {
        let off = g.span().start;
        let g = g.into_inner();
        if !groups.contains_key(&g) {
            report.push(sm.error(
                Some(off),
                format!("rule `{id}`: host group `{g}` is not defined in [host_groups]"),
            ));
        }
        host_groups.push(g);
    }
    let flags = check_flags(&id, r.flags, sm, report);
    if services.is_empty() && r.categories.is_empty() && jurisdictions.is_empty() {
        report.push(sm.error(
            Some(start),
            format!("rule `{id}` targets nothing: give services, categories or jurisdictions (use default_verdict for the rest)"),
        ));
    }
    let mut expires_at = None;
    if exception {
        if r.reason.as_deref().is_none_or(|s| s.trim().is_empty()) {
            report.push(sm.error(Some(start), format!("exception `{id}` needs a `reason`")));
        }
        if r.approver.as_deref().is_none_or(|s| s.trim().is_empty()) {
            report.push(sm.error(Some(start), format!("exception `{id}` needs an `approver`")));
        }
        match &r.expires {
            None => report.push(sm.error(Some(start), format!("exception `{id}` needs `expires` (an RFC 3339 date-time)"))),
            Some(e) => match toml_datetime_to_unix(e.get_ref()) {
                None => report.push(sm.error(
                    Some(e.span().start),
                    format!("exception `{id}`: `expires` needs a date or a date-time with an offset (e.g. 2026-12-31T00:00:00Z)"),
                )),
                Some(t) => {
                    if t <= now {
                        report.push(sm.warning(
                            Some(e.span().start),
                            format!("exception `{id}` expired at {} and no longer applies", format_rfc3339(t)),
                        ));
                    }
                    expires_at = Some(t);
                }
            },
        }
    } else if let Some(e) = &r.expires {
        report.push(sm.error(
            Some(e.span().start),
            format!("rule `{id}`: rules do not expire; move it to [[exceptions]]"),
        ));
    }
    let rule = Rule {
        id,
        verdict: r.verdict,
        services,
        categories: r.categories,
        jurisdictions,
        host_groups,
        host_tags: r.host_tags,
        unix_groups: r.unix_groups,
        users: r.users,
        tenants: r.tenants,
        flags,
        comment: r.comment,
        reason: r.reason.unwrap_or_default(),
        approver: r.approver.unwrap_or_default(),
        expires_at,
        enforce: r.enforce.unwrap_or(true),
    };
    (rule, id_off)
}

impl Policy {
    /// Parse policy text, checking it against the catalogue. Returns the policy (when it has
    /// no error) and every diagnostic.
    pub fn parse(path: &Path, text: &str, cat: &Catalogue, now: i64) -> (Option<Self>, Report) {
        let sm = SourceMap::new(path, text);
        let mut report = Report {
            files_checked: 1,
            ..Report::default()
        };
        let raw: RawPolicy = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                report.push(sm.toml_error(&e));
                return (None, report);
            }
        };
        let (rules, rule_offs): (Vec<Rule>, Vec<usize>) = raw
            .rules
            .into_iter()
            .map(|r| convert(r, false, &sm, cat, &raw.host_groups, now, &mut report))
            .unzip();
        let (exceptions, exc_offs): (Vec<Rule>, Vec<usize>) = raw
            .exceptions
            .into_iter()
            .map(|r| convert(r, true, &sm, cat, &raw.host_groups, now, &mut report))
            .unzip();
        let mut seen = std::collections::BTreeSet::new();
        for (r, off) in rules
            .iter()
            .zip(&rule_offs)
            .chain(exceptions.iter().zip(&exc_offs))
        {
            if !seen.insert(r.id.as_str()) {
                report.push(sm.error(Some(*off), format!("duplicate rule id `{}`", r.id)));
            }
        }
        for (i, (r, off)) in rules.iter().zip(&rule_offs).enumerate() {
            if let Some(earlier) = rules
                .get(..i)
                .and_then(|e| e.iter().find(|e| shadows(e, r)))
            {
                report.push(sm.warning(
                    Some(*off),
                    format!(
                        "rule `{}` can never apply: `{}` before it matches everything it does",
                        r.id, earlier.id
                    ),
                ));
            }
        }
        report.sort();
        let policy = Self {
            mode: raw.mode,
            default_verdict: raw.default_verdict,
            host_groups: raw.host_groups,
            rules,
            exceptions,
        };
        (report.is_ok().then_some(policy), report)
    }

    /// Load and check a policy file; any error fails with the full report.
    pub fn load(path: &Path, cat: &Catalogue) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
        match Self::parse(path, &text, cat, crate::time::now_unix()) {
            (Some(p), _) => Ok(p),
            (None, report) => Err(RulesError::Invalid { report }),
        }
    }
}

/// Validate a policy file against a catalogue.
pub fn validate_policy(path: &Path, cat: &Catalogue) -> Result<Report, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
    Ok(Policy::parse(path, &text, cat, crate::time::now_unix()).1)
}

/// `a` (earlier, unscoped) covers everything `b` targets.
fn shadows(a: &Rule, b: &Rule) -> bool {
    a.unscoped()
        && b.services.iter().all(|s| a.services.contains(s))
        && b.categories.iter().all(|c| a.categories.contains(c))
        && b.jurisdictions.iter().all(|j| a.jurisdictions.contains(j))
        && (!b.services.is_empty() || !b.categories.is_empty() || !b.jurisdictions.is_empty())
}
