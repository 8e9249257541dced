//! The engine: catalogue index + compiled policy. `classify` is what the agent calls per event.

use std::fmt;
use std::net::IpAddr;

use crate::Verdict;
use crate::bundle::VerifiedBundle;
use crate::catalogue::{Catalogue, Category, Service};
use crate::error::RulesError;
use crate::matcher::{Field, Hit, Matcher};
use crate::pattern::MAX_NAME_LEN;
use crate::policy::{Mode, Policy, Rule};
use crate::report::{Diagnostic, Report, Severity};

/// One observed event, as far as the agent knows it. Everything is optional; the name
/// (DNS question or TLS/QUIC SNI) is tried first, then the IP, then process and port.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<'a> {
    /// DNS name or SNI.
    pub name: Option<&'a str>,
    /// Destination address.
    pub ip: Option<IpAddr>,
    /// Destination port.
    pub port: Option<u16>,
    /// Executable path or comm of the process.
    pub process: Option<&'a str>,
    /// User name.
    pub user: Option<&'a str>,
    /// The user's unix groups.
    pub unix_groups: &'a [&'a str],
    /// The host's tags.
    pub host_tags: &'a [&'a str],
}

/// How the event was tied to the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedBy<'e> {
    /// A domain suffix.
    Domain(&'e str),
    /// An exact host name.
    Host(&'e str),
    /// A glob (SNI) pattern.
    Sni(&'e str),
    /// A published CIDR (longest prefix).
    Cidr(&'e str),
    /// A runtime's process name; `port_too` when the port is one of its defaults as well.
    Process {
        /// The hint.
        hint: &'e str,
        /// The query's port is one of the service's ports.
        port_too: bool,
    },
    /// A port that identifies the runtime on its own.
    Port(u16),
}

impl fmt::Display for MatchedBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(p) => write!(f, "domain suffix `{p}`"),
            Self::Host(p) => write!(f, "exact host `{p}`"),
            Self::Sni(p) => write!(f, "SNI pattern `{p}`"),
            Self::Cidr(p) => write!(f, "address range {p}"),
            Self::Process {
                hint,
                port_too: true,
            } => write!(f, "process `{hint}` on one of its default ports"),
            Self::Process {
                hint,
                port_too: false,
            } => write!(f, "process `{hint}`"),
            Self::Port(p) => write!(f, "default port {p}"),
        }
    }
}

/// What decided the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecidedBy<'e> {
    /// A time-boxed exception.
    Exception(&'e Rule),
    /// A policy rule.
    Rule(&'e Rule),
    /// The policy's default for AI services no rule covers.
    Default,
}

impl DecidedBy<'_> {
    /// Does the deciding rule enforce its verdict (`false`: an observe-only rule,
    /// `enforce = false`)? The default always does.
    pub fn enforces(&self) -> bool {
        match self {
            Self::Exception(r) | Self::Rule(r) => r.enforce,
            Self::Default => true,
        }
    }
}

/// The engine's answer for one event.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    /// The AI service.
    pub service: &'a Service,
    /// The verdict.
    pub verdict: Verdict,
    /// The policy's mode.
    pub mode: Mode,
    /// How the event matched the service.
    pub matched_by: MatchedBy<'a>,
    /// The rule that decided.
    pub decided_by: DecidedBy<'a>,
    /// Enterprise tenant named by the host name, if the service has tenant hints.
    pub tenant: Option<&'a str>,
}

