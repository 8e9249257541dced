//! Which rules the agent would start with, summarised for `status` and for the heartbeat
//! `enroll` sends: the last good signed bundle when bundles are configured and it
//! verifies, else the local catalogue and policy.

use serde::Serialize;
use shadowai_api::AgentMode;
use shadowai_rules::catalogue::Catalogue;
use shadowai_rules::policy::{Mode, Policy};

use super::{AdminError, BUNDLE_FILE};
use crate::run::config::AgentConfig;

/// A summary of the effective rules.
#[derive(Clone, Debug, Serialize)]
pub struct RulesSummary {
    /// `bundle`, `catalogue`, or `none` (waiting for the collector's first bundle).
    pub source: &'static str,
    /// Version of the last good bundle, when that is what is in use.
    pub bundle_version: Option<String>,
    /// Ids of the ed25519 public keys bundles may be signed with, when configured.
    pub bundle_key: Option<String>,
    /// Why a saved bundle was not used, if one exists and was refused.
    pub bundle_error: Option<String>,
    pub services: usize,
    pub mode: AgentMode,
}

/// Loads the rules the way the daemon does at start and summarises them.
pub fn summarise(cfg: &AgentConfig) -> Result<RulesSummary, AdminError> {
    let key = cfg
        .rules
        .bundle_key
        .as_deref()
        .map(shadowai_rules::keyset::KeySet::read)
        .transpose()?;
    let key_ids = key.as_ref().map(|k| k.ids().join(" "));
    let mut bundle_error = None;
    if let Some(key) = &key {
        let saved = cfg.agent.state_dir.join(BUNDLE_FILE);
        match std::fs::read(&saved) {
            Ok(bytes) => match crate::run::uplink::load_bundle(&bytes, key, None) {
                Ok((engine, in_use)) => {
                    return Ok(RulesSummary {
                        source: "bundle",
                        bundle_version: Some(in_use.version.to_string()),
                        bundle_key: key_ids,
                        bundle_error: None,
                        services: engine.catalogue().services.len(),
                        mode: agent_mode(engine.policy().mode),
                    });
                }
                Err(e) => bundle_error = Some(format!("{}: {e}", saved.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bundle_error = Some(format!("{}: {e}", saved.display())),
        }
    }
    let bundle_key = key_ids;
    let Some(dir) = &cfg.rules.catalogue else {
        return Ok(RulesSummary {
            source: "none",
            bundle_version: None,
            bundle_key,
            bundle_error,
            services: 0,
            mode: AgentMode::Monitor,
        });
    };
    let cat = Catalogue::load_dir(dir)?;
    let mode = match &cfg.rules.policy {
        Some(p) => Policy::load(p, &cat)?.mode,
        None => Policy::default().mode,
    };
    Ok(RulesSummary {
        source: "catalogue",
        bundle_version: None,
        bundle_key,
        bundle_error,
        services: cat.services.len(),
        mode: agent_mode(mode),
    })
}

fn agent_mode(m: Mode) -> AgentMode {
    if m == Mode::Enforce {
        AgentMode::Enforce
    } else {
        AgentMode::Monitor
    }
}
