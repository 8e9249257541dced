//! SIEM forwarding: the ingest path hands newly stored findings to `shadowai-siem`, whose
//! forwarders queue, batch, retry and count on their own tasks; ingest never waits for them.

use shadowai_api::Finding;
use shadowai_siem::{Siem, SiemConfig, SiemError};

use crate::server::FindingSink;

pub struct SiemSink {
    siem: Siem,
}

/// Starts the configured forwarders (none configured → `None`). Needs a tokio runtime.
pub fn start(cfg: &SiemConfig) -> Result<Option<SiemSink>, SiemError> {
    if cfg.forwarders.is_empty() {
        return Ok(None);
    }
    let siem = Siem::start(cfg)?;
    Ok(Some(SiemSink { siem }))
}

impl FindingSink for SiemSink {
    fn forward(&self, findings: &[Finding]) {
        self.siem.forward(findings);
    }

    fn forward_alerts(&self, alerts: &[shadowai_api::Alert]) {
        self.siem.forward_alerts(alerts);
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
