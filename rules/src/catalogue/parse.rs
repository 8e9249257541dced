//! Parsing one service file into a [`Service`], with the byte offsets of its items so
//! diagnostics can point at lines.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::provenance::{RawProvenance, own_homepage_error, parse_provenance};
use super::*;
use crate::matcher::Field;
use crate::pattern;
use crate::report::{Report, SourceMap};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExamples {
    #[serde(rename = "match")]
    matches: Vec<Spanned<String>>,
    #[serde(default)]
    no_match: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenantHint {
    #[serde(default)]
    suffix: Option<Spanned<String>>,
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    plan: Spanned<Plan>,
    trains_on_user_data: Training,
    retention: Retention,
    #[serde(default)]
    enterprise_controls: Vec<Control>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    #[serde(default)]
    plan: Option<Plan>,
    trains_on_user_data: Training,
    retention: Retention,
    jurisdiction: Spanned<String>,
    #[serde(default)]
    enterprise_controls: Vec<Control>,
    #[serde(default)]
    certifications: Vec<Certification>,
    #[serde(default)]
    tiers: Vec<RawTier>,
    #[serde(default)]
    evidence: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: Spanned<String>,
    name: Spanned<String>,
    vendor: String,
    category: Category,
    #[serde(default)]
    description: String,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    sni: Vec<Spanned<String>>,
    #[serde(default)]
    cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<u16>>,
    #[serde(default)]
    port_alone: bool,
    #[serde(default)]
    process_hints: Vec<Spanned<String>>,
    #[serde(default)]
    api_key_env: Vec<Spanned<String>>,
    risk: RawRisk,
    #[serde(default)]
    tenant_hints: Vec<RawTenantHint>,
    provenance: RawProvenance,
    examples: RawExamples,
}

/// Byte offsets of a service's items in its file, to point diagnostics at lines.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spans {
    pub(crate) id: usize,
    pub(crate) domains: Vec<usize>,
    pub(crate) hosts: Vec<usize>,
    pub(crate) sni: Vec<usize>,
    pub(crate) cidrs: Vec<usize>,
    pub(crate) ports: Vec<usize>,
    pub(crate) process_hints: Vec<usize>,
    pub(crate) matches: Vec<usize>,
    pub(crate) no_match: Vec<usize>,
}

impl Spans {
    pub(crate) fn of(&self, field: Field, item: u32) -> Option<usize> {
        let v = match field {
            Field::Domains => &self.domains,
            Field::Hosts => &self.hosts,
            Field::Sni => &self.sni,
            Field::Cidrs => &self.cidrs,
            Field::ProcessHints => &self.process_hints,
            Field::Ports => &self.ports,
        };
        v.get(item as usize).copied().or(Some(self.id))
    }
}

fn split<T>(v: Vec<Spanned<T>>) -> (Vec<T>, Vec<usize>) {
    v.into_iter()
        .map(|s| (s.span().start, s.into_inner()))
        .map(|(o, t)| (t, o))
        .unzip()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

fn valid_env_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_jurisdiction(j: &str) -> bool {
    j == "LOCAL" || (j.len() == 2 && j.bytes().all(|b| b.is_ascii_uppercase()))
}

/// Parse one service file. Diagnostics go to `report`; `None` if it cannot be used.
pub(crate) fn parse_service(
    path: &Path,
    text: &str,
    report: &mut Report,
) -> Option<(Service, Spans, SourceMap)> {
    let sm = SourceMap::new(path, text);
    let raw: RawService = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            report.push(sm.toml_error(&e));
            return None;
        }
    };
    let (provenance, prov_issues) = parse_provenance(raw.provenance);
    for (off, msg) in prov_issues.warnings {
        report.push(sm.warning(Some(off), msg));
    }
    let mut ok = true;
    for (off, msg) in &prov_issues.errors {
        report.push(sm.error(Some(*off), msg.clone()));
        ok = false;
    }
    let mut err = |off: usize, msg: String| {
        report.push(sm.error(Some(off), msg));
        ok = false;
    };
    let id_off = raw.id.span().start;
    let id = raw.id.into_inner();
    if !valid_id(&id) {
        err(
            id_off,
            format!("id `{id}` must be lower-case letters, digits and '-' (at most 64)"),
        );
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    // Reported, but the service is kept so cross-file checks (duplicate ids) still run.
    let stem_mismatch = (stem != id).then(|| {
        sm.error(
            Some(id_off),
            format!("id `{id}` does not match the file name `{stem}.toml`"),
        )
    });
    let name_off = raw.name.span().start;
    let name = raw.name.into_inner();
    if name.trim().is_empty() || raw.vendor.trim().is_empty() {
        err(name_off, "`name` and `vendor` must not be empty".into());
    }
    let tenant_hints = parse_tenant_hints(raw.tenant_hints, &mut err);
    let (domains, d_sp) = split(raw.domains);
    let (hosts, h_sp) = split(raw.hosts);
    let (sni, s_sp) = split(raw.sni);
    let (cidrs, c_sp) = split(raw.cidrs);
    let (ports, p_sp) = split(raw.ports);
    let (process_hints, ph_sp) = split(raw.process_hints);
    let api_key_env = parse_key_env(raw.api_key_env, &mut err);
    let (matches, m_sp) = split(raw.examples.matches);
    let (no_match, nm_sp) = split(raw.examples.no_match);
    let risk = parse_risk(raw.risk, id_off, &mut err);
    let svc = Service {
        id,
        name,
        vendor: raw.vendor,
        category: raw.category,
        description: raw.description,
        domains,
        hosts,
        sni,
        cidrs,
        ports,
        port_alone: raw.port_alone,
        process_hints,
        api_key_env,
        risk,
        tenant_hints,
        provenance,
        examples: Examples { matches, no_match },
    };
    check_matchable(&svc, id_off, &mut err);
    if let Some(msg) = own_homepage_error(&svc) {
        err(prov_issues.sources_offset, msg);
    }
    let spans = Spans {
        id: id_off,
        domains: d_sp,
        hosts: h_sp,
        sni: s_sp,
        cidrs: c_sp,
        ports: p_sp,
        process_hints: ph_sp,
        matches: m_sp,
        no_match: nm_sp,
    };
    if let Some(d) = stem_mismatch {
        report.push(d);
    }
    ok.then_some((svc, spans, sm))
}

