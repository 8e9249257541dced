//! The CLI's login file: collector URL, token and an optional CA file, kept 0600.
//!
//! Location: `$SHADOWAI_CONFIG`, else `$XDG_CONFIG_HOME/shadowai/cli.toml`, else
//! `~/.config/shadowai/cli.toml`. Written atomically (temp file + rename) with mode 0600 in a
//! 0700 directory; a file readable by others is refused, as ssh refuses such keys.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// Collector base URL, e.g. `https://collector.example:8443`.
    pub url: String,
    /// Person token (`sau_…`).
    pub token: String,
    /// PEM file of the CA (or self-signed certificate) that signs the collector's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Marker error: no usable login (exit code 3).
#[derive(Debug)]
pub struct NotLoggedIn(pub String);

impl std::fmt::Display for NotLoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for NotLoggedIn {}

/// Where the login file lives.
pub fn default_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHADOWAI_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(x).join("shadowai").join("cli.toml"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(home) => Ok(PathBuf::from(home)
            .join(".config")
            .join("shadowai")
            .join("cli.toml")),
        None => bail!("cannot find a place for the login file: set $SHADOWAI_CONFIG or $HOME"),
    }
}

pub fn load(path: &Path) -> Result<CliConfig> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NotLoggedIn(format!(
                "not logged in: {} does not exist (run `shadowai login --url URL`)",
                path.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NotLoggedIn(format!(
            "{} holds a token but its mode is {mode:04o}: run `chmod 600 {}` (or log in again)",
            path.display(),
            path.display()
        ))
        .into());
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: CliConfig =
        toml::from_str(&text).map_err(|e| NotLoggedIn(format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// Writes the file with mode 0600 (directory 0700), replacing any old one atomically.
pub fn save(path: &Path, config: &CliConfig) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = toml::to_string(config).context("encoding the login file")?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cli.toml".to_owned());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    fn sample() -> CliConfig {
        CliConfig {
            url: "https://127.0.0.1:8443".into(),
            token: "sau_secret".into(),
            ca_file: Some("/etc/ca.pem".into()),
        }
    }

    #[test]
    fn save_is_0600_in_0700_dir_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/shadowai/cli.toml");
        save(&path, &sample()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let parent = path.parent().unwrap();
        assert_eq!(
            fs::metadata(parent).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(load(&path).unwrap(), sample());
        // Replacing keeps 0600 and leaves no temp file behind.
        save(
            &path,
            &CliConfig {
                token: "sau_other".into(),
                ..sample()
            },
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().token, "sau_other");
        assert_eq!(fs::read_dir(parent).unwrap().count(), 1);
    }

    #[test]
    fn group_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cli.toml");
        save(&path, &sample()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.downcast_ref::<NotLoggedIn>().is_some());
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn missing_and_malformed_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(missing.to_string().contains("shadowai login"), "{missing}");
        let path = dir.path().join("bad.toml");
        fs::write(&path, "url = \"x\"\ncolour = 1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("colour"), "{err}");
    }
}
