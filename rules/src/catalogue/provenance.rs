//! `[provenance]`: where an entry's names come from, one dated citation per source.
//!
//! Current form — each source is a URL the vendor publishes (API reference, network
//! allow-list, privacy page) or a public list pinned at a commit/version, with the day it
//! was read:
//!
//! ```toml
//! [[provenance.sources]]
//! url = "https://docs.x.ai/docs/api-reference"
//! checked = 2026-11-26
//!
//! [[provenance.sources]]
//! list = "v2fly:domain-list-community@c975ccef/data/xai (MIT)"
//! checked = 2026-11-22
//! ```
//!
//! `provenance.checked` (the day the entry was last reviewed) is then the newest source date
//! and may be left out. The old form — `sources = ["…"]` strings sharing one
//! `provenance.checked` — is still read (with a warning) so drafts and bundles written before
//! this change keep loading; it is to be dropped in the release after.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Category, Service};
use crate::pattern::is_at_or_below;

/// One cited source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A URL or a pinned list, with the day it was read.
    Cited(CitedSource),
    /// Old form: free text, dated by the entry's `provenance.checked`.
    Legacy(String),
}

/// A source in the current form: exactly one of `url` / `list`, and its own date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CitedSource {
    /// An `https://` page the vendor (or a standards body) publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A public list at a fixed commit or version:
    /// `<scheme>:<repository or package>@<commit|version>/<path> (<licence>)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// The day the source was read (`YYYY-MM-DD`).
    pub checked: String,
    /// What the source shows, when not obvious.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// What a source points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceRef<'a> {
    /// An https URL.
    Url(&'a str),
    /// A pinned public list.
    List(&'a str),
    /// Old-form free text.
    Text(&'a str),
}

impl Source {
    /// The URL, list or text this source cites.
    pub fn reference(&self) -> SourceRef<'_> {
        match self {
            Self::Cited(c) => match (&c.url, &c.list) {
                (Some(u), _) => SourceRef::Url(u),
                (None, Some(l)) => SourceRef::List(l),
                (None, None) => SourceRef::Text(""),
            },
            Self::Legacy(s) => SourceRef::Text(s),
        }
    }

    /// The cited text (URL, list or old-form string).
    pub fn text(&self) -> &str {
        match self.reference() {
            SourceRef::Url(s) | SourceRef::List(s) | SourceRef::Text(s) => s,
        }
    }

    /// The day this source was read; an old-form source takes the entry's date.
    pub fn checked<'a>(&'a self, entry: &'a Provenance) -> &'a str {
        match self {
            Self::Cited(c) => &c.checked,
            Self::Legacy(_) => &entry.checked,
        }
    }
}

/// Where the entry's data comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The sources, each with its date.
    pub sources: Vec<Source>,
    /// The day the entry was last reviewed: the newest source date (YYYY-MM-DD).
    pub checked: String,
    /// Free-form note.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Provenance {
    /// True when every source is the home page of one of the service's own names
    /// (`https://<claimed name>/`): the entry then rests on "the vendor runs this host" alone.
    pub fn only_own_homepage(&self, svc: &Service) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(|s| is_own_homepage(s.text(), svc))
    }
}

/// Categories whose vendors publish API / endpoint documentation: an entry there must cite
/// more than its own home page.
pub const DOCUMENTED_CATEGORIES: [Category; 2] = [Category::ModelApi, Category::EnterpriseTenant];

/// `https://<name>/` (optionally followed by a space and a note, the old generator's form)
/// where `<name>` is at or below a domain or host the service claims.
fn is_own_homepage(text: &str, svc: &Service) -> bool {
    let Some(rest) = text.strip_prefix("https://") else {
        return false;
    };
    let url = rest.split(' ').next().unwrap_or_default();
    let (host, path) = url.split_once('/').unwrap_or((url, ""));
    if !path.is_empty() {
        return false;
    }
    let host = host.to_ascii_lowercase();
    svc.domains
        .iter()
        .chain(svc.hosts.iter())
        .any(|own| is_at_or_below(&host, own))
}

/// A `YYYY-MM-DD` date of a TOML value, or `None`.
fn date_of(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Datetime(dt) => match (dt.date, dt.time) {
            (Some(d), None) => Some(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
            _ => None,
        },
        _ => None,
    }
}

/// Today (UTC) as `YYYY-MM-DD`, from the system clock; `None` if the clock is before 1970.
fn today() -> Option<String> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let s = crate::time::format_rfc3339(i64::try_from(secs).ok()?);
    s.get(..10).map(str::to_string)
}

