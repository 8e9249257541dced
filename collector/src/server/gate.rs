//! Authorisation before anything else: after routing and before any extractor reads the
//! body or the query, the caller is resolved and checked against the route's capability, so
//! a caller without it gets 401/403 whatever it sent (never a 400 from parsing) and no
//! body is buffered or decompressed for them. Handlers check again (`Caller::require`).

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::{Cap, resolve_counted};

/// What a route needs; `None`: open (no token).
fn required(method: &Method, route: &str) -> Option<Option<Cap>> {
    let get = method == Method::GET;
    let cap = match route {
        "/api/v1/enroll" | "/api/v1/reenroll" => return Some(None),
        "/api/v1/ingest" | "/api/v1/heartbeat" | "/api/v1/bundle" => Cap::Agent,
        "/api/v1/whoami" => Cap::Person,
        "/api/v1/findings"
        | "/api/v1/reports/services"
        | "/api/v1/reports/trend"
        | "/api/v1/agents"
        | "/api/v1/policy" => Cap::Read,
        "/api/v1/proposals" | "/api/v1/bundles" | "/api/v1/rollouts" if get => Cap::Read,
        "/api/v1/proposals" => Cap::Propose,
        "/api/v1/bundles"
        | "/api/v1/rollouts"
        | "/api/v1/rollouts/{id}/advance"
        | "/api/v1/rollouts/{id}/rollback"
        | "/api/v1/rollouts/{id}/rollback/compose"
        | "/api/v1/agents/{agent_id}/revoke"
        | "/api/v1/agents/{agent_id}/rotate-token"
        | "/api/v1/agents/{agent_id}/release"
        | "/api/v1/enrollment-keys"
        | "/api/v1/enrollment-keys/{id}/revoke"
        | "/api/v1/policy/compose" => Cap::Admin,
        "/api/v1/proposals/{id}/approve" | "/api/v1/proposals/{id}/reject" => Cap::Approve,
        "/api/v1/exports/findings.csv" | "/api/v1/exports/findings.ocsf.json" => Cap::Export,
        "/api/v1/audit" | "/api/v1/audit/export" => Cap::Audit,
        // ---- naming: catalogue proposals (issue 17) ----
        "/api/v1/discovery/proposals" | "/api/v1/discovery/proposals/{id}/impact" if get => {
            Cap::Read
        }
        "/api/v1/discovery/proposals" => Cap::Curate,
        "/api/v1/discovery/proposals/{id}/approve" | "/api/v1/discovery/proposals/{id}/reject" => {
            Cap::Approve
        }
        // Any other API route: a valid token at least; its handler checks the role.
        _ => return None,
    };
    Some(Some(cap))
}

pub async fn gate(State(st): State<SharedState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let need = required(req.method(), &route);
    if need == Some(None) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match resolve_counted(&parts, &st).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Some(Some(cap)) = need
        && let Err(e) = caller.require(cap)
    {
        return e.into_response();
    }
    parts.extensions.insert(caller);
    req = Request::from_parts(parts, body);
    next.run(req).await
}
