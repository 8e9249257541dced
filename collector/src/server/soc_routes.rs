//! SOC routes: findings search, reports, exports, fleet list, whoami.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shadowai_api::{AgentInfo, FindingQuery, FindingsPage, ServiceReport, TrendPoint, WhoAmI};

use super::SharedState;
use super::agent_routes::check_text;
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::export_stream::{self, Format};
use super::extract::QueryParams;

const EXPORT_DEFAULT: u32 = 10_000;
const EXPORT_MAX: u32 = 100_000;

/// Checks filters; returns (limit, cursor).
pub(super) fn check_query(
    q: &FindingQuery,
    default: u32,
    max: u32,
) -> Result<(u32, Option<i64>), ApiError> {
    for (name, v) in [
        ("service", &q.service),
        ("category", &q.category),
        ("host", &q.host),
        ("user", &q.user),
        ("process", &q.process),
        ("container", &q.container),
        ("group", &q.group),
        ("user_contains", &q.user_contains),
        ("host_contains", &q.host_contains),
        ("process_contains", &q.process_contains),
    ] {
        if let Some(v) = v {
            check_text(&format!("query parameter `{name}`"), v, 4096)?;
        }
    }
    if let (Some(f), Some(t)) = (q.from_ms, q.to_ms)
        && f > t
    {
        return Err(bad(format!(
            "query parameters: from_ms ({f}) is after to_ms ({t})"
        )));
    }
    for (name, v) in [("risk_min", q.risk_min), ("risk_max", q.risk_max)] {
        if let Some(v) = v
            && v > 100
        {
            return Err(bad(format!(
                "query parameter `{name}`: a risk score is 0..=100, got {v}"
            )));
        }
    }
    if let (Some(lo), Some(hi)) = (q.risk_min, q.risk_max)
        && lo > hi
    {
        return Err(bad(format!(
            "query parameters: risk_min ({lo}) is above risk_max ({hi})"
        )));
    }
    let limit = q.limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(bad(format!(
            "query parameter `limit`: must be 1..={max}, got {limit}"
        )));
    }
    let cursor = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
            bad(format!(
                "query parameter `cursor`: {c:?} is not a cursor from next_cursor"
            ))
        })?),
    };
    Ok((limit, cursor))
}

pub async fn whoami(caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    caller.require(Cap::Person)?;
    match caller {
        Caller::Person { name, role } => Ok(Json(WhoAmI { name, role })),
        Caller::Agent(_) => Err(ApiError::Forbidden {
            message: "agents have no person identity".into(),
        }),
    }
}

pub async fn findings(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Json<FindingsPage>, ApiError> {
    caller.require(Cap::Read)?;
    let (limit, cursor) = check_query(&q, 100, 1000)?;
    let (items, next) = heavy(&st, move |s| s.search(&q, limit, cursor)).await?;
    let risk = st.risk.as_ref().map_or_else(Vec::new, |book| {
        book.for_services(items.iter().map(|f| f.service_id.as_str()))
    });
    Ok(Json(FindingsPage {
        items,
        next_cursor: next.map(|c| c.to_string()),
        risk,
    }))
}

pub async fn services(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Json<Vec<ServiceReport>>, ApiError> {
    caller.require(Cap::Read)?;
    check_query(&q, 100, 1000)?;
    let mut rows = heavy(&st, move |s| s.services_report(&q)).await?;
    if let Some(book) = &st.risk {
        for r in &mut rows {
            r.risk = book.explain(&r.service_id, r.risk_score);
        }
    }
    Ok(Json(rows))
}

pub async fn trend(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Json<Vec<TrendPoint>>, ApiError> {
    caller.require(Cap::Read)?;
    check_query(&q, 100, 1000)?;
    let bucket = super::report_routes::bucket_for(&q, super::now_ms())?;
    Ok(Json(heavy(&st, move |s| s.trend_by(&q, bucket)).await?))
}

/// Takes one export from the person's bucket.
fn export_allowed(st: &SharedState, caller: &Caller) -> Result<(), ApiError> {
    st.export_limiter
        .check(caller.person(), std::time::Instant::now())
        .map_err(|retry_after_s| {
            st.metrics.rate_limited.inc();
            ApiError::RateLimited { retry_after_s }
        })
}

fn export_response(
    st: SharedState,
    caller: &Caller,
    q: FindingQuery,
    format: Format,
    content_type: &'static str,
    filename: &'static str,
) -> Result<Response, ApiError> {
    let (limit, cursor) = check_query(&q, EXPORT_DEFAULT, EXPORT_MAX)?;
    export_allowed(&st, caller)?;
    let body = export_stream::start(st, q, limit, cursor, format);
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, filename),
        ],
        axum::body::Body::new(body),
    )
        .into_response())
}

pub async fn export_csv(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Response, ApiError> {
    caller.require(Cap::Export)?;
    export_response(
        st,
        &caller,
        q,
        Format::Csv,
        "text/csv; charset=utf-8",
        "attachment; filename=\"shadowai-findings.csv\"",
    )
}

pub async fn export_ocsf(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<FindingQuery>,
) -> Result<Response, ApiError> {
    caller.require(Cap::Export)?;
    export_response(
        st,
        &caller,
        q,
        Format::OcsfJsonArray,
        "application/json",
        "attachment; filename=\"shadowai-findings.ocsf.json\"",
    )
}

/// Runs a heavy read (report, search) under a read permit.
pub(super) async fn heavy<T, F>(st: &SharedState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    let _permit =
        st.read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal {
                what: format!("read permits closed: {e}"),
            })?;
    st.db(f).await
}

pub async fn agents(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<AgentInfo>>, ApiError> {
    caller.require(Cap::Read)?;
    Ok(Json(st.db(|s| s.list_agents()).await?))
}
