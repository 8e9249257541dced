//! Prometheus metrics. Every name ends in `_total` for counters; labels are bounded (route
//! templates, methods, status codes, fixed result words) — never hosts, users, tokens or IPs.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub ingest_batches: Family<ResultLabels, Counter>,
    pub ingest_findings: Counter,
    pub ingest_duplicates: Counter,
    pub auth_failures: Counter,
    pub rate_limited: Counter,
    pub enrollments: Counter,
    pub identity_conflicts: Counter,
    pub heartbeat_group_ignored: Counter,
    pub accept_errors: Counter,
    pub connections_refused: Counter,
    pub slow_bodies: Counter,
    pub ingest_busy: Counter,
    pub export_errors: Counter,
    pub siem_forwarded: Counter,
    pub siem_failures: Counter,
    pub siem_dropped: Counter,
    pub discovery_refused: Counter,
    /// naming: approved catalogue entries left out because they no longer load.
    pub catalogue_overlay_refused: Gauge,
    // ---- soc: first-use alerts (issue 15) ----
    pub alerts_raised: Counter,
    pub alerts_sent: Counter,
    pub alert_send_failures: Counter,
    pub alerts_failed: Counter,
    pub alerts_dropped: Counter,
    pub alerts_suppressed: Counter,
    /// soc: host identity conflicts and alert floods raised as notices; audit heads sent.
    pub notices_raised: Counter,
    pub audit_heads_forwarded: Counter,
    /// The roll-up's fold (`crate::rollup_folder`).
    pub rollup_fold: crate::rollup_folder::FoldMetrics,
    /// The SQLite log's background checkpointer (`crate::wal_checkpointer`).
    pub wal: crate::wal_checkpointer::WalMetrics,
    /// Group commit (SQLite): transactions, the batches they held, groups written again.
    pub ingest_group_transactions: Counter,
    pub ingest_group_batches: Counter,
    pub ingest_group_rewrites: Counter,
    siem_seen: Mutex<crate::siem::SinkTotals>,
    group_seen: Mutex<crate::store::GroupCommitTotals>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("shadowai_collector");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            http_requests: Family::default(),
            ingest_batches: Family::default(),
            ingest_findings: Counter::default(),
            ingest_duplicates: Counter::default(),
            auth_failures: Counter::default(),
            rate_limited: Counter::default(),
            enrollments: Counter::default(),
            identity_conflicts: Counter::default(),
            heartbeat_group_ignored: Counter::default(),
            accept_errors: Counter::default(),
            connections_refused: Counter::default(),
            slow_bodies: Counter::default(),
            ingest_busy: Counter::default(),
            export_errors: Counter::default(),
            siem_forwarded: Counter::default(),
            siem_failures: Counter::default(),
            siem_dropped: Counter::default(),
            discovery_refused: Counter::default(),
            catalogue_overlay_refused: Gauge::default(),
            alerts_raised: Counter::default(),
            alerts_sent: Counter::default(),
            alert_send_failures: Counter::default(),
            alerts_failed: Counter::default(),
            alerts_dropped: Counter::default(),
            alerts_suppressed: Counter::default(),
            notices_raised: Counter::default(),
            audit_heads_forwarded: Counter::default(),
            rollup_fold: Default::default(),
            wal: Default::default(),
            ingest_group_transactions: Counter::default(),
            ingest_group_batches: Counter::default(),
            ingest_group_rewrites: Counter::default(),
            siem_seen: Mutex::new(Default::default()),
            group_seen: Mutex::new(Default::default()),
        };
        // prometheus-client appends `_total` to counter names.
        r.register(
            "discovery_refused",
            "Discovery candidates refused because the table (or the host's share) is full",
            m.discovery_refused.clone(),
        );
        r.register(
            "catalogue_overlay_refused",
            "Approved catalogue entries left out of the served catalogue because they no longer load with the shipped one",
            m.catalogue_overlay_refused.clone(),
        );
        m.rollup_fold.register(&mut r);
        m.wal.register(&mut r);
        r.register(
            "ingest_group_transactions",
            "Group-commit transactions written (SQLite: batches queued behind one share the next)",
            m.ingest_group_transactions.clone(),
        );
        r.register(
            "ingest_group_batches",
            "Ingest batches written by group-commit transactions",
            m.ingest_group_batches.clone(),
        );
        r.register(
            "ingest_group_rewrites",
            "Group commits written again with a savepoint per batch after a batch failed mid-write",
            m.ingest_group_rewrites.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "ingest_batches",
            "Finding batches by result",
            m.ingest_batches.clone(),
        );
        r.register(
            "ingest_findings",
            "Findings stored",
            m.ingest_findings.clone(),
        );
        r.register(
            "ingest_duplicate_findings",
            "Findings received again and not stored twice",
            m.ingest_duplicates.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused for a missing/unknown/revoked token",
            m.auth_failures.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by the rate limit",
            m.rate_limited.clone(),
        );
        r.register("enrollments", "Agents enrolled", m.enrollments.clone());
        r.register(
            "host_identity_conflicts",
            "Enrollments refused because the host id is bound to another host key",
            m.identity_conflicts.clone(),
        );
        r.register(
            "heartbeat_group_ignored",
            "Heartbeats whose group differs from the admin-assigned one (not applied)",
            m.heartbeat_group_ignored.clone(),
        );
        r.register(
            "accept_errors",
            "Failed accept() calls (e.g. out of descriptors); the loop backs off",
            m.accept_errors.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once: global or per-IP connection cap reached",
            m.connections_refused.clone(),
        );
        r.register(
            "slow_request_bodies",
            "Requests cut off because the body arrived below the minimum rate",
            m.slow_bodies.clone(),
        );
        r.register(
            "ingest_busy",
            "Ingest requests refused with 503 because every decode slot stayed busy",
            m.ingest_busy.clone(),
        );
        r.register(
            "export_errors",
            "Exports aborted mid-stream by a store error (the response is cut, not completed)",
            m.export_errors.clone(),
        );
        for (name, help, c) in [
            (
                "alerts_raised",
                "First-use alerts raised (stored)",
                &m.alerts_raised,
            ),
            (
                "alerts_sent",
                "First-use alerts delivered to the alert webhook",
                &m.alerts_sent,
            ),
            (
                "alert_send_failures",
                "Failed alert webhook attempts (each retry counts)",
                &m.alert_send_failures,
            ),
            (
                "alerts_failed",
                "Alerts given up after the last retry or a permanent refusal",
                &m.alerts_failed,
            ),
            (
                "alerts_dropped",
                "Undelivered alerts dropped from the outbox (oldest first) to keep it under [alerts] outbox_cap",
                &m.alerts_dropped,
            ),
            (
                "alerts_suppressed",
                "First uses recorded without an alert: over the per-batch or per-host-hour alert cap (a flood)",
                &m.alerts_suppressed,
            ),
            (
                "notices_raised",
                "Security notices raised: host identity conflicts, a host's alerts suppressed",
                &m.notices_raised,
            ),
            (
                "audit_heads_forwarded",
                "Audit chain heads handed to the SIEM forwarders (at start, on change, periodically)",
                &m.audit_heads_forwarded,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "siem_events_forwarded",
            "Findings handed to SIEM forwarders",
            m.siem_forwarded.clone(),
        );
        r.register(
            "siem_forward_failures",
            "Failed SIEM forwarding attempts",
            m.siem_failures.clone(),
        );
        r.register(
            "siem_events_dropped",
            "Findings dropped because the SIEM queue was full or retries ran out",
            m.siem_dropped.clone(),
        );
        if let Ok(mut g) = m.registry.lock() {
            *g = r;
        }
        m
    }

    /// Brings the SIEM counters up to the forwarders' cumulative totals.
    pub fn sync_siem(&self, now: crate::siem::SinkTotals) {
        if let Ok(mut seen) = self.siem_seen.lock() {
            self.siem_forwarded
                .inc_by(now.sent.saturating_sub(seen.sent));
            self.siem_failures
                .inc_by(now.failures.saturating_sub(seen.failures));
            self.siem_dropped
                .inc_by(now.dropped.saturating_sub(seen.dropped));
            *seen = now;
        }
    }

    /// Brings the group-commit counters up to the store's totals.
    pub fn sync_group_commit(&self, now: crate::store::GroupCommitTotals) {
        if let Ok(mut seen) = self.group_seen.lock() {
            self.ingest_group_transactions
                .inc_by(now.transactions.saturating_sub(seen.transactions));
            self.ingest_group_batches
                .inc_by(now.batches.saturating_sub(seen.batches));
            self.ingest_group_rewrites
                .inc_by(now.rewrites.saturating_sub(seen.rewrites));
            *seen = now;
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