impl Decision<'_> {
    /// Should the agent block (verdict `blocked` in enforce mode, by a rule that is not
    /// observe-only)?
    pub fn enforce(&self) -> bool {
        self.mode == Mode::Enforce && self.verdict == Verdict::Blocked && self.decided_by.enforces()
    }

    /// `exception:<id>`, `rule:<id>` or `default`.
    pub fn rule_id(&self) -> String {
        match self.decided_by {
            DecidedBy::Exception(r) => format!("exception:{}", r.id),
            DecidedBy::Rule(r) => format!("rule:{}", r.id),
            DecidedBy::Default => "default".into(),
        }
    }

    /// A sentence for a human.
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.service;
        write!(
            f,
            "matched {} of `{}` ({} by {}; {}; risk {}/100)",
            self.matched_by, s.id, s.name, s.vendor, s.category, s.risk.score
        )?;
        if let Some(t) = self.tenant {
            write!(f, ", tenant `{t}`")?;
        }
        let v = verdict_str(self.verdict);
        match self.decided_by {
            DecidedBy::Exception(r) => write!(
                f,
                "; verdict {v} by exception `{}` for {} (approved by {}, until {}: {})",
                r.id,
                r.scope_text(),
                r.approver,
                r.expires_at
                    .map(crate::time::format_rfc3339)
                    .unwrap_or_default(),
                r.reason
            )?,
            DecidedBy::Rule(r) => {
                write!(f, "; verdict {v} by rule `{}` for {}", r.id, r.scope_text())?
            }
            DecidedBy::Default => write!(
                f,
                "; verdict {v} by the policy default (no rule covers this service)"
            )?,
        }
        match (self.mode, self.verdict) {
            (Mode::Enforce, Verdict::Blocked) if !self.decided_by.enforces() => write!(
                f,
                "; enforce mode, but the rule is observe-only: reported as would_block, not blocked"
            ),
            (Mode::Enforce, Verdict::Blocked) => write!(f, "; enforce mode: traffic is blocked"),
            (Mode::Monitor, Verdict::Blocked) => write!(f, "; monitor mode: reported, not blocked"),
            _ => Ok(()),
        }
    }
}

/// snake_case name of a verdict.
pub fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Sanctioned => "sanctioned",
        Verdict::Tolerated => "tolerated",
        Verdict::Unsanctioned => "unsanctioned",
        Verdict::Blocked => "blocked",
    }
}

/// A rule prepared for evaluation.
#[derive(Debug)]
struct Compiled {
    rule: Rule,
    services: Vec<u32>,
    categories: u32,
    host_tags: Vec<String>,
}

impl Compiled {
    fn targets(&self, si: u32, svc: &Service) -> bool {
        self.services.binary_search(&si).is_ok()
            || self.categories & svc.category.bit() != 0
            || self.rule.jurisdictions.contains(&svc.risk.jurisdiction)
    }

    fn in_scope(&self, q: &Query<'_>, tenant: Option<&str>, flags: &[&str]) -> bool {
        let r = &self.rule;
        (r.users.is_empty() || q.user.is_some_and(|u| r.users.iter().any(|x| x == u)))
            && (r.unix_groups.is_empty()
                || q.unix_groups
                    .iter()
                    .any(|g| r.unix_groups.iter().any(|x| x == g)))
            && (self.host_tags.is_empty()
                || q.host_tags
                    .iter()
                    .any(|t| self.host_tags.iter().any(|x| x == t)))
            && (r.tenants.is_empty()
                || tenant.is_some_and(|t| r.tenants.iter().any(|x| x.eq_ignore_ascii_case(t))))
            && (r.flags.is_empty() || flags.iter().any(|f| r.flags.iter().any(|x| x == f)))
    }
}

/// Indices of (exceptions, rules) that target one service.
type Candidates = (Box<[u32]>, Box<[u32]>);

/// Catalogue + policy, ready to classify.
#[derive(Debug)]
pub struct Engine {
    catalogue: Catalogue,
    matcher: Matcher,
    mode: Mode,
    default_verdict: Verdict,
    rules: Vec<Compiled>,
    exceptions: Vec<Compiled>,
    /// Per service: indices of the exceptions and rules that target it (targets depend only
    /// on the service), so `classify` checks only scopes.
    candidates: Vec<Candidates>,
    policy: Policy,
}

