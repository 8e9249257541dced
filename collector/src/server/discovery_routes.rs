//! The discovery loop's routes: agents report unknown names (`POST
//! /api/v1/discovery/report`, agent token — the host is the token's, never the body's);
//! analysts list them with hosts and processes (`GET /api/v1/discovery`), and promote one
//! into the catalogue through a catalogue proposal (`POST /api/v1/discovery/proposals`:
//! validated like a catalogue file, its impact shown) that a different person approves
//! (`…/proposals/{id}/approve`); approved entries join the catalogue the collector serves,
//! so the next `shadowai rules publish` carries them to agents. `GET
//! /api/v1/discovery/draft?name=…` still gives the candidate as a TOML draft.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shadowai_api::discovery::{
    CandidateView, CatalogueEntry, CatalogueImpact, CatalogueProposal, CatalogueProposalRequest,
    DiscoveryAck, DiscoveryReport,
};
use shadowai_api::{FindingQuery, NoteRequest, ProposalStatus};
use shadowai_rules::Service;

use crate::catalogue_entry::{EntryError, FieldError, overlaps, precheck, validate};
use crate::catalogue_impact;
use crate::catalogue_overlay::{effective, effective_composed, overlay_files};

use super::SharedState;
use super::admin_routes::{audit_refusal, check_note};
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

// ---- catalogue proposals: a candidate promoted through the proposal flow ----

