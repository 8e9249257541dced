//! SIEM forwarding: the ingest path hands newly stored findings to `shadowai-siem`, whose
//! forwarders queue, batch, retry and count on their own tasks; ingest never waits for them.

use std::sync::Arc;

use shadowai_api::Finding;
use shadowai_siem::{RiskedFinding, Siem, SiemConfig, SiemError};

use crate::risk::RiskBook;
use crate::server::FindingSink;

pub struct SiemSink {
    siem: Siem,
    /// The collector catalogue's risk breakdowns: forwarded findings carry their factors.
    risk: Option<Arc<RiskBook>>,
}

/// Starts the configured forwarders (none configured → `None`). Needs a tokio runtime.
pub fn start(cfg: &SiemConfig, risk: Option<Arc<RiskBook>>) -> Result<Option<SiemSink>, SiemError> {
    if cfg.forwarders.is_empty() {
        return Ok(None);
    }
    let siem = Siem::start(cfg)?;
    Ok(Some(SiemSink { siem, risk }))
}

impl FindingSink for SiemSink {
    fn forward(&self, findings: &[Finding]) {
        match &self.risk {
            None => self.siem.forward(findings),
            Some(book) => {
                let risked: Vec<RiskedFinding> = findings
                    .iter()
                    .map(|f| RiskedFinding {
                        finding: f.clone(),
                        risk: book.get(&f.service_id).cloned(),
                    })
                    .collect();
                self.siem.forward_risked(&risked);
            }
        }
    }

    fn forward_alerts(&self, alerts: &[shadowai_api::Alert]) {
        self.siem.forward_alerts(alerts);
    }

    fn forward_notices(&self, notices: &[shadowai_api::Notice]) {
        self.siem.forward_notices(notices);
    }

    fn forward_audit_head(&self, head: &shadowai_api::AuditHead) {
        self.siem.forward_audit_head(head);
    }

    fn totals(&self) -> SinkTotals {
        let mut t = SinkTotals::default();
        for s in self.siem.stats() {
            t.sent += s.events_sent;
            t.failures += s.send_failures;
            t.dropped += s.events_dropped_queue_full + s.events_failed;
        }
        t
    }
}

/// Cumulative forwarding counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkTotals {
    pub sent: u64,
    pub failures: u64,
    pub dropped: u64,
}
