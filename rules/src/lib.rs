//! The AI-service catalogue and the organisation's policy engine.
//!
//! - [`catalogue`]: one TOML file per AI service, validated with file:line diagnostics;
//! - [`policy`]: the organisation's verdicts, scopes, exceptions and mode;
//! - [`engine`]: match a name / IP / process / port to a service and apply the policy;
//! - [`bundle`]: canonical, ed25519-signed catalogue+policy bundles;
//! - [`diff`]: which services change verdict, for whom;
//! - [`cli`]: the `shadowai rules …` subcommand.
//!
//! See rules/README.md for formats and design decisions.
//!
//! ```
//! use std::path::Path;
//! use shadowai_rules::{Catalogue, Engine, Policy, Query, Verdict};
//!
//! let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
//! let cat = Catalogue::load_dir(&dir.join("catalogue"))?;
//! let policy = Policy::load(&dir.join("policy.example.toml"), &cat)?;
//! let engine = Engine::new(cat, policy)?;
//!
//! assert_eq!(engine.match_name("API.openai.com.").map(|s| s.id.as_str()), Some("openai-api"));
//! assert!(engine.match_name("notopenai.com").is_none());
//!
//! let groups = ["engineering"];
//! let tags = ["laptop"];
//! let q = Query { name: Some("api.githubcopilot.com"), user: Some("dana"),
//!                 unix_groups: &groups, host_tags: &tags, ..Query::default() };
//! let d = engine.classify(&q).expect("GitHub Copilot is in the catalogue");
//! assert_eq!(d.service.id, "github-copilot");
//! assert_eq!(d.verdict, Verdict::Sanctioned);
//! assert_eq!(d.rule_id(), "rule:copilot-engineering");
//! println!("{}", d.explain());
//! # Ok::<(), shadowai_rules::RulesError>(())
//! ```

use serde::{Deserialize, Serialize};

pub mod bundle;
pub mod catalogue;
pub mod cli;
pub mod diff;
pub mod effective;
pub mod engine;
pub mod error;
pub mod keyset;
pub mod matcher;
pub mod pattern;
pub mod policy;
mod qname;
pub mod report;
mod suffix_index;
pub mod time;
pub mod twoperson;

pub use bundle::{BundleBody, CompileOptions, InUse, VerifiedBundle, VerifyOptions};
pub use catalogue::{Catalogue, Category, Service, validate_dir};
pub use engine::{DecidedBy, Decision, Engine, MatchedBy, Query};
pub use error::RulesError;
pub use policy::{Mode, Policy, validate_policy};
pub use report::{Diagnostic, Report, Severity};

/// The organisation's decision about one use of an AI service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approved for use.
    Sanctioned,
    /// Allowed but watched.
    Tolerated,
    /// Not approved; reported.
    Unsanctioned,
    /// Not approved; egress is stopped where the agent enforces.
    Blocked,
}

impl Verdict {
    /// All verdicts, least to most restrictive.
    pub const ALL: [Verdict; 4] = [
        Self::Sanctioned,
        Self::Tolerated,
        Self::Unsanctioned,
        Self::Blocked,
    ];

    /// The snake_case name (as in files and on the wire).
    pub fn as_str(self) -> &'static str {
        engine::verdict_str(self)
    }

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
