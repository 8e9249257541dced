//! Classified events → aggregated findings, one per (service, process, user, verdict,
//! action) and time window, with counts, first/last seen and bounded evidence. The
//! finding id is a hash of that key with the host and window, so the same finding re-sent
//! after a crash is recognised by the collector.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sha2::{Digest, Sha256};
use shadowai_api::{
    Action, Evidence, Finding, Flag, Layer, Naming, ProcessRef, SessionRef, Verdict,
};

use crate::enrich::exe_hash::Executed;
use crate::event::{Event, EventKind};

/// Evidence values kept per finding and kind at most.
const MAX_EVIDENCE: usize = 16;
/// Findings open in one window at most: a flood of distinct process names cannot grow
/// the aggregator without bound (uses beyond it are refused and counted by the caller).
pub const MAX_OPEN: usize = 10_000;
/// Sockets remembered per finding for counting a connection once; past it every event
/// counts (an overcount, never a loss).
const MAX_COOKIES: usize = 4096;

/// The service and decision for one event, as the classifier saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub service_id: String,
    pub service_name: String,
    pub vendor: String,
    pub category: String,
    pub risk_score: u8,
    pub verdict: Verdict,
    pub action: Action,
    /// The layer that refused (`blocked`) or would have (`would_block`); none when allowed.
    pub layer: Option<Layer>,
    /// Version of the policy bundle in use; none for a local catalogue and policy.
    pub policy_version: Option<String>,
    pub rule: String,
    /// How the service name was obtained (none: matched by process or port, not a name).
    pub naming: Option<Naming>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    service_id: String,
    exe: String,
    user: String,
    verdict: u8,
    action: u8,
    /// Refusals are told apart by the layer that refused.
    layer: Option<u8>,
    container: Option<String>,
    /// The AI agent session the process belongs to (inventory).
    session: Option<String>,
}

#[derive(Clone, Debug)]
struct Agg {
    session: Option<SessionRef>,
    flags: BTreeSet<Flag>,
    c: Classified,
    process: ProcessRef,
    uid: u32,
    count: u64,
    first_ms: i64,
    last_ms: i64,
    dns: BTreeSet<String>,
    sni: BTreeSet<String>,
    ips: BTreeSet<String>,
    ports: BTreeSet<u16>,
    protocols: BTreeSet<String>,
    /// Sockets already counted (a connect and its ClientHello count once).
    cookies: HashSet<u64>,
    /// The most confident naming among the uses aggregated.
    naming: Option<Naming>,
    /// Payload bytes of this use's sockets in this window, once any were measured.
    bytes: Option<(u64, u64)>,
}

pub struct Aggregator {
    host_id: String,
    hostname: String,
    window_ms: i64,
    window_start_ms: Option<i64>,
    open: BTreeMap<Key, Agg>,
    /// A finding that sent more than this in its window is flagged `large_upload`.
    large_upload: u64,
    /// What the open window's processes executed, per exe path (for hashing what ran).
    exes: HashMap<String, Executed>,
    /// The same for the window closed last ([`Aggregator::take_exes`]).
    closed_exes: HashMap<String, Executed>,
}

/// Keeps, per exe path, a process's executed file — one whose identity is known over one
/// whose is not (bounded by the open findings: every path has one).
fn remember_exe(exes: &mut HashMap<String, Executed>, p: &crate::enrich::ProcInfo) {
    if p.exe.is_empty() {
        return;
    }
    match exes.get_mut(&p.exe) {
        Some(x) if x.file.is_none() && p.exe_file.is_some() => {
            *x = crate::enrich::ProcTable::executed(p);
        }
        Some(_) => {}
        None => {
            exes.insert(p.exe.clone(), crate::enrich::ProcTable::executed(p));
        }
    }
}

fn push_bounded<T: Ord>(set: &mut BTreeSet<T>, v: T) {
    if set.len() < MAX_EVIDENCE {
        set.insert(v);
    }
}

/// Records what an event shows of its use (names, SNI, address, port, protocol).
fn record_evidence(agg: &mut Agg, e: &Event) {
    match e.kind {
        EventKind::DnsQuery | EventKind::DnsResponse => {
            if let Some(d) = &e.dns {
                push_bounded(&mut agg.dns, d.question.clone());
            }
            push_bounded(&mut agg.protocols, "dns".to_string());
        }
        EventKind::TlsClientHello | EventKind::QuicClientHello => {
            if let Some(s) = e.tls.as_ref().and_then(|t| t.sni.clone()) {
                push_bounded(&mut agg.sni, s);
            }
            push_bounded(&mut agg.ips, e.dst.ip().to_string());
            push_bounded(&mut agg.ports, e.dst.port());
            push_bounded(
                &mut agg.protocols,
                if e.kind == EventKind::QuicClientHello {
                    "quic"
                } else {
                    "tls"
                }
                .to_string(),
            );
        }
        EventKind::Connect => {
            push_bounded(&mut agg.ips, e.dst.ip().to_string());
            push_bounded(&mut agg.ports, e.dst.port());
            push_bounded(&mut agg.protocols, e.protocol.to_string());
        }
    }
}

