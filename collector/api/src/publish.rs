//! Publishing from the web UI: the collector composes the unsigned bundle body, the admin's
//! browser signs it (WebCrypto Ed25519 with a key file the admin picks, never uploaded) and
//! uploads the signed envelope through `POST /api/v1/bundles` like the CLI does.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/policy/compose` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeRequest {
    /// `enforce` or `monitor`: required, never defaulted.
    #[serde(deserialize_with = "crate::bounded::string::<_, 16>")]
    pub mode: String,
    /// Bundle version (semver); default: the newest uploaded with the minor part raised.
    #[serde(default, deserialize_with = "crate::bounded::opt_string::<_, 64>")]
    pub version: Option<String>,
    /// Days until agents refuse the bundle (1..=366).
    pub valid_days: u32,
    /// Oldest agent version that may load it (default 0.1.0).
    #[serde(default, deserialize_with = "crate::bounded::opt_string::<_, 64>")]
    pub min_agent_version: Option<String>,
}

/// `POST /api/v1/rollouts/{id}/rollback/compose` (admin): the unsigned body of a rollback —
/// the content of the bundle the rollout replaced under a new, higher version, issued now.
/// Answered with a [`ComposedBundle`] signed and uploaded exactly like a composed policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackComposeRequest {
    /// Days until agents refuse the bundle (1..=366).
    pub valid_days: u32,
}

/// What the publisher signs: `context || body` (UTF-8 bytes of `body`), with Ed25519. The
/// signed file is `{"body":BODY,"key_id":KEY_ID,"signature":SIG_HEX}` + `\n`, where `BODY`
/// is `body` verbatim and `KEY_ID` the first 8 bytes of SHA-256 of the public key, in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposedBundle {
    pub version: String,
    /// Canonical JSON of the bundle body.
    pub body: String,
    /// The signing context, hex.
    pub context_hex: String,
    /// Proposals the policy is made of, and how many rules it has.
    pub proposals: Vec<i64>,
    pub rules: usize,
    pub services: usize,
}
