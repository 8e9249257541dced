//! The agent's half of the unknown-AI discovery loop: names the catalogue does not know,
//! contacted by processes that use AI developer services (model APIs, coding assistants,
//! agent platforms, MCP endpoints, enterprise AI tenants, LLM ops) or that look like
//! inference APIs and LLM relays by name. Only names the process itself sent (SNI, DNS
//! question) count — never a name borrowed from another process's DNS answer — and never a
//! local resolver's lookups.
//!
//! Low volume and bounded: at most [`MAX_REPORT`] (name, executable) candidates per upload
//! period (further new ones are dropped and counted), at most [`AI_PROCS`] AI processes
//! remembered (the least recently seen goes first, in O(log n)). The reporter task sends a
//! report each period; a report the collector refuses is dropped and counted, never retried
//! forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use shadowai_api::client::Client;
use shadowai_api::discovery::{DiscoveryCandidate, DiscoveryReason, DiscoveryReport, MAX_REPORT};

use super::findings::Classified;
use super::health::Health;
use crate::event::{Event, EventKind, Signal};

/// AI processes remembered at most.
pub const AI_PROCS: usize = 4096;
/// How long a process counts as an AI process after its last AI use.
const AI_PROC_MS: i64 = 10 * 60 * 1000;

/// Catalogue categories whose users are AI tools or SDK processes (a browser using a chat
/// app is not one: every site it visits would become a candidate).
const AI_TOOL_CATEGORIES: [&str; 6] = [
    "model_api",
    "coding_assistant",
    "agent_platform",
    "mcp_endpoint",
    "enterprise_tenant",
    "llm_ops",
];

/// Name fragments of inference APIs, model providers and LLM relays.
const FRAGMENTS: [&str; 16] = [
    "llm",
    "inference",
    "openai",
    "anthropic",
    "gpt",
    "ollama",
    "vllm",
    "litellm",
    "openrouter",
    "mistral",
    "gemini",
    "claude",
    "deepseek",
    "qwen",
    "llama",
    "completions",
];
/// First labels that, under `.ai`, mark an API host (`api.newco.ai`).
const AI_TLD_API_LABELS: [&str; 6] = ["api", "inference", "gateway", "models", "llm", "router"];
/// Suffixes that never leave the site.
const LOCAL_SUFFIXES: [&str; 6] = [
    ".local",
    ".arpa",
    ".internal",
    ".lan",
    ".home",
    ".localhost",
];

/// Does the name itself look like an inference API or LLM relay?
pub fn looks_like_inference(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let (Some(first), Some(tld)) = (labels.first(), labels.last()) else {
        return false;
    };
    if *tld == "ai" && AI_TLD_API_LABELS.contains(first) {
        return true;
    }
    let body = &labels[..labels.len() - 1];
    body.iter().any(|l| FRAGMENTS.iter().any(|f| l.contains(f)))
}

/// The name an event's process itself sent, normalised; none for names from caches,
/// responses, IP literals and site-local names.
fn own_name(e: &Event) -> Option<String> {
    let raw = match e.kind {
        EventKind::DnsQuery => e.dns.as_ref().map(|d| d.question.as_str()),
        EventKind::TlsClientHello | EventKind::QuicClientHello => {
            e.tls.as_ref().and_then(|t| t.sni.as_deref())
        }
        EventKind::DnsResponse | EventKind::Connect => None,
    }?;
    let n = raw.trim_end_matches('.').to_ascii_lowercase();
    let valid = n.len() <= 253
        && n.contains('.')
        && n.parse::<std::net::IpAddr>().is_err()
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
        && !LOCAL_SUFFIXES.iter().any(|s| n.ends_with(s));
    valid.then_some(n)
}

#[derive(Default)]
pub struct Discovery {
    /// pid → (service used, last AI use ms, index key).
    ai_procs: HashMap<u32, (String, i64, u64)>,
    /// (last ms, seq) → pid, least recently seen first.
    ai_order: BTreeMap<(i64, u64), u32>,
    next_seq: u64,
    table: HashMap<(String, String), DiscoveryCandidate>,
    /// New candidates refused since the last report (the table was full).
    pub dropped: u64,
}

pub type Shared = Arc<parking_lot::Mutex<Discovery>>;

