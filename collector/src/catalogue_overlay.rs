//! The collector's catalogue overlay: catalogue entries a second person approved (see
//! `store/sql_catalogue.rs`), composed with the shipped catalogue into the catalogue the
//! collector serves (`GET /api/v1/catalogue`, which `shadowai rules publish` signs into the
//! next bundle), checks proposals and bundles against, and reports risk from.
//!
//! Composition loads the shipped catalogue directory plus one generated file per approved
//! entry with the rules crate's own loader, so the result is exactly what `rules validate`
//! would accept. An approved entry that no longer loads (the shipped catalogue has since
//! claimed its name) is left out, logged once and counted in
//! `shadowai_collector_catalogue_overlay_refused`; the rest still compose. The result is
//! cached per set of approved proposals, so the catalogue is re-composed only after an
//! approval.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shadowai_api::discovery::CatalogueEntry;
use shadowai_rules::Catalogue;
use shadowai_rules::catalogue::load_dir_report;
use std::sync::{Mutex, PoisonError};

use crate::catalogue_entry::{EntryError, entry_file, stage};
use crate::server::SharedState;
use crate::server::error::ApiError;

/// The overlay entry files: (entry id, catalogue file text) per approved proposal.
pub fn overlay_files(overlay: &[(i64, CatalogueEntry)]) -> Vec<(String, String)> {
    overlay
        .iter()
        .map(|(id, e)| {
            let note = format!("Added to the catalogue by approved proposal {id}.");
            (e.id.clone(), entry_file(e, &note).text)
        })
        .collect()
}

/// The composed catalogue and the proposals left out (with why).
#[derive(Clone)]
pub struct Composed {
    pub catalogue: Arc<Catalogue>,
    pub refused: Vec<(i64, String)>,
}

/// Shipped catalogue + overlay. Entries whose files the loader refuses are left out
/// (one pass finds them all: every diagnostic is at a file); if the shipped files
/// themselves no longer load, that is an error.
pub fn compose(base_dir: &Path, overlay: &[(i64, CatalogueEntry)]) -> Result<Composed, EntryError> {
    let mut keep: Vec<(i64, CatalogueEntry)> = overlay.to_vec();
    let mut refused = Vec::new();
    // Each round drops at least one entry, so this ends after at most overlay.len() + 1.
    for _ in 0..=overlay.len() {
        let (dir, clashes) = stage(base_dir, &overlay_files(&keep))?;
        if !clashes.is_empty() {
            keep.retain(|(pid, e)| {
                let clash = clashes.contains(&e.id);
                if clash {
                    refused.push((*pid, format!("`{}` is now a shipped catalogue entry", e.id)));
                }
                !clash
            });
            continue;
        }
        let (cat, report) =
            load_dir_report(dir.path()).map_err(|source| EntryError::Rules { source })?;
        if report.is_ok() {
            return Ok(Composed {
                catalogue: Arc::new(cat),
                refused,
            });
        }
        let errors: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == shadowai_rules::Severity::Error)
            .collect();
        let before = keep.len();
        keep.retain(|(pid, e)| {
            let file = dir.path().join(format!("{}.toml", e.id));
            let mine: Vec<String> = errors
                .iter()
                .filter(|d| d.file == file || d.message.contains(&format!("`{}`", e.id)))
                .map(|d| format!("line {}: {}", d.line, d.message))
                .collect();
            if mine.is_empty() {
                true
            } else {
                refused.push((*pid, mine.join("; ")));
                false
            }
        });
        if keep.len() == before {
            return Err(EntryError::Rules {
                source: shadowai_rules::RulesError::Invalid { report },
            });
        }
    }
    Err(EntryError::Invalid(Vec::new()))
}

/// The composed catalogue per set of approved proposals.
pub struct OverlayCache {
    dir: PathBuf,
    cached: Mutex<Option<(Vec<i64>, Composed)>>,
}

