//! What a forwarder carries: findings, and the collector's first-use alerts (issue 15). Both
//! render to OCSF Detection Findings and to syslog structured data through [`SiemEvent`].

use serde_json::Value;
use shadowai_api::ocsf::{alert_to_ocsf, finding_to_ocsf};
use shadowai_api::{Alert, Finding, Verdict};

use crate::syslog::{action_name, verdict_name};

/// Something a forwarder can render.
pub trait SiemEvent {
    fn verdict(&self) -> Verdict;
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
    fn verdict(&self) -> Verdict {
        self.verdict
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
    fn verdict(&self) -> Verdict {
        self.verdict
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

/// A queued item.
#[derive(Clone, Debug)]
pub enum Event {
    Finding(Box<Finding>),
    Alert(Box<Alert>),
}

impl SiemEvent for Event {
    fn verdict(&self) -> Verdict {
        match self {
            Event::Finding(f) => f.verdict(),
            Event::Alert(a) => a.verdict(),
        }
    }
    fn hostname(&self) -> &str {
        match self {
            Event::Finding(f) => f.hostname(),
            Event::Alert(a) => a.hostname(),
        }
    }
    fn time_ms(&self) -> i64 {
        match self {
            Event::Finding(f) => f.time_ms(),
            Event::Alert(a) => a.time_ms(),
        }
    }
    fn ocsf(&self) -> Value {
        match self {
            Event::Finding(f) => f.ocsf(),
            Event::Alert(a) => a.ocsf(),
        }
    }
    fn msgid(&self) -> &'static str {
        match self {
            Event::Finding(f) => f.msgid(),
            Event::Alert(a) => a.msgid(),
        }
    }
    fn sd_params(&self) -> Vec<(&'static str, String)> {
        match self {
            Event::Finding(f) => f.sd_params(),
            Event::Alert(a) => a.sd_params(),
        }
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
