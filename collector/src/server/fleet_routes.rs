//! Admin routes over host identity: revoke an agent, rotate its token, release a host's
//! binding, and manage enrollment keys. Every change is audited with the person who made it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use shadowai_api::{
    AgentInfo, EnrollmentKeyCreated, EnrollmentKeyInfo, EnrollmentKeyRequest, NoteRequest,
};

use super::admin_routes::check_note;
use super::agent_routes::{check_ident, check_text};
use super::auth::{Caller, Cap, ENROLL_PREFIX, hash_secret, new_secret};
use super::error::{ApiError, bad};
use super::extract::JsonBody;
use super::{SharedState, now_ms};
use crate::store::{NewEnrollmentKey, Store, StoreError};

const MAX_TTL_S: u64 = 31_536_000;
const MAX_USES: u64 = 1_000_000;

/// One admin action on an agent: role, path id and note checked, the store call made in
/// the caller's name (it audits), the outcome logged.
async fn agent_action<F>(
    caller: &Caller,
    st: &SharedState,
    agent_id: String,
    body: &NoteRequest,
    done: &'static str,
    act: F,
) -> Result<Json<AgentInfo>, ApiError>
where
    F: FnOnce(&dyn Store, &str, &str, Option<&str>, i64) -> Result<AgentInfo, StoreError>
        + Send
        + 'static,
{
    caller.require(Cap::Admin)?;
    check_ident("agent_id", &agent_id, 64)?;
    let note = check_note(body)?;
    let actor = caller.person().to_owned();
    let now = now_ms();
    let info = st
        .db(move |s| act(s, &actor, &agent_id, note.as_deref(), now))
        .await?;
    tracing::info!(agent_id = %info.agent_id, host_id = %info.host_id, by = %caller.person(), "{done}");
    Ok(Json(info))
}

/// Revokes an agent: its token is refused, its host cannot enroll until released.
pub async fn revoke_agent(
    caller: Caller,
    State(st): State<SharedState>,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<AgentInfo>, ApiError> {
    agent_action(
        &caller,
        &st,
        agent_id,
        &body,
        "agent revoked",
        |s, actor, id, note, now| s.revoke_agent(actor, id, note, now),
    )
    .await
}

pub async fn rotate_token(
    caller: Caller,
    State(st): State<SharedState>,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<AgentInfo>, ApiError> {
    // No token hashes to this: the current token is dead, the host re-enrolls with its key.
    let dead = format!("rotated:{}", new_secret("")?);
    agent_action(
        &caller,
        &st,
        agent_id,
        &body,
        "agent token rotated",
        move |s, actor, id, note, now| s.rotate_agent_token(actor, id, note, &dead, now),
    )
    .await
}

pub async fn release(
    caller: Caller,
    State(st): State<SharedState>,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<AgentInfo>, ApiError> {
    agent_action(
        &caller,
        &st,
        agent_id,
        &body,
        "host released",
        |s, actor, id, note, now| s.release_agent(actor, id, note, now),
    )
    .await
}

pub async fn create_key(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(req): JsonBody<EnrollmentKeyRequest>,
) -> Result<(StatusCode, Json<EnrollmentKeyCreated>), ApiError> {
    caller.require(Cap::Admin)?;
    check_text("note", &req.note, 256)?;
    if let Some(t) = req.ttl_s
        && !(1..=MAX_TTL_S).contains(&t)
    {
        return Err(bad(format!("ttl_s: must be 1..={MAX_TTL_S}, got {t}")));
    }
    if let Some(m) = req.max_uses
        && !(1..=MAX_USES).contains(&m)
    {
        return Err(bad(format!("max_uses: must be 1..={MAX_USES}, got {m}")));
    }
    let secret = new_secret(ENROLL_PREFIX)?;
    let now = now_ms();
    let key = NewEnrollmentKey {
        key_hash: hash_secret(&secret),
        note: req.note,
        // ttl_s <= MAX_TTL_S: the product fits easily.
        expires_ms: req.ttl_s.map(|t| now.saturating_add(t as i64 * 1000)),
        max_uses: req.max_uses,
    };
    let actor = caller.person().to_owned();
    let info = st
        .db(move |s| s.create_enrollment_key(&actor, &key, false, now))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentKeyCreated { key: info, secret }),
    ))
}

pub async fn list_keys(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<EnrollmentKeyInfo>>, ApiError> {
    caller.require(Cap::Admin)?;
    Ok(Json(st.db(|s| s.list_enrollment_keys()).await?))
}

pub async fn revoke_key(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(_body): JsonBody<NoteRequest>,
) -> Result<Json<EnrollmentKeyInfo>, ApiError> {
    caller.require(Cap::Admin)?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(format!("path: {id:?} is not a valid id")))?;
    let actor = caller.person().to_owned();
    let now = now_ms();
    Ok(Json(
        st.db(move |s| s.revoke_enrollment_key(&actor, id, now))
            .await?,
    ))
}
