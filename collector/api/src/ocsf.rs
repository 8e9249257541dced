//! Findings as OCSF Detection Finding (class 2004) objects, for exports and SIEM forwarding.

use serde_json::{Value, json};
use shadowai_rules::Verdict;

use crate::{Action, Finding};

/// OCSF schema version the objects follow.
pub const OCSF_VERSION: &str = "1.8.0";

/// OCSF severity_id: 1 informational, 2 low, 3 medium, 4 high.
fn severity(f: &Finding) -> (u8, &'static str) {
    match (f.verdict, f.risk_score) {
        (Verdict::Sanctioned, _) => (1, "Informational"),
        (Verdict::Tolerated, _) => (2, "Low"),
        (Verdict::Unsanctioned, r) if r >= 70 => (4, "High"),
        (Verdict::Unsanctioned, _) => (3, "Medium"),
        (Verdict::Blocked, _) => (3, "Medium"),
    }
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Sanctioned => "sanctioned",
        Verdict::Tolerated => "tolerated",
        Verdict::Unsanctioned => "unsanctioned",
        Verdict::Blocked => "blocked",
    }
}

/// Names and addresses seen, as an OCSF evidence artifact (absent parts left out).
fn evidence(f: &Finding) -> Value {
    let mut dst = serde_json::Map::new();
    if let Some(h) = f.evidence.sni.first().or(f.evidence.dns_names.first()) {
        dst.insert("hostname".into(), json!(h));
    }
    if let Some(ip) = f.evidence.ips.first() {
        dst.insert("ip".into(), json!(ip));
    }
    if let Some(port) = f.evidence.ports.first() {
        dst.insert("port".into(), json!(port));
    }
    let mut ev = json!({
        "data": {
            "dns_names": f.evidence.dns_names,
            "sni": f.evidence.sni,
            "ips": f.evidence.ips,
            "ports": f.evidence.ports,
            "protocols": f.evidence.protocols,
        },
    });
    if let Some(obj) = ev.as_object_mut() {
        if !dst.is_empty() {
            obj.insert("dst_endpoint".into(), Value::Object(dst));
        }
        if let Some(q) = f.evidence.dns_names.first() {
            obj.insert("query".into(), json!({"hostname": q}));
        }
    }
    ev
}

/// OCSF `action_id`, `action`, `disposition_id`, `disposition` of what happened to a use.
fn action_ids(a: Action) -> (u8, &'static str, u8, &'static str) {
    match a {
        Action::Allowed => (1, "Allowed", 1, "Allowed"),
        // Let through, but enforcement would have refused it: detected, not stopped.
        Action::WouldBlock => (1, "Allowed", 15, "Detected"),
        Action::Blocked => (2, "Denied", 2, "Blocked"),
    }
}

/// OCSF `risk_level_id` and `risk_level` of a score, from the catalogue's bands: low → 1 Low,
/// moderate → 2 Medium, high → 3 High, severe → 4 Critical.
pub fn risk_level(score: u8) -> (u8, &'static str) {
    match crate::risk_band(score) {
        "low" => (1, "Low"),
        "moderate" => (2, "Medium"),
        "high" => (3, "High"),
        _ => (4, "Critical"),
    }
}

/// [`finding_to_ocsf`] with the collector catalogue's risk of the service: `risk_details`
/// explains the score factor by factor, and `unmapped.shadowai.risk` carries the plan and its
/// factors as data (none: not in the catalogue, or no plan gives the finding's score — then
/// `risk_details` says so).
pub fn finding_to_ocsf_with_risk(f: &Finding, risk: Option<&crate::ServiceRisk>) -> Value {
    let mut v = finding_to_ocsf(f);
    v["risk_details"] = json!(crate::risk_details(f.risk_score, risk));
    if let Some(p) = risk.and_then(|r| r.explain(f.risk_score)) {
        v["unmapped"]["shadowai"]["risk"] = json!({
            "plan": p.plan,
            "band": p.band,
            "factors": p.factors,
        });
    }
    v
}

