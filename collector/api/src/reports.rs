//! Report types of the SOC views (issue 15): fleet-wide group-by, uploaders, pickers from the
//! data, time buckets, risk breakdowns and first-use alerts.

use serde::{Deserialize, Serialize};
use shadowai_rules::Verdict;

/// What a group-by report groups findings by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    User,
    Host,
    /// The executable path.
    Process,
    /// The agent's host group (set at enrollment).
    Group,
}

impl GroupBy {
    /// The query-string name (`user`, `host`, `process`, `group`).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::User => "user",
            GroupBy::Host => "host",
            GroupBy::Process => "process",
            GroupBy::Group => "group",
        }
    }
}

/// Time bucket of the trend report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

/// One user / host / process / host group across services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRow {
    /// The grouping key (user name, host id, exe path, group name; `""`: no group).
    pub key: String,
    /// What to show for the key (the host name for hosts; the key otherwise).
    pub label: String,
    /// Distinct services, and how many of them were unsanctioned or blocked.
    pub services: u64,
    pub risky_services: u64,
    pub hosts: u64,
    pub users: u64,
    pub findings: u64,
    pub events: u64,
    /// Events the agent blocked, and would have blocked (enforce off).
    pub blocked_events: u64,
    pub would_block_events: u64,
    /// Payload bytes sent / received over the sockets of these uses (findings without byte
    /// counts add nothing; `bytes_known` counts the findings that had them).
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub bytes_known: u64,
    /// First use ever (not bound to the selected range), and last use in the range.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Highest risk score among the services used.
    pub max_risk: u8,
}

/// A page of a group-by report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPage {
    pub by: GroupBy,
    pub items: Vec<GroupRow>,
    /// Pass as `offset` for the next page; none on the last page.
    pub next_offset: Option<u64>,
}

/// A value of a picker, with how many findings carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetValue {
    pub value: String,
    pub label: String,
    pub findings: u64,
}

/// What the filter pickers offer, from the stored data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    pub services: Vec<FacetValue>,
    pub categories: Vec<FacetValue>,
    pub verdicts: Vec<FacetValue>,
    pub actions: Vec<FacetValue>,
    pub groups: Vec<FacetValue>,
    /// Lowest and highest risk score stored (none: no findings).
    pub risk_min: Option<u8>,
    pub risk_max: Option<u8>,
}

/// One factor of a risk score, as the catalogue computes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskFactor {
    pub factor: String,
    pub value: String,
    pub points: u8,
    pub max: u8,
}

/// A score and how the catalogue reached it, for one plan of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRisk {
    /// `individual`, `team`, `enterprise`, `api`, `self_hosted`; none when not researched per plan.
    pub plan: Option<String>,
    pub score: u8,
    /// `low`, `moderate`, `high`, `severe`.
    pub band: String,
    pub factors: Vec<RiskFactor>,
}

/// The catalogue's risk of one service: the top-level plan first, then other plans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRisk {
    pub service_id: String,
    pub service_name: String,
    pub plans: Vec<PlanRisk>,
    /// Public policy pages the factors were read from.
    pub evidence: Vec<String>,
}

/// Why an alert was raised: what was used for the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertReason {
    /// The first unsanctioned or blocked use of this service anywhere in the fleet.
    NewInFleet,
    /// The first such use on this host.
    NewHost,
    /// The first such use by this user.
    NewUser,
}

impl AlertReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertReason::NewInFleet => "new_in_fleet",
            AlertReason::NewHost => "new_host",
            AlertReason::NewUser => "new_user",
        }
    }
}

/// A first-use alert: one per finding that made at least one (service, fleet | host | user)
/// pair new for an unsanctioned or blocked verdict. Never raised twice for the same pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    pub created_ms: i64,
    pub reasons: Vec<AlertReason>,
    pub service_id: String,
    pub service_name: String,
    pub category: String,
    pub verdict: Verdict,
    pub action: crate::Action,
    pub risk_score: u8,
    pub host_id: String,
    pub hostname: String,
    pub user: String,
    pub exe: String,
    /// The finding that raised it.
    pub finding_id: String,
    pub first_seen_ms: i64,
    /// The drill-down in the web UI (`#/findings?…` under the collector's UI URL).
    pub link: String,
}

/// A page of alerts, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertPage {
    pub items: Vec<Alert>,
    /// Pass as `before` for older alerts.
    pub next_before: Option<i64>,
}

/// The risk band of a score (`low` < 25 ≤ `moderate` < 50 ≤ `high` < 75 ≤ `severe`), the
/// catalogue's bands.
pub fn risk_band(score: u8) -> &'static str {
    match score {
        0..=24 => "low",
        25..=49 => "moderate",
        50..=74 => "high",
        _ => "severe",
    }
}

impl ServiceRisk {
    /// The plan whose catalogue score is `score` (the score the finding carries), the first
    /// such plan when several share it. None when no plan gives that score: the catalogue the
    /// agent scored with differs from the collector's, so these factors do not explain it.
    pub fn explain(&self, score: u8) -> Option<&PlanRisk> {
        self.plans.iter().find(|p| p.score == score)
    }
}

impl PlanRisk {
    /// One line: `training yes +35, retention extended +20, …` (the plan named when known).
    pub fn details(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.factors.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let v = if f.value.is_empty() { "none" } else { &f.value };
            out.push_str(&format!("{} {v} +{}", f.factor.replace('_', " "), f.points));
        }
        if let Some(p) = &self.plan {
            out.push_str(&format!(" ({p} plan)"));
        }
        out
    }
}

/// How a score shown to a person is explained: the factors of the plan that gives it, or why
/// there are none.
pub fn risk_details(score: u8, risk: Option<&ServiceRisk>) -> String {
    match risk {
        None => format!(
            "{score}/100 ({}); the service is not in the collector's catalogue, so no factors",
            risk_band(score)
        ),
        Some(r) => match r.explain(score) {
            Some(p) => format!("{score}/100 ({}): {}", risk_band(score), p.details()),
            None => format!(
                "{score}/100 ({}); the collector's catalogue scores {} {} now, so its factors do \
                 not explain this score",
                risk_band(score),
                r.service_id,
                r.plans
                    .iter()
                    .map(|p| p.score.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        },
    }
}
