//! The organisation id an AI tool records in its own metadata file (opt-in:
//! `[inventory] read_tenant = true`). Exactly one dotted field of one JSON file per hint
//! (`_agents.toml` `tenant`), e.g. Claude Code's `~/.claude.json` →
//! `oauthAccount.organizationUuid`. Every other value in the file is skipped by the parser
//! without being decoded or kept (serde `IgnoredAny`), so a token or key beside the field
//! never becomes a value in the agent; the validator refuses hints whose field names look
//! like secrets. Files above 1 MiB, symlinks and non-regular files are not read.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Largest metadata file read.
const MAX_FILE: u64 = 1024 * 1024;
/// Longest id kept.
const MAX_ID: usize = 128;

/// Why no tenant was read.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("reading {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file of at most 1 MiB")]
    NotAFile { path: String },
    #[error("{path} is not JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads `field` (dotted) of the JSON file `home/file`. `Ok(None)` when the file or the
/// field is missing, or the field is not a short string or number.
pub fn read(home: &Path, file: &str, field: &str) -> Result<Option<String>, TenantError> {
    let path = home.join(file);
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TenantError::Io {
                path: shown,
                source,
            });
        }
    };
    if !meta.file_type().is_file() || meta.len() > MAX_FILE {
        return Err(TenantError::NotAFile { path: shown });
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_FILE).read_to_end(&mut text))
        .map_err(|source| TenantError::Io {
            path: shown.clone(),
            source,
        })?;
    let parts: Vec<&str> = field.split('.').collect();
    let mut de = serde_json::Deserializer::from_slice(&text);
    let v = FieldSeed(&parts)
        .deserialize(&mut de)
        .map_err(|source| TenantError::Json {
            path: shown,
            source,
        })?;
    Ok(v.filter(|s| !s.is_empty() && s.len() <= MAX_ID && !s.chars().any(char::is_control)))
}

/// Walks one path; everything off the path is `IgnoredAny`.
struct FieldSeed<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.split_first() {
                Some((head, rest)) if *head == k && found.is_none() => {
                    found = m.next_value_seed(FieldSeed(rest))?;
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn reads_only_the_field_never_the_key_beside_it() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".claude.json"),
            r#"{"primaryApiKey":"sk-ant-api03-FAKEKEY","numStartups":3,
               "oauthAccount":{"accessToken":"FAKE-TOKEN","organizationUuid":"org-1234","emailAddress":"a@b"},
               "projects":{"/x":{"mcpServers":{"s":{"command":"rm","args":["-rf","/"]}}}}}"#,
        )
        .unwrap();
        let v = read(home.path(), ".claude.json", "oauthAccount.organizationUuid").unwrap();
        assert_eq!(v.as_deref(), Some("org-1234"));
        assert_eq!(
            read(home.path(), ".claude.json", "oauthAccount.missing").unwrap(),
            None
        );
        assert_eq!(read(home.path(), ".nope.json", "a").unwrap(), None);
        std::fs::write(home.path().join("bad.json"), "{not json").unwrap();
        assert!(matches!(
            read(home.path(), "bad.json", "a"),
            Err(TenantError::Json { .. })
        ));
        std::os::unix::fs::symlink("/etc/passwd", home.path().join("link.json")).unwrap();
        assert!(matches!(
            read(home.path(), "link.json", "a"),
            Err(TenantError::NotAFile { .. })
        ));
    }
}
