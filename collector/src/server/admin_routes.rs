//! Admin and approver routes: proposals and approvals, policy, bundles, rollouts, audit
//! log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shadowai_api::audit::AuditEntry;
use shadowai_api::{
    AdvanceRequest, BundleInfo, NoteRequest, PolicyEntry, PolicyScope, Proposal, ProposalRequest,
    ProposalStatus, Role, Rollout, RolloutRequest, RolloutStage,
};

use shadowai_rules::bundle;

use super::agent_routes::{check_ident, check_text};
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::{JsonBody, QueryParams, RawBody};
use super::{SharedState, now_ms};

pub(super) fn parse_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(format!("path: {s:?} is not a valid id")))
}

pub(super) fn check_note(n: &NoteRequest) -> Result<Option<String>, ApiError> {
    if let Some(t) = &n.note {
        check_text("note", t, 1000)?;
    }
    Ok(n.note.clone())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    status: Option<String>,
}

pub async fn list_proposals(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Json<Vec<Proposal>>, ApiError> {
    caller.require(Cap::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ProposalStatus::parse(s).ok_or_else(|| {
            bad(format!(
                "query parameter `status`: {s:?} is not one of pending, approved, rejected, applied"
            ))
        })?),
    };
    Ok(Json(st.db(move |s| s.list_proposals(status)).await?))
}

/// Appends an audit entry for a refused attempt; the refusal itself is returned either way
/// (a failed audit write is logged with the actor and action).
pub(super) async fn audit_refusal(
    st: &SharedState,
    actor: &str,
    action: &'static str,
    target: String,
    details: serde_json::Value,
) {
    let (actor, now) = (actor.to_owned(), now_ms());
    let who = actor.clone();
    if let Err(e) = st
        .db(move |s| s.append_audit(&actor, action, &target, details, now))
        .await
    {
        tracing::error!(actor = %who, action, error = %e, "could not audit a refused attempt");
    }
}

pub async fn propose(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(req): JsonBody<ProposalRequest>,
) -> Result<(StatusCode, Json<Proposal>), ApiError> {
    caller.require(Cap::Propose)?;
    if req.service_id != "*" {
        check_text("service_id", &req.service_id, 160)?;
    }
    if let PolicyScope::Group { group } = &req.scope {
        check_ident("scope.group", group, 64)?;
    }
    check_text("reason", &req.reason, 1000)?;
    if req.reason.trim().is_empty() {
        return Err(bad("reason: required (say why the verdict should change)"));
    }
    // naming (issue 17): services added through approved catalogue proposals count.
    let cat = crate::catalogue_overlay::effective(&st).await?;
    let target = crate::bundles::check_target(&cat, &req.service_id)?;
    crate::bundles::check_mode_decision(&target, req.verdict, &req.scope)?;
    // Blocking, or replacing a block in force, needs a second person; so does every
    // decision an analyst proposes (admins decide the rest at once).
    let proposals = st.db(|s| s.list_proposals(None)).await?;
    let needs_approval = crate::bundles::needs_approval(&cat, &proposals, &target, req.verdict)
        || !caller.is(Role::Admin);
    let actor = caller.person().to_owned();
    let now = now_ms();
    let p = st
        .db(move |s| s.create_proposal(&actor, &req, needs_approval, now))
        .await?;
    Ok((StatusCode::CREATED, Json(p)))
}

async fn decide(
    caller: Caller,
    st: SharedState,
    id: String,
    body: NoteRequest,
    approve: bool,
) -> Result<Json<Proposal>, ApiError> {
    caller.require(Cap::Approve)?;
    let id = parse_id(&id)?;
    let note = check_note(&body)?;
    let actor = caller.person().to_owned();
    let now = now_ms();
    let res = st
        .db(move |s| s.decide_proposal(&actor, id, approve, note.as_deref(), now))
        .await;
    if let Err(e @ ApiError::Forbidden { .. }) = &res {
        let action = if approve {
            "proposal.approve.refused"
        } else {
            "proposal.reject.refused"
        };
        let details = serde_json::json!({"reason": e.to_string()});
        audit_refusal(
            &st,
            caller.person(),
            action,
            format!("proposal:{id}"),
            details,
        )
        .await;
    }
    Ok(Json(res?))
}