impl OverlayCache {
    /// Composes over the shipped catalogue in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            cached: Mutex::new(None),
        }
    }

    /// The shipped catalogue's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The catalogue the collector serves: shipped + approved overlay.
pub async fn effective(st: &SharedState) -> Result<Arc<Catalogue>, ApiError> {
    Ok(effective_composed(st).await?.catalogue)
}

/// [`effective`] with the approved entries that were left out.
pub async fn effective_composed(st: &SharedState) -> Result<Composed, ApiError> {
    let base = crate::server::policy_routes::catalogue_of(st)?;
    let overlay = st.db(|s| s.catalogue_overlay()).await?;
    if overlay.is_empty() {
        return Ok(Composed {
            catalogue: base,
            refused: Vec::new(),
        });
    }
    let key: Vec<i64> = overlay.iter().map(|(id, _)| *id).collect();
    // The cache holds one complete value or none (a panic cannot leave it half-written),
    // so a poisoned lock's value is still good.
    if let Some((k, c)) = st
        .overlay
        .cached
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        && *k == key
    {
        return Ok(c.clone());
    }
    let dir = st.overlay.dir.clone();
    let composed = tokio::task::spawn_blocking(move || compose(&dir, &overlay))
        .await
        .map_err(|e| ApiError::Internal {
            what: format!("catalogue composition task failed: {e}"),
        })?
        .map_err(|e| ApiError::Internal {
            what: format!("composing the catalogue overlay: {e}"),
        })?;
    for (id, why) in &composed.refused {
        // Logged once per set of approvals (the result is cached).
        tracing::warn!(proposal = id, reason = %why, "an approved catalogue entry no longer loads with the shipped catalogue: left out of the catalogue");
    }
    st.metrics
        .catalogue_overlay_refused
        .set(i64::try_from(composed.refused.len()).unwrap_or(i64::MAX));
    tracing::info!(
        entries = key.len() - composed.refused.len(),
        services = composed.catalogue.services.len(),
        "catalogue overlay composed"
    );
    *st.overlay
        .cached
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some((key, composed.clone()));
    Ok(composed)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use shadowai_api::discovery::EntryRisk;
    use shadowai_rules::catalogue::{Retention, Training};

    fn entry(id: &str, host: &str) -> CatalogueEntry {
        CatalogueEntry {
            id: id.into(),
            name: id.into(),
            vendor: "V".into(),
            category: shadowai_rules::Category::ModelApi,
            description: String::new(),
            domains: vec![],
            hosts: vec![host.into()],
            risk: EntryRisk {
                trains_on_user_data: Training::No,
                retention: Retention::None,
                jurisdiction: "DE".into(),
                enterprise_controls: vec![],
                certifications: vec![],
            },
            source: "https://example.org/terms".into(),
            checked: "2026-11-01".into(),
        }
    }

    #[test]
    fn approved_entries_join_the_catalogue_and_a_conflicting_one_is_left_out() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        let overlay = vec![
            (1, entry("relay-one", "api.relay-one.example")),
            // Claims a name the shipped catalogue already names.
            (2, entry("zz-openai-copy", "api.openai.com")),
            (3, entry("relay-two", "api.relay-two.example")),
            // Has the id of a shipped entry (its file is never written through).
            (4, entry("openai-api", "api.relay-three.example")),
        ];
        let c = compose(&dir, &overlay).unwrap();
        assert!(c.catalogue.service("relay-one").is_some());
        assert!(c.catalogue.service("relay-two").is_some());
        assert!(c.catalogue.service("zz-openai-copy").is_none());
        let refused: Vec<i64> = c.refused.iter().map(|r| r.0).collect();
        assert_eq!(refused, vec![4, 2], "{:?}", c.refused);
        let openai = c.catalogue.service("openai-api").unwrap();
        assert!(openai.hosts.iter().all(|h| h != "api.relay-three.example"));
        let shipped = std::fs::read_to_string(dir.join("openai-api.toml")).unwrap();
        assert!(
            !shipped.contains("relay-three"),
            "the shipped file is untouched"
        );
    }
}
