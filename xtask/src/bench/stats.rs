//! Trials and their summary: every figure in the report is the median of several trials,
//! with the smallest and largest beside it.

use std::fmt;

/// The samples of one figure.
#[derive(Clone, Debug, Default)]
pub struct Trials(pub Vec<f64>);

impl Trials {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{} ({}–{})",
            num(self.median(), digits),
            num(self.min(), digits),
            num(self.max(), digits)
        )
    }

    /// Element-wise ratio of two figures measured in the same trials (a / b per trial).
    pub fn ratio(a: &Trials, b: &Trials) -> Trials {
        Trials(
            a.0.iter()
                .zip(&b.0)
                .map(|(x, y)| if *y > 0.0 { x / y } else { f64::NAN })
                .collect(),
        )
    }
}

impl fmt::Display for Trials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show(0))
    }
}

/// A number with thousands separators (`12,345`) or `digits` decimals.
pub fn num(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if digits > 0 {
        return format!("{v:.digits$}");
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::{Trials, num};

    #[test]
    fn median_min_max() {
        let t = Trials(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(t.median(), 2.5);
        assert_eq!((t.min(), t.max()), (1.0, 10.0));
        assert_eq!(Trials(vec![5.0, 1.0, 3.0]).median(), 3.0);
        assert!(Trials::default().median().is_nan());
        assert_eq!(num(1_234_567.4, 0), "1,234,567");
        assert_eq!(num(0.954, 2), "0.95");
        assert_eq!(Trials(vec![1.0, 2.0, 3.0]).show(1), "2.0 (1.0–3.0)");
    }
}
