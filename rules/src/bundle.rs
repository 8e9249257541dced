//! Bundles: catalogue + policy in one canonical JSON body, signed with ed25519.
//!
//! File layout (one JSON object, one line): `{"body":{...},"key_id":"…","signature":"…"}`.
//! The signature covers `CONTEXT || body bytes` exactly as stored; the body must be
//! canonical (re-serialising it gives the same bytes), so two compiles of the same input
//! produce the same bytes and a hand-edited body is refused even before the signature.
//!
//! Key files: text, `#` comment lines, and one line of 64 hex digits — the 32-byte ed25519
//! seed (secret key) or public key.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::catalogue::Catalogue;
use crate::error::RulesError;
use crate::policy::Policy;
use crate::time::format_rfc3339;

/// The body's `format` value.
pub const FORMAT: &str = "shadowai-rules-bundle/1";
/// Domain separation for signatures.
/// Prefix of every signed message (domain separation).
pub const CONTEXT: &[u8] = b"shadowai-rules-bundle-v1\0";
/// Accepted clock skew for `issued_at` in the future (seconds).
pub const MAX_CLOCK_SKEW: i64 = 300;

/// What is signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleBody {
    /// Always [`FORMAT`].
    pub format: String,
    /// Semantic version; must increase with every release.
    pub version: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; the agent refuses the bundle after this.
    pub expires_at: i64,
    /// Oldest agent that may load it.
    pub min_agent_version: String,
    /// The catalogue.
    pub catalogue: Catalogue,
    /// The policy.
    pub policy: Policy,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    body: &'a RawValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// Compile parameters.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Bundle version.
    pub version: semver::Version,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Oldest agent allowed.
    pub min_agent_version: semver::Version,
}

/// The version of a bundle in use, for rollback protection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InUse {
    /// Its version.
    pub version: semver::Version,
    /// SHA-256 of its body bytes.
    pub sha256: [u8; 32],
}

/// Verification context.
#[derive(Clone, Debug)]
pub struct VerifyOptions<'a> {
    /// Unix seconds now.
    pub now: i64,
    /// The bundle currently in use, if any.
    pub in_use: Option<&'a InUse>,
    /// This agent's version, if checking `min_agent_version`.
    pub agent_version: Option<&'a semver::Version>,
}

/// A bundle whose signature, canonical form, validity and version were checked.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    /// The content.
    pub body: BundleBody,
    /// Parsed version.
    pub version: semver::Version,
    /// SHA-256 of the body bytes.
    pub sha256: [u8; 32],
    /// Id of the key that signed it.
    pub key_id: String,
}

impl VerifiedBundle {
    /// What to remember as "in use" after loading it.
    pub fn in_use(&self) -> InUse {
        InUse {
            version: self.version.clone(),
            sha256: self.sha256,
        }
    }
}

fn parse_version(s: &str) -> Result<semver::Version, RulesError> {
    semver::Version::parse(s).map_err(|source| RulesError::BadVersion {
        value: s.to_string(),
        source,
    })
}

/// Short id of a public key: first 8 bytes of its SHA-256, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()).get(..8).unwrap_or_default())
}

/// Compile catalogue + policy into a body. Fails if the pair would not load in an engine.
pub fn compile(
    catalogue: &Catalogue,
    policy: &Policy,
    opts: &CompileOptions,
) -> Result<BundleBody, RulesError> {
    if opts.expires_at <= opts.issued_at {
        return Err(RulesError::BadValidity {
            issued_at: opts.issued_at,
            expires_at: opts.expires_at,
        });
    }
    // Prove it loads: catalogue re-check + every policy reference.
    crate::engine::Engine::new(catalogue.clone(), policy.clone())?;
    Ok(BundleBody {
        format: FORMAT.to_string(),
        version: opts.version.to_string(),
        issued_at: opts.issued_at,
        expires_at: opts.expires_at,
        min_agent_version: opts.min_agent_version.to_string(),
        catalogue: catalogue.clone(),
        policy: policy.clone(),
    })
}

