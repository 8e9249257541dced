//! The discovery loop's routes: agents report unknown names (`POST
//! /api/v1/discovery/report`, agent token — the host is the token's, never the body's);
//! analysts list them with hosts and processes (`GET /api/v1/discovery`).

use axum::Json;
use axum::extract::State;
use shadowai_api::discovery::{CandidateView, DiscoveryAck, DiscoveryReport};

use super::SharedState;
use super::agent_routes::check_text;
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::JsonBody;
use super::now_ms;

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
        tracing::warn!(host_id = %host_id, refused = ack.refused, "discovery table bound reached: candidates refused");
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
