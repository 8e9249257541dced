//! The catalogue: one TOML file per AI service in `rules/catalogue/`, plus
//! `_shared-infra.toml` (hosts that must never be attributed to an AI service).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::RulesError;
use crate::matcher::{BuildProblem, Field, Matcher};
use crate::pattern::{self, is_at_or_below};

mod agents;
mod benign;
mod listfile;
mod parse;
mod provenance;
mod resolvers;
mod risk;
mod schema;
use crate::report::{Report, SourceMap};
pub use agents::{
    AGENTS_FILE, AgentHint, InventoryHints, LauncherHint, Pinning, RuntimeHint, TenantField,
    check_agent,
};
pub use benign::{BENIGN_FILE, BenignHost};
use parse::{Spans, parse_service};
pub use provenance::{CitedSource, DOCUMENTED_CATEGORIES, Provenance, Source, SourceRef};
pub use resolvers::{
    LOCAL_RESOLVERS_FILE, LocalResolver, ResolverEvidence, ResolverMatch, builtin_local_resolvers,
};
pub use risk::*;
pub use schema::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedFile {
    shared: Vec<Spanned<SharedInfra>>,
}

/// File name of the shared-infrastructure list inside a catalogue directory.
pub const SHARED_INFRA_FILE: &str = "_shared-infra.toml";

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
        errs.extend(agents::check_all(&self.inventory_hints, &self.services));
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
    if let Some((f, sm)) = listfile::read::<SharedFile>(
        dir,
        SHARED_INFRA_FILE,
        "no shared-infrastructure list: shared-host checks skipped",
        &mut report,
    )? {
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

    let benign = benign::load(dir, &mut report)?;
    let local_resolvers = resolvers::load(dir, &mut report)?;

    let mut parsed: Vec<(Service, Spans, SourceMap)> = Vec::new();
    for path in files.iter().filter(|p| {
        p.file_name().is_some_and(|n| {
            n != SHARED_INFRA_FILE
                && n != BENIGN_FILE
                && n != LOCAL_RESOLVERS_FILE
                && n != AGENTS_FILE
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
    let inventory_hints = agents::load(dir, &mut report, &services)?;
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
            inventory_hints,
        },
        report,
    ))
}
