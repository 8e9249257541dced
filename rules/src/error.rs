//! The crate's one error type.

use std::path::PathBuf;

use crate::report::Report;

/// Everything that can go wrong in the rules crate. Each variant says what and where.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Catalogue or policy files have errors; the report lists each with file:line.
    #[error("{} error(s) found:\n{report}", report.error_count())]
    Invalid {
        /// Every diagnostic found.
        report: Report,
    },
    /// A policy refers to something the catalogue does not have.
    #[error("policy rule `{rule}` refers to unknown {what} `{name}`")]
    UnknownReference {
        /// The rule or exception id.
        rule: String,
        /// "service" or "category".
        what: &'static str,
        /// The unknown id.
        name: String,
    },
    /// A key file is not in the documented format.
    #[error("{path}: bad key file: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A bundle is not well-formed JSON of the expected shape.
    #[error("bundle is malformed: {source}")]
    BundleFormat {
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The bundle body is not in canonical form (it was edited or produced by something else).
    #[error("bundle body is not canonical (re-serialisation differs): refusing it")]
    NotCanonical,
    /// The bundle carries no signature.
    #[error("bundle is not signed")]
    Unsigned,
    /// The signature is not valid for this body and key.
    #[error("bundle signature is invalid for key {key_id}")]
    BadSignature {
        /// Short id of the key used to verify.
        key_id: String,
    },
    /// The bundle was signed by another key than the one given.
    #[error("bundle was signed by key {found}, expected key {expected}")]
    WrongKey {
        /// Key id named in the bundle.
        found: String,
        /// Key id of the verifying key.
        expected: String,
    },
    /// The bundle's version is older than the one in use (or equal with other content).
    #[error("rollback refused: bundle version {offered} is not newer than {in_use} in use")]
    Rollback {
        /// Version offered.
        offered: String,
        /// Version in use.
        in_use: String,
    },
    /// The bundle has expired.
    #[error("bundle expired at {expires_at} (now {now})")]
    Expired {
        /// RFC 3339 expiry.
        expires_at: String,
        /// RFC 3339 now.
        now: String,
    },
    /// The bundle claims to be issued in the future.
    #[error("bundle issued in the future: issued_at {issued_at}, now {now}")]
    NotYetValid {
        /// RFC 3339 issue time.
        issued_at: String,
        /// RFC 3339 now.
        now: String,
    },
    /// The agent is older than the bundle requires.
    #[error("bundle needs agent version >= {required}, this agent is {agent}")]
    AgentTooOld {
        /// Minimum agent version.
        required: String,
        /// This agent's version.
        agent: String,
    },
    /// A version string is not semver.
    #[error("`{value}` is not a semantic version: {source}")]
    BadVersion {
        /// The text.
        value: String,
        /// Parser error.
        #[source]
        source: semver::Error,
    },
    /// Bundle time fields are inconsistent.
    #[error("bundle validity is empty: expires_at {expires_at} <= issued_at {issued_at}")]
    BadValidity {
        /// Unix seconds.
        issued_at: i64,
        /// Unix seconds.
        expires_at: i64,
    },
    /// A command-line argument is not acceptable.
    #[error("invalid argument {arg}: {reason}")]
    BadArgument {
        /// The argument.
        arg: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("random number source failed: {0}")]
    Random(getrandom::Error),
}

impl RulesError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