impl Aggregator {
    pub fn new(host_id: String, hostname: String, window_ms: i64) -> Self {
        Self {
            host_id,
            hostname,
            window_ms: window_ms.max(1000),
            window_start_ms: None,
            open: BTreeMap::new(),
            large_upload: super::usage::DEFAULT_LARGE_UPLOAD,
            exes: HashMap::new(),
            closed_exes: HashMap::new(),
        }
    }

    /// Sets the `large_upload` threshold in bytes sent per window (0: never flag).
    pub fn with_large_upload(mut self, bytes: u64) -> Self {
        self.large_upload = bytes;
        self
    }

    /// Adds payload bytes of one of this use's sockets to the open window's finding (one
    /// is opened, with no new use counted, when the socket outlives the window of its
    /// event). False when the window is full and this would open another finding.
    pub fn add_bytes(
        &mut self,
        e: &Event,
        c: &Classified,
        out: u64,
        inb: u64,
        now_ms: i64,
    ) -> bool {
        let Some(agg) = self.entry(e, c, now_ms) else {
            return false;
        };
        let (o, i) = agg.bytes.unwrap_or((0, 0));
        agg.bytes = Some((o.saturating_add(out), i.saturating_add(inb)));
        // A finding opened by bytes alone (the socket outlived its event's window) still
        // says where they went; no use is counted.
        record_evidence(agg, e);
        true
    }

    /// Adds one classified event. DNS responses are evidence, not uses: they do not count.
    /// False when the window already holds [`MAX_OPEN`] findings and this event would
    /// open another one (the event is not aggregated).
    pub fn observe(&mut self, e: &Event, c: &Classified) -> bool {
        let Some(agg) = self.entry(e, c, e.time_ms) else {
            return false;
        };
        if let Some(n) = c.naming
            && agg.naming.is_none_or(|a| n.confidence > a.confidence)
        {
            agg.naming = Some(n);
        }
        agg.first_ms = agg.first_ms.min(e.time_ms);
        agg.last_ms = agg.last_ms.max(e.time_ms);
        let counts = match e.kind {
            EventKind::DnsResponse => false,
            EventKind::DnsQuery => true,
            EventKind::Connect | EventKind::TlsClientHello | EventKind::QuicClientHello => {
                e.cookie == 0 || agg.cookies.len() >= MAX_COOKIES || agg.cookies.insert(e.cookie)
            }
        };
        if counts {
            agg.count += 1;
        }
        record_evidence(agg, e);
        true
    }

