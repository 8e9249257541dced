//! What adding a catalogue entry would change: which discovery candidates it names, which
//! recent findings carry a name it matches (and who and where they are), and the verdict the
//! policy in force would give the new service. Pure: the caller reads the store.

use std::collections::BTreeSet;

use shadowai_api::Finding;
use shadowai_api::discovery::{CandidateView, CatalogueEntry, CatalogueImpact};
use shadowai_rules::pattern::is_at_or_below;
use shadowai_rules::{Catalogue, Engine, Policy, Query, Service};

/// Hosts, users, processes and candidates listed at most.
pub const LISTED: usize = 50;
/// Findings read (newest first) from the last [`WINDOW_MS`].
pub const FINDINGS_READ: u32 = 5_000;
/// How far back findings are read.
pub const WINDOW_MS: i64 = 7 * 86_400_000;

/// Does `e` name `name` (an exact host, or at or below a domain)?
pub fn names(e: &CatalogueEntry, name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    e.hosts.contains(&n) || e.domains.iter().any(|d| is_at_or_below(&n, d))
}

fn add(set: &mut BTreeSet<String>, v: &str) {
    if set.len() < LISTED {
        set.insert(v.to_owned());
    }
}

/// The verdict the policy gives `svc` for a fleet-wide use of its first name, with `svc`
/// added to `cat` when it is not there yet.
pub fn verdict(cat: &Catalogue, svc: &Service, policy: Policy) -> Option<shadowai_rules::Verdict> {
    let mut c = cat.clone();
    if c.service(&svc.id).is_none() {
        let at = c.services.partition_point(|s| s.id < svc.id);
        c.services.insert(at, svc.clone());
    }
    let engine = Engine::new(c, policy).ok()?;
    let name = svc.hosts.first().or(svc.domains.first())?;
    let q = Query {
        name: Some(name),
        ..Query::default()
    };
    engine.classify(&q).map(|d| d.verdict)
}

/// The impact of `e` over `candidates` and `findings`.
pub fn impact(
    e: &CatalogueEntry,
    candidates: &[CandidateView],
    findings: &[Finding],
    verdict: Option<shadowai_rules::Verdict>,
) -> CatalogueImpact {
    let mut out = CatalogueImpact {
        verdict,
        window_ms: WINDOW_MS,
        ..CatalogueImpact::default()
    };
    let (mut hosts, mut users, mut procs, mut services, mut cands) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    for c in candidates.iter().filter(|c| names(e, &c.name)) {
        add(&mut cands, &c.name);
        out.candidate_hits = out.candidate_hits.saturating_add(c.hits);
        c.hosts.iter().for_each(|h| add(&mut hosts, h));
        c.processes.iter().for_each(|p| add(&mut procs, p));
    }
    for f in findings.iter().filter(|f| {
        f.evidence
            .dns_names
            .iter()
            .chain(&f.evidence.sni)
            .any(|n| names(e, n))
    }) {
        out.findings += 1;
        add(&mut services, &f.service_id);
        add(&mut hosts, &f.host_id);
        add(&mut users, &f.user);
        add(&mut procs, &f.process.exe);
    }
    out.candidates = cands.into_iter().collect();
    out.hosts = hosts.into_iter().collect();
    out.users = users.into_iter().collect();
    out.processes = procs.into_iter().collect();
    out.services_now = services.into_iter().collect();
    out
}
