//! This host's credentials with the collector: the per-host key (created once, kept 0600),
//! the agent token (kept 0600), and first enrollment with the fleet's enrollment secret.

use std::path::{Path, PathBuf};

use shadowai_api::EnrollRequest;
use shadowai_api::client::Client;

use crate::error::AgentError;

/// What the collector knows this agent by.
#[derive(Clone, Debug)]
pub struct Identity {
    pub host_id: String,
    pub hostname: String,
    pub group: Option<String>,
}

fn token_path(state: &Path) -> PathBuf {
    state.join("agent.token")
}

/// This host's per-host credential (hex of 32 random bytes, mode 0600 in the state dir),
/// created on first use. The collector binds the host id to it at enrollment, so the
/// fleet-wide enrollment secret alone cannot take over this host's identity.
pub fn host_key(state: &Path) -> Result<String, AgentError> {
    let path = state.join("host.key");
    match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() == 64 && k.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Ok(k.trim().to_string());
        }
        Ok(_) => {
            return Err(AgentError::HostKey { path });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AgentError::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    }
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|source| AgentError::Random {
        what: "the host key",
        source,
    })?;
    let key = hex::encode(b);
    write_private(&path, key.as_bytes())?;
    Ok(key)
}

/// Keeps the agent token for the next start.
pub fn save_token(state: &Path, token: &str) -> Result<(), AgentError> {
    write_private(&token_path(state), token.as_bytes())
}

/// The token saved in the state dir, if any (the uplink replaces it when it re-enrolls).
pub fn saved_token(state: &Path) -> Option<String> {
    let t = std::fs::read_to_string(token_path(state)).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Enrolls once (token kept 0600 in the state dir) and returns a client that carries it.
pub async fn enroll(
    base: &Client,
    id: &Identity,
    state: &Path,
    secret_file: Option<&Path>,
) -> Result<Client, AgentError> {
    let tp = token_path(state);
    if let Some(t) = saved_token(state) {
        return Ok(base.with_token(t));
    }
    let secret_file = secret_file.ok_or_else(|| AgentError::NotEnrolled { token: tp.clone() })?;
    let secret = std::fs::read_to_string(secret_file).map_err(|source| AgentError::Io {
        what: format!("reading enrollment secret {}", secret_file.display()),
        source,
    })?;
    let resp = base
        .enroll(&EnrollRequest {
            secret: secret.trim().to_string(),
            host_id: id.host_id.clone(),
            hostname: id.hostname.clone(),
            group: id.group.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            host_key: host_key(state)?,
        })
        .await
        .map_err(|source| AgentError::Client {
            what: "enrolling",
            source,
        })?;
    save_token(state, &resp.token)?;
    tracing::info!(agent_id = %resp.agent_id, "enrolled with the collector");
    Ok(base.with_token(resp.token))
}

/// Writes a file readable by root only (atomically: temp file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |source| AgentError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
