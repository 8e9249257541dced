//! Name patterns and name normalisation.
//!
//! Three kinds, each in its own catalogue field:
//! - `domains` — **suffix**: the name itself and every name below it, at label boundaries
//!   (`openai.com` matches `api.openai.com`, never `notopenai.com`);
//! - `hosts` — **exact**: that one name;
//! - `sni` — **glob**: same number of labels; a label may be `*` (any one label), `prefix*`
//!   or `*suffix` (e.g. `*.openai.azure.com`, `bedrock-runtime.*.amazonaws.com`,
//!   `*-aiplatform.googleapis.com`). Used for SNI/DNS names of tenant- and region-specific
//!   endpoints.
//!
//! Names are compared in ASCII lower case, with one trailing dot ignored.

use std::fmt;

use crate::qname::QName;

/// Longest DNS name in presentation form.
pub const MAX_NAME_LEN: usize = 253;

/// The kind of a name pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// The name and all its subdomains.
    Suffix,
    /// Exactly the name.
    Exact,
    /// Label-wise wildcard pattern.
    Glob,
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Suffix => "domain suffix",
            Self::Exact => "exact host",
            Self::Glob => "SNI pattern",
        })
    }
}

/// One label of a glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GlobLabel {
    Any,
    Prefix(Box<str>),
    Suffix(Box<str>),
    Literal(Box<str>),
}

impl GlobLabel {
    /// Can a label of `len` bytes fit? (A cheap test before [`GlobLabel::matches`].)
    #[inline]
    fn fits_len(&self, len: usize) -> bool {
        match self {
            Self::Any => len > 0,
            Self::Prefix(p) | Self::Suffix(p) => len > p.len(),
            Self::Literal(l) => len == l.len(),
        }
    }

    /// Does `label` fit? ASCII case is ignored (patterns are lower case).
    fn matches(&self, label: &[u8]) -> bool {
        match self {
            Self::Any => !label.is_empty(),
            Self::Prefix(p) => {
                label.len() > p.len()
                    && label
                        .get(..p.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
            }
            Self::Suffix(s) => {
                label.len() > s.len()
                    && label
                        .get(label.len() - s.len()..)
                        .is_some_and(|t| t.eq_ignore_ascii_case(s.as_bytes()))
            }
            Self::Literal(l) => label.eq_ignore_ascii_case(l.as_bytes()),
        }
    }
}

/// A parsed glob: its leading labels (with wildcards) and the literal suffix it is indexed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    /// Labels left of the literal suffix, left to right.
    pub(crate) head: Vec<GlobLabel>,
    /// The literal labels right of the last wildcard, e.g. `amazonaws.com`.
    pub(crate) literal_suffix: String,
}

impl Glob {
    /// Can the name's first label, `len` bytes long, fit the head's first label?
    #[inline]
    pub(crate) fn first_fits_len(&self, len: usize) -> bool {
        self.head.first().is_some_and(|g| g.fits_len(len))
    }

    /// Do the first labels of `q` fit the head? The caller checked that `q` has exactly
    /// `head.len()` labels left of the literal suffix.
    #[inline]
    pub(crate) fn matches_first_labels(&self, q: &QName<'_>) -> bool {
        let mut start = 0;
        self.head.iter().all(|g| {
            let end = q.label_end(start);
            let fits = q.raw().get(start..end).is_some_and(|l| g.matches(l));
            start = end + 1;
            fits
        })
    }

    /// `head` is the part of the name left of `literal_suffix` (without the joining dot).
    #[cfg(test)]
    fn matches_head(&self, head: &[u8]) -> bool {
        let mut labels = head.split(|&b| b == b'.');
        for g in &self.head {
            match labels.next() {
                Some(l) if g.matches(l) => {}
                _ => return false,
            }
        }
        labels.next().is_none()
    }
}

fn valid_chars(label: &str) -> Result<(), String> {
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "label `{label}` contains `{c}`: use lower-case a-z, 0-9, '-', '_' (IDNs in punycode)"
        ));
    }
    Ok(())
}

/// Part of a label next to a `*`: characters only (it may start or end with '-').
fn valid_partial(part: &str) -> Result<(), String> {
    if part.is_empty() || part.len() > 62 {
        return Err(format!("partial label `{part}` must be 1 to 62 characters"));
    }
    valid_chars(part)
}

fn valid_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label (two dots in a row, or a leading dot)".into());
    }
    if label.len() > 63 {
        return Err(format!("label `{label}` is longer than 63 characters"));
    }
    valid_chars(label)?;
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label `{label}` starts or ends with '-'"));
    }
    Ok(())
}

/// Check a suffix or exact pattern; returns the reason it is invalid.
pub(crate) fn check_literal(p: &str) -> Result<(), String> {
    if p.len() > MAX_NAME_LEN {
        return Err(format!("name is longer than {MAX_NAME_LEN} characters"));
    }
    if p.ends_with('.') {
        return Err("trailing dot: write the name without it".into());
    }
    if p.contains('*') {
        return Err("wildcards belong in `sni` (glob) patterns, not here".into());
    }
    let labels: Vec<&str> = p.split('.').collect();
    if labels.len() < 2 {
        return Err(
            "a pattern needs at least two labels (a bare TLD would claim a whole registry)".into(),
        );
    }
    for l in &labels {
        valid_label(l)?;
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("looks like an IP address: put addresses in `cidrs`".into());
    }
    Ok(())
}

