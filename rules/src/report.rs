//! Diagnostics with file:line:column, collected rather than stopping at the first.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// Usable, but probably not what the author meant.
    Warning,
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the problem concerns the file as a whole).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub col: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every diagnostic from one validation run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// In file order, then line order.
    pub diagnostics: Vec<Diagnostic>,
    /// How many service files were read.
    pub files_checked: usize,
}

impl Report {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
    /// True when there is no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.error_count() == 0
    }
    /// Sort by file, line, column.
    pub fn sort(&mut self) {
        self.diagnostics
            .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    }
    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }
    pub(crate) fn extend(&mut self, other: Report) {
        self.diagnostics.extend(other.diagnostics);
        self.files_checked += other.files_checked;
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets of one source text to line:column.
#[derive(Clone, Debug)]
pub(crate) struct SourceMap {
    path: PathBuf,
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub(crate) fn new(path: &Path, text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            path: path.to_path_buf(),
            line_starts,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based (line, column) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(idx).copied().unwrap_or(0);
        (idx + 1, offset.saturating_sub(start) + 1)
    }

    pub(crate) fn diag(
        &self,
        offset: Option<usize>,
        severity: Severity,
        message: String,
    ) -> Diagnostic {
        let (line, col) = offset.map_or((0, 0), |o| self.line_col(o));
        Diagnostic {
            file: self.path.clone(),
            line,
            col,
            severity,
            message,
        }
    }

    pub(crate) fn error(&self, offset: Option<usize>, message: String) -> Diagnostic {
        self.diag(offset, Severity::Error, message)
    }

    pub(crate) fn warning(&self, offset: Option<usize>, message: String) -> Diagnostic {
        self.diag(offset, Severity::Warning, message)
    }

    /// A TOML parse/deserialise error as a diagnostic at its span.
    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        let msg = e.message().trim_end().replace('\n', " ");
        self.error(e.span().map(|s| s.start), msg)
    }
}
