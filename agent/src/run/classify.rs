//! The classify-and-aggregate stage: batches of attributed events in, closed windows of
//! findings out. It owns the rule engine in use (swapped when a verified bundle arrives),
//! the aggregator and the optional per-use printing. It never blocks: windows go to the
//! output stage through a bounded queue.

use std::sync::Arc;
use std::time::Duration;

use shadowai_api::Action;
use shadowai_rules::Engine;
use shadowai_rules::engine::Query;
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

/// The service and verdict for one event, if it is a use of an AI service.
pub fn classify(engine: &Engine, e: &Event, host_tags: &[&str]) -> Option<Classified> {
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
    let d = engine.classify(&q)?;
    Some(Classified {
        service_id: d.service.id.clone(),
        service_name: d.service.name.clone(),
        vendor: d.service.vendor.clone(),
        category: d.service.category.as_str().to_string(),
        risk_score: d.service.risk.score,
        verdict: d.verdict,
        action: if e.blocked {
            Action::Blocked
        } else {
            Action::Allowed
        },
        rule: d.rule_id(),
        naming: crate::correlate::naming::of(e, &d),
    })
}

pub struct ClassifyStage {
    pub engine_rx: watch::Receiver<Arc<Engine>>,
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
        let mut refused = 0u64;
        let mut discovery = self.discovery.as_ref().map(|d| d.lock());
        for e in events {
            let Some(c) = classify(engine, &e, &tags) else {
                if let Some(d) = discovery.as_mut() {
                    d.unknown(&e);
                }
                continue;
            };
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
        if !findings.is_empty() {
            self.out.send(Window(findings));
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
        "AI {:<12} {} -> {} [{} / {}] {:?} ({})",
        format!("{:?}", e.kind),
        who,
        e.hostname.as_deref().unwrap_or("-").escape_debug(),
        c.service_name,
        c.category,
        c.verdict,
        c.rule
    )
}
