//! What a forwarder carries: findings, and the collector's first-use alerts (issue 15). Both
//! render to OCSF Detection Findings and to syslog structured data through [`SiemEvent`].

use serde_json::Value;
use shadowai_api::ocsf::{alert_to_ocsf, audit_head_to_ocsf, finding_to_ocsf, notice_to_ocsf};
use shadowai_api::{Alert, AuditHead, Finding, Notice, ServiceRisk, Verdict};

use crate::syslog::{action_name, verdict_name};

/// Something a forwarder can render.
pub trait SiemEvent {
    /// The verdict a forwarder's `verdicts` filter applies to; none for security notices and
    /// audit heads, which every forwarder takes.
    fn verdict(&self) -> Option<Verdict>;
    /// Syslog severity (RFC 5424: 4 warning, 5 notice, 6 informational).
    fn syslog_severity(&self) -> u8 {
        self.verdict().map_or(5, crate::syslog::severity)
    }
    /// The monitored host's name (syslog HOSTNAME, HEC `host`).
    fn hostname(&self) -> &str;
    /// When it happened, Unix ms (syslog TIMESTAMP, HEC `time`).
    fn time_ms(&self) -> i64;
    /// The OCSF 1.8 object.
    fn ocsf(&self) -> Value;
    /// Syslog MSGID.
    fn msgid(&self) -> &'static str;
    /// Syslog structured-data parameters.
    fn sd_params(&self) -> Vec<(&'static str, String)>;
}

impl SiemEvent for Finding {
    fn verdict(&self) -> Option<Verdict> {
        Some(self.verdict)
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn time_ms(&self) -> i64 {
        self.last_seen_ms
    }
    fn ocsf(&self) -> Value {
        finding_to_ocsf(self)
    }
    fn msgid(&self) -> &'static str {
        "FINDING"
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.clone()),
            ("service", self.service_id.clone()),
            ("category", self.category.clone()),
            ("verdict", verdict_name(self.verdict).to_owned()),
            ("action", action_name(self.action).to_owned()),
            ("user", self.user.clone()),
            ("uid", self.uid.to_string()),
            ("exe", self.process.exe.clone()),
            ("count", self.count.to_string()),
        ]
    }
}

impl SiemEvent for Alert {
    fn verdict(&self) -> Option<Verdict> {
        Some(self.verdict)
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn time_ms(&self) -> i64 {
        self.created_ms
    }
    fn ocsf(&self) -> Value {
        alert_to_ocsf(self)
    }
    fn msgid(&self) -> &'static str {
        "ALERT"
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        let reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        vec![
            ("id", format!("alert-{}", self.id)),
            ("reasons", reasons.join(",")),
            ("service", self.service_id.clone()),
            ("category", self.category.clone()),
            ("verdict", verdict_name(self.verdict).to_owned()),
            ("action", action_name(self.action).to_owned()),
            ("user", self.user.clone()),
            ("exe", self.exe.clone()),
            ("finding", self.finding_id.clone()),
        ]
    }
}

/// A finding with the collector catalogue's risk of its service: the OCSF object carries
/// `risk_details` and the factors ([`shadowai_api::ocsf::finding_to_ocsf_with_risk`]).
#[derive(Clone, Debug)]
pub struct RiskedFinding {
    pub finding: Finding,
    pub risk: Option<std::sync::Arc<ServiceRisk>>,
}

impl SiemEvent for RiskedFinding {
    fn verdict(&self) -> Option<Verdict> {
        self.finding.verdict()
    }
    fn hostname(&self) -> &str {
        self.finding.hostname()
    }
    fn time_ms(&self) -> i64 {
        self.finding.time_ms()
    }
    fn ocsf(&self) -> Value {
        shadowai_api::ocsf::finding_to_ocsf_with_risk(&self.finding, self.risk.as_deref())
    }
    fn msgid(&self) -> &'static str {
        self.finding.msgid()
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        let mut p = self.finding.sd_params();
        p.push(("risk", self.finding.risk_score.to_string()));
        p
    }
}