impl Engine {
    /// Build from a catalogue and a policy. The catalogue is re-checked (conflicts, shared
    /// infrastructure) and every policy reference must resolve.
    pub fn new(catalogue: Catalogue, policy: Policy) -> Result<Self, RulesError> {
        let matcher = catalogue.check().map_err(|errs| RulesError::Invalid {
            report: Report {
                diagnostics: errs
                    .into_iter()
                    .map(|message| Diagnostic {
                        file: "<catalogue>".into(),
                        line: 0,
                        col: 0,
                        severity: Severity::Error,
                        message,
                    })
                    .collect(),
                files_checked: 0,
            },
        })?;
        let compile = |rule: Rule| -> Result<Compiled, RulesError> {
            let mut services = Vec::with_capacity(rule.services.len());
            for s in &rule.services {
                let idx = catalogue
                    .services
                    .binary_search_by(|x| x.id.as_str().cmp(s))
                    .map_err(|_| RulesError::UnknownReference {
                        rule: rule.id.clone(),
                        what: "service",
                        name: s.clone(),
                    })?;
                services.push(idx as u32);
            }
            services.sort_unstable();
            let mut host_tags = rule.host_tags.clone();
            for g in &rule.host_groups {
                let tags =
                    policy
                        .host_groups
                        .get(g)
                        .ok_or_else(|| RulesError::UnknownReference {
                            rule: rule.id.clone(),
                            what: "host group",
                            name: g.clone(),
                        })?;
                host_tags.extend(tags.iter().cloned());
            }
            if !rule.host_groups.is_empty() && host_tags.is_empty() {
                // A group without tags matches no host; keep a tag no host can have.
                host_tags.push(String::new());
            }
            let categories = rule
                .categories
                .iter()
                .fold(0, |acc, c: &Category| acc | c.bit());
            Ok(Compiled {
                rule,
                services,
                categories,
                host_tags,
            })
        };
        let rules = policy
            .rules
            .iter()
            .cloned()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        let exceptions = policy
            .exceptions
            .iter()
            .cloned()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        let candidates = catalogue
            .services
            .iter()
            .enumerate()
            .map(|(si, svc)| {
                let pick = |list: &[Compiled]| -> Box<[u32]> {
                    list.iter()
                        .enumerate()
                        .filter(|(_, c)| c.targets(si as u32, svc))
                        .map(|(i, _)| i as u32)
                        .collect()
                };
                (pick(&exceptions), pick(&rules))
            })
            .collect();
        Ok(Self {
            catalogue,
            matcher,
            mode: policy.mode,
            default_verdict: policy.default_verdict,
            rules,
            exceptions,
            candidates,
            policy,
        })
    }

