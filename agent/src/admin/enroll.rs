//! `shadowai-agent enroll`: one command a fleet tool runs per host. It writes the collector
//! section into the configuration (keeping the file's comments), installs the collector's
//! CA next to it, enrolls with the enrollment secret and this host's key, proves the new
//! token can upload (a heartbeat the collector records), rewrites the configuration without
//! the secret file, and deletes the secret from disk.
//!
//! Nothing is written until the resulting configuration validates; the token is written
//! before anything else can fail, so a re-run after a partial failure reuses it instead of
//! enrolling twice.

use std::path::{Path, PathBuf};

use shadowai_api::client::Client;
use shadowai_api::{EnrollRequest, Heartbeat};

use super::{AGENT_ID_FILE, AdminError, TOKEN_FILE};
use crate::run::config::{AgentConfig, check_collector_url};
use crate::run::uplink::{host_key, write_private};

/// The configuration a package installs, used when the file does not exist yet.
const PACKAGED_CONFIG: &str = include_str!("../../../packaging/config/agent.toml");

/// `shadowai-agent enroll` arguments.
#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    /// Collector base URL (https://host:port; plain http only to loopback).
    #[arg(long, value_name = "URL")]
    pub collector: String,
    /// PEM certificate or CA of the collector (copied next to the configuration as
    /// collector-ca.pem). Required for https.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// File holding the fleet enrollment secret; deleted once enrollment is verified.
    #[arg(long, value_name = "FILE")]
    pub secret_file: PathBuf,
    /// Host group (policy scoping, rollout rings).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Host tags for policy scoping (comma-separated or repeated); replace the configured ones.
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Agent configuration to write (created from the packaged default when missing).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/shadowai/agent.toml"
    )]
    pub config: PathBuf,
}

/// What `enroll` did.
#[derive(Debug)]
pub struct Enrolled {
    pub agent_id: Option<String>,
    pub reused_token: bool,
    pub config: PathBuf,
}

impl std::fmt::Display for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.agent_id.as_deref().unwrap_or("(id unknown)");
        let how = if self.reused_token {
            "already enrolled"
        } else {
            "enrolled"
        };
        write!(
            f,
            "{how} as {id}; upload verified (heartbeat accepted); configuration written to {}; \
             enrollment secret removed. Start or restart the agent: systemctl restart shadowai-agent",
            self.config.display()
        )
    }
}