impl SiemEvent for Notice {
    fn verdict(&self) -> Option<Verdict> {
        None
    }
    fn syslog_severity(&self) -> u8 {
        match self.kind {
            shadowai_api::NoticeKind::HostIdentityConflict => 4,
            shadowai_api::NoticeKind::AlertsSuppressed => 5,
        }
    }
    fn hostname(&self) -> &str {
        &self.host_id
    }
    fn time_ms(&self) -> i64 {
        self.created_ms
    }
    fn ocsf(&self) -> Value {
        notice_to_ocsf(self)
    }
    fn msgid(&self) -> &'static str {
        "NOTICE"
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kind", self.kind.as_str().to_owned()),
            ("host", self.host_id.clone()),
            ("count", self.count.to_string()),
            ("peer", self.peer.clone()),
        ]
    }
}

impl SiemEvent for AuditHead {
    fn verdict(&self) -> Option<Verdict> {
        None
    }
    fn syslog_severity(&self) -> u8 {
        6
    }
    fn hostname(&self) -> &str {
        &self.collector
    }
    fn time_ms(&self) -> i64 {
        self.observed_ms
    }
    fn ocsf(&self) -> Value {
        audit_head_to_ocsf(self)
    }
    fn msgid(&self) -> &'static str {
        "AUDITHEAD"
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("seq", self.seq.to_string()),
            ("hash", self.hash.clone()),
            ("reason", self.reason.clone()),
        ]
    }
}

/// A queued item.
#[derive(Clone, Debug)]
pub enum Event {
    Finding(Box<Finding>),
    Alert(Box<Alert>),
    /// soc: a finding with its catalogue risk (factors in the OCSF object).
    Risked(Box<RiskedFinding>),
    /// soc: a host identity conflict or a host's alerts suppressed (issues 13, 15).
    Notice(Box<Notice>),
    /// soc: the collector's audit chain head, an anchor outside its database (issue 10).
    AuditHead(Box<AuditHead>),
}

impl Event {
    fn inner(&self) -> &dyn SiemEvent {
        match self {
            Event::Finding(f) => &**f,
            Event::Alert(a) => &**a,
            Event::Risked(r) => &**r,
            Event::Notice(n) => &**n,
            Event::AuditHead(h) => &**h,
        }
    }
}

impl SiemEvent for Event {
    fn verdict(&self) -> Option<Verdict> {
        self.inner().verdict()
    }
    fn syslog_severity(&self) -> u8 {
        self.inner().syslog_severity()
    }
    fn hostname(&self) -> &str {
        self.inner().hostname()
    }
    fn time_ms(&self) -> i64 {
        self.inner().time_ms()
    }
    fn ocsf(&self) -> Value {
        self.inner().ocsf()
    }
    fn msgid(&self) -> &'static str {
        self.inner().msgid()
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        self.inner().sd_params()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]
mod tests {
    use super::*;
    use crate::config::SyslogConfig;
    use crate::syslog::format_message;
    use shadowai_api::{Action, AlertReason};

    fn alert() -> Alert {
        Alert {
            id: 7,
            created_ms: 1_763_769_600_000,
            reasons: vec![AlertReason::NewInFleet, AlertReason::NewUser],
            service_id: "deepseek".into(),
            service_name: "DeepSeek".into(),
            category: "chat".into(),
            verdict: Verdict::Unsanctioned,
            action: Action::WouldBlock,
            risk_score: 80,
            host_id: "h1".into(),
            hostname: "web-01".into(),
            user: "alice".into(),
            exe: "/usr/bin/python3".into(),
            finding_id: "f1".into(),
            first_seen_ms: 1_763_769_500_000,
            link: "#/findings?service=deepseek&host=h1&user=alice".into(),
        }
    }

    #[test]
    fn alerts_render_for_every_sink() {
        let cfg: SyslogConfig = toml::from_str(
            "name = \"s\"\naddress = \"127.0.0.1:514\"\ntransport = \"tcp\"\nfacility = \"local0\"",
        )
        .unwrap();
        let msg =
            String::from_utf8(format_message(&cfg, &Event::Alert(Box::new(alert())))).unwrap();
        assert!(msg.contains(" web-01 shadowai - ALERT [shadowai@32473 id=\"alert-7\" reasons=\"new_in_fleet,new_user\""), "{msg}");
        assert!(msg.contains("\"shadow_ai_first_use\""), "{msg}");
        let o = alert().ocsf();
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["disposition_id"], 15);
        assert_eq!(o["finding_info"]["related_events"][0]["uid"], "f1");
        assert_eq!(
            o["unmapped"]["shadowai"]["link"],
            "#/findings?service=deepseek&host=h1&user=alice"
        );
    }
}
