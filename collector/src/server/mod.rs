//! The HTTP server: state, router, middleware and the TLS accept loop.

mod admin_routes;
mod agent_routes;
mod bundle_check;
mod discovery_routes;
// issue 10: policy document and catalogue
pub mod auth;
pub mod conn;
mod enroll_routes;
pub mod error;
mod export_stream;
mod extract;
mod fleet_routes;
mod gate;
mod ingest_decode;
mod inventory_routes;
pub mod metrics;
pub(crate) mod policy_routes;
mod publish_routes;
pub mod ratelimit;
mod report_routes;
mod slowbody;
mod soc_routes;
mod stall;
pub mod tls;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::Limits;
use crate::store::{Store, StoreError};
use error::ApiError;
use metrics::{HttpLabels, Metrics};
use ratelimit::RateLimiter;

/// Hands findings to the SIEM forwarders without waiting for them.
pub trait FindingSink: Send + Sync + 'static {
    /// Queues the findings; never blocks.
    fn forward(&self, findings: &[shadowai_api::Finding]);
    /// Queues first-use alerts (issue 15); never blocks.
    fn forward_alerts(&self, _alerts: &[shadowai_api::Alert]) {}
    /// Queues security notices: identity conflicts, suppressed alerts (issues 13, 15).
    fn forward_notices(&self, _notices: &[shadowai_api::Notice]) {}
    /// Queues the audit chain head (issue 10).
    fn forward_audit_head(&self, _head: &shadowai_api::AuditHead) {}
    /// Cumulative counters for `/metrics`.
    fn totals(&self) -> crate::siem::SinkTotals;
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Per token (per IP for anonymous calls).
    pub limiter: RateLimiter,
    /// Per client IP, all requests.
    pub ip_limiter: RateLimiter,
    /// Enroll / reenroll calls per client IP and per host id.
    pub enroll_limiter: RateLimiter,
    /// Token re-issues per host id (reenroll, or enroll of a bound host with its key): each
    /// writes an audit entry, so a host holding its own key cannot flood the log.
    pub host_limiter: RateLimiter,
    /// Agents already warned about a heartbeat group that differs from the admin's (bounded).
    pub group_warned: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Ingest bodies decoded at once (`limits.parse_concurrency`).
    pub parse_permits: Arc<tokio::sync::Semaphore>,
    /// Heavy reads (report queries, export pages) at once (`limits.heavy_readers`): the rest
    /// of the store's capacity stays for ingest.
    pub read_permits: Arc<tokio::sync::Semaphore>,
    /// Exports per person (token bucket, `limits.exports_per_min`).
    pub export_limiter: RateLimiter,
    /// When set, uploaded bundles must verify against one of these keys (by key id).
    pub bundle_key: Option<shadowai_rules::keyset::KeySet>,
    pub sink: Option<Arc<dyn FindingSink>>,
    // ---- policy (issue 10): the catalogue proposals and bundles are checked against ----
    /// The collector's own catalogue, or why it could not be loaded (then proposals and
    /// bundle uploads are refused with that reason; everything else works).
    pub catalogue: Result<Arc<shadowai_rules::Catalogue>, String>,
    /// soc (issue 15): where first-use alerts are POSTed (none: stored and listed only).
    pub alert_webhook: Option<crate::alerts::AlertWebhook>,
    /// soc: alert caps and the outbox's; the catalogue's risk breakdowns (none: no catalogue).
    pub alert_policy: crate::store::AlertPolicy,
    pub risk: Option<Arc<crate::risk::RiskBook>>,
    /// naming (issue 17): approved catalogue entries composed with the shipped catalogue.
    pub overlay: crate::catalogue_overlay::OverlayCache,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Runs a store call on the blocking pool.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let s = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*s))
            .await
            .map_err(|e| ApiError::Internal {
                what: format!("store task failed: {e}"),
            })?
            .map_err(ApiError::from)
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The whole application (routes + middleware).
pub fn router(state: SharedState) -> Router {
    let body_limit = state.limits.body_bytes;
    let api = Router::new()
        .route("/api/v1/ingest", post(agent_routes::ingest))
        .route("/api/v1/heartbeat", post(agent_routes::heartbeat))
        .route("/api/v1/bundle", get(agent_routes::bundle))
        .route(
            "/api/v1/inventory",
            get(inventory_routes::list).post(inventory_routes::report),
        )
        .route(
            "/api/v1/exports/inventory.csv",
            get(inventory_routes::export_csv),
        )
        .route(
            "/api/v1/exports/inventory.ocsf.json",
            get(inventory_routes::export_ocsf),
        )
        .route("/api/v1/whoami", get(soc_routes::whoami))
        .route("/api/v1/findings", get(soc_routes::findings))
        .route("/api/v1/reports/services", get(soc_routes::services))
        .route("/api/v1/reports/trend", get(soc_routes::trend))
        // soc (issue 15): fleet-wide group-by, uploaders, pickers, risk, alerts
        .route("/api/v1/reports/groups", get(report_routes::groups))
        .route("/api/v1/reports/uploaders", get(report_routes::uploaders))
        .route("/api/v1/reports/facets", get(report_routes::facets))
        .route("/api/v1/risk", get(report_routes::risk))
        .route("/api/v1/alerts", get(report_routes::alerts))
        .route("/api/v1/alerts/outbox", get(report_routes::outbox))
        .route("/api/v1/exports/findings.csv", get(soc_routes::export_csv))
        .route(
            "/api/v1/exports/findings.ocsf.json",
            get(soc_routes::export_ocsf),
        )
        .route("/api/v1/agents", get(soc_routes::agents))
        .route(
            "/api/v1/agents/{agent_id}/revoke",
            post(fleet_routes::revoke_agent),
        )
        .route(
            "/api/v1/proposals",
            get(admin_routes::list_proposals).post(admin_routes::propose),
        )
        .route(
            "/api/v1/proposals/{id}/approve",
            post(admin_routes::approve),
        )
        .route("/api/v1/proposals/{id}/reject", post(admin_routes::reject))
        .route("/api/v1/policy", get(admin_routes::policy))
        .route(
            "/api/v1/bundles",
            get(admin_routes::list_bundles).post(admin_routes::upload_bundle),
        )
        .route(
            "/api/v1/rollouts",
            get(admin_routes::list_rollouts).post(admin_routes::start_rollout),
        )
        .route(
            "/api/v1/rollouts/{id}/advance",
            post(admin_routes::advance_rollout),
        )
        .route(
            "/api/v1/rollouts/{id}/rollback",
            post(admin_routes::rollback_rollout),
        )
        // ---- policy as data, publish (issue 10) ----
        .route("/api/v1/policy/compose", post(publish_routes::compose))
        .route(
            "/api/v1/rollouts/{id}/rollback/compose",
            post(publish_routes::compose_rollback),
        )
        .route("/api/v1/catalogue", get(policy_routes::catalogue))
        .route("/api/v1/policy/document", get(policy_routes::document))
        .route("/api/v1/proposals/{id}/impact", get(policy_routes::impact))
        .route(
            "/api/v1/rollouts/{id}/agents",
            get(policy_routes::rollout_agents),
        )
        .route(
            "/api/v1/bundles/{version}/file",
            get(policy_routes::bundle_file),
        )
        // ----
        // ---- naming: unknown-AI discovery (issue 17) ----
        .route("/api/v1/discovery/report", post(discovery_routes::report))
        .route("/api/v1/discovery", get(discovery_routes::list))
        .route("/api/v1/discovery/draft", get(discovery_routes::draft))
        .route(
            "/api/v1/discovery/proposals",
            get(discovery_routes::list_proposals).post(discovery_routes::propose),
        )
        .route(
            "/api/v1/discovery/proposals/{id}/impact",
            get(discovery_routes::proposal_impact),
        )
        .route(
            "/api/v1/discovery/proposals/{id}/approve",
            post(discovery_routes::approve),
        )
        .route(
            "/api/v1/discovery/proposals/{id}/reject",
            post(discovery_routes::reject),
        )
        // ----
        .route("/api/v1/audit", get(admin_routes::audit))
        .route("/api/v1/audit/export", get(admin_routes::audit_export));
    // ---- host identity (issue 13): enrollment with a small body limit and its own
    // per-IP bucket, token rotation, release, enrollment keys ----
    let enroll_body = state.limits.enroll_body_bytes;
    let enroll_layer = |h: axum::routing::MethodRouter<SharedState>| {
        h.layer(DefaultBodyLimit::max(enroll_body))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                enroll_routes::enroll_limit,
            ))
    };
    let identity = Router::new()
        .route("/api/v1/enroll", enroll_layer(post(enroll_routes::enroll)))
        .route(
            "/api/v1/reenroll",
            enroll_layer(post(enroll_routes::reenroll)),
        )
        .route(
            "/api/v1/agents/{agent_id}/rotate-token",
            post(fleet_routes::rotate_token),
        )
        .route(
            "/api/v1/agents/{agent_id}/release",
            post(fleet_routes::release),
        )
        .route(
            "/api/v1/enrollment-keys",
            get(fleet_routes::list_keys).post(fleet_routes::create_key),
        )
        .route(
            "/api/v1/enrollment-keys/{id}/revoke",
            post(fleet_routes::revoke_key),
        );
    let api = api
        .merge(identity)
        .route_layer(middleware::from_fn_with_state(state.clone(), gate::gate));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_route))
        .route("/", get(ui::index))
        .route("/ui", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound {
        message: format!("no route {} {}", req.method(), req.uri().path()),
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!("{} is not allowed on {}", req.method(), req.uri().path()),
    }
}