/// Canonical bytes of a body.
pub fn canonical_body(body: &BundleBody) -> Result<String, RulesError> {
    serde_json::to_string(body).map_err(|source| RulesError::BundleFormat { source })
}

fn envelope_bytes(
    body: &str,
    key_id: Option<String>,
    signature: Option<String>,
) -> Result<Vec<u8>, RulesError> {
    let raw: &RawValue =
        serde_json::from_str(body).map_err(|source| RulesError::BundleFormat { source })?;
    let mut out = serde_json::to_vec(&Envelope {
        body: raw,
        key_id,
        signature,
    })
    .map_err(|source| RulesError::BundleFormat { source })?;
    out.push(b'\n');
    Ok(out)
}

/// An unsigned bundle file (output of `compile`).
pub fn unsigned_bytes(body: &BundleBody) -> Result<Vec<u8>, RulesError> {
    envelope_bytes(&canonical_body(body)?, None, None)
}

/// A signed bundle file.
pub fn sign_body(body: &BundleBody, key: &SigningKey) -> Result<Vec<u8>, RulesError> {
    let text = canonical_body(body)?;
    let sig = key.sign(&[CONTEXT, text.as_bytes()].concat());
    envelope_bytes(
        &text,
        Some(key_id(&key.verifying_key())),
        Some(hex::encode(sig.to_bytes())),
    )
}

/// Sign a bundle file (signed or not); its body must be canonical and well-formed.
pub fn sign(bundle: &[u8], key: &SigningKey) -> Result<Vec<u8>, RulesError> {
    let body = read_unverified(bundle)?;
    sign_body(&body, key)
}

fn parse_envelope(bytes: &[u8]) -> Result<Envelope<'_>, RulesError> {
    serde_json::from_slice(bytes).map_err(|source| RulesError::BundleFormat { source })
}

fn parse_canonical(raw: &RawValue) -> Result<BundleBody, RulesError> {
    let body: BundleBody =
        serde_json::from_str(raw.get()).map_err(|source| RulesError::BundleFormat { source })?;
    if canonical_body(&body)? != raw.get() {
        return Err(RulesError::NotCanonical);
    }
    Ok(body)
}

/// The key id a bundle's envelope names (before anything is verified).
pub fn envelope_key_id(bytes: &[u8]) -> Result<Option<String>, RulesError> {
    Ok(parse_envelope(bytes)?.key_id)
}

/// Read a bundle's body without checking the signature or dates (for `diff` and tooling
/// only — never load such a body into an agent).
pub fn read_unverified(bytes: &[u8]) -> Result<BundleBody, RulesError> {
    parse_canonical(parse_envelope(bytes)?.body)
}

