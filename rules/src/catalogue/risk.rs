//! Risk of a service: explicit factors (training on user data, retention, jurisdiction,
//! enterprise controls, certifications), per plan where the vendor's terms differ, and a score
//! computed from them with its breakdown. The score is the risk of the *service* under the
//! terms of a plan; whether a use is allowed is the policy's verdict, shown separately.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Does the service train models on what users send?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Training {
    /// Yes, by default, no opt-out offered.
    Yes,
    /// Yes by default; users or admins can opt out.
    OptOut,
    /// Only if the user opts in.
    OptIn,
    /// No (by terms of service).
    No,
    /// Not documented.
    Unknown,
}

/// How long prompts/outputs are kept by the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Not stored (or zero-retention by default).
    None,
    /// Bounded (e.g. 30 days for abuse monitoring).
    Limited,
    /// Kept until deleted, or longer than 30 days.
    Extended,
    /// Not documented.
    Unknown,
}

/// Controls an organisation can have over its use of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Single sign-on (SAML/OIDC).
    Sso,
    /// SCIM provisioning.
    Scim,
    /// Admin audit log.
    AuditLog,
    /// Data processing agreement.
    Dpa,
    /// Zero data retention available.
    ZeroRetention,
    /// Data residency choice.
    DataResidency,
    /// Tenant restriction (the network can enforce the corporate tenant).
    TenantRestriction,
}

/// Independent security / privacy attestations the vendor publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Certification {
    /// SOC 2 Type II report.
    Soc2,
    /// ISO/IEC 27001.
    Iso27001,
    /// ISO/IEC 27701 (privacy).
    Iso27701,
    /// ISO/IEC 42001 (AI management).
    Iso42001,
    /// US FedRAMP authorisation.
    Fedramp,
    /// Signs HIPAA business associate agreements.
    HipaaBaa,
}

/// Which plan a set of factors describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Free individual sign-up (the usual shadow use).
    Free,
    /// Paid individual plan.
    Individual,
    /// Small-business / team workspace.
    Team,
    /// Enterprise contract.
    Enterprise,
    /// Developer API under the API/business terms.
    Api,
    /// Runs on the organisation's own hosts.
    SelfHosted,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Free => "free",
            Self::Individual => "individual",
            Self::Team => "team",
            Self::Enterprise => "enterprise",
            Self::Api => "api",
            Self::SelfHosted => "self_hosted",
        })
    }
}

/// Factors of another plan of the same service, where the vendor's terms differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRisk {
    /// The plan.
    pub plan: Plan,
    /// Trains on user data under this plan?
    pub trains_on_user_data: Training,
    /// Retention under this plan.
    pub retention: Retention,
    /// Controls available under this plan.
    #[serde(default)]
    pub enterprise_controls: Vec<Control>,
    /// Computed: see [`Risk::compute_score`].
    #[serde(default)]
    pub score: u8,
}

/// Risk attributes and the score derived from them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// The plan the top-level factors describe (absent: not researched per plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Trains on user data?
    pub trains_on_user_data: Training,
    /// Retention of prompts and outputs.
    pub retention: Retention,
    /// ISO 3166-1 alpha-2 code of the provider's legal seat, `EU`, `ZZ` (unknown) or
    /// `LOCAL` (self-hosted).
    pub jurisdiction: String,
    /// Controls available to an organisation.
    #[serde(default)]
    pub enterprise_controls: Vec<Control>,
    /// Published attestations (apply to every plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certifications: Vec<Certification>,
    /// Other plans whose terms differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierRisk>,
    /// The public policy pages the factors were read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// 0 (low) ..= 100 (high): see [`Risk::compute_score`]. Computed, not written by hand.
    #[serde(default)]
    pub score: u8,
}

/// The user-assigned ISO code used for "not known".
pub const UNKNOWN_JURISDICTION: &str = "ZZ";

/// Jurisdictions scored as high risk for data export.
pub const HIGH_RISK_JURISDICTIONS: [&str; 4] = ["CN", "RU", "IR", "KP"];

/// One factor's contribution to a score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FactorScore {
    /// `training`, `retention`, `jurisdiction`, `enterprise_controls`, `certifications`.
    pub factor: &'static str,
    /// The factor's value as written (e.g. `opt_out`, `US`, `sso,audit_log`).
    pub value: String,
    /// Points it adds.
    pub points: u8,
    /// The most it can add.
    pub max: u8,
}

/// A score and how it was reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RiskBreakdown {
    /// The plan the factors describe, if known.
    pub plan: Option<Plan>,
    /// Per factor.
    pub factors: Vec<FactorScore>,
    /// Sum of the points, 0..=100.
    pub score: u8,
    /// The score's band.
    pub band: RiskBand,
}

/// A coarse reading of a score, for display next to (never instead of) the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    /// 0–24.
    Low,
    /// 25–49.
    Moderate,
    /// 50–74.
    High,
    /// 75–100.
    Severe,
}