/// Maps one finding to an OCSF Detection Finding (`class_uid` 2004, activity Create).
pub fn finding_to_ocsf(f: &Finding) -> Value {
    let (severity_id, severity_name) = severity(f);
    let (action_id, action, disposition_id, disposition) = action_ids(f.action);
    let mut hashes = Vec::new();
    if let Some(h) = &f.process.exe_sha256 {
        hashes.push(json!({"algorithm_id": 3, "algorithm": "SHA-256", "value": h}));
    }
    let mut process = json!({
        "name": f.process.name,
        "file": {"path": f.process.exe, "name": f.process.exe.rsplit('/').next().unwrap_or(""), "type_id": 1, "hashes": hashes},
        "user": {"name": f.user, "uid": f.uid.to_string()},
    });
    if let (Some(c), Some(obj)) = (&f.process.container_id, process.as_object_mut()) {
        obj.insert("container".into(), json!({"uid": c}));
    }
    let mut v = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": 1,
        "status": "New",
        "time": f.last_seen_ms,
        "start_time": f.window_start_ms,
        "end_time": f.window_end_ms,
        "count": f.count,
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f.id,
            "product": {"name": "shadowai", "vendor_name": "shadowai"},
            "profiles": ["host", "security_control", "ai_operation"],
        },
        "finding_info": {
            "uid": f.id,
            "title": format!("{} AI service use: {}", verdict_str(f.verdict), f.service_name),
            "types": ["shadow_ai", f.category],
            "first_seen_time": f.first_seen_ms,
            "last_seen_time": f.last_seen_ms,
            "analytic": {"name": f.rule, "type_id": 1, "type": "Rule"},
        },
        "device": {"hostname": f.hostname, "uid": f.host_id, "type_id": 1, "type": "Server"},
        "actor": {"process": process, "user": {"name": f.user, "uid": f.uid.to_string()}},
        "resources": [{"uid": f.service_id, "name": f.service_name, "type": "ai_service",
                       "data": {"vendor": f.vendor, "category": f.category}}],
        "ai_model": {"name": f.service_name, "uid": f.service_id, "ai_provider": f.vendor},
        "evidences": [evidence(f)],
        "risk_score": f.risk_score,
        "risk_level_id": risk_level(f.risk_score).0,
        "risk_level": risk_level(f.risk_score).1,
        "unmapped": {
            "shadowai": unmapped(f),
        },
    });
    naming_to_ocsf(f, &mut v);
    v
}

/// How sure the agent is of the service name: OCSF `confidence_id` (1 Low, 2 Medium,
/// 3 High) plus the name's source under `unmapped.shadowai.naming_source`.
fn naming_to_ocsf(f: &Finding, v: &mut Value) {
    let Some(n) = f.naming else { return };
    let (id, name) = match n.confidence {
        crate::Confidence::Low => (1, "Low"),
        crate::Confidence::Medium => (2, "Medium"),
        crate::Confidence::High => (3, "High"),
    };
    v["confidence_id"] = json!(id);
    v["confidence"] = json!(name);
    v["unmapped"]["shadowai"]["naming_source"] = json!(n.source);
}

/// A first-use alert as an OCSF Detection Finding (`class_uid` 2004, activity Create):
/// `finding_info.types` carries `shadow_ai_first_use`, the reasons and the drill-down link
/// (relative to the collector's web UI) are in `unmapped.shadowai`.
pub fn alert_to_ocsf(a: &crate::Alert) -> Value {
    let severity = match a.verdict {
        Verdict::Blocked => (3, "Medium"),
        _ if a.risk_score >= 70 => (4, "High"),
        _ => (3, "Medium"),
    };
    let (action_id, action, disposition_id, disposition) = action_ids(a.action);
    let reasons: Vec<&str> = a.reasons.iter().map(|r| r.as_str()).collect();
    let uid = format!("alert-{}", a.id);
    json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity.0,
        "severity": severity.1,
        "status_id": 1,
        "status": "New",
        "time": a.created_ms,
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": uid,
            "product": {"name": "shadowai", "vendor_name": "shadowai"},
            "profiles": ["host", "ai_operation"],
        },
        "finding_info": {
            "uid": uid,
            "title": format!("First {} use of {}", verdict_str(a.verdict), a.service_name),
            "types": ["shadow_ai_first_use", a.category],
            "first_seen_time": a.first_seen_ms,
            "related_events": [{"uid": a.finding_id}],
        },
        "device": {"hostname": a.hostname, "uid": a.host_id, "type_id": 1, "type": "Server"},
        "actor": {"process": {"file": {"path": a.exe}}, "user": {"name": a.user}},
        "resources": [{"uid": a.service_id, "name": a.service_name, "type": "ai_service"}],
        "risk_score": a.risk_score,
        "risk_level_id": risk_level(a.risk_score).0,
        "risk_level": risk_level(a.risk_score).1,
        "is_alert": true,
        "unmapped": {"shadowai": {
            "verdict": verdict_str(a.verdict),
            "action": a.action.as_str(),
            "reasons": reasons,
            "service_id": a.service_id,
            "link": a.link,
        }},
    })
}