/// Verify a bundle file: signature (before the body is even parsed), canonical form,
/// format, dates, rollback, agent version.
pub fn verify(
    bytes: &[u8],
    key: &VerifyingKey,
    opts: &VerifyOptions<'_>,
) -> Result<VerifiedBundle, RulesError> {
    let env = parse_envelope(bytes)?;
    let expected = key_id(key);
    let sig_hex = env.signature.as_deref().ok_or(RulesError::Unsigned)?;
    if let Some(found) = env.key_id.as_deref().filter(|k| *k != expected) {
        return Err(RulesError::WrongKey {
            found: found.to_string(),
            expected,
        });
    }
    // Exactly 128 lower-case hex digits: one encoding per signature.
    let canonical_hex = sig_hex.len() == 128
        && sig_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let sig_bytes: [u8; 64] = hex::decode(sig_hex)
        .ok()
        .filter(|_| canonical_hex)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| RulesError::BadSignature {
            key_id: expected.clone(),
        })?;
    let body_text = env.body.get();
    key.verify(
        &[CONTEXT, body_text.as_bytes()].concat(),
        &Signature::from_bytes(&sig_bytes),
    )
    .map_err(|_| RulesError::BadSignature {
        key_id: expected.clone(),
    })?;
    let body = parse_canonical(env.body)?;
    if body.format != FORMAT {
        return Err(RulesError::BadArgument {
            arg: "format",
            reason: format!("unsupported bundle format `{}`", body.format),
        });
    }
    let version = parse_version(&body.version)?;
    let min_agent = parse_version(&body.min_agent_version)?;
    if body.expires_at <= body.issued_at {
        return Err(RulesError::BadValidity {
            issued_at: body.issued_at,
            expires_at: body.expires_at,
        });
    }
    if opts.now >= body.expires_at {
        return Err(RulesError::Expired {
            expires_at: format_rfc3339(body.expires_at),
            now: format_rfc3339(opts.now),
        });
    }
    if body.issued_at > opts.now.saturating_add(MAX_CLOCK_SKEW) {
        return Err(RulesError::NotYetValid {
            issued_at: format_rfc3339(body.issued_at),
            now: format_rfc3339(opts.now),
        });
    }
    let sha256: [u8; 32] = Sha256::digest(body_text.as_bytes()).into();
    if let Some(cur) = opts.in_use
        && (version < cur.version || (version == cur.version && sha256 != cur.sha256))
    {
        return Err(RulesError::Rollback {
            offered: version.to_string(),
            in_use: cur.version.to_string(),
        });
    }
    if let Some(agent) = opts.agent_version
        && *agent < min_agent
    {
        return Err(RulesError::AgentTooOld {
            required: min_agent.to_string(),
            agent: agent.to_string(),
        });
    }
    Ok(VerifiedBundle {
        body,
        version,
        sha256,
        key_id: expected,
    })
}

/// A new random signing key.
pub fn generate_key() -> Result<SigningKey, RulesError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(RulesError::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

fn read_key_hex(path: &Path) -> Result<[u8; 32], RulesError> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or_else(|| RulesError::BadKey {
        path: path.into(),
        reason: "no key line",
    })?;
    if lines.next().is_some() {
        return Err(RulesError::BadKey {
            path: path.into(),
            reason: "more than one key line",
        });
    }
    let bytes = hex::decode(line).map_err(|_| RulesError::BadKey {
        path: path.into(),
        reason: "key line is not hex",
    })?;
    bytes.try_into().map_err(|_| RulesError::BadKey {
        path: path.into(),
        reason: "key is not 32 bytes (64 hex digits)",
    })
}

/// Read a secret key file (hex seed).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, RulesError> {
    read_key_hex(path).map(|b| SigningKey::from_bytes(&b))
}

/// Read a public key file (hex).
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, RulesError> {
    let b = read_key_hex(path)?;
    VerifyingKey::from_bytes(&b).map_err(|_| RulesError::BadKey {
        path: path.into(),
        reason: "not a valid ed25519 public key",
    })
}

/// Write a secret key file (mode 0600 on unix; refuses to overwrite).
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), RulesError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| RulesError::io(path, e))?;
    let text = format!(
        "# shadowai rules signing key (ed25519 seed, hex). Keep secret.\n# key id {}\n{}\n",
        key_id(&key.verifying_key()),
        hex::encode(key.to_bytes())
    );
    f.write_all(text.as_bytes())
        .map_err(|e| RulesError::io(path, e))
}

/// Write a public key file (refuses to overwrite).
pub fn write_verifying_key(path: &Path, key: &VerifyingKey) -> Result<(), RulesError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| RulesError::io(path, e))?;
    let text = format!(
        "# shadowai rules public key (ed25519, hex)\n# key id {}\n{}\n",
        key_id(key),
        hex::encode(key.as_bytes())
    );
    f.write_all(text.as_bytes())
        .map_err(|e| RulesError::io(path, e))
}
