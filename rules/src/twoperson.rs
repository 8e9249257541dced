//! The two-person rule, decided on effective verdicts: a new catalogue+policy is accepted
//! only when every use whose enforced-`blocked` status it changes (see
//! [`crate::effective`]; an observe-only rule's `blocked` refuses nothing) is
//! covered by an approval a second person gave, when a change of mode (monitor ⇄ enforce:
//! whether `blocked` verdicts are blocked at all) was approved by a second person, and when
//! its catalogue is exactly the reference catalogue (a bundle cannot redefine what a
//! service is).
//!
//! Who approved is the caller's business (the collector passes only approvals decided by
//! someone other than the proposer); this module decides what an approval covers.

use serde::Serialize;

use crate::Verdict;
use crate::catalogue::{Catalogue, Category};
use crate::effective::{self, BlockChange, Direction, TooComplex};
use crate::engine::Engine;
use crate::error::RulesError;
use crate::policy::{Mode, Policy};

/// At most this many uncovered changes are carried in a refusal (the count is exact).
pub const MAX_LISTED: usize = 20;

/// What an approval is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// One service by id.
    Service(String),
    /// Every service of a category.
    Category(Category),
    /// Every service whose provider sits in this jurisdiction.
    Jurisdiction(String),
    /// Every AI service.
    Any,
    /// The policy's mode: whether agents block `blocked` verdicts (`enforce`) or only
    /// report them (`monitor`). Covers no verdict change; a bundle that changes the mode
    /// needs an approval of the new mode.
    Mode(Mode),
}

impl Target {
    /// `*`, `category:<name>`, `jurisdiction:<code>`, `mode:enforce`, `mode:monitor` or a
    /// service id.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "*" {
            Some(Self::Any)
        } else if let Some(m) = s.strip_prefix("mode:") {
            match m {
                "enforce" => Some(Self::Mode(Mode::Enforce)),
                "monitor" => Some(Self::Mode(Mode::Monitor)),
                _ => None,
            }
        } else if let Some(c) = s.strip_prefix("category:") {
            Category::parse(c).map(Self::Category)
        } else if let Some(j) = s.strip_prefix("jurisdiction:") {
            let ok = (j.len() == 2 && j.bytes().all(|b| b.is_ascii_uppercase())) || j == "LOCAL";
            ok.then(|| Self::Jurisdiction(j.to_owned()))
        } else if s.is_empty() || s.contains(':') {
            None
        } else {
            Some(Self::Service(s.to_owned()))
        }
    }

    fn matches(&self, c: &BlockChange) -> bool {
        match self {
            Self::Service(s) => *s == c.service,
            Self::Category(cat) => *cat == c.category,
            Self::Jurisdiction(j) => *j == c.jurisdiction,
            Self::Any => true,
            Self::Mode(_) => false,
        }
    }
}

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    }
}

/// Where an approval applies: the whole fleet, or hosts carrying a tag (an agent's
/// enrollment group is one of its host tags).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Scope {
    /// Every host and person.
    Fleet,
    /// Hosts with this tag.
    HostTag(String),
}

/// A verdict a second person approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The proposal it came from (for messages).
    pub proposal: i64,
    /// What it is about.
    pub target: Target,
    /// The verdict approved.
    pub verdict: Verdict,
    /// Where.
    pub scope: Scope,
}

impl Approval {
    /// Does this approval cover the change? A new block (also an observe-only `blocked`
    /// switched to enforced) needs an approved `blocked`; a lifted block needs an approval
    /// of the verdict that replaces it, or — when the service leaves the catalogue, or its
    /// `blocked` stays but turns observe-only — of any verdict but `blocked` (the second
    /// person agreed to lift the block; an approved `blocked` never lifts one).
    pub fn covers(&self, c: &BlockChange) -> bool {
        let verdict_ok = match c.direction {
            Direction::Blocks => self.verdict == Verdict::Blocked,
            Direction::Unblocks => match c.new {
                Some(Verdict::Blocked) | None => self.verdict != Verdict::Blocked,
                Some(v) => self.verdict == v,
            },
        };
        let scope_ok = match &self.scope {
            Scope::Fleet => true,
            Scope::HostTag(t) => c.audience.host_tags.contains(t),
        };
        verdict_ok && scope_ok && self.target.matches(c)
    }
}