/// A security notice (host identity conflict, alerts suppressed) as an OCSF Detection Finding:
/// `finding_info.types` carries `shadow_ai_notice` and the kind; `is_alert` is true.
pub fn notice_to_ocsf(n: &crate::Notice) -> Value {
    let uid = format!(
        "notice-{}-{}-{}",
        n.kind.as_str(),
        n.host_id,
        n.window_start_ms
    );
    let (severity_id, severity) = match n.kind {
        crate::NoticeKind::HostIdentityConflict => (4, "High"),
        crate::NoticeKind::AlertsSuppressed => (3, "Medium"),
    };
    json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "time": n.created_ms,
        "start_time": n.window_start_ms,
        "end_time": n.window_end_ms,
        "count": n.count,
        "message": n.summary,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": uid,
            "product": {"name": "shadowai", "vendor_name": "shadowai"},
            "profiles": ["host"],
        },
        "finding_info": {
            "uid": uid,
            "title": n.summary,
            "types": ["shadow_ai_notice", n.kind.as_str()],
        },
        "device": {"uid": n.host_id, "type_id": 1, "type": "Server"},
        "unmapped": {"shadowai": {
            "kind": n.kind.as_str(),
            "host_id": n.host_id,
            "count": n.count,
            "peer": n.peer,
            "via": n.via,
            "link": n.link,
        }},
    })
}

/// The audit chain head as an OCSF Event Log Activity (`class_uid` 1008), activity Other
/// (`Checkpoint`): the sequence number and hash are in `unmapped.shadowai.audit_head`, so the
/// SIEM holds an anchor the collector's database cannot rewrite.
pub fn audit_head_to_ocsf(h: &crate::AuditHead) -> Value {
    json!({
        "class_uid": 1008,
        "class_name": "Event Log Activity",
        "category_uid": 1,
        "category_name": "System Activity",
        "activity_id": 99,
        "activity_name": "Checkpoint",
        "type_uid": 100899,
        "type_name": "Event Log Activity: Other",
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "time": h.observed_ms,
        "log_name": "shadowai audit chain",
        "log_provider": "shadowai-collector",
        "message": format!("audit chain head {}:{}", h.seq, h.hash),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": format!("audit-head-{}-{}", h.seq, h.observed_ms),
            "product": {"name": "shadowai", "vendor_name": "shadowai"},
        },
        "device": {"name": h.collector, "type_id": 1, "type": "Server"},
        "unmapped": {"shadowai": {"audit_head": {
            "seq": h.seq,
            "hash": h.hash,
            "entry_time": h.entry_ms,
            "reason": h.reason,
            "expect_head": format!("{}:{}", h.seq, h.hash),
        }}},
    })
}

/// Everything of a finding OCSF has no attribute for: why (rule, policy version), what
/// happened (action apart from the verdict, the enforcement layer), how much (bytes), how sure
/// (naming), which agent session, risk flags.
fn unmapped(f: &Finding) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("verdict".into(), json!(verdict_str(f.verdict)));
    m.insert("action".into(), json!(f.action.as_str()));
    m.insert("service_id".into(), json!(f.service_id));
    m.insert("ai_provider".into(), json!(f.vendor));
    m.insert("rule".into(), json!(f.rule));
    m.insert("policy_version".into(), json!(f.policy_version));
    if let Some(l) = f.layer {
        m.insert("layer".into(), json!(l.as_str()));
    }
    if let Some(b) = f.bytes_out {
        m.insert("bytes_out".into(), json!(b));
    }
    if let Some(b) = f.bytes_in {
        m.insert("bytes_in".into(), json!(b));
    }
    if let Some(n) = &f.naming {
        m.insert("naming".into(), json!(n));
    }
    if let Some(s) = &f.session {
        m.insert("session".into(), json!(s));
    }
    if !f.flags.is_empty() {
        m.insert(
            "flags".into(),
            json!(f.flags.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
        );
    }
    if f.truncated {
        m.insert("truncated".into(), json!(true));
    }
    Value::Object(m)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]
