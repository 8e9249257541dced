//! The policy as structured data: the collector's catalogue, and the decisions in force
//! composed into one policy document for `shadowai rules publish`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use shadowai_api::PolicyDocument;
use shadowai_rules::Catalogue;
use shadowai_rules::policy::Mode;

use super::SharedState;
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::QueryParams;

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
    Ok(Json(catalogue_of(&st)?.as_ref().clone()))
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