async fn healthz(State(st): State<SharedState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    st.db(|s| s.health()).await?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

async fn metrics_route(State(st): State<SharedState>) -> Response {
    if let Some(sink) = &st.sink {
        st.metrics.sync_siem(sink.totals());
    }
    if let Some(totals) = st.store.group_commit_totals() {
        st.metrics.sync_group_commit(totals);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

/// Token buckets per client IP and per token (or per IP when anonymous), before any
/// database work.
async fn rate_limit(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let ip = match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(a)) => format!("ip:{}", a.ip()),
        None => "ip:unknown".to_owned(),
    };
    let key = match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => format!("t:{}", &auth::hash_secret(v)[..16]),
        None => ip.clone(),
    };
    let now = Instant::now();
    let verdict = st
        .ip_limiter
        .check(&ip, now)
        .and_then(|()| st.limiter.check(&key, now));
    if let Err(retry_after_s) = verdict {
        st.metrics.rate_limited.inc();
        return ApiError::RateLimited { retry_after_s }.into_response();
    }
    next.run(req).await
}

/// Structured access log, request metrics, security headers.
async fn observe(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    if status == 408 {
        st.metrics.slow_bodies.inc();
    }
    let method_label = match method.as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD") => m.to_owned(),
        _ => "other".to_owned(),
    };
    st.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method: method_label,
            status,
        })
        .inc();
    tracing::info!(
        method = %method,
        route = %route,
        status,
        peer = %peer,
        latency_ms = start.elapsed().as_millis() as u64,
        "request"
    );
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}