mod tests {
    use super::*;
    use crate::{Evidence, ProcessRef};

    fn f(action: Action, verdict: Verdict, evidence: Evidence) -> Finding {
        Finding {
            layer: None,
            policy_version: None,
            bytes_out: None,
            bytes_in: None,
            naming: None,
            session: None,
            flags: Vec::new(),
            truncated: false,
            id: "f1".into(),
            host_id: "h1".into(),
            hostname: "web-01".into(),
            window_start_ms: 1,
            window_end_ms: 2,
            service_id: "deepseek-chat".into(),
            service_name: "DeepSeek".into(),
            vendor: "DeepSeek".into(),
            category: "chat_assistant".into(),
            risk_score: 80,
            verdict,
            action,
            rule: "policy:block-deepseek".into(),
            process: ProcessRef {
                exe: "/usr/bin/python3.11".into(),
                name: "python3".into(),
                exe_sha256: Some("ab".repeat(32)),
                container_id: Some("c0ffee".into()),
                systemd_unit: None,
            },
            user: "alice".into(),
            uid: 1000,
            count: 7,
            first_seen_ms: 1,
            last_seen_ms: 2,
            evidence,
        }
    }

    #[test]
    fn detection_finding_shape() {
        let ev = Evidence {
            dns_names: vec!["chat.deepseek.com".into()],
            sni: vec!["chat.deepseek.com".into()],
            ips: vec!["192.0.2.9".into()],
            ports: vec![443],
            protocols: vec!["tls".into()],
        };
        let o = finding_to_ocsf(&f(Action::Blocked, Verdict::Blocked, ev));
        assert_eq!(
            (o["class_uid"].as_u64(), o["type_uid"].as_u64()),
            (Some(2004), Some(200401))
        );
        assert_eq!(o["metadata"]["version"], OCSF_VERSION);
        assert_eq!(o["disposition"], "Blocked");
        assert_eq!(o["action_id"], 2);
        assert_eq!(o["actor"]["process"]["file"]["name"], "python3.11");
        assert_eq!(
            o["actor"]["process"]["file"]["hashes"][0]["algorithm_id"],
            3
        );
        assert_eq!(o["actor"]["process"]["container"]["uid"], "c0ffee");
        assert_eq!(o["ai_model"]["ai_provider"], "DeepSeek");
        assert_eq!(
            o["evidences"][0]["dst_endpoint"]["hostname"],
            "chat.deepseek.com"
        );
        assert_eq!(o["evidences"][0]["dst_endpoint"]["port"], 443);
        assert_eq!(o["severity_id"], 3);
        let u = finding_to_ocsf(&f(
            Action::Allowed,
            Verdict::Unsanctioned,
            Evidence::default(),
        ));
        assert_eq!(
            (u["severity_id"].as_u64(), u["disposition_id"].as_u64()),
            (Some(4), Some(1))
        );
        assert!(u["evidences"][0].get("dst_endpoint").is_none());
        let mut w = f(Action::WouldBlock, Verdict::Blocked, Evidence::default());
        w.layer = Some(crate::Layer::Sni);
        w.policy_version = Some("1.4.0".into());
        w.bytes_out = Some(1234);
        w.flags = vec![crate::Flag::LargeUpload];
        let o = finding_to_ocsf(&w);
        assert_eq!(
            (o["action_id"].as_u64(), o["disposition_id"].as_u64()),
            (Some(1), Some(15))
        );
        let x = &o["unmapped"]["shadowai"];
        assert_eq!(
            (x["action"].as_str(), x["verdict"].as_str()),
            (Some("would_block"), Some("blocked"))
        );
        assert_eq!(
            (x["layer"].as_str(), x["policy_version"].as_str()),
            (Some("sni"), Some("1.4.0"))
        );
        assert_eq!(
            (x["bytes_out"].as_u64(), x["rule"].as_str()),
            (Some(1234), Some("policy:block-deepseek"))
        );
        assert_eq!(x["flags"][0], "large_upload");
        assert!(u["evidences"][0].get("query").is_none());
    }

