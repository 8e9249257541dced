//! SOC report routes of issue 15: fleet-wide group-by (user, host, process, host group), top
//! uploaders to unsanctioned services, picker values from the data, risk breakdowns from the
//! catalogue, and first-use alerts.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use shadowai_api::{
    AlertPage, Bucket, Facets, FindingQuery, GroupBy, GroupPage, ServiceRisk, Verdict,
};

use super::SharedState;
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::QueryParams;
use super::soc_routes::{check_query, heavy};
use crate::store::GroupSort;

const HOUR_MS: i64 = 3_600_000;
/// Ranges up to this long get hour buckets by default.
const HOURLY_UP_TO_MS: i64 = 7 * 24 * HOUR_MS;
/// Hour buckets are refused over longer ranges (the answer would be too large to draw).
const HOURLY_MAX_MS: i64 = 31 * 24 * HOUR_MS;
/// Group-by pages: rows per page, and how deep paging may go.
const GROUPS_DEFAULT: u32 = 50;
const GROUPS_MAX: u32 = 500;
const OFFSET_MAX: u64 = 1_000_000;
/// Most services one risk request may name.
const RISK_IDS_MAX: usize = 500;

/// Trend buckets: as asked, else hours for ranges up to 7 days and days beyond.
pub fn bucket_for(q: &FindingQuery, now_ms: i64) -> Result<Bucket, ApiError> {
    let span = q
        .from_ms
        .map(|from| q.to_ms.unwrap_or(now_ms).saturating_sub(from));
    match (q.bucket, span) {
        (Some(Bucket::Hour), None) => Err(bad(
            "query parameter `bucket`: hour buckets need a time range (from_ms) of at most 31 days",
        )),
        (Some(Bucket::Hour), Some(s)) if s > HOURLY_MAX_MS => Err(bad(format!(
            "query parameter `bucket`: hour buckets need a range of at most 31 days, this one is {} days",
            s / (24 * HOUR_MS)
        ))),
        (Some(b), _) => Ok(b),
        (None, Some(s)) if s <= HOURLY_UP_TO_MS => Ok(Bucket::Hour),
        (None, _) => Ok(Bucket::Day),
    }
}

fn group_args(q: &FindingQuery) -> Result<(GroupBy, u32, u64), ApiError> {
    let (limit, _) = check_query(q, GROUPS_DEFAULT, GROUPS_MAX)?;
    let by = q.by.ok_or_else(|| {
        bad("query parameter `by` is required: one of user, host, process, group")
    })?;
    let offset = q.offset.unwrap_or(0);
    if offset > OFFSET_MAX {
        return Err(bad(format!(
            "query parameter `offset`: at most {OFFSET_MAX}, got {offset} (narrow the filters)"
        )));
    }
    Ok((by, limit, offset))
}

/// `GET /api/v1/reports/groups?by=user|host|process|group&…filters&limit&offset`
pub async fn groups(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Json<GroupPage>, ApiError> {
    caller.require(Cap::Read)?;
    let (by, limit, offset) = group_args(&q)?;
    Ok(Json(
        heavy(&st, move |s| {
            s.group_report(by, &q, GroupSort::Events, limit, offset)
        })
        .await?,
    ))
}

/// `GET /api/v1/reports/uploaders?by=…`: who sent the most data to unsanctioned or blocked
/// services (the verdict filter, when given, must be one of those two).
pub async fn uploaders(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Json<GroupPage>, ApiError> {
    caller.require(Cap::Read)?;
    let (by, limit, offset) = group_args(&q)?;
    if let Some(v) = q.verdict
        && !matches!(v, Verdict::Unsanctioned | Verdict::Blocked)
    {
        return Err(bad(format!(
            "query parameter `verdict`: uploaders are reported for unsanctioned or blocked \
             services only, got {}",
            v.as_str()
        )));
    }
    Ok(Json(
        heavy(&st, move |s| {
            s.group_report(by, &q, GroupSort::Uploaders, limit, offset)
        })
        .await?,
    ))
}

/// `GET /api/v1/reports/facets?from_ms&to_ms`: what the filter pickers offer.
pub async fn facets(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Json<Facets>, ApiError> {
    caller.require(Cap::Read)?;
    check_query(&q, 100, 1000)?;
    Ok(Json(heavy(&st, move |s| s.facets(&q)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskQuery {
    /// Comma-separated service ids.
    services: String,
}

/// `GET /api/v1/risk?services=a,b`: each service's risk score with its factors, per plan,
/// from the collector's catalogue. Ids the catalogue does not know are left out.
pub async fn risk(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<RiskQuery>,
) -> Result<Json<Vec<ServiceRisk>>, ApiError> {
    caller.require(Cap::Read)?;
    let ids: Vec<&str> = q
        .services
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.len() > RISK_IDS_MAX {
        return Err(bad(format!(
            "query parameter `services`: at most {RISK_IDS_MAX} ids, got {}",
            ids.len()
        )));
    }
    let cat = crate::catalogue_overlay::effective(&st).await?;
    let out = ids
        .iter()
        .filter_map(|id| cat.service(id))
        .map(crate::risk::service_risk)
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/alerts?before&limit`: first-use alerts, newest first.
pub async fn alerts(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    caller.require(Cap::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!(
            "query parameter `limit`: must be 1..=1000, got {limit}"
        )));
    }
    Ok(Json(heavy(&st, move |s| s.alerts(q.before, limit)).await?))
}

/// `GET /api/v1/alerts/outbox?before&limit`: every alert and notice with its delivery to the
/// webhook (pending / delivered / failed / not_sent), newest first, with totals by state.
pub async fn outbox(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<AlertQuery>,
) -> Result<Json<shadowai_api::OutboxPage>, ApiError> {
    caller.require(Cap::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!(
            "query parameter `limit`: must be 1..=1000, got {limit}"
        )));
    }
    Ok(Json(heavy(&st, move |s| s.outbox(q.before, limit)).await?))
}
