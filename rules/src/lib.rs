//! The AI-service catalogue and the organisation's policy engine.

use serde::{Deserialize, Serialize};

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
