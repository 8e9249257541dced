//! The policy as structured data: the collector's catalogue, and the decisions in force
//! composed into one policy document for `shadowai rules publish`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use shadowai_api::{PolicyDocument, ProposalImpact, RolloutAgents};
use shadowai_rules::Catalogue;
use shadowai_rules::policy::Mode;

use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::QueryParams;
use super::{SharedState, now_ms};
use crate::impact;

/// The collector's catalogue, or an error saying why there is none.
pub fn catalogue_of(st: &SharedState) -> Result<Arc<Catalogue>, ApiError> {
    st.catalogue
        .clone()
        .map_err(|what| ApiError::Internal { what })
}

/// `GET /api/v1/catalogue`: every service with its facts (not only those already seen).
pub async fn catalogue(
    caller: Caller,
    State(st): State<SharedState>,
) -> Result<Json<Catalogue>, ApiError> {
    caller.require(Cap::Read)?;
    // naming (issue 17): the shipped catalogue + approved catalogue proposals.
    let cat = crate::catalogue_overlay::effective(&st).await?;
    Ok(Json(cat.as_ref().clone()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    mode: Option<String>,
}

/// `GET /api/v1/policy/document?mode=enforce|monitor` (the mode is required: publishing
/// never picks enforcement for you).
pub async fn document(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<DocumentQuery>,
) -> Result<Json<PolicyDocument>, ApiError> {
    caller.require(Cap::Read)?;
    let mode = match q.mode.as_deref() {
        Some("enforce") => Mode::Enforce,
        Some("monitor") => Mode::Monitor,
        Some(m) => {
            return Err(bad(format!(
                "query parameter `mode`: {m:?} is not enforce or monitor"
            )));
        }
        None => {
            return Err(bad(
                "query parameter `mode` is required: enforce or monitor",
            ));
        }
    };
    let proposals = st.db(|s| s.list_proposals(None)).await?;
    let c = crate::compose::compose(&proposals, mode);
    Ok(Json(PolicyDocument {
        policy: c.policy,
        proposals: c.proposals,
    }))
}

/// `GET /api/v1/proposals/{id}/impact`: which services change verdict for whom, and who
/// uses them today (findings of the last 7 days, within the proposal's group).
pub async fn impact(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<ProposalImpact>, ApiError> {
    caller.require(Cap::Read)?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(format!("path: {id:?} is not a valid id")))?;
    let cat = crate::catalogue_overlay::effective(&st).await?;
    let proposals = st.db(|s| s.list_proposals(None)).await?;
    let p = proposals
        .iter()
        .find(|p| p.id == id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            message: format!("proposal {id} not found"),
        })?;
    let now = now_ms();
    let (p2, c2) = (p.clone(), cat.clone());
    let changes = tokio::task::spawn_blocking(move || impact::changes(&c2, &proposals, &p2, now))
        .await
        .map_err(|e| ApiError::Internal {
            what: format!("impact task failed: {e}"),
        })??;
    let hosts: Option<BTreeSet<String>> = match impact::group_of(&p) {
        Some(g) => {
            let g = g.to_owned();
            Some(
                st.db(move |s| s.list_agents())
                    .await?
                    .into_iter()
                    .filter(|a| a.group.as_deref() == Some(g.as_str()))
                    .map(|a| a.host_id)
                    .collect(),
            )
        }
        None => None,
    };
    let services: BTreeSet<String> = changes.iter().map(|c| c.service_id.clone()).collect();
    let mut affected = Vec::new();
    for svc in services {
        let mut found = Vec::new();
        for id in impact::finding_services(&cat, &svc) {
            let q = impact::query(&id, now);
            let (f, _) = st
                .db(move |s| s.search(&q, impact::FINDINGS_PER_SERVICE, None))
                .await?;
            found.extend(f);
        }
        let a = impact::affected(&svc, &found, hosts.as_ref());
        if a.findings > 0 {
            affected.push(a);
        }
    }
    Ok(Json(impact::impact(&p, changes, affected)))
}

/// `GET /api/v1/rollouts/{id}/agents`: agents per stage, with warnings.
pub async fn rollout_agents(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutAgents>, ApiError> {
    caller.require(Cap::Read)?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(format!("path: {id:?} is not a valid id")))?;
    let r = st
        .db(|s| s.list_rollouts())
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::NotFound {
            message: format!("rollout {id} not found"),
        })?;
    let agents = st.db(|s| s.list_agents()).await?;
    Ok(Json(crate::rollout_agents::count(&r, &agents, now_ms())))
}

/// `GET /api/v1/bundles/{version}/file`: a stored bundle as uploaded (signed bytes).
pub async fn bundle_file(
    caller: Caller,
    State(st): State<SharedState>,
    Path(version): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    caller.require(Cap::Read)?;
    super::agent_routes::check_text("version", &version, 64)?;
    let v = version.clone();
    let (_, bytes) = st
        .db(move |s| s.bundle(&v))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            message: format!("bundle version {version:?} not found"),
        })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}
