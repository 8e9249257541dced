//! Enrollment: `POST /api/v1/enroll` (enrollment secret + host key) and
//! `POST /api/v1/reenroll` (host key only), rate-limited per client IP and per host id.

use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shadowai_api::{EnrollRequest, EnrollResponse, ReenrollRequest};

use super::agent_routes::{check_ident, check_text};
use super::auth::{AGENT_PREFIX, hash_secret, new_secret};
use super::error::{ApiError, bad};
use super::extract::{JsonBody, Peer, peer_of};
use super::{SharedState, now_ms};
use crate::store::{EnrollAttempt, EnrollOutcome};

/// Per-IP token bucket for the unauthenticated enrollment routes, before the body is read.
pub async fn enroll_limit(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let ip = peer_of(req.extensions());
    if let Err(retry_after_s) = st.enroll_limiter.check(&format!("ip:{ip}"), Instant::now()) {
        st.metrics.rate_limited.inc();
        return ApiError::RateLimited { retry_after_s }.into_response();
    }
    next.run(req).await
}

/// Per host id and presented key: token re-issues write audit entries, so they are rare by
/// design; keyed with the key so that someone flooding a host id with another key cannot use
/// up the real host's budget.
fn host_reissue_allowed(st: &SharedState, host_id: &str, key_sha256: &str) -> Result<(), ApiError> {
    let key = format!("{host_id}/{}", key_sha256.get(..16).unwrap_or(key_sha256));
    st.host_limiter
        .check(&key, Instant::now())
        .map_err(|retry_after_s| {
            st.metrics.rate_limited.inc();
            ApiError::RateLimited { retry_after_s }
        })
}

/// SHA-256 (hex) of a host key: exactly 64 hex digits (32 random bytes).
fn host_key_hash(key: &str) -> Result<String, ApiError> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "host_key: must be 64 hex digits (32 random bytes the agent keeps), got {} characters",
            key.len()
        )));
    }
    Ok(hash_secret(&key.to_ascii_lowercase()))
}

fn new_token() -> Result<(String, String), ApiError> {
    let token = new_secret(AGENT_PREFIX)?;
    let h = hash_secret(&token);
    Ok((token, h))
}

/// Maps a refused outcome to its error (and counts it).
fn refused(
    st: &SharedState,
    via: &str,
    host_id: &str,
    peer: &str,
    outcome: EnrollOutcome,
) -> ApiError {
    match outcome {
        EnrollOutcome::Enrolled { .. } => ApiError::Internal {
            what: "enrollment outcome mapped as a refusal".into(),
        },
        EnrollOutcome::BadSecret => {
            st.metrics.auth_failures.inc();
            ApiError::Unauthenticated {
                message: "wrong, expired, used-up or revoked enrollment secret".into(),
            }
        }
        EnrollOutcome::Conflict { conflicts } => {
            st.metrics.identity_conflicts.inc();
            // soc (issue 13): to the SIEM forwarders and the alert webhook.
            crate::alerts::host_conflict(
                st,
                crate::store::ConflictSeen {
                    host_id: host_id.to_owned(),
                    peer: peer.to_owned(),
                    via: via.to_owned(),
                    conflicts,
                },
            );
            tracing::warn!(
                host_id,
                peer,
                conflicts,
                "host identity conflict: enrollment with another host key refused"
            );
            ApiError::HostIdentityConflict {
                message: format!(
                    "host_id {host_id:?} is bound to another host key; an admin must release \
                     the host before it can enroll with a new key"
                ),
            }
        }
        EnrollOutcome::Revoked => ApiError::AgentRevoked {
            message: format!(
                "host {host_id:?} was revoked by an admin; it cannot enroll until released"
            ),
        },
        EnrollOutcome::UnknownHost => ApiError::NotFound {
            message: format!("host {host_id:?} is not enrolled; enroll with the enrollment secret"),
        },
        EnrollOutcome::HostLimit => ApiError::Conflict {
            message: "the collector holds limits.max_hosts bound hosts; release or revoke \
                      hosts, or raise the limit"
                .into(),
        },
    }
}

pub async fn enroll(
    State(st): State<SharedState>,
    Peer(peer): Peer,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    // The secret first: without it nothing else is looked at.
    check_text("secret", &req.secret, 256)?;
    let secret_hash = hash_secret(&req.secret);
    let now = now_ms();
    let h = secret_hash.clone();
    if !st.db(move |s| s.enrollment_key_valid(&h, now)).await? {
        return Err(refused(
            &st,
            "enroll",
            &req.host_id,
            &peer,
            EnrollOutcome::BadSecret,
        ));
    }
    check_ident("host_id", &req.host_id, 253)?;
    check_ident("hostname", &req.hostname, 253)?;
    if let Some(g) = &req.group {
        check_ident("group", g, 64)?;
    }
    check_text("agent_version", &req.agent_version, 64)?;
    let key_sha256 = host_key_hash(&req.host_key)?;
    host_reissue_allowed(&st, &req.host_id, &key_sha256)?;
    let (token, token_hash) = new_token()?;
    let attempt = EnrollAttempt {
        secret_hash,
        host_id: req.host_id.clone(),
        hostname: req.hostname,
        group: req.group,
        agent_version: req.agent_version,
        key_sha256,
        new_agent_id: format!("agt_{}", &new_secret("")?[..24]),
        token_hash,
        max_hosts: st.limits.max_hosts,
        peer: peer.clone(),
    };
    match st.db(move |s| s.enroll_host(&attempt, now)).await? {
        EnrollOutcome::Enrolled { agent_id, rebound } => {
            st.metrics.enrollments.inc();
            tracing::info!(agent_id = %agent_id, host_id = %req.host_id, rebound, "agent enrolled");
            Ok(Json(EnrollResponse { agent_id, token }))
        }
        other => Err(refused(&st, "enroll", &req.host_id, &peer, other)),
    }
}

pub async fn reenroll(
    State(st): State<SharedState>,
    Peer(peer): Peer,
    JsonBody(req): JsonBody<ReenrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    check_ident("host_id", &req.host_id, 253)?;
    check_text("agent_version", &req.agent_version, 64)?;
    let key_sha256 = host_key_hash(&req.host_key)?;
    host_reissue_allowed(&st, &req.host_id, &key_sha256)?;
    let (token, token_hash) = new_token()?;
    let now = now_ms();
    let (host, p) = (req.host_id.clone(), peer.clone());
    match st
        .db(move |s| s.reenroll_host(&host, &key_sha256, &token_hash, &p, now))
        .await?
    {
        EnrollOutcome::Enrolled { agent_id, .. } => {
            st.metrics.enrollments.inc();
            tracing::info!(agent_id = %agent_id, host_id = %req.host_id, "agent re-enrolled with its host key");
            Ok(Json(EnrollResponse { agent_id, token }))
        }
        other => Err(refused(&st, "reenroll", &req.host_id, &peer, other)),
    }
}