fn invalid(errs: &[FieldError]) -> ApiError {
    bad(errs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

fn entry_error(e: EntryError) -> ApiError {
    match e {
        EntryError::Invalid(errs) => invalid(&errs),
        other => ApiError::Internal {
            what: other.to_string(),
        },
    }
}

/// Full validation of `entry` against the catalogue in force (shipped + approved overlay):
/// request formats, overlaps with existing services, then the rules crate's loader.
async fn check_entry(
    st: &SharedState,
    entry: &CatalogueEntry,
    candidate: Option<&str>,
) -> Result<(Service, Arc<shadowai_rules::Catalogue>), ApiError> {
    let today = crate::store::day_string(now_ms().div_euclid(86_400_000));
    let mut errs = precheck(entry, candidate, &today);
    let composed = effective_composed(st).await?;
    if errs.is_empty() {
        errs.extend(overlaps(entry, &composed.catalogue));
    }
    if !errs.is_empty() {
        return Err(invalid(&errs));
    }
    let refused: Vec<i64> = composed.refused.iter().map(|(id, _)| *id).collect();
    let mut overlay = st.db(|s| s.catalogue_overlay()).await?;
    overlay.retain(|(id, _)| !refused.contains(id));
    let files = overlay_files(&overlay);
    let dir = st.overlay.dir().to_owned();
    let e = entry.clone();
    let svc = tokio::task::spawn_blocking(move || validate(&dir, &files, &e))
        .await
        .map_err(|e| ApiError::Internal {
            what: format!("entry validation task failed: {e}"),
        })?
        .map_err(entry_error)?;
    Ok((svc, composed.catalogue))
}

async fn impact_of(
    st: &SharedState,
    entry: &CatalogueEntry,
    svc: &Service,
    cat: &shadowai_rules::Catalogue,
) -> Result<CatalogueImpact, ApiError> {
    let candidates = st.db(|s| s.list_discovery()).await?;
    let q = FindingQuery {
        from_ms: Some(now_ms() - catalogue_impact::WINDOW_MS),
        ..FindingQuery::default()
    };
    let (findings, _) = st
        .db(move |s| s.search(&q, catalogue_impact::FINDINGS_READ, None))
        .await?;
    let proposals = st.db(|s| s.list_proposals(None)).await?;
    let policy = crate::compose::compose(&proposals, shadowai_rules::Mode::Monitor).policy;
    let (c, s2, e2) = (cat.clone(), svc.clone(), entry.clone());
    tokio::task::spawn_blocking(move || {
        let v = catalogue_impact::verdict(&c, &s2, policy);
        catalogue_impact::impact(&e2, &candidates, &findings, v)
    })
    .await
    .map_err(|e| ApiError::Internal {
        what: format!("impact task failed: {e}"),
    })
}

/// `POST /api/v1/discovery/proposals`: propose a catalogue entry (usually from a candidate).
pub async fn propose(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(req): JsonBody<CatalogueProposalRequest>,
) -> Result<(StatusCode, Json<CatalogueProposal>), ApiError> {
    // Analysts and admins (approving needs the approver role).
    caller.require(Cap::Curate)?;
    check_text("reason", &req.reason, 1000)?;
    if req.reason.trim().is_empty() {
        return Err(bad(
            "reason: required (say why the service belongs in the catalogue)",
        ));
    }
    if let Some(c) = &req.candidate {
        check_name(0, c).map_err(|_| bad("candidate: not a lower-case DNS name"))?;
        let known = st.db(|s| s.list_discovery()).await?;
        if !known.iter().any(|k| k.name == *c) {
            return Err(ApiError::NotFound {
                message: format!("candidate: no discovery candidate {c}"),
            });
        }
    }
    let (svc, cat) = check_entry(&st, &req.entry, req.candidate.as_deref()).await?;
    let actor = caller.person().to_owned();
    let now = now_ms();
    let r2 = req.clone();
    let mut p = st
        .db(move |s| s.create_catalogue_proposal(&actor, &r2, now))
        .await?;
    p.impact = Some(impact_of(&st, &req.entry, &svc, &cat).await?);
    Ok((StatusCode::CREATED, Json(p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    status: Option<String>,
}

/// `GET /api/v1/discovery/proposals[?status=…]`: newest first.
pub async fn list_proposals(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Json<Vec<CatalogueProposal>>, ApiError> {
    caller.require(Cap::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ProposalStatus::parse(s).ok_or_else(|| {
            bad(format!(
                "query parameter `status`: {s:?} is not one of pending, approved, rejected"
            ))
        })?),
    };
    Ok(Json(
        st.db(move |s| s.list_catalogue_proposals(status)).await?,
    ))
}

fn parse_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(format!("path: {s:?} is not a valid id")))
}

/// `GET /api/v1/discovery/proposals/{id}/impact`: computed now.
pub async fn proposal_impact(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<CatalogueImpact>, ApiError> {
    caller.require(Cap::Read)?;
    let id = parse_id(&id)?;
    let p = st.db(move |s| s.catalogue_proposal(id)).await?;
    let cat = effective(&st).await?;
    let svc = match cat.service(&p.entry.id) {
        Some(s) => s.clone(),
        None => check_entry(&st, &p.entry, None).await?.0,
    };
    Ok(Json(impact_of(&st, &p.entry, &svc, &cat).await?))
}

async fn decide(
    caller: Caller,
    st: SharedState,
    id: String,
    body: NoteRequest,
    approve: bool,
) -> Result<Json<CatalogueProposal>, ApiError> {
    caller.require(Cap::Approve)?;
    let id = parse_id(&id)?;
    let note = check_note(&body)?;
    let actor = caller.person().to_owned();
    let p = st.db(move |s| s.catalogue_proposal(id)).await?;
    // The catalogue may have moved since the proposal: the entry must still load. (A
    // self-approval is refused by the store below, before this could matter.)
    if approve
        && p.status == ProposalStatus::Pending
        && !crate::identity::same_person(&p.proposed_by, &actor)
    {
        check_entry(&st, &p.entry, None).await?;
    }
    let now = now_ms();
    let res = st
        .db(move |s| s.decide_catalogue_proposal(&actor, id, approve, note.as_deref(), now))
        .await;
    if let Err(e @ ApiError::Forbidden { .. }) = &res {
        let action = if approve {
            "catalogue.approve.refused"
        } else {
            "catalogue.reject.refused"
        };
        let details = serde_json::json!({"reason": e.to_string(), "entry_id": p.entry.id});
        audit_refusal(
            &st,
            caller.person(),
            action,
            format!("catalogue-proposal:{id}"),
            details,
        )
        .await;
    }
    let p = res?;
    if approve {
        tracing::info!(proposal = id, entry = %p.entry.id, "catalogue entry approved: part of the next published bundle");
    }
    Ok(Json(p))
}

/// `POST /api/v1/discovery/proposals/{id}/approve` (a different person, approver role).
pub async fn approve(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<CatalogueProposal>, ApiError> {
    decide(caller, st, id, body, true).await
}

/// `POST /api/v1/discovery/proposals/{id}/reject`.
pub async fn reject(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteRequest>,
) -> Result<Json<CatalogueProposal>, ApiError> {
    decide(caller, st, id, body, false).await
}
