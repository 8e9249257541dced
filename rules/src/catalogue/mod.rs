//! The catalogue: one TOML file per AI service in `rules/catalogue/`, plus
//! `_shared-infra.toml` (hosts that must never be attributed to an AI service).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::RulesError;
use crate::matcher::{BuildProblem, Field, Matcher};
use crate::pattern::{self, is_at_or_below};

mod benign;
mod resolvers;
mod risk;
mod schema;
use crate::report::{Report, SourceMap};
pub use benign::{BENIGN_FILE, BenignHost};
pub use resolvers::{LOCAL_RESOLVERS_FILE, LocalResolver, ResolverEvidence, ResolverMatch};
pub use risk::*;
pub use schema::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedFile {
    shared: Vec<Spanned<SharedInfra>>,
}

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
struct RawProvenance {
    sources: Spanned<Vec<String>>,
    checked: Spanned<toml::value::Datetime>,
    #[serde(default)]
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
struct Spans {
    id: usize,
    domains: Vec<usize>,
    hosts: Vec<usize>,
    sni: Vec<usize>,
    cidrs: Vec<usize>,
    ports: Vec<usize>,
    process_hints: Vec<usize>,
    matches: Vec<usize>,
    no_match: Vec<usize>,
}

impl Spans {
    fn of(&self, field: Field, item: u32) -> Option<usize> {
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

/// File name of the shared-infrastructure list inside a catalogue directory.
pub const SHARED_INFRA_FILE: &str = "_shared-infra.toml";

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
fn parse_service(
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
    let mut ok = true;
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
    let j_off = raw.risk.jurisdiction.span().start;
    let jurisdiction = raw.risk.jurisdiction.into_inner();
    if !valid_jurisdiction(&jurisdiction) {
        err(
            j_off,
            format!(
                "jurisdiction `{jurisdiction}`: use an ISO 3166-1 alpha-2 code, `EU` or `LOCAL`"
            ),
        );
    }
    let src_off = raw.provenance.sources.span().start;
    let sources = raw.provenance.sources.into_inner();
    if sources.is_empty() || sources.iter().any(|s| s.trim().is_empty()) {
        err(
            src_off,
            "provenance.sources must list at least one non-empty source".into(),
        );
    }
    let chk_off = raw.provenance.checked.span().start;
    let checked_dt = raw.provenance.checked.into_inner();
    let checked = match (checked_dt.date, checked_dt.time) {
        (Some(d), None) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        _ => {
            err(
                chk_off,
                "provenance.checked must be a date (YYYY-MM-DD)".into(),
            );
            String::new()
        }
    };
    let mut tenant_hints = Vec::new();
    for h in raw.tenant_hints {
        let suffix = match h.suffix {
            Some(s) => {
                let off = s.span().start;
                let s = s.into_inner();
                if let Err(e) = pattern::check_literal(&s) {
                    err(off, format!("invalid tenant suffix `{s}`: {e}"));
                }
                Some(s)
            }
            None => None,
        };
        tenant_hints.push(TenantHint {
            suffix,
            note: h.note,
        });
    }
    let (domains, d_sp) = split(raw.domains);
    let (hosts, h_sp) = split(raw.hosts);
    let (sni, s_sp) = split(raw.sni);
    let (cidrs, c_sp) = split(raw.cidrs);
    let (ports, p_sp) = split(raw.ports);
    let (process_hints, ph_sp) = split(raw.process_hints);
    let mut api_key_env = Vec::with_capacity(raw.api_key_env.len());
    for v in raw.api_key_env {
        let off = v.span().start;
        let v = v.into_inner();
        if !valid_env_name(&v) {
            err(
                off,
                format!("api_key_env `{v}`: use an environment variable name (A-Z, 0-9, '_')"),
            );
        }
        api_key_env.push(v);
    }
    let (matches, m_sp) = split(raw.examples.matches);
    let (no_match, nm_sp) = split(raw.examples.no_match);
    if domains.is_empty()
        && hosts.is_empty()
        && sni.is_empty()
        && cidrs.is_empty()
        && process_hints.is_empty()
        && ports.is_empty()
    {
        err(
            id_off,
            "service has nothing to match: give domains, hosts, sni, cidrs, ports or process_hints"
                .into(),
        );
    }
    if raw.port_alone && ports.is_empty() {
        err(id_off, "`port_alone = true` but no `ports`".into());
    }
    if raw.category == Category::SelfHostedRuntime && process_hints.is_empty() && ports.is_empty() {
        err(
            id_off,
            "a self-hosted runtime needs `ports` or `process_hints`".into(),
        );
    }
    if matches.is_empty() {
        err(
            id_off,
            "examples.match must list at least one example".into(),
        );
    }
    let mut tiers: Vec<TierRisk> = Vec::with_capacity(raw.risk.tiers.len());
    for t in raw.risk.tiers {
        let off = t.plan.span().start;
        let plan = t.plan.into_inner();
        if Some(plan) == raw.risk.plan || tiers.iter().any(|x| x.plan == plan) {
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
    if !tiers.is_empty() && raw.risk.plan.is_none() {
        err(
            id_off,
            "`risk.tiers` needs `risk.plan`: which plan the top-level factors describe".into(),
        );
    }
    let mut evidence = Vec::with_capacity(raw.risk.evidence.len());
    for e in raw.risk.evidence {
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
        plan: raw.risk.plan,
        trains_on_user_data: raw.risk.trains_on_user_data,
        retention: raw.risk.retention,
        jurisdiction,
        enterprise_controls: raw.risk.enterprise_controls,
        certifications: raw.risk.certifications,
        tiers,
        evidence,
        score: 0,
    };
    risk.fill_scores();
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
        provenance: Provenance {
            sources,
            checked,
            note: raw.provenance.note,
        },
        examples: Examples { matches, no_match },
    };
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

fn check_shared(
    svc: &Service,
    spans: &Spans,
    sm: &SourceMap,
    shared: &[SharedInfra],
    report: &mut Report,
) {
    let mut check = |field: Field, item: usize, p: &str, is_suffix: bool| {
        for s in shared {
            let off = spans.of(field, item as u32);
            if p == s.suffix {
                report.push(sm.error(
                    off,
                    format!("`{p}` is shared infrastructure ({:?}): {}", s.kind, s.note),
                ));
            } else if is_suffix && is_at_or_below(&s.suffix, p) {
                report.push(sm.error(
                    off,
                    format!(
                        "`{p}` would claim shared infrastructure `{}` below it",
                        s.suffix
                    ),
                ));
            } else if !s.children_allowed && is_at_or_below(p, &s.suffix) {
                report.push(sm.error(
                    off,
                    format!("`{p}` lies under shared infrastructure `{}` ({:?}), where no name may be attributed", s.suffix, s.kind),
                ));
            }
        }
    };
    for (i, d) in svc.domains.iter().enumerate() {
        check(Field::Domains, i, d, true);
    }
    for (i, h) in svc.hosts.iter().enumerate() {
        check(Field::Hosts, i, h, false);
    }
    for (i, g) in svc.sni.iter().enumerate() {
        if let Ok(glob) = pattern::parse_glob(g) {
            // Directly below a shared suffix, a glob of bare `*` labels would claim every
            // customer's name there (`*.s3.amazonaws.com`): it needs a literal or partial label.
            if glob
                .head
                .iter()
                .all(|l| matches!(l, pattern::GlobLabel::Any))
                && let Some(s) = shared.iter().find(|s| s.suffix == glob.literal_suffix)
            {
                report.push(sm.error(
                    spans.of(Field::Sni, i as u32),
                    format!(
                        "`{g}` would claim every name below shared infrastructure `{}` ({:?}): give a literal or partial label",
                        s.suffix, s.kind
                    ),
                ));
            }
            for s in shared.iter().filter(|s| !s.children_allowed) {
                if is_at_or_below(&glob.literal_suffix, &s.suffix) {
                    report.push(sm.error(
                        spans.of(Field::Sni, i as u32),
                        format!(
                            "`{g}` lies under shared infrastructure `{}` ({:?})",
                            s.suffix, s.kind
                        ),
                    ));
                }
            }
        }
    }
}

/// Which service (index) an example item is attributed to by the catalogue alone, or an
/// error if the item is not understood.
pub(crate) fn example_hit(m: &Matcher, item: &str) -> Result<Option<u32>, String> {
    let hit = if let Some(ip) = item.strip_prefix("ip:") {
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("`{ip}` is not an IP address"))?;
        m.match_ip(ip)
    } else if let Some(port) = item.strip_prefix("port:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port"))?;
        m.match_port(port)
    } else if let Some(p) = item.strip_prefix("process:") {
        m.match_process(p)
    } else {
        m.match_name(item)
    };
    Ok(hit.map(|h| h.service))
}

impl Catalogue {
    /// Load and fully validate a catalogue directory; any error makes it fail with the whole
    /// report.
    pub fn load_dir(dir: &Path) -> Result<Self, RulesError> {
        let (cat, report) = load_dir_report(dir)?;
        if report.is_ok() {
            Ok(cat)
        } else {
            Err(RulesError::Invalid { report })
        }
    }