/// The `[risk]` section: jurisdiction, tiers (each plan once, and only with `risk.plan`),
/// evidence URLs; scores filled in. Problems go to `err` at their offset.
fn parse_risk(raw: RawRisk, id_off: usize, err: &mut impl FnMut(usize, String)) -> Risk {
    let j_off = raw.jurisdiction.span().start;
    let jurisdiction = raw.jurisdiction.into_inner();
    if !valid_jurisdiction(&jurisdiction) {
        err(
            j_off,
            format!(
                "jurisdiction `{jurisdiction}`: use an ISO 3166-1 alpha-2 code, `EU` or `LOCAL`"
            ),
        );
    }
    let mut tiers: Vec<TierRisk> = Vec::with_capacity(raw.tiers.len());
    for t in raw.tiers {
        let off = t.plan.span().start;
        let plan = t.plan.into_inner();
        if Some(plan) == raw.plan || tiers.iter().any(|x| x.plan == plan) {
            err(
                off,
                format!("risk tier `{plan}` is given twice (a tier must differ from `risk.plan`)"),
            );
        }
        tiers.push(TierRisk {
            plan,
            trains_on_user_data: t.trains_on_user_data,
            retention: t.retention,
            enterprise_controls: t.enterprise_controls,
            score: 0,
        });
    }
    if !tiers.is_empty() && raw.plan.is_none() {
        err(
            id_off,
            "`risk.tiers` needs `risk.plan`: which plan the top-level factors describe".into(),
        );
    }
    let mut evidence = Vec::with_capacity(raw.evidence.len());
    for e in raw.evidence {
        let off = e.span().start;
        let e = e.into_inner();
        if !e.starts_with("https://") || e.contains(char::is_whitespace) {
            err(
                off,
                format!("risk evidence `{e}` must be an https:// URL of the policy page read"),
            );
        }
        evidence.push(e);
    }
    let mut risk = Risk {
        plan: raw.plan,
        trains_on_user_data: raw.trains_on_user_data,
        retention: raw.retention,
        jurisdiction,
        enterprise_controls: raw.enterprise_controls,
        certifications: raw.certifications,
        tiers,
        evidence,
        score: 0,
    };
    risk.fill_scores();
    risk
}

/// `[[tenant_hints]]`: each suffix must be a valid name.
fn parse_tenant_hints(
    raw: Vec<RawTenantHint>,
    err: &mut impl FnMut(usize, String),
) -> Vec<TenantHint> {
    raw.into_iter()
        .map(|h| {
            let suffix = h.suffix.map(|s| {
                let off = s.span().start;
                let s = s.into_inner();
                if let Err(e) = pattern::check_literal(&s) {
                    err(off, format!("invalid tenant suffix `{s}`: {e}"));
                }
                s
            });
            TenantHint {
                suffix,
                note: h.note,
            }
        })
        .collect()
}

/// `api_key_env`: environment variable names only.
fn parse_key_env(raw: Vec<Spanned<String>>, err: &mut impl FnMut(usize, String)) -> Vec<String> {
    raw.into_iter()
        .map(|v| {
            let off = v.span().start;
            let v = v.into_inner();
            if !valid_env_name(&v) {
                err(
                    off,
                    format!("api_key_env `{v}`: use an environment variable name (A-Z, 0-9, '_')"),
                );
            }
            v
        })
        .collect()
}

/// A service must have something to match, `port_alone` needs ports, a self-hosted runtime
/// needs ports or process hints, and there must be at least one match example.
fn check_matchable(svc: &Service, id_off: usize, err: &mut impl FnMut(usize, String)) {
    if svc.domains.is_empty()
        && svc.hosts.is_empty()
        && svc.sni.is_empty()
        && svc.cidrs.is_empty()
        && svc.process_hints.is_empty()
        && svc.ports.is_empty()
    {
        err(
            id_off,
            "service has nothing to match: give domains, hosts, sni, cidrs, ports or process_hints"
                .into(),
        );
    }
    if svc.port_alone && svc.ports.is_empty() {
        err(id_off, "`port_alone = true` but no `ports`".into());
    }
    if svc.category == Category::SelfHostedRuntime
        && svc.process_hints.is_empty()
        && svc.ports.is_empty()
    {
        err(
            id_off,
            "a self-hosted runtime needs `ports` or `process_hints`".into(),
        );
    }
    if svc.examples.matches.is_empty() {
        err(
            id_off,
            "examples.match must list at least one example".into(),
        );
    }
}