    /// The open window's finding for this event's use, opened if needed (the window starts
    /// at `at_ms`); `None` when the window is full.
    fn entry(&mut self, e: &Event, c: &Classified, at_ms: i64) -> Option<&mut Agg> {
        if self.window_start_ms.is_none() {
            self.window_start_ms = Some(at_ms - at_ms.rem_euclid(self.window_ms));
        }
        let tag = e.process.as_ref().and_then(|p| p.tag.as_deref());
        let (exe, name, uid, user, container, unit) = match &e.process {
            Some(p) => (
                p.exe.clone(),
                p.name.clone(),
                p.uid,
                p.user.clone(),
                p.container_id.clone(),
                p.systemd_unit.clone(),
            ),
            None => (String::new(), String::new(), 0, String::new(), None, None),
        };
        let key = Key {
            service_id: c.service_id.clone(),
            exe: exe.clone(),
            user: user.clone(),
            verdict: c.verdict as u8,
            action: c.action as u8,
            layer: c.layer.map(|l| l as u8),
            container: container.clone(),
            session: tag.and_then(|t| t.session.as_ref()).map(|s| s.id.clone()),
        };
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&key) {
            return None;
        }
        if let Some(p) = &e.process {
            remember_exe(&mut self.exes, p);
        }
        let agg = self.open.entry(key).or_insert_with(|| Agg {
            session: tag.and_then(|t| t.session.clone()),
            flags: BTreeSet::new(),
            c: c.clone(),
            process: ProcessRef {
                exe,
                name,
                exe_sha256: None,
                container_id: container,
                systemd_unit: unit,
            },
            uid,
            count: 0,
            first_ms: at_ms,
            last_ms: at_ms,
            dns: BTreeSet::new(),
            sni: BTreeSet::new(),
            ips: BTreeSet::new(),
            ports: BTreeSet::new(),
            protocols: BTreeSet::new(),
            cookies: HashSet::new(),
            naming: None,
            bytes: None,
        });
        agg.flags
            .extend(tag.iter().flat_map(|t| t.flags.iter().copied()));
        Some(agg)
    }

    /// Closes the window if `now_ms` is past it (or `force`), returning its findings
    /// (executable hashes are filled in later, by the output stage).
    pub fn close_if_due(&mut self, now_ms: i64, force: bool) -> Vec<Finding> {
        let Some(start) = self.window_start_ms else {
            return Vec::new();
        };
        let end = start + self.window_ms;
        if !force && now_ms < end {
            return Vec::new();
        }
        self.window_start_ms = None;
        self.closed_exes = std::mem::take(&mut self.exes);
        let open = std::mem::take(&mut self.open);
        let mut out = Vec::with_capacity(open.len());
        for (k, a) in open {
            if a.count == 0 && a.dns.is_empty() && a.bytes.is_none() {
                continue;
            }
            out.push(self.finding(&k, a, start, end));
        }
        out
    }

    /// What the processes of the window closed last executed, per exe path.
    pub fn take_exes(&mut self) -> HashMap<String, Executed> {
        std::mem::take(&mut self.closed_exes)
    }

    fn finding(&self, k: &Key, a: Agg, start: i64, end: i64) -> Finding {
        let mut h = Sha256::new();
        for part in [
            self.host_id.as_str(),
            &start.to_string(),
            &k.service_id,
            &k.exe,
            &k.user,
            &k.verdict.to_string(),
            &k.action.to_string(),
            k.container.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        // Uses outside any agent session keep the ids they always had.
        if let Some(s) = &k.session {
            h.update(s.as_bytes());
            h.update([0]);
        }
        let mut flags = Vec::new();
        if let Some((out, _)) = a.bytes
            && self.large_upload > 0
            && out > self.large_upload
        {
            flags.push(Flag::LargeUpload);
        }
        if let Some(l) = k.layer {
            // Only refusals carry a layer: ids of allowed uses stay what they were.
            h.update([b'L', l, 0]);
        }
        Finding {
            layer: a.c.layer,
            policy_version: a.c.policy_version.clone(),
            bytes_out: a.bytes.map(|b| b.0),
            bytes_in: a.bytes.map(|b| b.1),
            naming: a.naming,
            session: a.session,
            flags: {
                let mut all = a.flags;
                all.extend(flags);
                all.extend(low_confidence(a.naming));
                all.into_iter().collect()
            },
            truncated: false,
            id: hex::encode(&h.finalize()[..16]),
            host_id: self.host_id.clone(),
            hostname: self.hostname.clone(),
            window_start_ms: start,
            window_end_ms: end,
            service_id: a.c.service_id,
            service_name: a.c.service_name,
            vendor: a.c.vendor,
            category: a.c.category,
            risk_score: a.c.risk_score,
            verdict: a.c.verdict,
            action: a.c.action,
            rule: a.c.rule,
            process: a.process,
            user: k.user.clone(),
            uid: a.uid,
            count: a.count.max(1),
            first_seen_ms: a.first_ms,
            last_seen_ms: a.last_ms,
            evidence: Evidence {
                dns_names: a.dns.into_iter().collect(),
                sni: a.sni.into_iter().collect(),
                ips: a.ips.into_iter().collect(),
                ports: a.ports.into_iter().collect(),
                protocols: a.protocols.into_iter().collect(),
            },
        }
    }
}

