//! The rules the daemon classifies with: the last good signed bundle, else the local
//! catalogue and policy, else nothing until a bundle arrives.

use std::path::Path;

use shadowai_rules::Engine;
use shadowai_rules::bundle::{InUse, VerifyOptions};
use shadowai_rules::catalogue::Catalogue;
use shadowai_rules::keyset::KeySet;
use shadowai_rules::policy::Policy;

use super::config::AgentConfig;
use crate::error::AgentError;

/// The rules to start with: the last good bundle (when bundles are configured), else the
/// local catalogue + policy, else an empty engine until the first bundle arrives.
pub fn initial_engine(
    cfg: &AgentConfig,
    key: Option<&KeySet>,
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

/// The configured bundle-signing keys, if any: a key-set file, one public key per line, so
/// publishers rotate keys with overlap (a bundle is verified with the key id it names).
pub fn bundle_key(cfg: &AgentConfig) -> Result<Option<KeySet>, AgentError> {
    match &cfg.rules.bundle_key {
        Some(k) => Ok(Some(KeySet::read(k)?)),
        None => Ok(None),
    }
}

/// Verifies a bundle (signature by a trusted key, expiry, rollback, agent version) and
/// builds its engine.
pub fn load_bundle(
    bytes: &[u8],
    keys: &KeySet,
    in_use: Option<&InUse>,
) -> Result<(Engine, InUse), AgentError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let agent = semver::Version::parse(env!("CARGO_PKG_VERSION")).ok();
    let verified = keys.verify(
        bytes,
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

#[cfg(test)]
mod tests {
    use shadowai_rules::bundle::{self, BundleBody};
    use shadowai_rules::keyset::KeySet;

    use super::*;

    fn signed(version: &str, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let body = BundleBody {
            format: bundle::FORMAT.to_owned(),
            version: version.to_owned(),
            issued_at: now - 10,
            expires_at: now + 3600,
            min_agent_version: "0.0.1".to_owned(),
            catalogue: Catalogue::default(),
            policy: Policy::default(),
        };
        bundle::sign_body(&body, key).unwrap()
    }

    fn key_set(dir: &Path, name: &str, keys: &[&ed25519_dalek::SigningKey]) -> KeySet {
        let text: String = keys
            .iter()
            .map(|k| format!("{}\n", hex::encode(k.verifying_key().as_bytes())))
            .collect();
        let path = dir.join(name);
        std::fs::write(&path, format!("# trusted bundle keys\n{text}")).unwrap();
        KeySet::read(&path).unwrap()
    }

    /// Rotation with overlap, as the agent sees it: while both keys are trusted, bundles of
    /// either load (each names its key id); once the old key is dropped from the set, its
    /// bundles are refused; a key never trusted is refused with the ids it could have used.
    #[test]
    fn the_agent_trusts_a_key_set_so_keys_rotate_with_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, stranger) = (
            bundle::generate_key().unwrap(),
            bundle::generate_key().unwrap(),
            bundle::generate_key().unwrap(),
        );
        let overlap = key_set(dir.path(), "overlap.pub", &[&old, &new]);
        let (_, used) = load_bundle(&signed("1.0.0", &old), &overlap, None).unwrap();
        let (_, used) = load_bundle(&signed("1.1.0", &new), &overlap, Some(&used)).unwrap();
        assert_eq!(used.version.to_string(), "1.1.0");
        let after = key_set(dir.path(), "after.pub", &[&new]);
        let err = load_bundle(&signed("1.2.0", &old), &after, Some(&used))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&bundle::key_id(&old.verifying_key())), "{err}");
        load_bundle(&signed("1.2.0", &new), &after, Some(&used)).unwrap();
        let err = load_bundle(&signed("1.3.0", &stranger), &overlap, Some(&used))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&bundle::key_id(&new.verifying_key())), "{err}");
    }
}
