//! `_benign.toml`: host names known to serve something other than an AI service, which no
//! service may claim (exactly, through a domain suffix above them, or through a glob).
//!
//! Shared infrastructure (`_shared-infra.toml`) is about hosts many parties share; this list
//! is about hosts that one vendor runs for a non-AI product next to its AI products
//! (a marketplace storefront beside the vendor's AI tool, a help-desk chat widget, a general
//! Google product backend) — the names a careless suffix would turn into false findings.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Spans;
use crate::error::RulesError;
use crate::matcher::Matcher;
use crate::pattern;
use crate::report::{Report, SourceMap};

/// File name of the known-benign list inside a catalogue directory.
pub const BENIGN_FILE: &str = "_benign.toml";

/// A host name known not to be an AI service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenignHost {
    /// The exact host name (normalised: lower case, no trailing dot).
    pub name: String,
    /// What it serves instead, and why it is easy to confuse.
    pub what: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BenignFile {
    benign: Vec<Spanned<BenignHost>>,
}

/// The list as loaded, with where each entry is written.
pub(crate) struct Loaded {
    hosts: Vec<(BenignHost, usize)>,
    sm: SourceMap,
}

/// Read `_benign.toml` from `dir`. A missing file is a warning (the check is skipped); every
/// bad entry is an error at its line.
pub(crate) fn load(dir: &Path, report: &mut Report) -> Result<Option<Loaded>, RulesError> {
    let Some((file, sm)) = super::listfile::read::<BenignFile>(
        dir,
        BENIGN_FILE,
        "no known-benign list: benign-host checks skipped",
        report,
    )?
    else {
        return Ok(None);
    };
    let mut hosts: Vec<(BenignHost, usize)> = Vec::with_capacity(file.benign.len());
    for b in file.benign {
        let off = b.span().start;
        let b = b.into_inner();
        if let Err(e) = pattern::check_literal(&b.name) {
            report.push(sm.error(Some(off), format!("invalid benign host `{}`: {e}", b.name)));
        } else if b.what.trim().is_empty() {
            report.push(sm.error(
                Some(off),
                format!("benign host `{}`: say what it serves in `what`", b.name),
            ));
        } else if let Some((_, prev)) = hosts.iter().find(|(h, _)| h.name == b.name) {
            let (line, _) = sm.line_col(*prev);
            report.push(sm.error(
                Some(off),
                format!(
                    "benign host `{}` is listed twice (also line {line})",
                    b.name
                ),
            ));
        } else {
            hosts.push((b, off));
        }
    }
    Ok(Some(Loaded { hosts, sm }))
}

/// Report every service pattern that matches a known-benign host, at the pattern's line.
pub(crate) fn check(
    m: &Matcher,
    services: &[(super::Service, Spans, SourceMap)],
    benign: &Loaded,
    report: &mut Report,
) {
    for (host, off) in &benign.hosts {
        let Some(hit) = m.match_name(&host.name) else {
            continue;
        };
        let Some(p) = m.pattern(hit.pattern) else {
            continue;
        };
        let Some((svc, spans, sm)) = services.get(hit.service as usize) else {
            continue;
        };
        let (line, _) = benign.sm.line_col(*off);
        report.push(sm.error(
            spans.of(p.field, p.item),
            format!(
                "`{}` (service `{}`) claims known non-AI host `{}`: {} ({}:{line})",
                p.text,
                svc.id,
                host.name,
                host.what,
                benign.sm.path().display()
            ),
        ));
    }
}
