//! The classify-and-aggregate stage: batches of attributed events in, closed windows of
//! findings out. It owns the rule engine in use (swapped when a verified bundle arrives),
//! the aggregator and the optional per-use printing. It never blocks: windows go to the
//! output stage through a bounded queue.
//!
//! Verdict and action stay distinct: the verdict is what the policy says of the use; the
//! action is what happened to it — `blocked` when the kernel or the agent refused it (with
//! the layer that did), `would_block` when enforce mode would have refused it but the
//! policy only monitors (monitor mode, or an observe-only rule: `enforce = false`), else
//! `allowed`.

use std::sync::Arc;
use std::time::Duration;

use shadowai_api::{Action, Layer};
use shadowai_rules::engine::{Decision, MatchedBy, Query};
use shadowai_rules::{Engine, Verdict};
use tokio::sync::{mpsc, watch};

use super::findings::{Aggregator, Classified};
use super::health::Health;
use super::print::PrintSender;
use super::sink::{Window, WindowSender};
use super::usage::Meter;
use crate::correlate::hold::ConnectHold;
use crate::event::{Event, EventKind, Signal};
use crate::sensor::bytes::ByteCounters;

/// Event batches waiting for this stage at most (a batch is one ring-buffer drain).
pub const QUEUE: usize = 256;