/// Why a catalogue+policy is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The catalogue is not the reference one.
    #[error(
        "its catalogue differs from the collector's in {}: a bundle must carry the collector's catalogue unchanged",
        what.join(", ")
    )]
    CatalogueDiffers {
        /// Service ids (and `shared infrastructure`) that differ, at most [`MAX_LISTED`].
        what: Vec<String>,
    },
    /// The policy does not load against the catalogue.
    #[error("its policy does not load: {source}")]
    Invalid {
        /// Why.
        #[source]
        source: RulesError,
    },
    /// Too many scope combinations to decide.
    #[error("cannot be checked: {source}")]
    TooComplex {
        /// Which service.
        #[source]
        source: TooComplex,
    },
    /// The mode changes without an approval of the new mode by a second person.
    #[error(
        "its mode changes from {} to {} without an approval by a second person (propose `mode:{}` first)",
        mode_str(*from), mode_str(*to), mode_str(*to)
    )]
    ModeUnapproved {
        /// The mode in the previous pair (monitor when there was none).
        from: Mode,
        /// The bundle's mode.
        to: Mode,
    },
    /// Some changes have no approval by a second person.
    #[error(
        "{count} use(s) change `blocked` status without an approval by a second person, e.g. {}",
        describe(first)
    )]
    Uncovered {
        /// How many.
        count: usize,
        /// The first [`MAX_LISTED`].
        first: Vec<BlockChange>,
    },
}

fn describe(changes: &[BlockChange]) -> String {
    changes
        .iter()
        .take(3)
        .map(|c| {
            let v = |x: Option<Verdict>, observed: bool| match x {
                None => "absent",
                Some(Verdict::Blocked) if observed => "blocked (observe-only)",
                Some(v) => v.as_str(),
            };
            let blocks = c.direction == Direction::Blocks;
            let when = if blocks {
                "becomes blocked"
            } else {
                "stops being blocked"
            };
            format!(
                "`{}` {when} for {} ({} -> {}, at {})",
                c.service,
                c.audience,
                v(c.old, blocks),
                v(c.new, !blocks),
                crate::time::format_rfc3339(c.at)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn catalogue_differences(reference: &Catalogue, cat: &Catalogue) -> Vec<String> {
    let mut what = Vec::new();
    if reference.shared_infra != cat.shared_infra {
        what.push("shared infrastructure".to_owned());
    }
    let ids: std::collections::BTreeSet<&str> = reference
        .services
        .iter()
        .chain(&cat.services)
        .map(|s| s.id.as_str())
        .collect();
    what.extend(
        ids.into_iter()
            .filter(|id| reference.service(id) != cat.service(id))
            .map(|id| format!("service `{id}`")),
    );
    what.truncate(MAX_LISTED);
    what
}

/// Decide whether `new` (catalogue + policy) may replace `previous` (the pair agents run;
/// `None`: nothing was ever rolled out, i.e. the default policy in monitor mode where
/// nothing is blocked). Returns every change (all covered) on success.
pub fn check(
    reference: &Catalogue,
    previous: Option<(&Catalogue, &Policy)>,
    new: (&Catalogue, &Policy),
    approvals: &[Approval],
    now: i64,
) -> Result<Vec<BlockChange>, Refusal> {
    let what = catalogue_differences(reference, new.0);
    if !what.is_empty() {
        return Err(Refusal::CatalogueDiffers { what });
    }
    let (oc, op) = match previous {
        Some((c, p)) => (c.clone(), p.clone()),
        None => (reference.clone(), Policy::default()),
    };
    if op.mode != new.1.mode
        && !approvals
            .iter()
            .any(|a| a.target == Target::Mode(new.1.mode) && a.scope == Scope::Fleet)
    {
        return Err(Refusal::ModeUnapproved {
            from: op.mode,
            to: new.1.mode,
        });
    }
    let invalid = |source| Refusal::Invalid { source };
    // The previous pair was accepted once; if its own catalogue no longer loads, judge its
    // policy over the reference catalogue; if even that fails, refuse rather than guess.
    let old = Engine::new(oc, op.clone())
        .or_else(|_| Engine::new(reference.clone(), op))
        .map_err(invalid)?;
    let engine = Engine::new(new.0.clone(), new.1.clone()).map_err(invalid)?;
    let tags: Vec<String> = approvals
        .iter()
        .filter_map(|a| match &a.scope {
            Scope::HostTag(t) => Some(t.clone()),
            Scope::Fleet => None,
        })
        .collect();
    let changes = effective::block_changes(&old, &engine, &tags, now)
        .map_err(|source| Refusal::TooComplex { source })?;
    let uncovered: Vec<&BlockChange> = changes
        .iter()
        .filter(|c| !approvals.iter().any(|a| a.covers(c)))
        .collect();
    if uncovered.is_empty() {
        Ok(changes)
    } else {
        Err(Refusal::Uncovered {
            count: uncovered.len(),
            first: uncovered.into_iter().take(MAX_LISTED).cloned().collect(),
        })
    }
}