impl RiskBand {
    /// The band of a score.
    pub fn of(score: u8) -> Self {
        match score {
            0..=24 => Self::Low,
            25..=49 => Self::Moderate,
            50..=74 => Self::High,
            _ => Self::Severe,
        }
    }
}

impl fmt::Display for RiskBand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "low",
            Self::Moderate => "moderate",
            Self::High => "high",
            Self::Severe => "severe",
        })
    }
}

fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn list<T: Serialize + Ord + Copy>(v: &[T]) -> (String, usize) {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    let names: Vec<String> = v.iter().map(snake).collect();
    (names.join(","), v.len())
}

impl Risk {
    fn factors(
        &self,
        training: Training,
        retention: Retention,
        controls: &[Control],
    ) -> Vec<FactorScore> {
        let local = self.jurisdiction == "LOCAL";
        let t = match training {
            Training::Yes => 35,
            Training::OptOut => 25,
            Training::Unknown => 20,
            Training::OptIn => 10,
            Training::No => 0,
        };
        let r = match retention {
            Retention::Extended => 20,
            Retention::Unknown => 15,
            Retention::Limited => 5,
            Retention::None => 0,
        };
        let j = if local {
            0
        } else if self.jurisdiction == UNKNOWN_JURISDICTION {
            15
        } else if HIGH_RISK_JURISDICTIONS.contains(&self.jurisdiction.as_str()) {
            25
        } else {
            10
        };
        let (cnames, n) = list(controls);
        let c = if local {
            0
        } else {
            15u8.saturating_sub(3u8.saturating_mul(u8::try_from(n).unwrap_or(u8::MAX)))
        };
        let (certs, _) = list(&self.certifications);
        let has_core = self
            .certifications
            .iter()
            .any(|c| matches!(c, Certification::Soc2 | Certification::Iso27001));
        let k = if local || has_core { 0 } else { 5 };
        vec![
            FactorScore {
                factor: "training",
                value: snake(&training),
                points: t,
                max: 35,
            },
            FactorScore {
                factor: "retention",
                value: snake(&retention),
                points: r,
                max: 20,
            },
            FactorScore {
                factor: "jurisdiction",
                value: self.jurisdiction.clone(),
                points: j,
                max: 25,
            },
            FactorScore {
                factor: "enterprise_controls",
                value: cnames,
                points: c,
                max: 15,
            },
            FactorScore {
                factor: "certifications",
                value: certs,
                points: k,
                max: 5,
            },
        ]
    }

    fn breakdown_of(
        &self,
        plan: Option<Plan>,
        t: Training,
        r: Retention,
        c: &[Control],
    ) -> RiskBreakdown {
        let factors = self.factors(t, r, c);
        let score = factors.iter().map(|f| f.points).sum();
        RiskBreakdown {
            plan,
            factors,
            score,
            band: RiskBand::of(score),
        }
    }

    /// The score of the top-level factors: training (0–35) + retention (0–20) +
    /// jurisdiction (0–25) + missing enterprise controls (15 − 3 per control) +
    /// certifications (5 unless SOC 2 or ISO 27001). Documented in rules/README.md.
    pub fn compute_score(&self) -> u8 {
        self.breakdown().score
    }

    /// How the top-level score is reached, factor by factor.
    pub fn breakdown(&self) -> RiskBreakdown {
        self.breakdown_of(
            self.plan,
            self.trains_on_user_data,
            self.retention,
            &self.enterprise_controls,
        )
    }

    /// The breakdown of every plan: the top-level one first, then each tier.
    pub fn plans(&self) -> Vec<RiskBreakdown> {
        let mut out = vec![self.breakdown()];
        out.extend(self.tiers.iter().map(|t| {
            self.breakdown_of(
                Some(t.plan),
                t.trains_on_user_data,
                t.retention,
                &t.enterprise_controls,
            )
        }));
        out
    }

    /// Fill in the computed scores (top level and tiers).
    pub fn fill_scores(&mut self) {
        self.score = self.compute_score();
        let scores: Vec<u8> = self.plans().iter().skip(1).map(|b| b.score).collect();
        for (t, s) in self.tiers.iter_mut().zip(scores) {
            t.score = s;
        }
    }

    /// True when no factor that depends on the vendor's terms is known.
    pub fn is_unresearched(&self) -> bool {
        self.trains_on_user_data == Training::Unknown && self.retention == Retention::Unknown
    }
}

impl fmt::Display for RiskBreakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/100 ({})", self.score, self.band)?;
        if let Some(p) = self.plan {
            write!(f, " on the {p} plan")?;
        }
        f.write_str(":")?;
        for (i, x) in self.factors.iter().enumerate() {
            let v = if x.value.is_empty() { "none" } else { &x.value };
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {v} +{}", x.factor.replace('_', " "), x.points)?;
        }
        Ok(())
    }
}
