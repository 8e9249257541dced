//! The discovery loop's routes: agents report unknown names (`POST
//! /api/v1/discovery/report`, agent token — the host is the token's, never the body's);
//! analysts list them with hosts and processes (`GET /api/v1/discovery`) and promote one to
//! a draft catalogue entry (`GET /api/v1/discovery/draft?name=…`, TOML).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shadowai_api::discovery::{CandidateView, DiscoveryAck, DiscoveryReport};

use super::SharedState;
use super::agent_routes::check_text;
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::{JsonBody, QueryParams};
use super::now_ms;

static WARNED_FULL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A DNS name as the agent reports it: lower-case letters, digits, `-`, `_` and dots,
/// 1–253 bytes, labels of 1–63 bytes.
fn check_name(i: usize, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "candidates[{i}].name: not a lower-case DNS name of at most 253 bytes"
        )))
    }
}

pub async fn report(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(r): JsonBody<DiscoveryReport>,
) -> Result<Json<DiscoveryAck>, ApiError> {
    caller.require(Cap::Agent)?;
    let host_id = caller.agent()?.host_id.clone();
    for (i, c) in r.candidates.iter().enumerate() {
        check_name(i, &c.name)?;
        check_text(&format!("candidates[{i}].exe"), &c.exe, 4096)?;
        if let Some(a) = &c.alongside {
            check_text(&format!("candidates[{i}].alongside"), a, 160)?;
        }
    }
    if r.dropped > 0 {
        tracing::info!(host_id = %host_id, dropped = r.dropped, "an agent's discovery table was full: it dropped candidates");
    }
    let now = now_ms();
    let candidates = r.candidates;
    let hid = host_id.clone();
    let ack = st
        .db(move |s| s.record_discovery(&hid, &candidates, now))
        .await?;
    if ack.refused > 0 {
        st.metrics.discovery_refused.inc_by(ack.refused);
        // Logged once per process (a flooding host must not flood the log); the counter
        // `shadowai_collector_discovery_refused_total` keeps the tally.
        if !WARNED_FULL.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(host_id = %host_id, refused = ack.refused, "discovery table bound reached: candidates refused (counted; not logged again)");
        }
    }
    Ok(Json(ack))
}

pub async fn list(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<CandidateView>>, ApiError> {
    caller.require(Cap::Read)?;
    Ok(Json(st.db(|s| s.list_discovery()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftQuery {
    name: String,
}

/// The candidate `name` as a draft catalogue entry (`text/plain` TOML).
pub async fn draft(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<DraftQuery>,
) -> Result<Response, ApiError> {
    caller.require(Cap::Read)?;
    check_name(0, &q.name).map_err(|_| bad("name: not a lower-case DNS name"))?;
    let list = st.db(|s| s.list_discovery()).await?;
    let c = list
        .into_iter()
        .find(|c| c.name == q.name)
        .ok_or_else(|| ApiError::NotFound {
            message: format!("no discovery candidate {}", q.name),
        })?;
    let today = crate::store::day_string(now_ms().div_euclid(86_400_000));
    let body = crate::discovery_draft::draft(&c, &today);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}