    /// Build from a verified bundle.
    pub fn from_bundle(bundle: &VerifiedBundle) -> Result<Self, RulesError> {
        Self::new(bundle.body.catalogue.clone(), bundle.body.policy.clone())
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The index (pattern counts etc.).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Hot path: which AI service, if any, does this DNS name / SNI belong to?
    #[inline]
    pub fn match_name(&self, name: &str) -> Option<&Service> {
        self.matcher
            .match_name(name)
            .and_then(|h| self.catalogue.services.get(h.service as usize))
    }

    /// Classify an event against the catalogue and the policy, exceptions evaluated at the
    /// current time.
    pub fn classify<'a>(&'a self, q: &Query<'a>) -> Option<Decision<'a>> {
        self.classify_at(q, crate::time::now_unix())
    }

    /// Classify with an explicit clock (unix seconds) for exceptions' expiry.
    pub fn classify_at<'a>(&'a self, q: &Query<'a>, now: i64) -> Option<Decision<'a>> {
        self.classify_flagged_at(q, &[], None, now)
    }

    /// [`Engine::classify`] of a use from an AI agent session: its risk flags
    /// (`permission_bypass`, …), so rules scoped on `flags` can match, and the tenant its
    /// tool records (used when the name names none), so rules scoped on `tenants` can.
    pub fn classify_flagged<'a>(
        &'a self,
        q: &Query<'a>,
        flags: &[&str],
        session_tenant: Option<&'a str>,
    ) -> Option<Decision<'a>> {
        self.classify_flagged_at(q, flags, session_tenant, crate::time::now_unix())
    }

    /// [`Engine::classify_flagged`] with an explicit clock (unix seconds).
    pub fn classify_flagged_at<'a>(
        &'a self,
        q: &Query<'a>,
        flags: &[&str],
        session_tenant: Option<&'a str>,
        now: i64,
    ) -> Option<Decision<'a>> {
        let (hit, matched_by) = self.find(q)?;
        let service = self.catalogue.services.get(hit.service as usize)?;
        let tenant = q
            .name
            .and_then(|n| tenant_of(service, n))
            .or(session_tenant);
        let (verdict, decided_by) = self.decide(hit.service, q, tenant, flags, now);
        Some(Decision {
            service,
            verdict,
            mode: self.mode,
            matched_by,
            decided_by,
            tenant,
        })
    }

    fn decide<'a>(
        &'a self,
        si: u32,
        q: &Query<'_>,
        tenant: Option<&str>,
        flags: &[&str],
        now: i64,
    ) -> (Verdict, DecidedBy<'a>) {
        let Some((exc, rules)) = self.candidates.get(si as usize) else {
            return (self.default_verdict, DecidedBy::Default);
        };
        let exception = exc
            .iter()
            .filter_map(|&i| self.exceptions.get(i as usize))
            .find(|c| c.rule.expires_at.is_some_and(|t| t > now) && c.in_scope(q, tenant, flags));
        if let Some(c) = exception {
            return (c.rule.verdict, DecidedBy::Exception(&c.rule));
        }
        match rules
            .iter()
            .filter_map(|&i| self.rules.get(i as usize))
            .find(|c| c.in_scope(q, tenant, flags))
        {
            Some(c) => (c.rule.verdict, DecidedBy::Rule(&c.rule)),
            None => (self.default_verdict, DecidedBy::Default),
        }
    }

    /// The verdict for a service (by id) for a given user/groups/host tags/tenant, without a
    /// network match (used by `diff` and admin tooling).
    pub fn verdict_for<'a>(
        &'a self,
        service_id: &str,
        who: &Query<'_>,
        tenant: Option<&str>,
        now: i64,
    ) -> Option<(Verdict, DecidedBy<'a>)> {
        self.verdict_for_flagged(service_id, who, tenant, &[], now)
    }

    /// [`Engine::verdict_for`] of a use carrying risk flags.
    pub fn verdict_for_flagged<'a>(
        &'a self,
        service_id: &str,
        who: &Query<'_>,
        tenant: Option<&str>,
        flags: &[&str],
        now: i64,
    ) -> Option<(Verdict, DecidedBy<'a>)> {
        let si = self
            .catalogue
            .services
            .binary_search_by(|s| s.id.as_str().cmp(service_id))
            .ok()?;
        Some(self.decide(si as u32, who, tenant, flags, now))
    }

    /// The verdict on an AI agent session itself (category `ai_agent`: no catalogue
    /// service, so only rules naming that category apply), for its user, host tags, tenant
    /// and risk flags; the policy's default when none does.
    pub fn verdict_for_agent<'a>(
        &'a self,
        who: &Query<'_>,
        tenant: Option<&str>,
        flags: &[&str],
        now: i64,
    ) -> (Verdict, DecidedBy<'a>) {
        self.verdict_for_category(Category::AiAgent, who, tenant, flags, now)
    }

    /// The verdict on something a host runs that is no catalogue service — an AI agent
    /// session (`ai_agent`), a local model runtime (`self_hosted_runtime`) — judged by the
    /// rules naming `category` only, for its user, host tags, tenant and risk flags; the
    /// policy's default when none does.
    pub fn verdict_for_category<'a>(
        &'a self,
        category: Category,
        who: &Query<'_>,
        tenant: Option<&str>,
        flags: &[&str],
        now: i64,
    ) -> (Verdict, DecidedBy<'a>) {
        let bit = category.bit();
        let exception = self.exceptions.iter().find(|c| {
            c.categories & bit != 0
                && c.rule.expires_at.is_some_and(|t| t > now)
                && c.in_scope(who, tenant, flags)
        });
        if let Some(c) = exception {
            return (c.rule.verdict, DecidedBy::Exception(&c.rule));
        }
        match self
            .rules
            .iter()
            .find(|c| c.categories & bit != 0 && c.in_scope(who, tenant, flags))
        {
            Some(c) => (c.rule.verdict, DecidedBy::Rule(&c.rule)),
            None => (self.default_verdict, DecidedBy::Default),
        }
    }

    /// Policy mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn find<'a>(&'a self, q: &Query<'a>) -> Option<(Hit, MatchedBy<'a>)> {
        let m = &self.matcher;
        let text = |h: Hit| m.pattern(h.pattern).map_or("", |p| &*p.text);
        if let Some(h) = q.name.and_then(|n| m.match_name(n)) {
            let by = match m.pattern(h.pattern).map(|p| p.field) {
                Some(Field::Hosts) => MatchedBy::Host(text(h)),
                Some(Field::Sni) => MatchedBy::Sni(text(h)),
                _ => MatchedBy::Domain(text(h)),
            };
            return Some((h, by));
        }
        if let Some(h) = q.ip.and_then(|ip| m.match_ip(ip)) {
            return Some((h, MatchedBy::Cidr(text(h))));
        }
        if let Some(h) = q.process.and_then(|p| m.match_process(p)) {
            let port_too = q.port.is_some_and(|port| {
                self.catalogue
                    .services
                    .get(h.service as usize)
                    .is_some_and(|s| s.ports.contains(&port))
            });
            return Some((
                h,
                MatchedBy::Process {
                    hint: text(h),
                    port_too,
                },
            ));
        }
        if let Some((h, port)) = q.port.and_then(|p| m.match_port(p).map(|h| (h, p))) {
            return Some((h, MatchedBy::Port(port)));
        }
        None
    }
}