pub async fn run(args: &EnrollArgs) -> Result<Enrolled, AdminError> {
    let url = check_collector_url(&args.collector).map_err(|reason| AdminError::Argument {
        arg: "--collector",
        reason,
    })?;
    if url.scheme() == "https" && args.ca.is_none() {
        return Err(AdminError::Argument {
            arg: "--ca",
            reason: "required for an https collector (the PEM certificate or CA that signed it)"
                .into(),
        });
    }
    for tag in args.tags.iter().chain(&args.group) {
        check_ident(tag)?;
    }
    let config = std::path::absolute(&args.config).map_err(|source| AdminError::Io {
        what: "resolving",
        path: args.config.clone(),
        source,
    })?;
    let ca_src = match &args.ca {
        Some(ca) => Some(std::path::absolute(ca).map_err(|source| AdminError::Io {
            what: "resolving",
            path: ca.clone(),
            source,
        })?),
        None => None,
    };
    let ca_pem = match &ca_src {
        Some(ca) => Some(read(ca, "reading --ca")?),
        None => None,
    };
    let ca_dest = config
        .parent()
        .unwrap_or(Path::new("/"))
        .join("collector-ca.pem");
    let mut doc = load_document(&config)?;
    // Validate the result (pointing at the given CA) before anything is written: a failed
    // enrollment leaves the configuration, the CA and the secret as they were.
    edit_document(&mut doc, args, ca_src.as_deref(), true);
    let cfg = AgentConfig::parse(&config, &doc.to_string())?;
    let collector = cfg.collector.as_ref().ok_or(AdminError::Argument {
        arg: "--collector",
        reason: "the configuration has no [collector] section after editing".into(),
    })?;
    let state = &cfg.agent.state_dir;
    create_private_dir(state)?;

    let mut b = Client::builder(collector.url.clone());
    if let Some(pem) = &ca_pem {
        b = b.ca_pem(pem);
    }
    let base = b.build().map_err(|source| AdminError::Collector {
        what: "building the client",
        source,
    })?;
    let (client, agent_id, reused_token) = enroll_once(&base, &cfg).await?;

    // A real call that needs the token: the heartbeat the daemon sends every period.
    let rules = super::rules::summarise(&cfg)?;
    client
        .heartbeat(&Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            bundle_version: rules.bundle_version.clone(),
            mode: rules.mode,
            lost_events: 0,
            group: cfg.agent.group.clone(),
            bundle_error: None,
            pipeline: None,
        })
        .await
        .map_err(|source| AdminError::Collector {
            what: "verifying the new token with a heartbeat",
            source,
        })?;

    // Enrolled: install the CA next to the configuration, which no longer needs (or names)
    // the secret.
    if let Some(pem) = &ca_pem {
        write_file(&ca_dest, pem, 0o644)?;
    }
    edit_document(
        &mut doc,
        args,
        ca_pem.as_ref().map(|_| ca_dest.as_path()),
        false,
    );
    let text = doc.to_string();
    AgentConfig::parse(&config, &text)?;
    write_file(&config, text.as_bytes(), 0o644)?;
    std::fs::remove_file(&args.secret_file).map_err(|source| AdminError::Io {
        what: "enrolled, but could not delete the enrollment secret",
        path: args.secret_file.clone(),
        source,
    })?;
    Ok(Enrolled {
        agent_id,
        reused_token,
        config,
    })
}

/// Enrolls unless a token is already in the state directory; keeps the agent id.
async fn enroll_once(
    base: &Client,
    cfg: &AgentConfig,
) -> Result<(Client, Option<String>, bool), AdminError> {
    let state = &cfg.agent.state_dir;
    let token_path = state.join(TOKEN_FILE);
    let id_path = state.join(AGENT_ID_FILE);
    if let Ok(t) = std::fs::read_to_string(&token_path)
        && !t.trim().is_empty()
    {
        let id = std::fs::read_to_string(&id_path)
            .ok()
            .map(|s| s.trim().to_string());
        return Ok((base.with_token(t.trim()), id, true));
    }
    let collector = cfg.collector.as_ref();
    let secret_file = collector
        .and_then(|c| c.enroll_secret_file.as_deref())
        .ok_or(AdminError::Argument {
            arg: "--secret-file",
            reason: "missing".into(),
        })?;
    let secret =
        String::from_utf8(read(secret_file, "reading the enrollment secret")?).map_err(|_| {
            AdminError::Argument {
                arg: "--secret-file",
                reason: format!("{} is not UTF-8 text", secret_file.display()),
            }
        })?;
    let resp = base
        .enroll(&EnrollRequest {
            secret: secret.trim().to_string(),
            host_id: crate::run::host_id(cfg),
            hostname: cfg
                .agent
                .hostname
                .clone()
                .unwrap_or_else(crate::watch::hostname),
            group: cfg.agent.group.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            host_key: host_key(state)?,
        })
        .await
        .map_err(|source| AdminError::Collector {
            what: "enrollment",
            source,
        })?;
    write_private(&token_path, resp.token.as_bytes())?;
    write_private(&id_path, resp.agent_id.as_bytes())?;
    tracing::info!(agent_id = %resp.agent_id, "enrolled with the collector");
    Ok((base.with_token(resp.token), Some(resp.agent_id), false))
}

