//! The finding filters shared by `findings`, `services`, `trend` and `export`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use shadowai_api::Verdict;
use shadowai_api::wire::FindingQuery;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    Sanctioned,
    Tolerated,
    Unsanctioned,
    Blocked,
}

impl From<VerdictArg> for Verdict {
    fn from(v: VerdictArg) -> Verdict {
        match v {
            VerdictArg::Sanctioned => Verdict::Sanctioned,
            VerdictArg::Tolerated => Verdict::Tolerated,
            VerdictArg::Unsanctioned => Verdict::Unsanctioned,
            VerdictArg::Blocked => Verdict::Blocked,
        }
    }
}

#[derive(Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Only findings from the last DURATION (e.g. 30m, 24h, 7d).
    #[arg(long, value_name = "DURATION", conflicts_with = "from_ms")]
    pub since: Option<String>,
    /// Window overlaps [from-ms, to-ms) (Unix milliseconds).
    #[arg(long, value_name = "MS")]
    pub from_ms: Option<i64>,
    #[arg(long, value_name = "MS")]
    pub to_ms: Option<i64>,
    /// Service id (e.g. openai-chatgpt).
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// Host id or host name.
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// Executable path or process name.
    #[arg(long)]
    pub process: Option<String>,
    /// Container id.
    #[arg(long)]
    pub container: Option<String>,
    /// What happened: allowed, would-block, blocked (apart from the verdict).
    #[arg(long, value_enum)]
    pub action: Option<ActionArg>,
    /// Host group the agent enrolled with ("" for hosts without one).
    #[arg(long)]
    pub group: Option<String>,
    /// Case-insensitive partial match on the user name.
    #[arg(long, value_name = "TEXT")]
    pub user_contains: Option<String>,
    /// Case-insensitive partial match on the host name or id.
    #[arg(long, value_name = "TEXT")]
    pub host_contains: Option<String>,
    /// Case-insensitive partial match on the executable path or process name.
    #[arg(long, value_name = "TEXT")]
    pub process_contains: Option<String>,
    /// Risk score range, inclusive.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub risk_min: Option<u8>,
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub risk_max: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    Allowed,
    WouldBlock,
    Blocked,
}

impl From<ActionArg> for shadowai_api::Action {
    fn from(a: ActionArg) -> Self {
        match a {
            ActionArg::Allowed => shadowai_api::Action::Allowed,
            ActionArg::WouldBlock => shadowai_api::Action::WouldBlock,
            ActionArg::Blocked => shadowai_api::Action::Blocked,
        }
    }
}

/// `30s`, `15m`, `24h`, `7d`, `2w` to milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let Ok(n) = digits.parse::<i64>() else {
        bail!("--since {text:?}: expected a number followed by s, m, h, d or w (e.g. 24h)")
    };
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => bail!("--since {text:?}: unit must be s, m, h, d or w"),
    };
    match n.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => bail!("--since {text:?}: must be positive and at most a few thousand years"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl FilterArgs {
    pub fn query(&self, limit: Option<u32>, cursor: Option<String>) -> Result<FindingQuery> {
        let from_ms = match &self.since {
            Some(s) => Some(now_ms() - parse_duration_ms(s)?),
            None => self.from_ms,
        };
        if let (Some(from), Some(to)) = (from_ms, self.to_ms)
            && from >= to
        {
            bail!("the time range is empty: from ({from}) must be before --to-ms ({to})");
        }
        Ok(FindingQuery {
            from_ms,
            to_ms: self.to_ms,
            service: self.service.clone(),
            category: self.category.clone(),
            verdict: self.verdict.map(Verdict::from),
            host: self.host.clone(),
            user: self.user.clone(),
            process: self.process.clone(),
            container: self.container.clone(),
            limit,
            cursor,
            action: self.action.map(Into::into),
            group: self.group.clone(),
            user_contains: self.user_contains.clone(),
            host_contains: self.host_contains.clone(),
            process_contains: self.process_contains.clone(),
            risk_min: self.risk_min,
            risk_max: self.risk_max,
            bucket: None,
            by: None,
            offset: None,
        })
    }
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
    fn durations() {
        assert_eq!(parse_duration_ms("30s").unwrap(), 30_000);
        assert_eq!(parse_duration_ms("24h").unwrap(), 86_400_000);
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        assert!(parse_duration_ms("7").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("0d").is_err());
        assert!(parse_duration_ms("5y").is_err());
        assert!(parse_duration_ms("99999999999999999w").is_err());
    }

    #[test]
    fn filters_map_to_the_query() {
        let f = FilterArgs {
            from_ms: Some(10),
            to_ms: Some(20),
            verdict: Some(VerdictArg::Blocked),
            host: Some("web-01".into()),
            ..Default::default()
        };
        let q = f.query(Some(5), None).unwrap();
        assert_eq!(q.from_ms, Some(10));
        assert_eq!(q.verdict, Some(Verdict::Blocked));
        assert_eq!(q.host.as_deref(), Some("web-01"));
        assert_eq!(q.limit, Some(5));
        let empty = FilterArgs {
            from_ms: Some(20),
            to_ms: Some(20),
            ..Default::default()
        };
        assert!(empty.query(None, None).is_err());
    }
}