/// [`Flag::LowConfidence`] when the best name behind a finding is a low-confidence one.
fn low_confidence(n: Option<Naming>) -> Vec<Flag> {
    match n {
        Some(n) if n.confidence == shadowai_api::Confidence::Low => vec![Flag::LowConfidence],
        _ => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::enrich::ProcInfo;
    use crate::event::{DnsInfo, TlsInfo};

    pub(crate) fn finding(id: &str) -> Finding {
        Finding {
            layer: None,
            policy_version: None,
            bytes_out: None,
            bytes_in: None,
            naming: None,
            session: None,
            flags: Vec::new(),
            truncated: false,
            id: id.into(),
            host_id: "h".into(),
            hostname: "host".into(),
            window_start_ms: 0,
            window_end_ms: 60_000,
            service_id: "openai-api".into(),
            service_name: "OpenAI API".into(),
            vendor: "OpenAI".into(),
            category: "model_api".into(),
            risk_score: 50,
            verdict: Verdict::Unsanctioned,
            action: Action::Allowed,
            rule: "default".into(),
            process: ProcessRef::default(),
            user: "root".into(),
            uid: 0,
            count: 1,
            first_seen_ms: 0,
            last_seen_ms: 0,
            evidence: Evidence::default(),
        }
    }

    pub(crate) fn class() -> Classified {
        Classified {
            service_id: "openai-api".into(),
            service_name: "OpenAI API".into(),
            vendor: "OpenAI".into(),
            category: "model_api".into(),
            risk_score: 50,
            verdict: Verdict::Unsanctioned,
            action: Action::Allowed,
            layer: None,
            policy_version: None,
            rule: "default".into(),
            naming: None,
        }
    }

    pub(crate) fn ev(kind: EventKind, t: i64, cookie: u64, pid: u32, exe: &str) -> Event {
        Event {
            time_ms: t,
            kind: kind.clone(),
            protocol: "tcp",
            process: Some(std::sync::Arc::new(ProcInfo {
                pid,
                exe: exe.into(),
                user: "alice".into(),
                uid: 1000,
                ..ProcInfo::default()
            })),
            src: None,
            dst: "10.0.0.1:443".parse().unwrap(),
            hostname: Some("api.openai.com".into()),
            name_source: None,
            dns: matches!(kind, EventKind::DnsQuery | EventKind::DnsResponse).then(|| DnsInfo {
                question: "api.openai.com".into(),
                ..DnsInfo::default()
            }),
            tls: matches!(kind, EventKind::TlsClientHello).then(|| TlsInfo {
                sni: Some("api.openai.com".into()),
                ..TlsInfo::default()
            }),
            signals: vec![],
            cookie,
            blocked: false,
        }
    }

    #[test]
    fn uses_inside_an_agent_session_carry_it_and_its_flags() {
        let tag = std::sync::Arc::new(crate::inventory::Tag {
            session: Some(SessionRef {
                id: "42-1000".into(),
                kind: "gemini-cli".into(),
                root_pid: 42,
                started_ms: 1000,
                version: Some("0.61.0".into()),
            }),
            flags: vec![Flag::PermissionBypass, Flag::AgentAsRoot],
            mcp: None,
            tenant: None,
        });
        let mut a = Aggregator::new("host-1".into(), "h".into(), 60_000);
        let mut e = ev(EventKind::Connect, 61_000, 1, 43, "/usr/bin/node");
        let plain = ev(EventKind::Connect, 61_000, 2, 44, "/usr/bin/node");
        if let Some(p) = e.process.as_mut() {
            std::sync::Arc::make_mut(p).tag = Some(tag);
        }
        a.observe(&e, &class());
        a.observe(&plain, &class());
        let f = a.close_if_due(0, true);
        assert_eq!(f.len(), 2, "a session's use is its own finding");
        let s = f.iter().find(|f| f.session.is_some()).unwrap();
        assert_eq!(s.session.as_ref().unwrap().kind, "gemini-cli");
        assert_eq!(s.flags, vec![Flag::PermissionBypass, Flag::AgentAsRoot]);
        let p = f.iter().find(|f| f.session.is_none()).unwrap();
        assert!(p.flags.is_empty());
        assert_ne!(s.id, p.id);
    }

    #[test]
    fn a_flood_of_process_names_is_bounded() {
        let mut a = Aggregator::new("host-1".into(), "h".into(), 60_000);
        let mut refused = 0;
        for i in 0..(MAX_OPEN + 500) {
            let e = ev(
                EventKind::Connect,
                61_000,
                i as u64 + 1,
                1,
                &format!("/tmp/x{i}"),
            );
            if !a.observe(&e, &class()) {
                refused += 1;
            }
        }
        assert_eq!(refused, 500);
        assert!(
            a.observe(&ev(EventKind::Connect, 61_001, 1, 1, "/tmp/x0"), &class()),
            "an open finding still counts"
        );
        assert_eq!(a.close_if_due(0, true).len(), MAX_OPEN);
    }

    #[test]
    fn one_connection_counts_once_and_ids_are_stable() {
        let mut a = Aggregator::new("host-1".into(), "h".into(), 60_000);
        a.observe(
            &ev(EventKind::DnsQuery, 61_000, 9, 1, "/usr/bin/curl"),
            &class(),
        );
        a.observe(
            &ev(EventKind::DnsResponse, 61_001, 9, 1, "/usr/bin/curl"),
            &class(),
        );
        a.observe(
            &ev(EventKind::Connect, 61_002, 10, 1, "/usr/bin/curl"),
            &class(),
        );
        a.observe(
            &ev(EventKind::TlsClientHello, 61_003, 10, 1, "/usr/bin/curl"),
            &class(),
        );
        a.observe(
            &ev(EventKind::Connect, 61_004, 11, 2, "/usr/bin/python3"),
            &class(),
        );
        assert!(
            a.close_if_due(119_999, false).is_empty(),
            "window still open"
        );
        let f = a.close_if_due(120_000, false);
        assert_eq!(f.len(), 2);
        let curl = f.iter().find(|f| f.process.exe == "/usr/bin/curl").unwrap();
        assert_eq!(curl.count, 2, "one lookup + one connection");
        assert_eq!(curl.window_start_ms, 60_000);
        assert_eq!(curl.evidence.sni, vec!["api.openai.com"]);
        assert_eq!(curl.evidence.dns_names, vec!["api.openai.com"]);
        assert_eq!(curl.evidence.protocols, vec!["dns", "tcp", "tls"]);
        assert_eq!(curl.user, "alice");

        let mut b = Aggregator::new("host-1".into(), "h".into(), 60_000);
        b.observe(
            &ev(EventKind::Connect, 61_500, 77, 5, "/usr/bin/curl"),
            &class(),
        );
        let g = b.close_if_due(0, true);
        assert_eq!(
            g[0].id, curl.id,
            "same host, window, service, process, user, verdict → same id"
        );
    }

    #[test]
    fn a_finding_carries_its_best_naming_and_is_flagged_when_only_low_confidence() {
        use shadowai_api::{Confidence, NameSource};
        let named = |source, confidence| Classified {
            naming: Some(Naming { source, confidence }),
            ..class()
        };
        let mut a = Aggregator::new("host-1".into(), "h".into(), 60_000);
        let low = named(NameSource::Namespace, Confidence::Low);
        a.observe(&ev(EventKind::Connect, 61_000, 1, 1, "/usr/bin/wget"), &low);
        a.observe(&ev(EventKind::Connect, 61_000, 2, 2, "/usr/bin/curl"), &low);
        let sni = named(NameSource::Sni, Confidence::High);
        a.observe(
            &ev(EventKind::TlsClientHello, 61_001, 3, 2, "/usr/bin/curl"),
            &sni,
        );
        let f = a.close_if_due(0, true);
        let wget = f.iter().find(|f| f.process.exe == "/usr/bin/wget").unwrap();
        assert_eq!(
            wget.naming,
            Some(Naming {
                source: NameSource::Namespace,
                confidence: Confidence::Low
            })
        );
        assert_eq!(wget.flags, vec![Flag::LowConfidence]);
        let curl = f.iter().find(|f| f.process.exe == "/usr/bin/curl").unwrap();
        assert_eq!(curl.naming.unwrap().source, NameSource::Sni);
        assert!(curl.flags.is_empty(), "one high-confidence use is enough");
    }

    #[test]
    fn a_closed_window_hands_over_what_its_processes_executed() {
        let mut a = Aggregator::new("h".into(), "host".into(), 60_000);
        let file = crate::enrich::exe_hash::ExeFile {
            dev: 1,
            ino: 42,
            ..Default::default()
        };
        let mut e = ev(EventKind::Connect, 0, 1, 7, "/usr/bin/curl");
        let unknown = e.clone();
        let mut p = (**e.process.as_ref().unwrap()).clone();
        p.exe_file = Some(file);
        e.process = Some(std::sync::Arc::new(p));
        // The identified process wins over one whose file is unknown, whatever the order.
        a.observe(&unknown, &class());
        a.observe(&e, &class());
        assert!(a.take_exes().is_empty(), "nothing until the window closes");
        assert_eq!(a.close_if_due(0, true).len(), 1);
        let exes = a.take_exes();
        assert_eq!(exes.len(), 1);
        assert_eq!(exes["/usr/bin/curl"].file, Some(file));
        assert_eq!(exes["/usr/bin/curl"].pid, 7);
        a.observe(&unknown, &class());
        a.close_if_due(0, true);
        assert_eq!(
            a.take_exes()["/usr/bin/curl"].file,
            None,
            "each window starts afresh"
        );
    }
}
