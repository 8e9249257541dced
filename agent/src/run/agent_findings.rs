//! Risk flags as findings of their own (issue 12). Every AI agent session becomes a finding
//! of category `ai_agent` when the inventory first shows it, and again whenever its risk
//! flags or its off-catalogue contacts grow — whether or not it ever makes a connection the
//! catalogue classifies. The policy judges the session itself (rules naming the `ai_agent`
//! category, scoped by user, host tags and flags: [`Engine::verdict_for_agent`]); nothing
//! refuses a session, so its action is `allowed` (a flag-scoped block acts on the session's
//! uses of AI services, in the classify and source stages).
//!
//! - `service_id` is `agent:<kind>` (`agent:gemini-cli`), name and vendor from the hints;
//!   `risk_score` 0: an agent tool has no catalogue risk of its own (the services it talks
//!   to carry theirs).
//! - Evidence: the names of hosts outside the catalogue the session's processes contacted
//!   (`evidence.dns_names`: SNI or DNS question, whichever named the contact), at most
//!   [`MAX_DESTINATIONS`] per session; when a session contacted more than its list keeps,
//!   the finding is `truncated` and the contacts not kept are counted
//!   (`shadowai_dropped_total{stage="inventory",unit="destinations"}`).
//! - The table of what was reported is bounded ([`MAX_SESSIONS`]): a session no longer in
//!   the inventory is forgotten; when full, new sessions are still reported but not
//!   remembered (so they may be reported again, never lost).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use shadowai_api::inventory::{AgentSession, InventoryReport, MAX_DESTINATIONS};
use shadowai_api::{Action, Evidence, Finding, Flag, ProcessRef};
use shadowai_rules::{Engine, Query};

/// Sessions whose last report is remembered at most.
pub const MAX_SESSIONS: usize = 4096;

/// What was last reported of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    flags: Vec<Flag>,
    off_catalogue: usize,
}

/// Decides which sessions are due a finding.
pub struct SessionFindings {
    host_id: String,
    hostname: String,
    reported: HashMap<String, Seen>,
}

/// The host's context for the policy: tags and the bundle's version.
pub struct Context<'a> {
    pub engine: &'a Engine,
    pub host_tags: &'a [&'a str],
    pub policy_version: Option<String>,
    pub now_ms: i64,
    /// Contacts of a session not kept in its destination list (by session id).
    pub beyond: &'a dyn Fn(&str) -> u64,
}

impl SessionFindings {
    pub fn new(host_id: String, hostname: String) -> Self {
        Self {
            host_id,
            hostname,
            reported: HashMap::new(),
        }
    }

    /// Findings for the sessions of `r` that are new or whose flags or off-catalogue
    /// contacts changed since the last call.
    pub fn due(&mut self, r: &InventoryReport, cx: &Context<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        for s in &r.sessions {
            let seen = Seen {
                flags: s.flags.clone(),
                off_catalogue: s.off_catalogue.len(),
            };
            if self.reported.get(&s.session.id) == Some(&seen) {
                continue;
            }
            out.push(self.finding(s, cx));
            if self.reported.len() < MAX_SESSIONS || self.reported.contains_key(&s.session.id) {
                self.reported.insert(s.session.id.clone(), seen);
            }
        }
        // Forget sessions the inventory no longer holds (it keeps ended ones an hour).
        if self.reported.len() > r.sessions.len() {
            let ids: std::collections::HashSet<&str> =
                r.sessions.iter().map(|s| s.session.id.as_str()).collect();
            self.reported.retain(|k, _| ids.contains(k.as_str()));
        }
        out
    }