/// The tenant label of `name` for `service`, returned as a slice of the caller's name:
/// [`Service::tenant_of`] of the normalised name, without making the normalised copy (the
/// suffix is compared ASCII-case-folded in place: this runs on every classified event).
fn tenant_of<'a>(service: &Service, name: &'a str) -> Option<&'a str> {
    let n = name.strip_suffix('.').unwrap_or(name).as_bytes();
    if n.is_empty() || n.len() > MAX_NAME_LEN {
        return None;
    }
    let below = |suffix: &str| {
        n.len()
            .checked_sub(suffix.len() + 1)
            .and_then(|dot| n.get(dot..))
            .and_then(|t| t.split_first())
            .is_some_and(|(&dot, tail)| {
                dot == b'.' && tail.iter().map(u8::to_ascii_lowercase).eq(suffix.bytes())
            })
    };
    service
        .tenant_hints
        .iter()
        .filter_map(|h| h.suffix.as_deref())
        .any(below)
        .then(|| name.split('.').next())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_of_reads_the_name_as_the_normalised_copy_would() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
        let Ok(cat) = Catalogue::load_dir(&dir) else {
            panic!("the shipped catalogue loads");
        };
        let with_hints: Vec<&Service> = cat
            .services
            .iter()
            .filter(|s| s.tenant_hints.iter().any(|h| h.suffix.is_some()))
            .collect();
        assert!(!with_hints.is_empty());
        let long = "a.".repeat(130);
        for s in with_hints {
            for h in s.tenant_hints.iter().filter_map(|h| h.suffix.as_deref()) {
                let up = h.to_ascii_uppercase();
                let names = [
                    format!("contoso.{h}"),
                    format!("Contoso.{up}."),
                    format!("a.b.{h}"),
                    format!(".{h}"),
                    h.to_string(),
                    format!("x{h}"),
                    format!("contoso.{h}.evil"),
                    format!("{long}{h}"),
                    format!("ü.{h}"),
                ];
                for n in names {
                    let mut buf = [0u8; MAX_NAME_LEN];
                    let old = crate::pattern::normalize(&n, &mut buf)
                        .and_then(|norm| s.tenant_of(norm))
                        .and_then(|_| n.split('.').next());
                    assert_eq!(tenant_of(s, &n), old, "{n}");
                }
            }
        }
    }

    #[test]
    fn engine_and_decision_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Engine>();
        send_sync::<Decision<'static>>();
    }

    #[test]
    fn empty_engine_matches_nothing() {
        let Ok(e) = Engine::new(Catalogue::default(), Policy::default()) else {
            panic!("an empty catalogue is valid");
        };
        assert!(e.match_name("api.openai.com").is_none());
        assert!(
            e.classify_at(
                &Query {
                    port: Some(11434),
                    ..Query::default()
                },
                0
            )
            .is_none()
        );
    }
}