    /// Look a service up by id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.services.get(i))
    }

    /// Re-check a catalogue that did not come from files (e.g. from a bundle): index
    /// conflicts, shared infrastructure, examples. Returns problems as text.
    pub fn check(&self) -> Result<Matcher, Vec<String>> {
        let mut errs = Vec::new();
        if self
            .services
            .windows(2)
            .any(|w| w.first().map(|a| &a.id) >= w.get(1).map(|b| &b.id))
        {
            errs.push("services are not sorted by id or an id is duplicated".to_string());
        }
        let m = match Matcher::build(&self.services) {
            Ok(m) => m,
            Err(problems) => {
                errs.extend(problems.into_iter().map(|p| {
                    let id = self
                        .services
                        .get(p.service as usize)
                        .map_or("?", |s| s.id.as_str());
                    format!("service `{id}`: {}: {}", p.field.key(), p.message)
                }));
                return Err(errs);
            }
        };
        for s in &self.services {
            for d in s.domains.iter().chain(&s.hosts) {
                if let Some(sh) = self.shared_infra.iter().find(|sh| {
                    is_at_or_below(&sh.suffix, d)
                        || (!sh.children_allowed && is_at_or_below(d, &sh.suffix))
                }) {
                    errs.push(format!(
                        "service `{}`: `{d}` overlaps shared infrastructure `{}`",
                        s.id, sh.suffix
                    ));
                }
            }
        }
        errs.extend(resolvers::check_all(&self.local_resolvers));
        if errs.is_empty() { Ok(m) } else { Err(errs) }
    }
}

/// Validate a catalogue directory and report every problem (file:line:col). `Err` only when
/// the directory cannot be read.
pub fn validate_dir(dir: &Path) -> Result<Report, RulesError> {
    load_dir_report(dir).map(|(_, r)| r)
}

/// Load what can be loaded from a directory, with the full report.
pub fn load_dir_report(dir: &Path) -> Result<(Catalogue, Report), RulesError> {
    let mut report = Report::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| RulesError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();

    let mut shared = Vec::new();
    let shared_path = dir.join(SHARED_INFRA_FILE);
    match std::fs::read_to_string(&shared_path) {
        Ok(text) => {
            let sm = SourceMap::new(&shared_path, &text);
            match toml::from_str::<SharedFile>(&text) {
                Ok(f) => {
                    for s in f.shared {
                        let off = s.span().start;
                        let s = s.into_inner();
                        if let Err(e) = pattern::check_literal(&s.suffix) {
                            report.push(sm.error(
                                Some(off),
                                format!("invalid shared suffix `{}`: {e}", s.suffix),
                            ));
                        } else {
                            shared.push(s);
                        }
                    }
                }
                Err(e) => report.push(sm.toml_error(&e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.push(SourceMap::new(&shared_path, "").warning(
                None,
                "no shared-infrastructure list: shared-host checks skipped".into(),
            ))
        }
        Err(e) => return Err(RulesError::io(shared_path, e)),
    }

    let benign = benign::load(dir, &mut report)?;
    let local_resolvers = resolvers::load(dir, &mut report)?;

    let mut parsed: Vec<(Service, Spans, SourceMap)> = Vec::new();
    for path in files.iter().filter(|p| {
        p.file_name().is_some_and(|n| {
            n != SHARED_INFRA_FILE && n != BENIGN_FILE && n != LOCAL_RESOLVERS_FILE
        })
    }) {
        report.files_checked += 1;
        let text = match std::fs::read(path) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(e) => {
                    report.push(SourceMap::new(path, "").error(None, format!("not UTF-8: {e}")));
                    continue;
                }
            },
            Err(e) => return Err(RulesError::io(path, e)),
        };
        if let Some(p) = parse_service(path, &text, &mut report) {
            parsed.push(p);
        }
    }
    parsed.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    // Duplicate ids (possible only with mismatched file names, but never trust that).
    let mut keep: Vec<(Service, Spans, SourceMap)> = Vec::with_capacity(parsed.len());
    for p in parsed {
        if let Some(prev) = keep.last().filter(|k| k.0.id == p.0.id) {
            let (line, _) = prev.2.line_col(prev.1.id);
            report.push(p.2.error(
                Some(p.1.id),
                format!(
                    "duplicate id `{}` (also in {}:{line})",
                    p.0.id,
                    prev.2.path().display()
                ),
            ));
            continue;
        }
        keep.push(p);
    }
    for (svc, spans, sm) in &keep {
        check_shared(svc, spans, sm, &shared, &mut report);
    }
    let services: Vec<Service> = keep.iter().map(|k| k.0.clone()).collect();
    match Matcher::build(&services) {
        Err(problems) => {
            for BuildProblem {
                service,
                field,
                item,
                message,
            } in problems
            {
                if let Some((_, spans, sm)) = keep.get(service as usize) {
                    report.push(sm.error(spans.of(field, item), message));
                }
            }
        }
        Ok(m) => {
            if let Some(b) = &benign {
                benign::check(&m, &keep, b, &mut report);
            }
            for (si, (svc, spans, sm)) in keep.iter().enumerate() {
                for (i, ex) in svc.examples.matches.iter().enumerate() {
                    let off = spans.matches.get(i).copied();
                    match example_hit(&m, ex) {
                        Err(e) => report.push(sm.error(off, format!("example `{ex}`: {e}"))),
                        Ok(Some(h)) if h as usize == si => {}
                        Ok(other) => {
                            let got = other
                                .and_then(|h| services.get(h as usize))
                                .map_or("nothing", |s| s.id.as_str());
                            report.push(sm.error(
                                off,
                                format!(
                                    "example `{ex}` should match `{}` but matches {got}",
                                    svc.id
                                ),
                            ));
                        }
                    }
                }
                for (i, ex) in svc.examples.no_match.iter().enumerate() {
                    let off = spans.no_match.get(i).copied();
                    match example_hit(&m, ex) {
                        Err(e) => report.push(sm.error(off, format!("example `{ex}`: {e}"))),
                        Ok(Some(h)) if h as usize == si => report.push(
                            sm.error(off, format!("no_match example `{ex}` matches `{}`", svc.id)),
                        ),
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    report.sort();
    Ok((
        Catalogue {
            services,
            shared_infra: shared,
            local_resolvers,
        },
        report,
    ))
}
