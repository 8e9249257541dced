//! Local model runtimes as findings of their own (issue 12): every runtime the inventory
//! shows listening becomes a finding of category `self_hosted_runtime` when first seen
//! listening, and again whenever its risk flags change (`runtime_exposed`: bound to
//! `0.0.0.0` / `::`, reachable from the network). The policy judges the runtime itself —
//! by the rules naming `self_hosted_runtime` ([`Engine::verdict_for_category`]), and, when
//! `_agents.toml` names a catalogue service for its kind, by that service's rules
//! ([`Engine::verdict_for_flagged`]) where they are stricter (a name can be faked, so it
//! never loosens the verdict), scoped by user, host tags and flags; nothing refuses a
//! listener, so the action is
//! `allowed`. A runtime process that never listens (`ollama pull`) stays in the inventory
//! only.
//!
//! - `service_id` is `runtime:<kind>` (`runtime:ollama`), the name from the hints;
//!   `risk_score` 0 (the catalogue's runtime services carry theirs on network uses).
//! - Evidence: the bind addresses (`evidence.ips`) and ports of its listeners, protocol
//!   `tcp`; the listening process is the finding's process (exe, name) and user.
//! - Bounded: at most [`MAX_RUNTIMES`] runtimes are findings at a time, exposed ones first
//!   (a flood of loopback listeners cannot hide an exposed one); each runtime beyond is
//!   counted once (`shadowai_dropped_total{stage="inventory",unit="runtimes"}`) and becomes
//!   a finding when it gets a place. The tables follow the inventory (bounded itself): a
//!   runtime no longer there is forgotten.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};
use shadowai_api::inventory::{InventoryReport, Runtime};
use shadowai_api::{Action, Evidence, Finding, Flag, ProcessRef};
use shadowai_rules::{Category, DecidedBy, Engine, Query};

/// Runtimes reported as findings at a time at most.
pub const MAX_RUNTIMES: usize = 256;

/// Decides which runtimes are due a finding.
pub struct RuntimeFindings {
    host_id: String,
    hostname: String,
    /// Runtime id → the flags last reported.
    reported: HashMap<String, Vec<Flag>>,
    /// Runtimes beyond the bound already counted.
    beyond: HashSet<String>,
}

/// The host's context for the policy.
pub struct Context<'a> {
    pub engine: &'a Engine,
    pub host_tags: &'a [&'a str],
    pub policy_version: Option<String>,
    pub now_ms: i64,
    /// The uid of a runtime process (by pid), from the tracker the report came from.
    pub uid_of: &'a dyn Fn(u32) -> Option<u32>,
}

impl RuntimeFindings {
    pub fn new(host_id: String, hostname: String) -> Self {
        Self {
            host_id,
            hostname,
            reported: HashMap::new(),
            beyond: HashSet::new(),
        }
    }

    /// Findings for the listening runtimes of `r` that are new or whose flags changed since
    /// the last call, and how many runtimes newly fell beyond the bound.
    pub fn due(&mut self, r: &InventoryReport, cx: &Context<'_>) -> (Vec<Finding>, u64) {
        let mut listening: Vec<&Runtime> = r
            .runtimes
            .iter()
            .filter(|x| !x.listeners.is_empty())
            .collect();
        // Exposed first, then the oldest: the order places are given in.
        listening.sort_by_key(|x| {
            (
                !x.flags.contains(&Flag::RuntimeExposed),
                x.first_seen_ms,
                x.id.as_str(),
            )
        });
        let (kept, rest) = listening.split_at(listening.len().min(MAX_RUNTIMES));
        let kept_ids: HashSet<&str> = kept.iter().map(|x| x.id.as_str()).collect();
        self.reported.retain(|k, _| kept_ids.contains(k.as_str()));
        let mut out = Vec::new();
        for x in kept {
            if self.reported.get(&x.id) == Some(&x.flags) {
                continue;
            }
            // Read under the same lock as the report, so always known; were it not, the
            // runtime stays due (never reported with a made-up uid).
            let Some(uid) = (cx.uid_of)(x.pid) else {
                continue;
            };
            out.push(self.finding(x, uid, cx));
            self.reported.insert(x.id.clone(), x.flags.clone());
        }
        let rest_ids: HashSet<&str> = rest.iter().map(|x| x.id.as_str()).collect();
        self.beyond.retain(|k| rest_ids.contains(k.as_str()));
        let mut newly = 0u64;
        for x in rest {
            if self.beyond.insert(x.id.clone()) {
                newly += 1;
            }
        }
        (out, newly)
    }

