//! soc (issue 15): the collector catalogue's risk of each service — score, band and factors
//! per plan — computed once when the catalogue loads, so findings pages, reports, CSV and OCSF
//! exports and SIEM forwarding explain a score without touching the catalogue per row.

use std::collections::HashMap;
use std::sync::Arc;

use shadowai_api::{PlanRisk, RiskFactor, ServiceRisk};
use shadowai_rules::Catalogue;

/// Risk breakdowns by service id.
#[derive(Clone, Debug, Default)]
pub struct RiskBook {
    by_id: HashMap<String, Arc<ServiceRisk>>,
}

/// One service's breakdown from the catalogue.
pub fn service_risk(svc: &shadowai_rules::Service) -> ServiceRisk {
    ServiceRisk {
        service_id: svc.id.clone(),
        service_name: svc.name.clone(),
        plans: svc
            .risk
            .plans()
            .into_iter()
            .map(|b| PlanRisk {
                plan: b.plan.map(|p| p.to_string()),
                score: b.score,
                band: b.band.to_string(),
                factors: b
                    .factors
                    .into_iter()
                    .map(|f| RiskFactor {
                        factor: f.factor.to_owned(),
                        value: f.value,
                        points: f.points,
                        max: f.max,
                    })
                    .collect(),
            })
            .collect(),
        evidence: svc.risk.evidence.clone(),
    }
}

impl RiskBook {
    pub fn new(cat: &Catalogue) -> Self {
        RiskBook {
            by_id: cat
                .services
                .iter()
                .map(|s| (s.id.clone(), Arc::new(service_risk(s))))
                .collect(),
        }
    }

    /// A book of given breakdowns (tests, tools).
    pub fn from_risks(risks: impl IntoIterator<Item = ServiceRisk>) -> Self {
        RiskBook {
            by_id: risks
                .into_iter()
                .map(|r| (r.service_id.clone(), Arc::new(r)))
                .collect(),
        }
    }

    pub fn get(&self, service_id: &str) -> Option<&Arc<ServiceRisk>> {
        self.by_id.get(service_id)
    }

    /// The breakdowns of the distinct services named, in first-seen order.
    pub fn for_services<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<ServiceRisk> {
        let mut seen = std::collections::HashSet::new();
        ids.into_iter()
            .filter(|id| seen.insert(*id))
            .filter_map(|id| self.get(id).map(|r| (**r).clone()))
            .collect()
    }

    /// The plan that gives `score` for `service_id`.
    pub fn explain(&self, service_id: &str, score: u8) -> Option<PlanRisk> {
        self.get(service_id).and_then(|r| r.explain(score).cloned())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_service_explains_its_own_score() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        let cat = Catalogue::load_dir(&dir).unwrap();
        let book = RiskBook::new(&cat);
        for svc in &cat.services {
            let plan = book
                .explain(&svc.id, svc.risk.score)
                .unwrap_or_else(|| panic!("{}: no plan gives {}", svc.id, svc.risk.score));
            let sum: u32 = plan.factors.iter().map(|f| u32::from(f.points)).sum();
            assert_eq!(sum, u32::from(svc.risk.score), "{}", svc.id);
        }
        assert!(book.explain("no-such-service", 10).is_none());
    }
}
