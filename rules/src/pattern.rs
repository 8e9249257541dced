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

use crate::qname::{QName, fold_word};

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
    /// Does `label` fit? ASCII case is ignored (patterns are lower case).
    #[inline]
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

/// A cheap first test of a glob's first label: the label's length, and up to 8 of its bytes
/// at its start (literal, `prefix*`) or end (`*suffix`), compared as one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FirstKey {
    min_len: usize,
    exact_len: bool,
    at_end: bool,
    /// How many bytes `word` holds (0 for `*`).
    n: usize,
    word: u64,
}

impl FirstKey {
    fn of(g: &GlobLabel) -> Self {
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
        let (min_len, exact_len, at_end, bytes) = match g {
            GlobLabel::Any => (1, false, false, &[][..]),
            GlobLabel::Prefix(p) => (p.len() + 1, false, false, p.as_bytes()),
            GlobLabel::Suffix(x) => (x.len() + 1, false, true, x.as_bytes()),
            GlobLabel::Literal(l) => (l.len(), true, false, l.as_bytes()),
        };
        let n = bytes.len().min(8);
        let part = if at_end {
            bytes.get(bytes.len() - n..)
        } else {
            bytes.get(..n)
        };
        Self {
            min_len,
            exact_len,
            at_end,
            n,
            word: le(part.unwrap_or(&[])),
        }
    }
}

/// Low `n` bytes of a word set (n ≤ 8).
#[inline]
fn byte_mask(n: usize) -> u64 {
    u64::MAX.checked_shr(64 - 8 * n as u32).unwrap_or(0)
}

/// The name's first label as the quick test reads it, computed once per glob list.
pub(crate) struct FirstLabel {
    len: usize,
    /// Its first (up to) 8 bytes, folded.
    head: u64,
    /// Its last `tail_n` (up to 8) bytes, folded.
    tail: u64,
    tail_n: usize,
}

impl FirstLabel {
    #[inline]
    pub(crate) fn of(q: &QName<'_>) -> Self {
        let len = q.label_end(0);
        let (_, head) = q.word_ending(len.min(8));
        let (at, tail) = q.word_ending(len);
        Self {
            len,
            head: fold_word(head),
            tail: fold_word(tail),
            tail_n: len - at,
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
    first: FirstKey,
}

impl Glob {
    /// Can the name's first label fit the head's first label? Compares its length and one
    /// word; [`Glob::matches_first_labels`] decides.
    #[inline]
    pub(crate) fn first_may_fit(&self, f: &FirstLabel) -> bool {
        let k = &self.first;
        let len_ok = if k.exact_len {
            f.len == k.min_len
        } else {
            f.len >= k.min_len
        };
        // A label at least `min_len` long has at least `n` bytes in `tail`.
        let w = if k.at_end {
            f.tail
                .checked_shr(8 * f.tail_n.saturating_sub(k.n) as u32)
                .unwrap_or(0)
        } else {
            f.head
        };
        len_ok && w & byte_mask(k.n) == k.word
    }

    /// Do the first labels of `q` fit the head? The caller checked that `q` has exactly
    /// `head.len()` labels before `head_end` (where the literal suffix's dot is); `first` is
    /// `q`'s first label. Only labels between the first and the last are searched for.
    #[inline]
    pub(crate) fn matches_first_labels(
        &self,
        q: &QName<'_>,
        first: &FirstLabel,
        head_end: usize,
    ) -> bool {
        let last = self.head.len().saturating_sub(1);
        let mut start = 0;
        self.head.iter().enumerate().all(|(i, g)| {
            let end = if i == last {
                head_end
            } else if i == 0 {
                first.len
            } else {
                q.label_end(start)
            };
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
        first: FirstKey::of(head.first().unwrap_or(&GlobLabel::Any)),
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