    fn finding(&self, x: &Runtime, uid: u32, cx: &Context<'_>) -> Finding {
        let flags: Vec<&str> = x.flags.iter().map(|f| f.as_str()).collect();
        let who = Query {
            process: Some(&x.exe),
            user: Some(&x.user),
            host_tags: cx.host_tags,
            ..Query::default()
        };
        let now = cx.now_ms.div_euclid(1000);
        let by_category =
            cx.engine
                .verdict_for_category(Category::SelfHostedRuntime, &who, None, &flags, now);
        // A runtime the catalogue has an entry for is judged as that service too (rules
        // naming it or its jurisdiction), but only to be stricter: its name can be taken by
        // a renamed binary or by any listener on its default port, so being recognised
        // must never loosen the verdict.
        let service = cx
            .engine
            .catalogue()
            .inventory_hints
            .runtime
            .iter()
            .find(|h| h.kind == x.kind)
            .and_then(|h| h.service.as_deref());
        let (verdict, by) = match service
            .and_then(|id| cx.engine.verdict_for_flagged(id, &who, None, &flags, now))
        {
            Some(s) if s.0 > by_category.0 => s,
            _ => by_category,
        };
        let rule = match by {
            DecidedBy::Exception(r) => format!("exception:{}", r.id),
            DecidedBy::Rule(r) => format!("rule:{}", r.id),
            DecidedBy::Default => "default".into(),
        };
        let mut h = Sha256::new();
        for part in [
            self.host_id.as_str(),
            "runtime",
            &x.id,
            &flags.join(","),
            &verdict.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let mut ips: Vec<String> = x.listeners.iter().map(|l| l.addr.clone()).collect();
        ips.sort();
        ips.dedup();
        let mut ports: Vec<u16> = x.listeners.iter().map(|l| l.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let name = std::path::Path::new(&x.exe)
            .file_name()
            .map_or_else(|| x.exe.clone(), |n| n.to_string_lossy().into_owned());
        Finding {
            id: hex::encode(&h.finalize()[..16]),
            host_id: self.host_id.clone(),
            hostname: self.hostname.clone(),
            window_start_ms: x.first_seen_ms,
            window_end_ms: cx.now_ms.max(x.last_seen_ms),
            service_id: format!("runtime:{}", x.kind),
            service_name: x.name.clone(),
            vendor: String::new(),
            category: Category::SelfHostedRuntime.as_str().to_string(),
            risk_score: 0,
            verdict,
            action: Action::Allowed,
            rule,
            process: ProcessRef {
                exe: x.exe.clone(),
                name,
                ..ProcessRef::default()
            },
            user: x.user.clone(),
            uid,
            count: 1,
            first_seen_ms: x.first_seen_ms,
            last_seen_ms: x.last_seen_ms,
            evidence: Evidence {
                ips,
                ports,
                protocols: vec!["tcp".into()],
                ..Evidence::default()
            },
            layer: None,
            policy_version: cx.policy_version.clone(),
            bytes_out: None,
            bytes_in: None,
            naming: None,
            session: None,
            flags: x.flags.clone(),
            truncated: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use shadowai_api::inventory::Listener;
    use shadowai_rules::{Catalogue, Policy, Verdict};

    use super::*;

    fn engine(policy: &str) -> Engine {
        let cat =
            Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue"))
                .unwrap();
        let (p, report) = Policy::parse(Path::new("p.toml"), policy, &cat, 0);
        Engine::new(cat, p.unwrap_or_else(|| panic!("{report:?}"))).unwrap()
    }

    fn runtime(id: &str, pid: u32, addr: Option<&str>) -> Runtime {
        let listeners: Vec<Listener> = addr
            .map(|a| Listener {
                addr: a.into(),
                port: 11434,
                exposed: a == "0.0.0.0" || a == "::",
            })
            .into_iter()
            .collect();
        Runtime {
            id: id.into(),
            kind: "ollama".into(),
            name: "Ollama".into(),
            pid,
            exe: "/usr/local/bin/ollama".into(),
            user: "ollama".into(),
            matched_by: "exe".into(),
            flags: if listeners.iter().any(|l| l.exposed) {
                vec![Flag::RuntimeExposed]
            } else {
                vec![]
            },
            listeners,
            pull_hosts: vec![],
            clients: vec![],
            first_seen_ms: 1_000 + i64::from(pid),
            last_seen_ms: 2_000,
            ended: false,
        }
    }

    fn report(runtimes: Vec<Runtime>) -> InventoryReport {
        InventoryReport {
            host_id: "h".into(),
            hostname: "h".into(),
            time_ms: 3_000,
            runtimes,
            ..InventoryReport::default()
        }
    }

    const POLICY: &str = "mode = \"monitor\"\ndefault_verdict = \"tolerated\"\n\n[[rules]]\nid = \"no-open-runtimes\"\nverdict = \"unsanctioned\"\ncategories = [\"self_hosted_runtime\"]\nflags = [\"runtime_exposed\"]\n";

    fn uid(pid: u32) -> Option<u32> {
        Some(pid + 100)
    }

    fn cx(e: &Engine) -> Context<'_> {
        Context {
            engine: e,
            host_tags: &[],
            policy_version: Some("9".into()),
            now_ms: 3_000,
            uid_of: &uid,
        }
    }

    #[test]
    fn a_listening_runtime_is_a_finding_once_and_again_when_its_flags_change() {
        let e = engine(POLICY);
        let cx = cx(&e);
        let mut rf = RuntimeFindings::new("h".into(), "h".into());
        // Not listening (yet): inventory only.
        let (f, _) = rf.due(&report(vec![runtime("r1", 7, None)]), &cx);
        assert!(f.is_empty());
        let (f, beyond) = rf.due(&report(vec![runtime("r1", 7, Some("127.0.0.1"))]), &cx);
        assert_eq!((f.len(), beyond), (1, 0));
        let l = &f[0];
        assert_eq!(l.service_id, "runtime:ollama");
        assert_eq!(l.service_name, "Ollama");
        assert_eq!(l.category, "self_hosted_runtime");
        assert!(l.flags.is_empty());
        assert_eq!(
            (l.verdict, l.rule.as_str()),
            (Verdict::Tolerated, "default")
        );
        assert_eq!(l.action, Action::Allowed);
        assert_eq!(l.evidence.ips, vec!["127.0.0.1".to_string()]);
        assert_eq!(l.evidence.ports, vec![11434]);
        assert_eq!(
            (l.process.exe.as_str(), l.process.name.as_str()),
            ("/usr/local/bin/ollama", "ollama")
        );
        assert_eq!((l.user.as_str(), l.uid), ("ollama", 107));
        assert_eq!(l.policy_version.as_deref(), Some("9"));
        // Unchanged flags: nothing new, even on another loopback address.
        let (f, _) = rf.due(&report(vec![runtime("r1", 7, Some("::1"))]), &cx);
        assert!(f.is_empty());
        // Exposed: the flag, the rule scoped on it, the bind address.
        let (f, _) = rf.due(&report(vec![runtime("r1", 7, Some("0.0.0.0"))]), &cx);
        assert_eq!(f.len(), 1);
        let o = &f[0];
        assert_eq!(o.flags, vec![Flag::RuntimeExposed]);
        assert_eq!(
            (o.verdict, o.rule.as_str()),
            (Verdict::Unsanctioned, "rule:no-open-runtimes")
        );
        assert_eq!(o.evidence.ips, vec!["0.0.0.0".to_string()]);
        assert_ne!(o.id, l.id);
        // Back to loopback: the flag is gone, reported again.
        let (f, _) = rf.due(&report(vec![runtime("r1", 7, Some("127.0.0.1"))]), &cx);
        assert_eq!(f.len(), 1);
        assert!(f[0].flags.is_empty());
        assert_eq!(f[0].id, l.id, "the same state is the same finding");
    }

    #[test]
    fn a_runtime_whose_uid_is_unknown_stays_due() {
        let e = engine(POLICY);
        let none = |_: u32| None;
        let cx = Context {
            uid_of: &none,
            ..cx(&e)
        };
        let mut rf = RuntimeFindings::new("h".into(), "h".into());
        let r = report(vec![runtime("r1", 7, Some("0.0.0.0"))]);
        assert!(rf.due(&r, &cx).0.is_empty());
        assert_eq!(rf.due(&r, &self::cx(&e)).0.len(), 1);
    }

    #[test]
    fn a_flood_of_loopback_runtimes_is_bounded_counted_once_and_cannot_hide_an_exposed_one() {
        let e = engine(POLICY);
        let cx = cx(&e);
        let mut rf = RuntimeFindings::new("h".into(), "h".into());
        let mut many: Vec<Runtime> = (0..MAX_RUNTIMES as u32 + 40)
            .map(|i| runtime(&format!("junk{i}"), i, Some("127.0.0.1")))
            .collect();
        let (f, beyond) = rf.due(&report(many.clone()), &cx);
        assert_eq!((f.len(), beyond), (MAX_RUNTIMES, 40));
        assert_eq!(rf.reported.len(), MAX_RUNTIMES);
        // The same view again: nothing new, nothing counted twice.
        assert_eq!(rf.due(&report(many.clone()), &cx), (vec![], 0));
        // An exposed runtime, seen last, takes a place at once; one loopback runtime
        // falls beyond (counted).
        many.push(runtime("open", 60_000, Some("0.0.0.0")));
        let (f, beyond) = rf.due(&report(many.clone()), &cx);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].flags, vec![Flag::RuntimeExposed]);
        assert_eq!(beyond, 1);
        assert!(rf.reported.len() <= MAX_RUNTIMES && rf.beyond.len() == 41);
        // Runtimes that left the inventory are forgotten; those beyond get their place.
        let few: Vec<Runtime> = many.split_off(many.len() - 5);
        let (f, beyond) = rf.due(&report(few), &cx);
        assert_eq!(beyond, 0);
        assert!(f.iter().all(|x| x.service_id == "runtime:ollama"));
        assert_eq!(f.len(), 4, "the four beyond before are reported now");
        assert_eq!((rf.reported.len(), rf.beyond.len()), (5, 0));
        assert_eq!(rf.due(&report(vec![]), &cx), (vec![], 0));
        assert!(rf.reported.is_empty());
    }

    #[test]
    fn a_runtimes_catalogue_service_can_only_make_its_verdict_stricter() {
        // Rules naming services: vLLM blocked, Ollama sanctioned; no category rule.
        let e = engine(
            "mode = \"monitor\"\ndefault_verdict = \"tolerated\"\n\n\
             [[rules]]\nid = \"ollama-ok\"\nverdict = \"sanctioned\"\nservices = [\"ollama\"]\n\n\
             [[rules]]\nid = \"no-vllm\"\nverdict = \"blocked\"\nservices = [\"vllm\"]\n",
        );
        let cx = cx(&e);
        let mut rf = RuntimeFindings::new("h".into(), "h".into());
        let of = |id: &str, kind: &str, pid: u32| Runtime {
            kind: kind.into(),
            ..runtime(id, pid, Some("127.0.0.1"))
        };
        let (f, _) = rf.due(
            &report(vec![
                of("o", "ollama", 1),
                of("v", "vllm", 2),
                of("s", "sglang", 3),
            ]),
            &cx,
        );
        let verdict = |kind: &str| {
            let x = f
                .iter()
                .find(|x| x.service_id == format!("runtime:{kind}"))
                .unwrap_or_else(|| panic!("no finding for {kind}: {f:?}"));
            (x.verdict, x.rule.clone())
        };
        // The service's rule tightens: vLLM is blocked by name.
        assert_eq!(verdict("vllm"), (Verdict::Blocked, "rule:no-vllm".into()));
        // It cannot loosen: any binary named `ollama`, or any listener on 11434, would be
        // "Ollama", so the category's verdict (here the default) stands.
        assert_eq!(verdict("ollama"), (Verdict::Tolerated, "default".into()));
        // SGLang has no catalogue service: the category's rules, as before.
        assert_eq!(verdict("sglang"), (Verdict::Tolerated, "default".into()));
    }
}
