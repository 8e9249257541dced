//! soc (issue 10): the audit chain head goes to the SIEM forwarders — when the collector
//! starts, within `audit_head_poll_ms` of every change, and every `audit_head_every_s` when
//! nothing changed — so a copy of the head lives outside the collector's database. The hash
//! of entry `seq` covers every entry before it: anyone holding a head the SIEM received checks
//! the database with `shadowai audit verify --expect-head SEQ:HASH`, and a rewrite or a
//! truncation of the chain fails that check. Several changes between two reads are covered by
//! the later head.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use shadowai_api::AuditHead;

use crate::server::{FindingSink, now_ms};
use crate::store::Store;

/// How the anchor task runs.
pub struct AnchorConfig {
    /// Send the unchanged head this often.
    pub every: Duration,
    /// Read the head this often (a change is sent at the next read).
    pub poll: Duration,
    /// The collector's name in the SIEM event.
    pub collector: String,
}

/// Runs until the task is aborted.
pub async fn run(
    store: Arc<dyn Store>,
    sink: Arc<dyn FindingSink>,
    cfg: AnchorConfig,
    sent: Counter,
) {
    let mut last: Option<(i64, String)> = None;
    let mut last_sent = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let s = store.clone();
        let head = match tokio::task::spawn_blocking(move || s.audit_head()).await {
            Ok(Ok(h)) => {
                failing = false;
                h
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::error!(error = %e, "audit head: store error; the SIEM gets no head until it recovers");
                }
                failing = true;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "audit head: read task failed");
                None
            }
        };
        if let Some((seq, hash, entry_ms)) = head {
            let reason = match &last {
                None => Some("start"),
                Some((s, h)) if *s != seq || *h != hash => Some("changed"),
                Some(_) if last_sent.elapsed() >= cfg.every => Some("periodic"),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                sink.forward_audit_head(&AuditHead {
                    seq,
                    hash: hash.clone(),
                    entry_ms,
                    observed_ms: now_ms(),
                    collector: cfg.collector.clone(),
                    reason: reason.to_owned(),
                });
                sent.inc();
                tracing::debug!(seq, reason, "audit head forwarded to the SIEM");
                last = Some((seq, hash));
                last_sent = tokio::time::Instant::now();
            }
        }
        tokio::time::sleep(cfg.poll).await;
    }
}