    #[test]
    fn risk_level_details_and_factors() {
        let risk = crate::ServiceRisk {
            service_id: "deepseek-chat".into(),
            service_name: "DeepSeek".into(),
            plans: vec![crate::PlanRisk {
                plan: None,
                score: 80,
                band: "severe".into(),
                factors: vec![
                    crate::RiskFactor {
                        factor: "training".into(),
                        value: "yes".into(),
                        points: 35,
                        max: 35,
                    },
                    crate::RiskFactor {
                        factor: "jurisdiction".into(),
                        value: "CN".into(),
                        points: 45,
                        max: 45,
                    },
                ],
            }],
            evidence: vec![],
        };
        let x = f(Action::Allowed, Verdict::Unsanctioned, Evidence::default());
        let plain = finding_to_ocsf(&x);
        assert_eq!(
            (
                plain["risk_score"].as_u64(),
                plain["risk_level_id"].as_u64()
            ),
            (Some(80), Some(4))
        );
        assert_eq!(plain["risk_level"], "Critical");
        assert!(plain.get("risk_details").is_none());
        let v = finding_to_ocsf_with_risk(&x, Some(&risk));
        assert_eq!(
            v["risk_details"],
            "80/100 (severe): training yes +35, jurisdiction CN +45"
        );
        let u = &v["unmapped"]["shadowai"];
        assert_eq!(u["risk"]["factors"][1]["factor"], "jurisdiction");
        assert_eq!(u["risk"]["factors"][1]["points"], 45);
        assert_eq!(
            (
                u["rule"].as_str(),
                u["verdict"].as_str(),
                u["action"].as_str()
            ),
            (
                Some("policy:block-deepseek"),
                Some("unsanctioned"),
                Some("allowed")
            )
        );
        let mut y = x.clone();
        y.risk_score = 30;
        let v = finding_to_ocsf_with_risk(&y, Some(&risk));
        assert_eq!(
            (v["risk_level_id"].as_u64(), v["risk_level"].as_str()),
            (Some(2), Some("Medium"))
        );
        assert!(v["unmapped"]["shadowai"].get("risk").is_none());
        assert!(
            v["risk_details"]
                .as_str()
                .unwrap()
                .contains("scores deepseek-chat 80 now")
        );
        let v = finding_to_ocsf_with_risk(&y, None);
        assert!(
            v["risk_details"]
                .as_str()
                .unwrap()
                .contains("not in the collector's catalogue")
        );
        for (score, id) in [
            (0, 1),
            (24, 1),
            (25, 2),
            (50, 3),
            (74, 3),
            (75, 4),
            (100, 4),
        ] {
            assert_eq!(risk_level(score).0, id, "{score}");
        }
    }

    #[test]
    fn notices_and_audit_heads_render() {
        let n = crate::Notice {
            kind: crate::NoticeKind::HostIdentityConflict,
            created_ms: 5,
            host_id: "db-01".into(),
            count: 3,
            window_start_ms: 0,
            window_end_ms: 3_600_000,
            peer: "192.0.2.7:5000".into(),
            via: "enroll".into(),
            summary: "conflict".into(),
            link: "#/fleet".into(),
        };
        let o = notice_to_ocsf(&n);
        assert_eq!(
            (o["class_uid"].as_u64(), o["severity_id"].as_u64()),
            (Some(2004), Some(4))
        );
        assert_eq!(o["finding_info"]["types"][1], "host_identity_conflict");
        assert_eq!(o["unmapped"]["shadowai"]["peer"], "192.0.2.7:5000");
        let h = crate::AuditHead {
            seq: 42,
            hash: "ab".repeat(32),
            entry_ms: 1,
            observed_ms: 2,
            collector: "https://c.example/ui".into(),
            reason: "changed".into(),
        };
        let o = audit_head_to_ocsf(&h);
        assert_eq!(
            (o["class_uid"].as_u64(), o["type_uid"].as_u64()),
            (Some(1008), Some(100899))
        );
        assert_eq!(
            o["unmapped"]["shadowai"]["audit_head"]["expect_head"],
            format!("42:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn naming_confidence_maps_to_ocsf_confidence() {
        let mut x = f(Action::Allowed, Verdict::Unsanctioned, Evidence::default());
        assert!(finding_to_ocsf(&x).get("confidence_id").is_none());
        x.naming = Some(crate::Naming {
            source: crate::NameSource::Namespace,
            confidence: crate::Confidence::Low,
        });
        let v = finding_to_ocsf(&x);
        assert_eq!(v["confidence_id"], 1);
        assert_eq!(v["confidence"], "Low");
        assert_eq!(v["unmapped"]["shadowai"]["naming_source"], "namespace");
    }
}
