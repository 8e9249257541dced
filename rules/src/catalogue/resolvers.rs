//! `_local-resolvers.toml`: local DNS resolvers and caches (systemd-resolved, dnsmasq,
//! unbound, nscd, …) recognised from data. A lookup such a process sends upstream is made on
//! behalf of a client, so the agent must never report the resolver itself as the user of an
//! AI service; [`Catalogue::is_local_resolver`] tells it which processes those are.
//!
//! Recognition is by executable path, never by `comm` alone: any process can set its own
//! `comm` (prctl `PR_SET_NAME`) or be named `dnsmasq`, so a name alone would let an employee
//! hide their own lookups. The listed paths are system paths only root can write.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Catalogue;
use crate::error::RulesError;
use crate::matcher::COMM_LEN;
use crate::report::{Report, SourceMap};

/// File name of the local-resolver list inside a catalogue directory.
pub const LOCAL_RESOLVERS_FILE: &str = "_local-resolvers.toml";

/// One local resolver or DNS cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalResolver {
    /// Short name (`systemd-resolved`).
    pub name: String,
    /// Absolute executable paths as the kernel reports them (`/proc/<pid>/exe`), including the
    /// merged-/usr and distribution variants.
    pub exe: Vec<String>,
    /// Kernel `comm` values the daemon runs under (at most 15 bytes).
    pub comm: Vec<String>,
    /// Where the paths come from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolverFile {
    #[serde(default)]
    resolver: Vec<Spanned<LocalResolver>>,
}

fn problem(r: &LocalResolver) -> Option<String> {
    if r.name.trim().is_empty() {
        return Some("`name` must not be empty".into());
    }
    if r.exe.is_empty() {
        return Some(format!(
            "resolver `{}`: list at least one `exe` path",
            r.name
        ));
    }
    if let Some(e) = r
        .exe
        .iter()
        .find(|e| !e.starts_with('/') || e.ends_with('/') || e.contains("/../") || e.contains(' '))
    {
        return Some(format!(
            "resolver `{}`: exe `{e}` must be an absolute path to a file, without spaces or `..`",
            r.name
        ));
    }
    if let Some(c) = r.comm.iter().find(|c| c.is_empty() || c.len() > COMM_LEN) {
        return Some(format!(
            "resolver `{}`: comm `{c}` must be 1 to {COMM_LEN} bytes (the kernel truncates it)",
            r.name
        ));
    }
    if r.source.trim().is_empty() {
        return Some(format!("resolver `{}`: cite a `source`", r.name));
    }
    None
}

/// Check resolvers that did not come from a file (e.g. from a bundle).
pub(crate) fn check_all(list: &[LocalResolver]) -> Vec<String> {
    list.iter().filter_map(problem).collect()
}

/// Read `_local-resolvers.toml` from `dir`; a missing file is a warning, bad entries are
/// errors at their line.
pub(crate) fn load(dir: &Path, report: &mut Report) -> Result<Vec<LocalResolver>, RulesError> {
    let Some((file, sm)) = super::listfile::read::<ResolverFile>(
        dir,
        LOCAL_RESOLVERS_FILE,
        "no local-resolver list: resolvers' upstream lookups will look like their own",
        report,
    )?
    else {
        return Ok(Vec::new());
    };
    Ok(checked(file, &sm, report))
}

/// The shipped `_local-resolvers.toml`, compiled in: what an agent without a catalogue
/// (`watch`, or `run` before its first bundle) recognises. Same checks as a loaded file.
pub fn builtin_local_resolvers() -> Result<Vec<LocalResolver>, RulesError> {
    const TEXT: &str = include_str!("../../catalogue/_local-resolvers.toml");
    let path = Path::new("(built-in) _local-resolvers.toml");
    let sm = SourceMap::new(path, TEXT);
    let mut report = Report::default();
    let file: ResolverFile = match toml::from_str(TEXT) {
        Ok(f) => f,
        Err(e) => {
            report.push(sm.toml_error(&e));
            return Err(RulesError::Invalid { report });
        }
    };
    let out = checked(file, &sm, &mut report);
    if report.error_count() > 0 {
        return Err(RulesError::Invalid { report });
    }
    Ok(out)
}

fn checked(file: ResolverFile, sm: &SourceMap, report: &mut Report) -> Vec<LocalResolver> {
    let mut out: Vec<LocalResolver> = Vec::with_capacity(file.resolver.len());
    for r in file.resolver {
        let off = r.span().start;
        let r = r.into_inner();
        if let Some(msg) = problem(&r) {
            report.push(sm.error(Some(off), msg));
        } else if let Some(e) = r.exe.iter().find(|e| out.iter().any(|o| o.exe.contains(e))) {
            report.push(sm.error(Some(off), format!("exe `{e}` is listed twice")));
        } else {
            out.push(r);
        }
    }
    out
}

/// `exe` without the ` (deleted)` the kernel appends once the file was replaced (a package
/// upgrade while the daemon runs).
fn live_path(exe: &str) -> &str {
    exe.strip_suffix(" (deleted)").unwrap_or(exe)
}

/// How a process was recognised as a local resolver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolverEvidence {
    /// Its executable path is a listed resolver's (a root-owned system path): trusted.
    Exe,
    /// Its executable path was unknown and only its `comm` matched: any process can choose
    /// its `comm`, so this must not be enough to drop or re-attribute a lookup.
    CommOnly,
}

/// A process recognised as a local resolver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolverMatch<'a> {
    /// Which resolver.
    pub resolver: &'a LocalResolver,
    /// How it was recognised.
    pub evidence: ResolverEvidence,
}

impl Catalogue {
    /// Is this process a known local resolver? `exe` is `/proc/<pid>/exe` (a trailing
    /// ` (deleted)` is ignored), `comm` the kernel task name; pass `""` for what is unknown.
    /// A known `exe` decides alone — a process whose `comm` says `dnsmasq` but whose
    /// executable is elsewhere is not a resolver. Only when `exe` is unknown does `comm`
    /// give a [`ResolverEvidence::CommOnly`] match. Allocation-free.
    pub fn is_local_resolver(&self, exe: &str, comm: &str) -> Option<ResolverMatch<'_>> {
        let exe = live_path(exe);
        if !exe.is_empty() {
            return self
                .local_resolvers
                .iter()
                .find(|r| r.exe.iter().any(|e| e == exe))
                .map(|resolver| ResolverMatch {
                    resolver,
                    evidence: ResolverEvidence::Exe,
                });
        }
        if comm.is_empty() {
            return None;
        }
        self.local_resolvers
            .iter()
            .find(|r| r.comm.iter().any(|c| c == comm))
            .map(|resolver| ResolverMatch {
                resolver,
                evidence: ResolverEvidence::CommOnly,
            })
    }
}
