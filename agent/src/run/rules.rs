//! The rules the daemon classifies with: the last good signed bundle, else the local
//! catalogue and policy, else nothing until a bundle arrives.

use std::path::Path;

use shadowai_rules::Engine;
use shadowai_rules::bundle::{InUse, VerifyOptions};
use shadowai_rules::catalogue::Catalogue;
use shadowai_rules::policy::Policy;

use super::config::AgentConfig;
use crate::error::AgentError;

/// The rules to start with: the last good bundle (when bundles are configured), else the
/// local catalogue + policy, else an empty engine until the first bundle arrives.
pub fn initial_engine(
    cfg: &AgentConfig,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<(Engine, Option<InUse>), AgentError> {
    let saved = cfg.agent.state_dir.join("bundle.json");
    if let (Some(key), Ok(bytes)) = (key, std::fs::read(&saved)) {
        match load_bundle(&bytes, key, None) {
            Ok((engine, in_use)) => {
                tracing::info!(version = %in_use.version, "loaded the last good bundle");
                return Ok((engine, Some(in_use)));
            }
            Err(e) => tracing::warn!(error = %e, path = %saved.display(), "saved bundle refused"),
        }
    }
    if let Some(dir) = &cfg.rules.catalogue {
        let cat = Catalogue::load_dir(dir)?;
        let policy = match &cfg.rules.policy {
            Some(p) => Policy::load(p, &cat)?,
            None => Policy::default(),
        };
        tracing::info!(services = cat.services.len(), "loaded the local catalogue");
        return Ok((Engine::new(cat, policy)?, None));
    }
    tracing::warn!("no rules yet: nothing is classified until the collector sends a bundle");
    Ok((Engine::new(Catalogue::default(), Policy::default())?, None))
}

/// The configured bundle-signing key, if any.
pub fn bundle_key(cfg: &AgentConfig) -> Result<Option<ed25519_dalek::VerifyingKey>, AgentError> {
    match &cfg.rules.bundle_key {
        Some(k) => Ok(Some(shadowai_rules::bundle::read_verifying_key(k)?)),
        None => Ok(None),
    }
}

/// Verifies a bundle (signature, expiry, rollback, agent version) and builds its engine.
pub fn load_bundle(
    bytes: &[u8],
    key: &ed25519_dalek::VerifyingKey,
    in_use: Option<&InUse>,
) -> Result<(Engine, InUse), AgentError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let agent = semver::Version::parse(env!("CARGO_PKG_VERSION")).ok();
    let verified = shadowai_rules::bundle::verify(
        bytes,
        key,
        &VerifyOptions {
            now,
            in_use,
            agent_version: agent.as_ref(),
        },
    )?;
    let engine = Engine::from_bundle(&verified)?;
    Ok((engine, verified.in_use()))
}

/// Checks a configuration and the rules it points at; the systemd unit runs this first.
pub fn validate(path: &Path) -> Result<String, AgentError> {
    let cfg = AgentConfig::load(path)?;
    let key = bundle_key(&cfg)?;
    let (engine, in_use) = initial_engine(&cfg, key.as_ref())?;
    Ok(format!(
        "{}: ok ({} services{}, policy mode {:?})",
        path.display(),
        engine.catalogue().services.len(),
        in_use
            .map(|u| format!(", bundle {}", u.version))
            .unwrap_or_default(),
        engine.policy().mode
    ))
}
