//! What the daemon counts about itself: every loss, refusal and failure, in one place, for
//! `/metrics` and for the heartbeat. Handles are cheap clones of shared atomics, so each
//! stage owns a copy and nothing here locks.
//!
//! Metric names are stable (the `status` subcommand and dashboards read them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Bounded label sets: `stage` and `reason` come from fixed lists in the code.
pub type StageLabels = Vec<(&'static str, &'static str)>;

/// Where the daemon stands with the collector about its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IdentityState {
    /// The token works (or no collector is configured).
    Ok = 0,
    /// The token was refused and re-enrollment is in progress.
    Reenrolling = 1,
    /// An admin revoked this host (403 `agent_revoked`): nothing is uploaded.
    Revoked = 2,
    /// The collector bound this host id to another host key (409).
    Conflict = 3,
    /// Not enrolled yet: the first enrollment is being retried (findings are spooled).
    Enrolling = 4,
}

impl IdentityState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Ok => "ok",
            IdentityState::Reenrolling => "reenrolling",
            IdentityState::Revoked => "revoked",
            IdentityState::Conflict => "host_identity_conflict",
            IdentityState::Enrolling => "enrolling",
        }
    }

    /// The same, as the heartbeat carries it.
    pub fn wire(self) -> shadowai_api::IdentityState {
        use shadowai_api::IdentityState as W;
        match self {
            IdentityState::Ok => W::Ok,
            IdentityState::Reenrolling => W::Reenrolling,
            IdentityState::Revoked => W::Revoked,
            IdentityState::Conflict => W::HostIdentityConflict,
            IdentityState::Enrolling => W::Enrolling,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Health {
    pub uplink_batches: Counter,
    pub uplink_findings: Counter,
    pub uplink_failures: Counter,
    pub bundle_updates: Counter,
    pub bundle_rejected: Counter,
    pub spool_batches: Gauge,
    pub spool_bytes: Gauge,
    pub spool_lost_batches: Counter,
    /// Bytes (as stored) of the spooled batches dropped.
    pub spool_lost_bytes: Counter,
    pub spool_lost_findings: Counter,
    pub spool_write_failures: Counter,
    /// Spool calls that missed their deadline (the spool thread did not answer in time).
    pub spool_stalls: Counter,
    pub quarantined_batches: Counter,
    pub quarantined_findings: Counter,
    pub findings_truncated: Counter,
    /// Items a full queue or a failed stage dropped: `{stage, unit}`.
    pub dropped: Family<StageLabels, Counter>,
    /// Executables not hashed: `{reason}`.
    pub exe_hash_skipped: Family<StageLabels, Counter>,
    pub output_failures: Family<StageLabels, Counter>,
    /// Socket byte counts not attributed: `{reason}`.
    pub bytes_lost: Family<StageLabels, Counter>,
    pub reenrollments: Counter,
    /// [`IdentityState`] as a number (0 ok).
    pub identity: Gauge,
    /// Kernel ring-buffer losses since start (refreshed once a second).
    pub kernel_lost_events: Arc<AtomicU64>,
    /// The sensor's hooks that did not attach, set once when it starts (heartbeats carry
    /// them: the SOC sees which hosts are partly blind).
    pub hooks_missing: Arc<OnceLock<Vec<String>>>,
}

impl Health {
    /// Registers every handle in `r` under its stable name.
    pub fn register(&self, r: &mut Registry) {
        let c = |r: &mut Registry, name: &str, help: &str, m: &Counter| {
            r.register(name, help, m.clone());
        };
        c(
            r,
            "shadowai_uplink_batches",
            "Batches the collector acknowledged.",
            &self.uplink_batches,
        );
        c(
            r,
            "shadowai_uplink_findings",
            "Findings in acknowledged batches.",
            &self.uplink_findings,
        );
        c(
            r,
            "shadowai_uplink_failures",
            "Uploads that failed and will be retried.",
            &self.uplink_failures,
        );
        c(
            r,
            "shadowai_bundle_updates",
            "Rule bundles verified and loaded.",
            &self.bundle_updates,
        );
        c(
            r,
            "shadowai_bundle_rejected",
            "Rule bundles refused.",
            &self.bundle_rejected,
        );
        r.register(
            "shadowai_spool_batches",
            "Batches waiting in the spool.",
            self.spool_batches.clone(),
        );
        r.register(
            "shadowai_spool_bytes",
            "Bytes the spool takes on disk.",
            self.spool_bytes.clone(),
        );
        c(
            r,
            "shadowai_spool_lost_batches",
            "Spooled batches dropped (size cap, full disk, corruption).",
            &self.spool_lost_batches,
        );
        c(
            r,
            "shadowai_spool_lost_bytes",
            "Bytes (as stored) of spooled batches dropped (size cap, full disk, corruption).",
            &self.spool_lost_bytes,
        );
        c(
            r,
            "shadowai_spool_lost_findings",
            "Findings in spooled batches dropped or never spooled.",
            &self.spool_lost_findings,
        );
        c(
            r,
            "shadowai_spool_write_failures",
            "Spool writes that failed (e.g. the disk is full).",
            &self.spool_write_failures,
        );
        c(
            r,
            "shadowai_spool_stalls",
            "Spool calls that missed their deadline (the disk did not answer in time).",
            &self.spool_stalls,
        );
        c(
            r,
            "shadowai_uplink_quarantined_batches",
            "Batches the collector refused for good, set aside.",
            &self.quarantined_batches,
        );
        c(
            r,
            "shadowai_uplink_quarantined_findings",
            "Findings in quarantined batches.",
            &self.quarantined_findings,
        );
        c(
            r,
            "shadowai_findings_truncated",
            "Findings whose values were cut or cleaned to fit the collector's limits.",
            &self.findings_truncated,
        );
        r.register(
            "shadowai_pipeline_dropped",
            "Items dropped by a full queue or a failed stage, by stage and unit.",
            self.dropped.clone(),
        );
        r.register(
            "shadowai_exe_hash_skipped",
            "Executables not hashed, by reason.",
            self.exe_hash_skipped.clone(),
        );
        r.register(
            "shadowai_output_failures",
            "Local output writes that failed, by output.",
            self.output_failures.clone(),
        );
        r.register(
            "shadowai_bytes_lost",
            "Socket byte counts lost before reaching a finding, by reason.",
            self.bytes_lost.clone(),
        );
        c(
            r,
            "shadowai_reenrollments",
            "Fresh tokens obtained with the host key after a 401.",
            &self.reenrollments,
        );
        r.register(
            "shadowai_identity_state",
            "0 ok, 1 re-enrolling, 2 revoked by an admin, 3 host identity conflict, 4 first enrollment pending.",
            self.identity.clone(),
        );
    }

    /// Counts `n` items of `unit` dropped at `stage`.
    pub fn drop_at(&self, stage: &'static str, unit: &'static str, n: u64) {
        self.dropped
            .get_or_create(&vec![("stage", stage), ("unit", unit)])
            .inc_by(n);
    }

    /// Everything lost since start, as the heartbeat's `lost_events` reports it: kernel
    /// losses plus events dropped between stages.
    pub fn lost_events(&self) -> u64 {
        let dropped: u64 = ["classify"]
            .iter()
            .map(|s| {
                self.dropped
                    .get_or_create(&vec![("stage", *s), ("unit", "events")])
                    .get()
            })
            .sum();
        self.kernel_lost_events.load(Ordering::Relaxed) + dropped
    }

    /// The pipeline's figures as the heartbeat reports them.
    pub fn pipeline(&self) -> shadowai_api::PipelineHealth {
        shadowai_api::PipelineHealth {
            spool_dropped_batches: self.spool_lost_batches.get(),
            spool_dropped_bytes: self.spool_lost_bytes.get(),
            spool_lost_findings: self.spool_lost_findings.get(),
            quarantined_batches: self.quarantined_batches.get(),
            identity: self.identity_state().wire(),
            reenrollments: self.reenrollments.get(),
            hooks_missing: self.hooks_missing.get().cloned().unwrap_or_default(),
        }
    }

    /// Records which of the sensor's hooks did not attach (once; a second call is ignored:
    /// the sensor attaches once per run).
    pub fn set_hooks_missing(&self, hooks: Vec<String>) {
        let _ = self.hooks_missing.set(hooks);
    }

    pub fn set_identity(&self, s: IdentityState) {
        self.identity.set(s as i64);
    }

    pub fn identity_state(&self) -> IdentityState {
        match self.identity.get() {
            1 => IdentityState::Reenrolling,
            2 => IdentityState::Revoked,
            3 => IdentityState::Conflict,
            4 => IdentityState::Enrolling,
            _ => IdentityState::Ok,
        }
    }
}

/// A failure that repeats (a full disk, an unreachable file) is logged when it starts and
/// when it ends, not on every occurrence; each occurrence is still counted by the caller.
#[derive(Debug, Default)]
pub struct Trouble {
    failing: AtomicBool,
}

impl Trouble {
    /// Records a failure; true when this is the first of a run (the caller logs it).
    pub fn fail(&self) -> bool {
        !self.failing.swap(true, Ordering::Relaxed)
    }

    /// Records a success; true when it ends a run of failures (the caller logs recovery).
    pub fn ok(&self) -> bool {
        self.failing.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_name_the_hooks_that_did_not_attach() {
        let h = Health::default();
        let healthy = serde_json::to_value(h.pipeline()).unwrap();
        assert!(healthy.get("hooks_missing").is_none(), "{healthy}");
        // Set through a clone (the sensor's start has one): every clone sees it, once.
        h.clone()
            .set_hooks_missing(vec!["skb_egress".into(), "skb_ingress".into()]);
        h.set_hooks_missing(vec!["connect4".into()]);
        let sent = serde_json::to_value(h.pipeline()).unwrap();
        assert_eq!(
            sent["hooks_missing"],
            serde_json::json!(["skb_egress", "skb_ingress"])
        );
        let back: shadowai_api::PipelineHealth = serde_json::from_value(sent).unwrap();
        assert_eq!(back.hooks_missing, ["skb_egress", "skb_ingress"]);
    }
}
