//! Plain-text tables and timestamps for terminal output (`--json` bypasses all of this).

use std::io::Write;

/// Unix milliseconds as `2026-11-22 15:36:10Z`; `-` for out-of-range values.
pub fn time(ms: i64) -> String {
    if !(0..253_402_300_800_000).contains(&ms) {
        return "-".to_owned();
    }
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub fn opt_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "never".to_owned(), time)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A left-aligned table with a header row; cells are cut at 48 characters and control
/// characters (from collector data) are replaced so nothing can drive the terminal.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let mut parts = Vec::new();
            for (i, cell) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                parts.push(format!("{cell:<w$}"));
            }
            out.push_str(parts.join("  ").trim_end());
            out.push('\n');
        };
        line(self.header.clone(), &mut out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }

    pub fn print(&self) -> std::io::Result<()> {
        std::io::stdout().write_all(self.render().as_bytes())
    }
}

fn clean(cell: &str) -> String {
    let mut s: String = cell
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 48 {
        s = s.chars().take(47).collect();
        s.push('…');
    }
    s
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = serde_json::to_string_pretty(value)?;
    out.push('\n');
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_709_251_199_999), "2024-02-29 23:59:59Z");
        assert_eq!(time(-5), "-");
        assert_eq!(opt_time(None), "never");
    }

    #[test]
    fn table_aligns_and_neutralises_control_characters() {
        let mut t = Table::new(vec!["A", "LONGER"]);
        t.row(vec!["xx\u{1b}[31m".into(), "1".into()]);
        t.row(vec!["y".into(), "2".into()]);
        assert_eq!(t.render(), "A        LONGER\nxx?[31m  1\ny        2\n");
    }
}
