//! Bearer tokens, callers and capabilities.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use shadowai_api::Role;

use super::error::ApiError;
use super::{AppState, SharedState};
use crate::store::AgentRecord;

pub const PERSON_PREFIX: &str = "sau_";
pub const AGENT_PREFIX: &str = "saa_";
pub const ENROLL_PREFIX: &str = "sae_";

/// A new random secret with `prefix` (256 bits, hex).
pub fn new_secret(prefix: &str) -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::Internal {
        what: format!("the OS random source failed: {e}"),
    })?;
    Ok(format!("{prefix}{}", hex::encode(b)))
}

/// How secrets are stored: SHA-256, hex. Tokens carry 256 random bits, so a fast hash is
/// enough (no password stretching needed).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equality that does not stop at the first differing byte.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Any person token.
    Person,
    Read,
    Export,
    Audit,
    Admin,
    Approve,
    /// naming (issue 17): propose catalogue entries (analysts and admins).
    Curate,
    /// Propose a policy decision (analysts and admins; an analyst's always waits for a
    /// second person).
    Propose,
    Agent,
}

impl Cap {
    fn allows(self, role: Role) -> bool {
        use Role::*;
        match self {
            Cap::Person | Cap::Read => true,
            Cap::Export => matches!(role, Analyst | Admin | Approver),
            Cap::Audit => matches!(role, Admin | Approver),
            Cap::Admin => role == Admin,
            Cap::Approve => role == Approver,
            Cap::Curate | Cap::Propose => matches!(role, Analyst | Admin),
            Cap::Agent => false,
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Caller {
    Person { name: String, role: Role },
    Agent(AgentRecord),
}

impl Caller {
    pub fn require(&self, cap: Cap) -> Result<(), ApiError> {
        let ok = match (self, cap) {
            (Caller::Agent(_), Cap::Agent) => true,
            (Caller::Agent(_), _) => false,
            (Caller::Person { role, .. }, cap) => cap.allows(*role),
        };
        if ok {
            Ok(())
        } else {
            let who = match self {
                Caller::Person { name, role } => format!("{name} (role {})", role.as_str()),
                Caller::Agent(a) => format!("agent {}", a.agent_id),
            };
            Err(ApiError::Forbidden {
                message: format!("{who} may not do this (needs capability {cap:?})"),
            })
        }
    }

    /// Does the caller hold `role`?
    pub fn is(&self, role: Role) -> bool {
        matches!(self, Caller::Person { role: r, .. } if *r == role)
    }

    /// The person's name (for audit entries); agents never reach person routes.
    pub fn person(&self) -> &str {
        match self {
            Caller::Person { name, .. } => name,
            Caller::Agent(a) => &a.agent_id,
        }
    }

    pub fn agent(&self) -> Result<&AgentRecord, ApiError> {
        match self {
            Caller::Agent(a) => Ok(a),
            Caller::Person { .. } => Err(ApiError::Forbidden {
                message: "this route is for enrolled agents only".into(),
            }),
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Caller, ApiError> {
        // Resolved once by the gate in front of every API route.
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        resolve_counted(parts, state).await
    }
}

/// Resolves the caller; failures are counted in `auth_failures_total`.
pub async fn resolve_counted(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let res = resolve(parts, state).await;
    if res.is_err() {
        state.metrics.auth_failures.inc();
    }
    res
}

async fn resolve(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let unauth = |m: &str| ApiError::Unauthenticated { message: m.into() };
    let token =
        bearer(parts).ok_or_else(|| unauth("missing `Authorization: Bearer <token>` header"))?;
    let h = hash_secret(token);
    if token.starts_with(AGENT_PREFIX) {
        let a = state
            .db(move |s| s.agent_by_token_hash(&h))
            .await?
            .ok_or_else(|| unauth("unknown agent token"))?;
        if a.revoked {
            return Err(unauth("this agent has been revoked; enroll again"));
        }
        Ok(Caller::Agent(a))
    } else if token.starts_with(PERSON_PREFIX) {
        let t = state
            .db(move |s| s.token_by_hash(&h))
            .await?
            .ok_or_else(|| unauth("unknown API token"))?;
        if t.revoked {
            return Err(unauth("this API token has been revoked"));
        }
        Ok(Caller::Person {
            name: t.name,
            role: t.role,
        })
    } else {
        Err(unauth("malformed token (expected a sau_… or saa_… token)"))
    }
}