/// Parse and check a glob pattern.
pub(crate) fn parse_glob(p: &str) -> Result<Glob, String> {
    if p.len() > MAX_NAME_LEN {
        return Err(format!("pattern is longer than {MAX_NAME_LEN} characters"));
    }
    let labels: Vec<&str> = p.split('.').collect();
    let last_wild = labels
        .iter()
        .rposition(|l| l.contains('*'))
        .ok_or_else(|| {
            "an `sni` pattern needs a `*`; put plain names in `domains` or `hosts`".to_string()
        })?;
    let literal = &labels[last_wild + 1..];
    if literal.len() < 2 {
        return Err("the part right of the last wildcard needs at least two labels".into());
    }
    for l in literal {
        valid_label(l)?;
    }
    let mut head = Vec::with_capacity(last_wild + 1);
    for l in &labels[..=last_wild] {
        let g = match l.matches('*').count() {
            0 => {
                valid_label(l)?;
                GlobLabel::Literal((*l).into())
            }
            1 if *l == "*" => GlobLabel::Any,
            1 if l.ends_with('*') => {
                let pre = &l[..l.len() - 1];
                valid_partial(pre)?;
                GlobLabel::Prefix(pre.into())
            }
            1 if l.starts_with('*') => {
                let suf = &l[1..];
                valid_partial(suf)?;
                GlobLabel::Suffix(suf.into())
            }
            _ => {
                return Err(format!(
                    "label `{l}`: one `*` per label, at its start or end"
                ));
            }
        };
        head.push(g);
    }
    Ok(Glob {
        head,
        literal_suffix: literal.join("."),
    })
}

/// Normalise a name for matching into `buf`: strip one trailing dot, ASCII-lower-case.
/// Returns `None` for an empty or over-long name. Never allocates.
#[inline]
pub fn normalize<'a>(name: &'a str, buf: &'a mut [u8; MAX_NAME_LEN]) -> Option<&'a str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    // Lower-casing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(out).ok()
}

/// Does `name` (normalised) equal `suffix` or end with `.suffix`?
pub fn is_at_or_below(name: &str, suffix: &str) -> bool {
    name == suffix
        || (name.len() > suffix.len()
            && name.ends_with(suffix)
            && name.as_bytes().get(name.len() - suffix.len() - 1) == Some(&b'.'))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn literal_checks() {
        assert!(check_literal("openai.com").is_ok());
        assert!(check_literal("_dmarc.example.com").is_ok());
        assert!(check_literal("com").is_err());
        assert!(check_literal("Openai.com").is_err());
        assert!(check_literal("openai.com.").is_err());
        assert!(check_literal("a..com").is_err());
        assert!(check_literal("-a.com").is_err());
        assert!(check_literal("*.a.com").is_err());
        assert!(check_literal("10.0.0.1").is_err());
        assert!(check_literal(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn globs() {
        let g = parse_glob("bedrock-runtime.*.amazonaws.com").unwrap();
        assert_eq!(g.literal_suffix, "amazonaws.com");
        assert!(g.matches_head("bedrock-runtime.us-east-1".as_bytes()));
        assert!(!g.matches_head("bedrock-runtime".as_bytes()));
        assert!(!g.matches_head("x.bedrock-runtime.us-east-1".as_bytes()));
        let g = parse_glob("*-aiplatform.googleapis.com").unwrap();
        assert!(g.matches_head("us-central1-aiplatform".as_bytes()));
        assert!(!g.matches_head("-aiplatform".as_bytes()));
        assert!(!g.matches_head("aiplatform".as_bytes()));
        assert!(parse_glob("*.com").is_err());
        assert!(parse_glob("a.b.com").is_err());
        assert!(parse_glob("a*b.x.com").is_err());
        assert!(parse_glob("**.x.com").is_err());
    }

    #[test]
    fn normalises() {
        let mut b = [0u8; MAX_NAME_LEN];
        assert_eq!(normalize("API.OpenAI.com.", &mut b), Some("api.openai.com"));
        let mut b = [0u8; MAX_NAME_LEN];
        assert_eq!(normalize("x.com", &mut b), Some("x.com"));
        let mut b = [0u8; MAX_NAME_LEN];
        assert_eq!(normalize(".", &mut b), None);
        let long = "a".repeat(300);
        let mut b = [0u8; MAX_NAME_LEN];
        assert_eq!(normalize(&long, &mut b), None);
        assert!(is_at_or_below("api.openai.com", "openai.com"));
        assert!(is_at_or_below("openai.com", "openai.com"));
        assert!(!is_at_or_below("notopenai.com", "openai.com"));
    }
}