pub async fn approve(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<Proposal>, ApiError> {
    decide(caller, st, id, body, true).await
}

pub async fn reject(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<Proposal>, ApiError> {
    decide(caller, st, id, body, false).await
}

pub async fn policy(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<PolicyEntry>>, ApiError> {
    caller.require(Cap::Read)?;
    Ok(Json(st.db(|s| s.policy()).await?))
}

pub async fn list_bundles(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<BundleInfo>>, ApiError> {
    caller.require(Cap::Read)?;
    Ok(Json(st.db(|s| s.list_bundles()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    version: Option<String>,
    note: Option<String>,
}

pub async fn upload_bundle(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<UploadQuery>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<BundleInfo>), ApiError> {
    caller.require(Cap::Admin)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    if !ct.starts_with("application/octet-stream") {
        return Err(ApiError::UnsupportedMediaType {
            message: format!("bundle upload: expected application/octet-stream, got {ct:?}"),
        });
    }
    let note = q.note.unwrap_or_default();
    check_text("note", &note, 1000)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let refused = |reason: String| serde_json::json!({"sha256": sha256, "size": bytes.len(), "version": q.version, "reason": reason});
    let checked = check_upload(&st, &bytes, q.version.as_deref()).await;
    let body = match checked {
        Ok(b) => b,
        Err(e) => {
            let details = refused(e.to_string());
            let target = format!("bundle:{}", q.version.as_deref().unwrap_or("?"));
            audit_refusal(&st, caller.person(), "bundle.refused", target, details).await;
            tracing::warn!(by = %caller.person(), error = %e, "bundle upload refused");
            return Err(e);
        }
    };
    let info = BundleInfo {
        version: body.version.clone(),
        sha256,
        size: bytes.len() as u64,
        uploaded_by: caller.person().to_owned(),
        uploaded_ms: now_ms(),
        note,
    };
    let (i2, actor) = (info.clone(), caller.person().to_owned());
    st.db(move |s| s.put_bundle(&actor, &i2, &bytes)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Signature, the `version` parameter, then the two-person rule against what agents run
/// (`bundle_check`) over the collector's catalogue.
async fn check_upload(
    st: &SharedState,
    bytes: &[u8],
    version: Option<&str>,
) -> Result<shadowai_rules::BundleBody, ApiError> {
    let now_s = now_ms() / 1000;
    let body = crate::bundles::check_bundle(bytes, st.bundle_key.as_ref(), now_s)?;
    if let Some(v) = version
        && *v != body.version
    {
        return Err(bad(format!(
            "query parameter `version` is {v:?} but the bundle says {:?}",
            body.version
        )));
    }
    super::bundle_check::against_live(st, &body, None).await?;
    Ok(body)
}

pub async fn list_rollouts(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<Rollout>>, ApiError> {
    caller.require(Cap::Read)?;
    Ok(Json(st.db(|s| s.list_rollouts()).await?))
}

pub async fn start_rollout(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(req): JsonBody<RolloutRequest>,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    caller.require(Cap::Admin)?;
    check_text("bundle_version", &req.bundle_version, 64)?;
    check_ident("canary_group", &req.canary_group, 64)?;
    // The fleet may have moved on since the upload: check again against what agents run.
    let v = req.bundle_version.clone();
    let Some((_, bytes)) = st.db(move |s| s.bundle(&v)).await? else {
        return Err(ApiError::NotFound {
            message: format!("bundle {:?} was never uploaded", req.bundle_version),
        });
    };
    let body = bundle::read_unverified(&bytes).map_err(|e| ApiError::Internal {
        what: format!("stored bundle {} does not parse: {e}", req.bundle_version),
    })?;
    if let Err(e) = super::bundle_check::against_live(&st, &body, Some(&req.bundle_version)).await {
        let details = serde_json::json!({"version": req.bundle_version, "reason": e.to_string()});
        let target = format!("bundle:{}", req.bundle_version);
        audit_refusal(&st, caller.person(), "rollout.refused", target, details).await;
        tracing::warn!(by = %caller.person(), error = %e, "rollout refused");
        return Err(e);
    }
    let actor = caller.person().to_owned();
    let now = now_ms();
    let r = st
        .db(move |s| s.create_rollout(&actor, &req.bundle_version, &req.canary_group, now))
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

pub async fn advance_rollout(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AdvanceRequest>,
) -> Result<Json<Rollout>, ApiError> {
    caller.require(Cap::Admin)?;
    let id = parse_id(&id)?;
    // Never a default of 100 %: the caller says how far.
    let (stage, percent) = match req.percent {
        Some(100) => (RolloutStage::All, 100),
        Some(p @ 1..=99) => (RolloutStage::Percent, p),
        Some(p) => return Err(bad(format!("percent: must be 1..=100, got {p}"))),
        None => {
            return Err(bad(
                "percent: required (1..=99 for a share of the agents, 100 for all)",
            ));
        }
    };
    let actor = caller.person().to_owned();
    let now = now_ms();
    Ok(Json(
        st.db(move |s| s.update_rollout(&actor, id, stage, percent, None, now))
            .await?,
    ))
}

pub async fn rollback_rollout(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<Rollout>, ApiError> {
    caller.require(Cap::Admin)?;
    let id = parse_id(&id)?;
    let note = check_note(&body)?;
    let actor = caller.person().to_owned();
    let now = now_ms();
    Ok(Json(
        st.db(move |s| {
            s.update_rollout(
                &actor,
                id,
                RolloutStage::RolledBack,
                0,
                note.as_deref(),
                now,
            )
        })
        .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    after_seq: Option<i64>,
    limit: Option<u32>,
}

pub async fn audit(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(Cap::Audit)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad(format!(
            "query parameter `limit`: must be 1..=1000, got {limit}"
        )));
    }
    let after = q.after_seq.unwrap_or(0).max(0);
    Ok(Json(st.db(move |s| s.audit_entries(after, limit)).await?))
}

pub async fn audit_export(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(Cap::Audit)?;
    Ok(Json(st.db(|s| s.audit_entries(0, u32::MAX)).await?))
}
