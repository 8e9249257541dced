//! bench/REPORT.md: sections appended as the run goes, written once at the end (and after
//! each section, so a run cut short still leaves what it measured).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Report {
    path: PathBuf,
    text: String,
}

impl Report {
    pub fn new(path: &Path, header: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            text: header.to_owned(),
        }
    }

    /// Appends a section and rewrites the file.
    pub fn section(&mut self, title: &str, body: &str) -> Result<()> {
        let _ = write!(self.text, "\n## {title}\n\n{}\n", body.trim_end());
        self.flush()
    }

    pub fn flush(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&self.path, &self.text)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A markdown table from a header row and body rows.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}