impl Discovery {
    /// A classified AI use: its process counts as an AI tool if the service is one.
    pub fn ai_use(&mut self, e: &Event, c: &Classified) {
        if !AI_TOOL_CATEGORIES.contains(&c.category.as_str()) {
            return;
        }
        let Some(p) = &e.process else { return };
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some((_, ms, s)) = self
            .ai_procs
            .insert(p.pid, (c.service_id.clone(), e.time_ms, seq))
        {
            self.ai_order.remove(&(ms, s));
        }
        self.ai_order.insert((e.time_ms, seq), p.pid);
        while self.ai_procs.len() > AI_PROCS {
            let Some((_, pid)) = self.ai_order.pop_first() else {
                break;
            };
            self.ai_procs.remove(&pid);
        }
    }

    /// An event the catalogue did not classify.
    pub fn unknown(&mut self, e: &Event) {
        if e.signals.contains(&Signal::LocalResolver) {
            return;
        }
        let Some(p) = &e.process else { return };
        let Some(name) = own_name(e) else { return };
        let alongside = self
            .ai_procs
            .get(&p.pid)
            .filter(|(_, ms, _)| e.time_ms.saturating_sub(*ms) <= AI_PROC_MS)
            .map(|(s, _, _)| s.clone());
        let reason = match (&alongside, looks_like_inference(&name)) {
            (Some(_), _) => DiscoveryReason::AiProcess,
            (None, true) => DiscoveryReason::NamePattern,
            (None, false) => return,
        };
        let key = (name, p.exe.clone());
        if let Some(c) = self.table.get_mut(&key) {
            c.count = c.count.saturating_add(1);
            c.last_seen_ms = c.last_seen_ms.max(e.time_ms);
            return;
        }
        if self.table.len() >= MAX_REPORT {
            self.dropped += 1;
            return;
        }
        let c = DiscoveryCandidate {
            name: key.0.clone(),
            reason,
            exe: key.1.clone(),
            alongside,
            count: 1,
            first_seen_ms: e.time_ms,
            last_seen_ms: e.time_ms,
        };
        self.table.insert(key, c);
    }

