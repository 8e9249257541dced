//! `POST /api/v1/policy/compose`: the policy in force (composed from approved proposals) +
//! the collector's catalogue → the unsigned bundle body the web UI's publisher signs in the
//! browser. The collector never sees a signing key: the signed envelope comes back through
//! `POST /api/v1/bundles`, which verifies it against the trusted key set and re-checks the
//! two-person rule, exactly as for `shadowai rules publish`.
//!
//! `POST /api/v1/rollouts/{id}/rollback/compose` does the same for a rollback, as
//! `shadowai rules rollback` does: the content of the bundle the rollout replaced, under a
//! new, higher version (agents that loaded the bad bundle accept it; anti-rollback stays on)
//! with a fresh validity, for the admin to sign and roll out.

use axum::Json;
use axum::extract::{Path, State};
use shadowai_api::publish::{ComposeRequest, ComposedBundle, RollbackComposeRequest};
use shadowai_rules::bundle::{self, CompileOptions};
use shadowai_rules::policy::Mode;

use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::JsonBody;
use super::policy_routes::catalogue_of;
use super::{SharedState, now_ms};

fn semver_of(field: &str, v: &str) -> Result<semver::Version, ApiError> {
    semver::Version::parse(v)
        .map_err(|e| bad(format!("{field}: {v:?} is not a semver version: {e}")))
}

/// The newest uploaded semver with the minor part raised; 1.0.0 when there is none.
fn next_version(uploaded: &[shadowai_api::BundleInfo]) -> semver::Version {
    uploaded
        .iter()
        .filter_map(|b| semver::Version::parse(&b.version).ok())
        .max()
        .map_or_else(
            || semver::Version::new(1, 0, 0),
            |v| semver::Version::new(v.major, v.minor + 1, 0),
        )
}

fn check_valid_days(days: u32) -> Result<(), ApiError> {
    if (1..=366).contains(&days) {
        Ok(())
    } else {
        Err(bad(format!("valid_days: must be 1..=366, got {days}")))
    }
}

pub async fn compose(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(req): JsonBody<ComposeRequest>,
) -> Result<Json<ComposedBundle>, ApiError> {
    caller.require(Cap::Admin)?;
    let mode = match req.mode.as_str() {
        "enforce" => Mode::Enforce,
        "monitor" => Mode::Monitor,
        m => return Err(bad(format!("mode: {m:?} is not enforce or monitor"))),
    };
    check_valid_days(req.valid_days)?;
    let version = match &req.version {
        Some(v) => semver_of("version", v)?,
        None => next_version(&st.db(|s| s.list_bundles()).await?),
    };
    let min_agent = semver_of(
        "min_agent_version",
        req.min_agent_version.as_deref().unwrap_or("0.1.0"),
    )?;
    let catalogue = catalogue_of(&st)?;
    let proposals = st.db(|s| s.list_proposals(None)).await?;
    let composed = crate::compose::compose(&proposals, mode);
    let issued_at = now_ms() / 1000;
    let opts = CompileOptions {
        version: version.clone(),
        issued_at,
        expires_at: issued_at + i64::from(req.valid_days) * 86_400,
        min_agent_version: min_agent,
    };
    let (rules, services) = (composed.policy.rules.len(), catalogue.services.len());
    let body = tokio::task::spawn_blocking(move || {
        bundle::compile(&catalogue, &composed.policy, &opts)
            .and_then(|b| bundle::canonical_body(&b))
    })
    .await
    .map_err(|e| ApiError::Internal {
        what: format!("compose task failed: {e}"),
    })?
    .map_err(|e| {
        bad(format!(
            "the policy does not compile against the catalogue: {e}"
        ))
    })?;
    Ok(Json(ComposedBundle {
        version: version.to_string(),
        body,
        context_hex: hex::encode(bundle::CONTEXT),
        proposals: composed.proposals,
        rules,
        services,
    }))
}

/// The unsigned body of a rollback of rollout `id`: the content of the bundle it replaced
/// (its `previous_version`, the stable bundle when it started) with the next version,
/// `issued_at` now and `valid_days` of validity. Changes nothing: stopping the rollout,
/// uploading the signed body (the two-person rule is checked again) and rolling it out are
/// the admin's next calls.
pub async fn compose_rollback(
    caller: Caller,
    State(st): State<SharedState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RollbackComposeRequest>,
) -> Result<Json<ComposedBundle>, ApiError> {
    caller.require(Cap::Admin)?;
    let id = super::admin_routes::parse_id(&id)?;
    check_valid_days(req.valid_days)?;
    let rollout = st
        .db(|s| s.list_rollouts())
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::NotFound {
            message: format!("rollout {id} not found"),
        })?;
    let prev = rollout.previous_version.ok_or_else(|| ApiError::Conflict {
        message: format!(
            "rollout {id} of {} replaced no earlier bundle (nothing had reached every agent \
             before it): there is no content to roll back to; publish a corrected bundle instead",
            rollout.bundle_version
        ),
    })?;
    let p2 = prev.clone();
    let (_, bytes) = st
        .db(move |s| s.bundle(&p2))
        .await?
        .ok_or_else(|| ApiError::Internal {
            what: format!("bundle {prev} (replaced by rollout {id}) is not stored"),
        })?;
    let mut body = bundle::read_unverified(&bytes).map_err(|e| ApiError::Internal {
        what: format!("stored bundle {prev} does not parse: {e}"),
    })?;
    let version = next_version(&st.db(|s| s.list_bundles()).await?);
    body.version = version.to_string();
    body.issued_at = now_ms() / 1000;
    body.expires_at = body.issued_at + i64::from(req.valid_days) * 86_400;
    let (rules, services) = (body.policy.rules.len(), body.catalogue.services.len());
    let body = bundle::canonical_body(&body).map_err(|e| ApiError::Internal {
        what: format!("bundle {prev} cannot be re-encoded: {e}"),
    })?;
    Ok(Json(ComposedBundle {
        version: version.to_string(),
        body,
        context_hex: hex::encode(bundle::CONTEXT),
        proposals: Vec::new(),
        rules,
        services,
    }))
}
