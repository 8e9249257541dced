//! A proposed catalogue entry checked the way the catalogue itself is: written as the
//! catalogue file it would be, then validated by the rules crate's own loader
//! (`load_dir_report`) in a directory that holds the collector's catalogue, the approved
//! overlay and the new file — so `_shared-infra`, `_benign`, duplicate ids and names already
//! claimed by another service are refused exactly as `shadowai rules validate` refuses
//! them. Every problem names the request field (`entry.domains[1]: …`).

use std::path::Path;

use shadowai_api::discovery::{CatalogueEntry, MAX_ENTRY_NAMES};
use shadowai_rules::catalogue::load_dir_report;
use shadowai_rules::pattern::is_at_or_below;
use shadowai_rules::{Catalogue, Service};

/// One problem with a proposed entry, at the request field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `entry.domains[0]`, `entry.source`, … (`catalogue` when it is not the entry's).
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why an entry cannot be written or loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("the entry is invalid: {}", list(.0))]
    Invalid(Vec<FieldError>),
    #[error("preparing the validation directory {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the catalogue does not load with the overlay: {source}")]
    Rules {
        #[source]
        source: shadowai_rules::RulesError,
    },
}

fn list(errs: &[FieldError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// TOML basic string.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The catalogue file for an entry, and which request field each line (and each array item,
/// by column) holds.
pub struct EntryFile {
    pub text: String,
    /// (1-based line, field, 1-based start column of each item for arrays).
    lines: Vec<(usize, &'static str, Vec<usize>)>,
    /// Hosts of the entry (the `match` examples list hosts, then domains).
    hosts: usize,
}

impl EntryFile {
    /// The request field a diagnostic at `line`:`col` concerns.
    pub fn field_at(&self, line: usize, col: usize) -> String {
        match self.lines.iter().find(|(l, _, _)| *l == line) {
            Some((_, "examples.match", items)) => {
                let i = items.iter().rposition(|c| *c <= col).unwrap_or(0);
                if i < self.hosts {
                    format!("entry.hosts[{i}]")
                } else {
                    format!("entry.domains[{}]", i - self.hosts)
                }
            }
            Some((_, f, items)) if !items.is_empty() => {
                let i = items.iter().rposition(|c| *c <= col).unwrap_or(0);
                format!("entry.{f}[{i}]")
            }
            Some((_, f, _)) => format!("entry.{f}"),
            None => "entry".to_owned(),
        }
    }
}

/// Writes `e` as a catalogue file; `note` goes to `provenance.note`.
pub fn entry_file(e: &CatalogueEntry, note: &str) -> EntryFile {
    let mut text = String::new();
    let mut lines = Vec::new();
    let mut line = |text: &mut String, field: &'static str, key: &str, vals: Option<&[String]>| {
        let n = text.lines().count() + 1;
        match vals {
            None => {
                text.push_str(key);
                lines.push((n, field, Vec::new()));
            }
            Some(v) => {
                let mut cols = Vec::new();
                text.push_str(key);
                text.push_str(" = [");
                let start = text.rfind('\n').map_or(0, |i| i + 1);
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    cols.push(text.len() - start + 1);
                    text.push_str(&q(s));
                }
                text.push(']');
                lines.push((n, field, cols));
            }
        }
        text.push('\n');
    };
    line(&mut text, "id", &format!("id = {}", q(&e.id)), None);
    line(&mut text, "name", &format!("name = {}", q(&e.name)), None);
    line(
        &mut text,
        "vendor",
        &format!("vendor = {}", q(&e.vendor)),
        None,
    );
    line(
        &mut text,
        "category",
        &format!("category = {}", q(e.category.as_str())),
        None,
    );
    line(
        &mut text,
        "description",
        &format!("description = {}", q(&e.description)),
        None,
    );
    line(&mut text, "domains", "domains", Some(e.domains.as_slice()));
    line(&mut text, "hosts", "hosts", Some(e.hosts.as_slice()));
    line(&mut text, "risk", "\n[risk]", None);
    let r = &e.risk;
    line(
        &mut text,
        "risk.trains_on_user_data",
        &format!(
            "trains_on_user_data = {}",
            q(&enum_str(&r.trains_on_user_data))
        ),
        None,
    );
    line(
        &mut text,
        "risk.retention",
        &format!("retention = {}", q(&enum_str(&r.retention))),
        None,
    );
    line(
        &mut text,
        "risk.jurisdiction",
        &format!("jurisdiction = {}", q(&r.jurisdiction)),
        None,
    );
    let controls: Vec<String> = r.enterprise_controls.iter().map(enum_str).collect();
    line(
        &mut text,
        "risk.enterprise_controls",
        "enterprise_controls",
        Some(controls.as_slice()),
    );
    let certs: Vec<String> = r.certifications.iter().map(enum_str).collect();
    line(
        &mut text,
        "risk.certifications",
        "certifications",
        Some(certs.as_slice()),
    );
    // The per-source form (rules/src/catalogue/provenance.rs): the source with its own date.
    line(&mut text, "source", "\n[provenance]", None);
    line(&mut text, "source", &format!("note = {}", q(note)), None);
    line(&mut text, "source", "\n[[provenance.sources]]", None);
    line(
        &mut text,
        "source",
        &format!("url = {}", q(&e.source)),
        None,
    );
    line(
        &mut text,
        "checked",
        // A TOML date only when it is one (never raw text in the file).
        &if valid_day(&e.checked) {
            format!("checked = {}", e.checked)
        } else {
            format!("checked = {}", q(&e.checked))
        },
        None,
    );
    // Each name must match the entry (a `match` example per name), and a look-alike of the
    // first must not.
    let examples: Vec<String> = e.hosts.iter().chain(&e.domains).cloned().collect();
    line(&mut text, "examples", "\n[examples]", None);
    line(
        &mut text,
        "examples.match",
        "match",
        Some(examples.as_slice()),
    );
    let first = examples.first().map_or("example.invalid", String::as_str);
    let no_match = vec![format!("not-{first}")];
    line(&mut text, "examples", "no_match", Some(no_match.as_slice()));
    EntryFile {
        text,
        lines,
        hosts: e.hosts.len(),
    }
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

/// A lower-case DNS name of at most 253 bytes, labels of 1–63 letters, digits, `-`, `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

fn valid_day(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    matches!((num(0..4), num(5..7), num(8..10)), (Some(y), Some(m), Some(d))
        if (2000..=2999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d))
}

fn text_ok(field: &str, v: &str, max: usize, required: bool, errs: &mut Vec<FieldError>) {
    let err = |m: String| FieldError {
        field: format!("entry.{field}"),
        message: m,
    };
    if required && v.trim().is_empty() {
        errs.push(err("required".to_owned()));
    } else if v.len() > max {
        errs.push(err(format!("{} bytes, at most {max}", v.len())));
    } else if v.chars().any(char::is_control) {
        errs.push(err("control characters are not allowed".to_owned()));
    }
}

/// Checks on the request's own values, before the catalogue loader sees them: required
/// fields, formats and sizes; `today` (`YYYY-MM-DD`) bounds `checked`.
pub fn precheck(e: &CatalogueEntry, candidate: Option<&str>, today: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut push = |field: String, message: String| errs.push(FieldError { field, message });
    if !valid_id(&e.id) {
        push(
            "entry.id".into(),
            format!(
                "{:?}: lower-case letters, digits and '-' (at most 64, not at either end)",
                e.id
            ),
        );
    }
    if e.domains.is_empty() && e.hosts.is_empty() {
        push(
            "entry.hosts".into(),
            "give at least one host or domain the service is reached at".into(),
        );
    }
    if e.domains.len() + e.hosts.len() > MAX_ENTRY_NAMES {
        push(
            "entry.hosts".into(),
            format!("at most {MAX_ENTRY_NAMES} hosts and domains together"),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (field, list) in [("domains", &e.domains), ("hosts", &e.hosts)] {
        for (i, n) in list.iter().enumerate() {
            if !valid_name(n) {
                push(
                    format!("entry.{field}[{i}]"),
                    format!("{n:?} is not a lower-case DNS name with at least two labels"),
                );
            } else if !seen.insert(n.as_str()) {
                push(
                    format!("entry.{field}[{i}]"),
                    format!("`{n}` is given twice"),
                );
            }
        }
    }
    if !e.source.starts_with("https://")
        || e.source.len() <= "https://".len()
        || e.source.len() > 2048
        || e.source
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        push(
            "entry.source".into(),
            "required: the https:// URL of the vendor page the facts were read from".into(),
        );
    }
    if !valid_day(&e.checked) {
        push(
            "entry.checked".into(),
            format!(
                "{:?}: required, the day the source was read (YYYY-MM-DD)",
                e.checked
            ),
        );
    } else if e.checked.as_str() > today {
        push(
            "entry.checked".into(),
            format!("{} is in the future (today is {today})", e.checked),
        );
    }
    if let Some(c) = candidate {
        let named =
            e.hosts.iter().any(|h| h == c) || e.domains.iter().any(|d| is_at_or_below(c, d));
        if !named {
            push(
                "entry.hosts".into(),
                format!("the entry does not name the candidate `{c}` it promotes"),
            );
        }
    }
    text_ok("name", &e.name, 120, true, &mut errs);
    text_ok("vendor", &e.vendor, 120, true, &mut errs);
    text_ok("description", &e.description, 500, false, &mut errs);
    text_ok(
        "risk.jurisdiction",
        &e.risk.jurisdiction,
        8,
        true,
        &mut errs,
    );
    errs
}

/// Names of `e` that an existing service already names or that would take a name of one.
pub fn overlaps(e: &CatalogueEntry, cat: &Catalogue) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let claimed = |s: &Service, n: &str, suffix: bool| {
        s.hosts
            .iter()
            .chain(&s.domains)
            .any(|x| x == n || is_at_or_below(n, x) || (suffix && is_at_or_below(x, n)))
    };
    for (field, list, suffix) in [("domains", &e.domains, true), ("hosts", &e.hosts, false)] {
        for (i, n) in list.iter().enumerate() {
            if let Some(s) = cat.services.iter().find(|s| claimed(s, n, suffix)) {
                errs.push(FieldError {
                    field: format!("entry.{field}[{i}]"),
                    message: format!(
                        "`{n}` overlaps service `{}` ({}), which already names it or a name below it",
                        s.id, s.name
                    ),
                });
            }
        }
    }
    if cat.service(&e.id).is_some() {
        errs.push(FieldError {
            field: "entry.id".into(),
            message: format!("`{}` is already a catalogue service", e.id),
        });
    }
    errs
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EntryError + '_ {
    move |source| EntryError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A directory holding `base_dir`'s files (links) and `extra` entry files, and the ids of
/// `extra` left out because a shipped file has that name (never written through: the
/// links point at the shipped catalogue).
pub fn stage(
    base_dir: &Path,
    extra: &[(String, String)],
) -> Result<(tempfile::TempDir, Vec<String>), EntryError> {
    let tmp = tempfile::Builder::new()
        .prefix("shadowai-catalogue-")
        .tempdir()
        .map_err(io(base_dir))?;
    for f in std::fs::read_dir(base_dir).map_err(io(base_dir))? {
        let p = f.map_err(io(base_dir))?.path();
        if p.extension().is_some_and(|x| x == "toml")
            && let Some(name) = p.file_name()
        {
            std::os::unix::fs::symlink(&p, tmp.path().join(name)).map_err(io(&p))?;
        }
    }
    let mut clashes = Vec::new();
    for (id, text) in extra {
        let p = tmp.path().join(format!("{id}.toml"));
        // O_EXCL: fails on an existing name, a link included, instead of following it.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(mut f) => std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(&p))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => clashes.push(id.clone()),
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok((tmp, clashes))
}

/// Validates `e` with the rules crate's loader against `base_dir` + `overlay` (entry files
/// already approved): the entry as the catalogue would hold it, or every problem by field.
pub fn validate(
    base_dir: &Path,
    overlay: &[(String, String)],
    e: &CatalogueEntry,
) -> Result<Service, EntryError> {
    let file = entry_file(e, "proposed");
    let mut extra = overlay.to_vec();
    extra.push((e.id.clone(), file.text.clone()));
    let (dir, clashes) = stage(base_dir, &extra)?;
    if clashes.contains(&e.id) {
        return Err(EntryError::Invalid(vec![FieldError {
            field: "entry.id".into(),
            message: format!("`{}` is already a catalogue service", e.id),
        }]));
    }
    let (cat, report) =
        load_dir_report(dir.path()).map_err(|source| EntryError::Rules { source })?;
    let mine = dir.path().join(format!("{}.toml", e.id));
    let mut errs = Vec::new();
    for d in report
        .diagnostics
        .iter()
        .filter(|d| d.severity == shadowai_rules::Severity::Error)
    {
        if d.file == mine {
            errs.push(FieldError {
                field: file.field_at(d.line, d.col),
                message: d.message.clone(),
            });
        } else {
            let f = d.file.file_name().map(|n| n.to_string_lossy().into_owned());
            // A conflict the loader reports at the other service names the new one.
            let field = e
                .hosts
                .iter()
                .position(|h| d.message.contains(&format!("`{h}`")))
                .map(|i| format!("entry.hosts[{i}]"))
                .or_else(|| {
                    e.domains
                        .iter()
                        .position(|h| d.message.contains(&format!("`{h}`")))
                        .map(|i| format!("entry.domains[{i}]"))
                })
                .unwrap_or_else(|| "catalogue".to_owned());
            errs.push(FieldError {
                field,
                message: format!("{}:{}: {}", f.unwrap_or_default(), d.line, d.message),
            });
        }
    }
    if !errs.is_empty() {
        return Err(EntryError::Invalid(errs));
    }
    cat.service(&e.id).cloned().ok_or_else(|| {
        EntryError::Invalid(vec![FieldError {
            field: "entry".into(),
            message: "the loader did not keep the entry".into(),
        }])
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use shadowai_api::discovery::EntryRisk;
    use shadowai_rules::catalogue::{Retention, Training};

    fn entry() -> CatalogueEntry {
        CatalogueEntry {
            id: "newrelay-api".into(),
            name: "NewRelay \"API\"".into(),
            vendor: "NewRelay Inc.".into(),
            category: shadowai_rules::Category::ModelApi,
            description: String::new(),
            domains: vec!["newrelay.example".into()],
            hosts: vec!["api.newrelay.dev".into()],
            risk: EntryRisk {
                trains_on_user_data: Training::Unknown,
                retention: Retention::Limited,
                jurisdiction: "US".into(),
                enterprise_controls: vec![],
                certifications: vec![],
            },
            source: "https://newrelay.example/docs/privacy".into(),
            checked: "2026-11-20".into(),
        }
    }

    fn catalogue_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue")
    }

    #[test]
    fn a_good_entry_loads_with_the_shipped_catalogue() {
        let s = validate(&catalogue_dir(), &[], &entry()).unwrap();
        assert_eq!(s.domains, vec!["newrelay.example"]);
        let sources: Vec<&str> = s.provenance.sources.iter().map(|x| x.text()).collect();
        assert_eq!(sources, vec!["https://newrelay.example/docs/privacy"]);
        assert_eq!(s.provenance.checked, "2026-11-20");
    }

    #[test]
    fn loader_errors_name_the_field() {
        let field_of = |e: &CatalogueEntry| -> Vec<String> {
            match validate(&catalogue_dir(), &[], e) {
                Err(EntryError::Invalid(errs)) => errs.iter().map(|e| e.field.clone()).collect(),
                other => panic!("accepted: {other:?}"),
            }
        };
        let mut e = entry();
        e.hosts = vec!["api.newrelay.dev".into(), "cloudfront.net".into()];
        assert_eq!(field_of(&e), vec!["entry.hosts[1]"]);
        let mut e = entry();
        e.domains = vec!["newrelay.example".into(), "themeforest.net".into()];
        assert_eq!(field_of(&e), vec!["entry.domains[1]"]);
        let mut e = entry();
        e.risk.jurisdiction = "usa".into();
        assert_eq!(field_of(&e), vec!["entry.risk.jurisdiction"]);
    }

    #[test]
    fn prechecks_name_the_field() {
        let mut e = entry();
        e.source = "newrelay.example".into();
        e.checked = "2026-13-01".into();
        e.id = "Bad Id".into();
        let errs = precheck(&e, Some("other.example"), "2026-11-26");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["entry.id", "entry.source", "entry.checked", "entry.hosts"],
            "{errs:?}"
        );
        let mut e = entry();
        e.checked = "2027-01-01".into();
        assert_eq!(precheck(&e, None, "2026-11-26")[0].field, "entry.checked");
    }
}