    /// Takes what was gathered since the last report.
    pub fn drain(&mut self) -> DiscoveryReport {
        let mut candidates: Vec<DiscoveryCandidate> = self.table.drain().map(|(_, c)| c).collect();
        candidates.sort_by(|a, b| (&a.name, &a.exe).cmp(&(&b.name, &b.exe)));
        DiscoveryReport {
            candidates,
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

/// Where the reporter gets its client: the collector without a token, and the state dir
/// where the uplink keeps the agent token (saved by the background first enrollment and
/// replaced by re-enrollment).
pub struct Reporter {
    pub base: Client,
    pub state_dir: std::path::PathBuf,
    pub period: Duration,
    pub health: Health,
}

/// Sends what was gathered every `period` until the task is dropped. The token is read
/// from the state dir for each report, so the first enrollment (in the background) and a
/// re-enrollment reach the reporter at once; until there is one, candidates wait (bounded).
/// A refused report is dropped (counted).
pub async fn report_loop(r: Reporter, shared: Shared) {
    let Reporter {
        base,
        state_dir,
        period,
        health,
    } = r;
    let mut tick = tokio::time::interval(period.max(Duration::from_secs(1)));
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(token) = super::enroll::saved_token(&state_dir) else {
            continue;
        };
        let client = base.with_token(token);
        let report = shared.lock().drain();
        if report.dropped > 0 {
            health.drop_at("discovery", "candidates", report.dropped);
        }
        if report.candidates.is_empty() {
            continue;
        }
        let n = report.candidates.len() as u64;
        match client.report_discovery(&report).await {
            Ok(ack) => {
                failing = false;
                if ack.refused > 0 {
                    health.drop_at("discovery", "candidates", ack.refused);
                }
            }
            Err(e) => {
                health.drop_at("discovery", "candidates", n);
                if !failing {
                    tracing::warn!(error = %e, candidates = n, "sending discovery candidates failed: this report is dropped (counted); the next period sends anew");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::enrich::ProcInfo;
    use crate::event::{DnsInfo, TlsInfo};
    use shadowai_api::{Action, Verdict};

    fn ev(kind: EventKind, pid: u32, exe: &str, name: &str, t: i64) -> Event {
        Event {
            time_ms: t,
            kind: kind.clone(),
            protocol: "tcp",
            process: Some(Arc::new(ProcInfo {
                pid,
                exe: exe.into(),
                ..ProcInfo::default()
            })),
            src: None,
            dst: "10.0.0.1:443".parse().unwrap(),
            hostname: Some(name.into()),
            name_source: None,
            dns: (kind == EventKind::DnsQuery).then(|| DnsInfo {
                question: name.into(),
                ..DnsInfo::default()
            }),
            tls: (kind == EventKind::TlsClientHello).then(|| TlsInfo {
                sni: Some(name.into()),
                ..TlsInfo::default()
            }),
            signals: vec![],
            cookie: 1,
            blocked: false,
        }
    }

    fn class(category: &str) -> Classified {
        Classified {
            service_id: "openai-api".into(),
            service_name: "OpenAI API".into(),
            vendor: "OpenAI".into(),
            category: category.into(),
            risk_score: 50,
            verdict: Verdict::Unsanctioned,
            action: Action::Allowed,
            layer: None,
            policy_version: None,
            rule: "default".into(),
            naming: None,
        }
    }

    #[test]
    fn names_that_look_like_inference_apis() {
        for n in [
            "api.newco.ai",
            "llm-gateway.corp.example",
            "my-openai-proxy.example.net",
            "inference.provider.io",
        ] {
            assert!(looks_like_inference(n), "{n}");
        }
        for n in [
            "www.example.com",
            "mail.ai",
            "docs.rs",
            "ai",
            "shop.example.ai",
        ] {
            assert!(!looks_like_inference(n), "{n}");
        }
    }

    #[test]
    fn an_sdk_process_names_are_candidates_a_browser_visiting_chat_is_not() {
        let mut d = Discovery::default();
        d.ai_use(
            &ev(
                EventKind::TlsClientHello,
                10,
                "/usr/bin/python3",
                "api.openai.com",
                1,
            ),
            &class("model_api"),
        );
        d.ai_use(
            &ev(
                EventKind::TlsClientHello,
                11,
                "/usr/bin/firefox",
                "chatgpt.com",
                1,
            ),
            &class("chat_assistant"),
        );
        d.unknown(&ev(
            EventKind::TlsClientHello,
            10,
            "/usr/bin/python3",
            "api.newrelay.example",
            2,
        ));
        d.unknown(&ev(
            EventKind::DnsQuery,
            10,
            "/usr/bin/python3",
            "API.NewRelay.Example.",
            3,
        ));
        d.unknown(&ev(
            EventKind::TlsClientHello,
            11,
            "/usr/bin/firefox",
            "news.example",
            2,
        ));
        d.unknown(&ev(
            EventKind::Connect,
            10,
            "/usr/bin/python3",
            "borrowed.example",
            2,
        ));
        let mut resolver = ev(
            EventKind::DnsQuery,
            12,
            "/usr/sbin/dnsmasq",
            "llm.example",
            2,
        );
        resolver.signals.push(Signal::LocalResolver);
        d.unknown(&resolver);
        let r = d.drain();
        assert_eq!(r.candidates.len(), 1, "{r:?}");
        let c = &r.candidates[0];
        assert_eq!(c.name, "api.newrelay.example");
        assert_eq!(c.reason, DiscoveryReason::AiProcess);
        assert_eq!(c.alongside.as_deref(), Some("openai-api"));
        assert_eq!(c.count, 2);
        assert!(d.drain().candidates.is_empty(), "drained");
    }

    #[test]
    fn a_flood_of_names_is_bounded_and_counted() {
        let mut d = Discovery::default();
        for i in 0..(MAX_REPORT + 100) {
            d.unknown(&ev(
                EventKind::DnsQuery,
                1,
                "/tmp/x",
                &format!("llm{i}.example"),
                1,
            ));
        }
        for pid in 0..(AI_PROCS as u32 + 50) {
            d.ai_use(
                &ev(
                    EventKind::DnsQuery,
                    pid,
                    "/tmp/y",
                    "api.openai.com",
                    i64::from(pid),
                ),
                &class("model_api"),
            );
        }
        assert_eq!(d.ai_procs.len(), AI_PROCS);
        assert_eq!(d.ai_order.len(), AI_PROCS);
        assert!(
            !d.ai_procs.contains_key(&0),
            "the least recently seen went first"
        );
        let r = d.drain();
        assert_eq!(r.candidates.len(), MAX_REPORT);
        assert_eq!(r.dropped, 100);
    }
}
