//! Reading the catalogue's optional list files (`_shared-infra.toml`, `_benign.toml`,
//! `_local-resolvers.toml`): a missing file is a warning, a malformed one an error at its
//! line, an unreadable one an I/O error.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::RulesError;
use crate::report::{Report, SourceMap};

/// Parse `dir/name` as `T`. `Ok(None)` when the file is missing (after a warning saying
/// `missing`) or malformed (after the TOML error); `Err` only when it cannot be read.
pub(crate) fn read<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
    missing: &str,
    report: &mut Report,
) -> Result<Option<(T, SourceMap)>, RulesError> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.push(SourceMap::new(&path, "").warning(None, missing.into()));
            return Ok(None);
        }
        Err(e) => return Err(RulesError::io(path, e)),
    };
    let sm = SourceMap::new(&path, &text);
    match toml::from_str(&text) {
        Ok(v) => Ok(Some((v, sm))),
        Err(e) => {
            report.push(sm.toml_error(&e));
            Ok(None)
        }
    }
}