/// The engine's decision for one event, handed to `f` (`None`: not an AI use, or a local
/// resolver's lookup).
fn with_decision<R>(
    engine: &Engine,
    e: &Event,
    host_tags: &[&str],
    f: impl FnOnce(&Decision<'_>) -> R,
) -> Option<R> {
    if e.signals.contains(&Signal::LocalResolver) {
        return None; // a resolver's lookups are its clients' uses, reported as theirs
    }
    let dns = matches!(e.kind, EventKind::DnsQuery | EventKind::DnsResponse);
    let name = if dns {
        e.dns.as_ref().map(|d| d.question.as_str())
    } else {
        e.hostname.as_deref()
    };
    let groups: Vec<&str> = e
        .process
        .as_ref()
        .map_or_else(Vec::new, |p| p.groups.iter().map(String::as_str).collect());
    let q = Query {
        name,
        ip: (!dns).then(|| e.dst.ip()),
        port: (!dns).then(|| e.dst.port()),
        process: e.process.as_ref().map(|p| p.exe.as_str()),
        user: e.process.as_ref().map(|p| p.user.as_str()),
        unix_groups: &groups,
        host_tags,
    };
    // The risk flags and tenant of the process's AI agent session: rules may scope on them.
    let tag = e.process.as_ref().and_then(|p| p.tag.as_deref());
    let flags: Vec<&str> =
        tag.map_or_else(Vec::new, |t| t.flags.iter().map(|f| f.as_str()).collect());
    engine
        .classify_flagged(&q, &flags, tag.and_then(|t| t.tenant.as_deref()))
        .map(|d| f(&d))
}

/// The service the policy refuses this event's use of (verdict `blocked` in enforce mode,
/// by a rule that is not observe-only), if any: what the agent itself refuses.
pub fn refused_service(engine: &Engine, e: &Event, host_tags: &[&str]) -> Option<String> {
    with_decision(engine, e, host_tags, |d| {
        d.enforce().then(|| d.service.id.clone())
    })
    .flatten()
}

/// The service and verdict for one event, if it is a use of an AI service.
pub fn classify(engine: &Engine, e: &Event, host_tags: &[&str]) -> Option<Classified> {
    with_decision(engine, e, host_tags, |d| {
        classified(engine, e, host_tags, d)
    })
}

fn classified(engine: &Engine, e: &Event, host_tags: &[&str], d: &Decision<'_>) -> Classified {
    // Not refused although blocked: monitor mode, or an observe-only rule in enforce mode.
    let (action, layer) = if e.blocked {
        (Action::Blocked, Some(layer_of(e)))
    } else if d.verdict == Verdict::Blocked && !d.enforce() {
        match would_refuse(engine, e, host_tags, &d.service.id) {
            Some(l) => (Action::WouldBlock, Some(l)),
            None => (Action::Allowed, None),
        }
    } else {
        (Action::Allowed, None)
    };
    Classified {
        service_id: d.service.id.clone(),
        service_name: d.service.name.clone(),
        vendor: d.service.vendor.clone(),
        category: d.service.category.as_str().to_string(),
        risk_score: d.service.risk.score,
        verdict: d.verdict,
        action,
        layer,
        policy_version: None,
        rule: d.rule_id(),
        naming: crate::correlate::naming::of(e, d),
    }
}

/// The layer that refuses (or would refuse) an event of this kind.
pub fn layer_of(e: &Event) -> Layer {
    match e.kind {
        EventKind::DnsQuery | EventKind::DnsResponse => {
            if e.protocol == "tcp" {
                Layer::DnsTcp
            } else {
                Layer::Dns
            }
        }
        EventKind::TlsClientHello => Layer::Sni,
        EventKind::QuicClientHello => Layer::Quic,
        EventKind::Connect => Layer::Cidr,
    }
}

/// In monitor mode, a use whose verdict is `blocked`: which layer enforce mode would have
/// refused it at, if any. Names (DNS, SNI, QUIC) are refused for the process whose verdict
/// is `blocked`; a DNS query only when the block holds host-wide and no exception or
/// scoped rule lifts it for someone (the kernel's filters know no processes); a connect
/// only into the service's own published networks, on the same terms — never an address
/// other names share.
fn would_refuse(engine: &Engine, e: &Event, host_tags: &[&str], service: &str) -> Option<Layer> {
    let host_wide = |name: Option<&str>, ip: Option<std::net::IpAddr>| {
        let q = Query {
            name,
            ip,
            host_tags,
            ..Query::default()
        };
        engine.classify(&q).map(|d| {
            // In the per-host filters only when no exception or scoped rule lifts it.
            let lifted = || {
                super::enforce::lifted_for_some(
                    engine.policy(),
                    d.service,
                    &d.decided_by,
                    shadowai_rules::time::now_unix(),
                )
            };
            (
                d.service.id == service && d.verdict == Verdict::Blocked && !lifted(),
                matches!(d.matched_by, MatchedBy::Cidr(_)),
            )
        })
    };
    match e.kind {
        EventKind::DnsQuery | EventKind::DnsResponse => {
            let q = e.dns.as_ref().map(|d| d.question.as_str());
            matches!(host_wide(q, None), Some((true, _))).then(|| layer_of(e))
        }
        EventKind::TlsClientHello | EventKind::QuicClientHello => e
            .tls
            .as_ref()
            .and_then(|t| t.sni.as_ref())
            .map(|_| layer_of(e)),
        EventKind::Connect => {
            matches!(host_wide(None, Some(e.dst.ip())), Some((true, true))).then_some(Layer::Cidr)
        }
    }
}

pub struct ClassifyStage {
    pub engine_rx: watch::Receiver<Arc<Engine>>,
    /// Version of the bundle the engine came from (none: local catalogue and policy).
    pub policy_version: watch::Receiver<Option<String>>,
    pub tags: Vec<String>,
    pub agg: Aggregator,
    pub out: WindowSender,
    pub health: Health,
    /// Each classified use, as a line for stdout (`--print`), printed off this task.
    pub print: Option<PrintSender>,
    /// Connects waiting for their ClientHello (one socket, one use, named by its SNI).
    pub hold: ConnectHold,
    /// Unknown names for the discovery loop (when a collector is configured).
    pub discovery: Option<super::discovery::Shared>,
    /// Payload bytes per socket, when the kernel counts them.
    pub meter: Option<Meter<ByteCounters>>,
}

impl ClassifyStage {
    /// Runs until the source closes its end, then closes the open window.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Vec<Event>>) {
        let mut engine = self.engine_rx.borrow_and_update().clone();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                b = rx.recv() => match b {
                    Some(events) => {
                        if self.engine_rx.has_changed().unwrap_or(false) {
                            engine = self.engine_rx.borrow_and_update().clone();
                        }
                        let mut ready = Vec::with_capacity(events.len());
                        self.hold.push(events, &mut ready);
                        self.handle(&engine, ready);
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if let Some(m) = &mut self.meter {
                        m.tick(&mut self.agg, super::now_ms());
                    }
                }
            }
            let mut due = Vec::new();
            self.hold.due(super::now_ms(), false, &mut due);
            self.handle(&engine, due);
            self.close(false);
        }
        let mut rest = Vec::new();
        self.hold.due(0, true, &mut rest);
        self.handle(&engine, rest);
        if let Some(m) = &mut self.meter {
            m.tick(&mut self.agg, super::now_ms());
        }
        self.close(true);
    }

    fn handle(&mut self, engine: &Engine, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let version = self.policy_version.borrow().clone();
        let mut refused = 0u64;
        let mut discovery = self.discovery.as_ref().map(|d| d.lock());
        for e in events {
            let Some(mut c) = classify(engine, &e, &tags) else {
                if let Some(d) = discovery.as_mut() {
                    d.unknown(&e);
                }
                continue;
            };
            c.policy_version.clone_from(&version);
            if let Some(d) = discovery.as_mut() {
                d.ai_use(&e, &c);
            }
            if let Some(p) = self.print.as_mut().filter(|p| p.is_open()) {
                p.send(use_line(&e, &c));
            }
            if !self.agg.observe(&e, &c) {
                refused += 1;
            } else if let Some(m) = &mut self.meter {
                m.observe(&mut self.agg, &e, &c, super::now_ms());
            }
        }
        if refused > 0 {
            self.health.drop_at("aggregate", "events", refused);
            tracing::warn!(
                events = refused,
                max = super::findings::MAX_OPEN,
                "window holds the most findings it may: further new (service, process, user) uses dropped (counted)"
            );
        }
    }

    fn close(&mut self, force: bool) {
        let findings = self.agg.close_if_due(super::now_ms(), force);
        let exes = self.agg.take_exes();
        if !findings.is_empty() {
            self.out.send(Window(findings, exes));
        }
    }
}