    fn finding(&self, s: &AgentSession, cx: &Context<'_>) -> Finding {
        let flags: Vec<&str> = s.flags.iter().map(|f| f.as_str()).collect();
        let who = Query {
            process: Some(&s.exe),
            user: Some(&s.user),
            host_tags: cx.host_tags,
            ..Query::default()
        };
        let now_s = cx.now_ms.div_euclid(1000);
        let (verdict, by) = cx
            .engine
            .verdict_for_agent(&who, s.tenant.as_deref(), &flags, now_s);
        let rule = match by {
            shadowai_rules::DecidedBy::Exception(r) => format!("exception:{}", r.id),
            shadowai_rules::DecidedBy::Rule(r) => format!("rule:{}", r.id),
            shadowai_rules::DecidedBy::Default => "default".into(),
        };
        let hints = &cx.engine.catalogue().inventory_hints;
        let vendor = hints
            .agent
            .iter()
            .find(|h| h.kind == s.session.kind)
            .map_or_else(String::new, |h| h.vendor.clone());
        let mut h = Sha256::new();
        for part in [
            self.host_id.as_str(),
            "agent-session",
            &s.session.id,
            &flags.join(","),
            &s.off_catalogue.len().to_string(),
            &verdict.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let mut names = s.off_catalogue.clone();
        names.truncate(MAX_DESTINATIONS);
        let name = std::path::Path::new(&s.exe)
            .file_name()
            .map_or_else(|| s.exe.clone(), |n| n.to_string_lossy().into_owned());
        Finding {
            id: hex::encode(&h.finalize()[..16]),
            host_id: self.host_id.clone(),
            hostname: self.hostname.clone(),
            window_start_ms: s.first_seen_ms,
            window_end_ms: cx.now_ms.max(s.last_seen_ms),
            service_id: format!("agent:{}", s.session.kind),
            service_name: s.name.clone(),
            vendor,
            category: shadowai_rules::Category::AiAgent.as_str().to_string(),
            risk_score: 0,
            verdict,
            action: Action::Allowed,
            rule,
            process: ProcessRef {
                exe: s.exe.clone(),
                name,
                ..ProcessRef::default()
            },
            user: s.user.clone(),
            uid: s.uid,
            count: 1,
            first_seen_ms: s.first_seen_ms,
            last_seen_ms: s.last_seen_ms,
            evidence: Evidence {
                dns_names: names,
                ..Evidence::default()
            },
            layer: None,
            policy_version: cx.policy_version.clone(),
            bytes_out: None,
            bytes_in: None,
            naming: None,
            session: Some(s.session.clone()),
            flags: s.flags.clone(),
            truncated: (cx.beyond)(&s.session.id) > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use shadowai_api::SessionRef;
    use shadowai_rules::{Catalogue, Policy, Verdict};

    use super::*;

    fn engine(policy: &str) -> Engine {
        let cat =
            Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue"))
                .unwrap();
        let (p, report) = Policy::parse(Path::new("p.toml"), policy, &cat, 0);
        Engine::new(cat, p.unwrap_or_else(|| panic!("{report:?}"))).unwrap()
    }

    fn session(id: &str, flags: Vec<Flag>, off: &[&str]) -> AgentSession {
        AgentSession {
            session: SessionRef {
                id: id.into(),
                kind: "gemini-cli".into(),
                root_pid: 10,
                started_ms: 1_000,
                version: None,
            },
            name: "Gemini CLI".into(),
            user: "root".into(),
            uid: 0,
            cwd: None,
            exe: "/usr/bin/node".into(),
            argv: vec![],
            processes: 1,
            live_processes: 1,
            destinations: off.iter().map(|s| s.to_string()).collect(),
            off_catalogue: off.iter().map(|s| s.to_string()).collect(),
            tenant: None,
            flags,
            first_seen_ms: 1_000,
            last_seen_ms: 2_000,
            ended: false,
        }
    }

    fn report(sessions: Vec<AgentSession>) -> InventoryReport {
        InventoryReport {
            host_id: "h".into(),
            hostname: "h".into(),
            time_ms: 3_000,
            sessions,
            ..InventoryReport::default()
        }
    }

    const POLICY: &str = "mode = \"monitor\"\ndefault_verdict = \"tolerated\"\n\n[[rules]]\nid = \"no-yolo\"\nverdict = \"unsanctioned\"\ncategories = [\"ai_agent\"]\nflags = [\"permission_bypass\"]\n";

    #[test]
    fn a_session_is_a_finding_once_and_again_when_its_flags_or_contacts_grow() {
        let e = engine(POLICY);
        let none = |_: &str| 0u64;
        let cx = Context {
            engine: &e,
            host_tags: &[],
            policy_version: Some("7".into()),
            now_ms: 3_000,
            beyond: &none,
        };
        let mut sf = SessionFindings::new("h".into(), "h".into());
        let first = sf.due(
            &report(vec![session("s1", vec![Flag::AgentAsRoot], &[])]),
            &cx,
        );
        assert_eq!(first.len(), 1);
        let f = &first[0];
        assert_eq!(f.service_id, "agent:gemini-cli");
        assert_eq!(f.category, "ai_agent");
        assert_eq!(f.vendor, "Google");
        assert_eq!(
            (f.verdict, f.rule.as_str()),
            (Verdict::Tolerated, "default")
        );
        assert_eq!(f.action, Action::Allowed);
        assert_eq!(f.flags, vec![Flag::AgentAsRoot]);
        assert_eq!(f.session.as_ref().unwrap().id, "s1");
        assert_eq!(f.policy_version.as_deref(), Some("7"));
        // Nothing changed: nothing new.
        assert!(
            sf.due(
                &report(vec![session("s1", vec![Flag::AgentAsRoot], &[])]),
                &cx
            )
            .is_empty()
        );
        // A flag the policy acts on.
        let flagged = vec![Flag::PermissionBypass, Flag::AgentAsRoot];
        let again = sf.due(&report(vec![session("s1", flagged.clone(), &[])]), &cx);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].verdict, again[0].rule.as_str()),
            (Verdict::Unsanctioned, "rule:no-yolo")
        );
        assert_ne!(again[0].id, f.id);
        // Off-catalogue contacts are the evidence.
        let mut fl = flagged.clone();
        fl.push(Flag::OffCatalogueContact);
        let off = sf.due(&report(vec![session("s1", fl, &["exfil.example"])]), &cx);
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].evidence.dns_names, vec!["exfil.example".to_string()]);
        assert!(off[0].flags.contains(&Flag::OffCatalogueContact));
        assert!(!off[0].truncated);
    }

    #[test]
    fn a_session_past_its_destination_bound_is_marked_truncated() {
        let e = engine(POLICY);
        let beyond = |id: &str| u64::from(id == "s1") * 40;
        let cx = Context {
            engine: &e,
            host_tags: &[],
            policy_version: None,
            now_ms: 3_000,
            beyond: &beyond,
        };
        let names: Vec<String> = (0..MAX_DESTINATIONS)
            .map(|i| format!("n{i}.example"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut sf = SessionFindings::new("h".into(), "h".into());
        let f = sf.due(&report(vec![session("s1", vec![], &refs)]), &cx);
        assert!(f[0].truncated);
        assert_eq!(f[0].evidence.dns_names.len(), MAX_DESTINATIONS);
    }

    #[test]
    fn the_table_of_reported_sessions_is_bounded_and_forgets_what_left_the_inventory() {
        let e = engine(POLICY);
        let none = |_: &str| 0u64;
        let cx = Context {
            engine: &e,
            host_tags: &[],
            policy_version: None,
            now_ms: 3_000,
            beyond: &none,
        };
        let mut sf = SessionFindings::new("h".into(), "h".into());
        let many: Vec<AgentSession> = (0..MAX_SESSIONS + 10)
            .map(|i| session(&format!("s{i}"), vec![], &[]))
            .collect();
        assert_eq!(sf.due(&report(many.clone()), &cx).len(), MAX_SESSIONS + 10);
        assert_eq!(sf.reported.len(), MAX_SESSIONS);
        // Those not remembered are reported again (never lost), the rest are not.
        assert_eq!(sf.due(&report(many), &cx).len(), 10);
        assert!(sf.due(&report(vec![]), &cx).is_empty());
        assert!(sf.reported.is_empty());
    }
}