/// A list citation: `<scheme>:<where>@<commit|version>…`, no whitespace before the licence.
fn valid_list(l: &str) -> bool {
    let head = l.split(" (").next().unwrap_or_default();
    match head.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && !scheme.contains(char::is_whitespace)
                && rest
                    .split_once('@')
                    .is_some_and(|(w, v)| !w.is_empty() && !v.is_empty())
                && !head.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Raw `[provenance]` as read from a file (either form).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvenance {
    sources: Spanned<Vec<Spanned<toml::Value>>>,
    #[serde(default)]
    checked: Option<Spanned<toml::Value>>,
    #[serde(default)]
    note: String,
}

/// Problems with an offset (the caller turns them into `file:line:col` diagnostics).
pub(crate) struct ProvenanceIssues {
    pub(crate) errors: Vec<(usize, String)>,
    pub(crate) warnings: Vec<(usize, String)>,
    /// Offset of `sources`, for checks that need the whole service.
    pub(crate) sources_offset: usize,
}

/// Read one source table.
fn parse_table(
    t: &toml::value::Table,
    off: usize,
    today: Option<&str>,
    errors: &mut Vec<(usize, String)>,
) -> CitedSource {
    let mut err = |m: String| errors.push((off, m));
    for k in t.keys() {
        if !matches!(k.as_str(), "url" | "list" | "checked" | "note") {
            err(format!(
                "unknown field `{k}` in a provenance source (expected url, list, checked, note)"
            ));
        }
    }
    let text = |k: &str| t.get(k).map(|v| v.as_str().map(str::to_string));
    let url = text("url");
    let list = text("list");
    let (url, list) = match (url, list) {
        (Some(Some(u)), None) => {
            if !u.starts_with("https://") || u.len() <= 8 || u.contains(char::is_whitespace) {
                err(format!(
                    "source url `{u}` must be an https:// URL without spaces"
                ));
            }
            (Some(u), None)
        }
        (None, Some(Some(l))) => {
            if !valid_list(&l) {
                err(format!(
                    "source list `{l}` must name a public list at a commit or version: \
                     `<scheme>:<repository or package>@<commit|version>/<path> (<licence>)`"
                ));
            }
            (None, Some(l))
        }
        (Some(_), Some(_)) => {
            err("a provenance source gives `url` or `list`, not both".into());
            (None, None)
        }
        (None, None) => {
            err("a provenance source needs `url` or `list`".into());
            (None, None)
        }
        _ => {
            err("a provenance source's `url` / `list` must be a string".into());
            (None, None)
        }
    };
    let checked = match t.get("checked").map(date_of) {
        Some(Some(d)) => {
            if today.is_some_and(|t| d.as_str() > t) {
                err(format!("source checked {d} is in the future"));
            }
            d
        }
        Some(None) => {
            err("a provenance source's `checked` must be a date (YYYY-MM-DD)".into());
            String::new()
        }
        None => {
            err("a provenance source needs `checked`: the day it was read (YYYY-MM-DD)".into());
            String::new()
        }
    };
    let note = match t.get("note") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => {
            err("a provenance source's `note` must be a string".into());
            String::new()
        }
        None => String::new(),
    };
    CitedSource {
        url,
        list,
        checked,
        note,
    }
}

/// `[provenance]` in either form. Every problem is returned with its offset.
pub(crate) fn parse_provenance(raw: RawProvenance) -> (Provenance, ProvenanceIssues) {
    let today = today();
    let sources_offset = raw.sources.span().start;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let items = raw.sources.into_inner();
    if items.is_empty() {
        errors.push((
            sources_offset,
            "provenance.sources must list at least one source".into(),
        ));
    }
    let mut sources = Vec::with_capacity(items.len());
    let mut legacy = 0usize;
    for item in items {
        let off = item.span().start;
        match item.into_inner() {
            toml::Value::String(s) => {
                if s.trim().is_empty() {
                    errors.push((off, "provenance source is empty".into()));
                }
                legacy += 1;
                sources.push(Source::Legacy(s));
            }
            toml::Value::Table(t) => sources.push(Source::Cited(parse_table(
                &t,
                off,
                today.as_deref(),
                &mut errors,
            ))),
            other => errors.push((
                off,
                format!(
                    "a provenance source is a table {{ url|list, checked }}, found {}",
                    other.type_str()
                ),
            )),
        }
    }
    if legacy > 0 {
        warnings.push((
            sources_offset,
            "old provenance form: give each source as `{ url = \"https://…\" | list = \"…@<commit>…\", \
             checked = YYYY-MM-DD }` (plain strings are read until the next release)"
                .into(),
        ));
    }
    let newest = sources
        .iter()
        .filter_map(|s| match s {
            Source::Cited(c) if !c.checked.is_empty() => Some(c.checked.as_str()),
            _ => None,
        })
        .max()
        .map(str::to_string);
    let checked = entry_checked(raw.checked, newest, legacy > 0, sources_offset, &mut errors);
    (
        Provenance {
            sources,
            checked,
            note: raw.note,
        },
        ProvenanceIssues {
            errors,
            warnings,
            sources_offset,
        },
    )
}

/// `provenance.checked`: required with old-form sources; otherwise optional and, if given,
/// equal to the newest source date (which it defaults to).
fn entry_checked(
    given: Option<Spanned<toml::Value>>,
    newest: Option<String>,
    legacy: bool,
    sources_offset: usize,
    errors: &mut Vec<(usize, String)>,
) -> String {
    match given {
        Some(c) => {
            let off = c.span().start;
            match date_of(c.get_ref()) {
                Some(d) => {
                    if let Some(n) = newest.as_deref().filter(|n| *n != d && !legacy) {
                        errors.push((
                            off,
                            format!(
                                "provenance.checked {d} must be the newest source date ({n}); \
                                 or leave it out"
                            ),
                        ));
                    }
                    d
                }
                None => {
                    errors.push((off, "provenance.checked must be a date (YYYY-MM-DD)".into()));
                    String::new()
                }
            }
        }
        None if legacy => {
            errors.push((
                sources_offset,
                "provenance.checked is needed with plain-string sources".into(),
            ));
            String::new()
        }
        None => newest.unwrap_or_default(),
    }
}

/// Cross-field check: in [`DOCUMENTED_CATEGORIES`], a home page of the service's own names is
/// not enough.
pub(crate) fn own_homepage_error(svc: &Service) -> Option<String> {
    (DOCUMENTED_CATEGORIES.contains(&svc.category) && svc.provenance.only_own_homepage(svc)).then(
        || {
            format!(
                "`{}` is a {} entry whose only source is its own home page: cite the vendor's \
                 API / endpoint documentation (url) or a public list at a commit (list)",
                svc.id, svc.category
            )
        },
    )
}