/// One line per classified use (`--print`). Names are escaped: an exe name may hold
/// terminal control sequences.
fn use_line(e: &Event, c: &Classified) -> String {
    let who = e.process.as_ref().map_or("?".to_string(), |p| {
        format!("pid={} {} user={}", p.pid, p.exe.escape_debug(), p.user)
    });
    format!(
        "AI {:<12} {} -> {} [{} / {}] {:?} {}{} ({})",
        format!("{:?}", e.kind),
        who,
        e.hostname.as_deref().unwrap_or("-").escape_debug(),
        c.service_name,
        c.category,
        c.verdict,
        c.action.as_str(),
        c.layer.map_or(String::new(), |l| format!(" at {l:?}")),
        c.rule
    )
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use std::path::Path;

    use shadowai_rules::catalogue::Catalogue;
    use shadowai_rules::policy::Policy;

    use super::*;
    use crate::enrich::ProcInfo;
    use crate::event::{DnsInfo, TlsInfo};

    fn engine(mode: &str) -> Engine {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        let cat = Catalogue::load_dir(&dir).unwrap();
        let text = format!(
            "mode = \"{mode}\"\ndefault_verdict = \"unsanctioned\"\n\n\
             [[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\", \"anthropic-api\"]\n\n\
             [[rules]]\nid = \"nobody-no-mistral\"\nverdict = \"blocked\"\nservices = [\"mistral-api\"]\nusers = [\"nobody\"]\n\n\
             [[rules]]\nid = \"openai-ok\"\nverdict = \"sanctioned\"\nservices = [\"openai-api\"]\n"
        );
        let (p, report) = Policy::parse(Path::new("policy.toml"), &text, &cat, 0);
        Engine::new(cat, p.unwrap_or_else(|| panic!("{report:?}"))).unwrap()
    }

    fn ev(kind: EventKind, protocol: &'static str, name: &str, dst: &str, user: &str) -> Event {
        let dns = matches!(kind, EventKind::DnsQuery | EventKind::DnsResponse);
        let hello = matches!(kind, EventKind::TlsClientHello | EventKind::QuicClientHello);
        Event {
            time_ms: 1,
            kind,
            protocol,
            process: Some(Arc::new(ProcInfo {
                pid: 7,
                exe: "/usr/bin/curl".into(),
                user: user.into(),
                ..ProcInfo::default()
            })),
            src: None,
            dst: dst.parse().unwrap(),
            hostname: Some(name.into()),
            name_source: None,
            dns: dns.then(|| DnsInfo {
                question: name.into(),
                transport: protocol,
                ..DnsInfo::default()
            }),
            tls: hello.then(|| TlsInfo {
                sni: Some(name.into()),
                ..TlsInfo::default()
            }),
            signals: vec![],
            cookie: 1,
            blocked: false,
        }
    }

    fn decided(e: &Engine, ev: &Event) -> (Action, Option<Layer>) {
        let c = classify(e, ev, &[]).unwrap();
        (c.action, c.layer)
    }

    #[test]
    fn monitor_mode_says_which_layer_would_have_refused() {
        let m = engine("monitor");
        let shared = "10.9.9.9:443";
        let cases = [
            (
                EventKind::DnsQuery,
                "udp",
                "api.deepseek.com",
                "10.0.0.53:53",
                Some(Layer::Dns),
            ),
            (
                EventKind::DnsQuery,
                "tcp",
                "x.api.deepseek.com",
                "10.0.0.53:53",
                Some(Layer::DnsTcp),
            ),
            (
                EventKind::TlsClientHello,
                "tcp",
                "api.deepseek.com",
                shared,
                Some(Layer::Sni),
            ),
            (
                EventKind::QuicClientHello,
                "quic",
                "api.deepseek.com",
                shared,
                Some(Layer::Quic),
            ),
            // A connect named from the DNS cache, to an address other names share: the
            // connect itself would not be refused (its ClientHello would).
            (EventKind::Connect, "tcp", "api.deepseek.com", shared, None),
            // Into the blocked service's own published network: refused at connect.
            (
                EventKind::Connect,
                "tcp",
                "api.anthropic.com",
                "160.79.104.10:443",
                Some(Layer::Cidr),
            ),
        ];
        for (kind, proto, name, dst, layer) in cases {
            let e = ev(kind.clone(), proto, name, dst, "alice");
            let want = (layer.map_or(Action::Allowed, |_| Action::WouldBlock), layer);
            assert_eq!(decided(&m, &e), want, "{kind:?} {proto} {name} {dst}");
        }
        let ok = ev(
            EventKind::TlsClientHello,
            "tcp",
            "api.openai.com",
            shared,
            "alice",
        );
        assert_eq!(decided(&m, &ok), (Action::Allowed, None), "sanctioned");
    }

    #[test]
    fn scoped_blocks_would_refuse_names_of_that_user_only_and_never_dns() {
        let m = engine("monitor");
        let hello = |user| {
            ev(
                EventKind::TlsClientHello,
                "tcp",
                "api.mistral.ai",
                "10.9.9.9:443",
                user,
            )
        };
        assert_eq!(
            decided(&m, &hello("nobody")),
            (Action::WouldBlock, Some(Layer::Sni))
        );
        assert_eq!(decided(&m, &hello("alice")), (Action::Allowed, None));
        // The kernel's name filter is per host: a scoped block is not refused at DNS.
        let q = ev(
            EventKind::DnsQuery,
            "udp",
            "api.mistral.ai",
            "10.0.0.53:53",
            "nobody",
        );
        assert_eq!(decided(&m, &q), (Action::Allowed, None));
    }

    #[test]
    fn an_observe_only_rule_would_block_in_enforce_mode_and_a_lifted_block_not_at_dns() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        let cat = Catalogue::load_dir(&dir).unwrap();
        let text = "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
            [[exceptions]]\nid = \"alice\"\nverdict = \"tolerated\"\nservices = [\"anthropic-api\"]\nusers = [\"alice\"]\n\
            reason = \"r\"\napprover = \"a\"\nexpires = 2099-01-01T00:00:00Z\n\n\
            [[rules]]\nid = \"watch-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\", \"anthropic-api\"]\nenforce = false\n";
        let (p, report) = Policy::parse(Path::new("policy.toml"), text, &cat, 0);
        let e = Engine::new(cat, p.unwrap_or_else(|| panic!("{report:?}"))).unwrap();
        let q = |name, user| ev(EventKind::DnsQuery, "udp", name, "10.0.0.53:53", user);
        assert_eq!(
            decided(&e, &q("api.deepseek.com", "bob")),
            (Action::WouldBlock, Some(Layer::Dns))
        );
        assert_eq!(
            refused_service(&e, &q("api.deepseek.com", "bob"), &[]),
            None
        );
        // Lifted for alice: never refused at DNS for anyone, so not "would" either.
        assert_eq!(
            decided(&e, &q("api.anthropic.com", "bob")),
            (Action::Allowed, None)
        );
        let hello = ev(
            EventKind::TlsClientHello,
            "tcp",
            "api.anthropic.com",
            "10.9.9.9:443",
            "bob",
        );
        assert_eq!(decided(&e, &hello), (Action::WouldBlock, Some(Layer::Sni)));
    }

    #[test]
    fn enforce_mode_reports_what_happened_not_the_verdict() {
        let m = engine("enforce");
        let mut e = ev(
            EventKind::DnsQuery,
            "tcp",
            "api.deepseek.com",
            "10.0.0.53:53",
            "alice",
        );
        assert_eq!(
            decided(&m, &e),
            (Action::Allowed, None),
            "not refused: allowed"
        );
        e.blocked = true;
        assert_eq!(decided(&m, &e), (Action::Blocked, Some(Layer::DnsTcp)));
        let c = classify(&m, &e, &[]).unwrap();
        assert_eq!(
            (c.verdict, c.rule.as_str()),
            (Verdict::Blocked, "rule:no-deepseek")
        );
    }
}