fn load_document(path: &Path) -> Result<toml_edit::DocumentMut, AdminError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PACKAGED_CONFIG.to_string(),
        Err(source) => {
            return Err(AdminError::Io {
                what: "reading",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    text.parse().map_err(|source| AdminError::Toml {
        path: path.to_path_buf(),
        source,
    })
}

/// Sets `[agent] group/tags` and `[collector] url/ca/enroll_secret_file`, keeping every
/// other key and comment. `with_secret = false` drops the secret file (after enrollment).
fn edit_document(
    doc: &mut toml_edit::DocumentMut,
    args: &EnrollArgs,
    ca: Option<&Path>,
    with_secret: bool,
) {
    use toml_edit::{Item, Table, value};
    let table = |doc: &mut toml_edit::DocumentMut, name: &str| {
        if !doc.get(name).is_some_and(Item::is_table) {
            doc.insert(name, Item::Table(Table::new()));
        }
    };
    table(doc, "agent");
    table(doc, "collector");
    if let Some(agent) = doc.get_mut("agent").and_then(Item::as_table_mut) {
        if let Some(g) = &args.group {
            agent.insert("group", value(g.as_str()));
        }
        if !args.tags.is_empty() {
            let tags: toml_edit::Array = args.tags.iter().map(String::as_str).collect();
            agent.insert("tags", value(tags));
        }
    }
    if let Some(c) = doc.get_mut("collector").and_then(Item::as_table_mut) {
        c.insert("url", value(args.collector.as_str()));
        match ca {
            Some(ca) => {
                c.insert("ca", value(ca.display().to_string()));
            }
            None => {
                c.remove("ca");
            }
        }
        if with_secret {
            c.insert(
                "enroll_secret_file",
                value(args.secret_file.display().to_string()),
            );
        } else {
            c.remove("enroll_secret_file");
        }
    }
}

/// Group and tag names: what the collector accepts as an identifier.
fn check_ident(s: &str) -> Result<(), AdminError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Argument {
            arg: "--group/--tags",
            reason: format!("{s:?}: 1 to 64 of A-Z a-z 0-9 - _ . :"),
        })
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, AdminError> {
    std::fs::read(path).map_err(|source| AdminError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), AdminError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AdminError::Io {
            what: "creating the state directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes a file atomically (temporary file, fsync, rename) with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AdminError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| AdminError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".enroll-tmp");
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    fn args(tags: &[&str]) -> EnrollArgs {
        EnrollArgs {
            collector: "https://collector.example:8443".into(),
            ca: None,
            secret_file: "/etc/shadowai/enroll.secret".into(),
            group: Some("laptops".into()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            config: "/etc/shadowai/agent.toml".into(),
        }
    }

    #[test]
    fn editing_the_packaged_config_keeps_its_comments_and_sets_the_collector() {
        let mut doc: toml_edit::DocumentMut = PACKAGED_CONFIG.parse().unwrap();
        let ca = Path::new("/etc/shadowai/collector-ca.pem");
        edit_document(&mut doc, &args(&["eu", "dev"]), Some(ca), true);
        let text = doc.to_string();
        assert!(text.contains("# shadowai agent configuration"), "{text}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["collector"]["url"].as_str(),
            Some("https://collector.example:8443")
        );
        assert_eq!(
            v["collector"]["ca"].as_str(),
            Some("/etc/shadowai/collector-ca.pem")
        );
        assert_eq!(
            v["collector"]["enroll_secret_file"].as_str(),
            Some("/etc/shadowai/enroll.secret")
        );
        assert_eq!(v["agent"]["group"].as_str(), Some("laptops"));
        assert_eq!(v["agent"]["tags"].as_array().unwrap().len(), 2);
        assert_eq!(v["output"]["metrics"].as_str(), Some("127.0.0.1:9464"));
        // After enrollment the secret's path is gone; a second edit is idempotent.
        edit_document(&mut doc, &args(&[]), Some(ca), false);
        let v: toml::Value = toml::from_str(&doc.to_string()).unwrap();
        assert!(v["collector"].get("enroll_secret_file").is_none());
        assert_eq!(v["agent"]["tags"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn odd_group_and_tag_names_are_refused() {
        for bad in ["", "a b", "x\n", "ü", &"x".repeat(65)] {
            assert!(check_ident(bad).is_err(), "{bad:?}");
        }
        check_ident("eu-west_1.a").unwrap();
    }
}
