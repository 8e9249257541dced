//! Findings as OCSF Detection Finding (class 2004) objects, for exports and SIEM forwarding.

use serde_json::{Value, json};
use shadowai_rules::Verdict;

use crate::{Action, Finding};

/// OCSF schema version the objects follow.
pub const OCSF_VERSION: &str = "1.4.0";

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

/// Maps one finding to an OCSF Detection Finding (`class_uid` 2004, activity Create).
pub fn finding_to_ocsf(f: &Finding) -> Value {
    let (severity_id, severity_name) = severity(f);
    let (action_id, action, disposition_id, disposition) = match f.action {
        Action::Allowed => (1, "Allowed", 1, "Allowed"),
        Action::Blocked => (2, "Denied", 2, "Blocked"),
    };
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
            "profiles": ["host", "security_control"],
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
        "evidences": [{
            "query": {"hostname": f.evidence.dns_names.first()},
            "data": {
                "dns_names": f.evidence.dns_names,
                "sni": f.evidence.sni,
                "ips": f.evidence.ips,
                "ports": f.evidence.ports,
                "protocols": f.evidence.protocols,
            },
        }],
        "risk_score": f.risk_score,
        "unmapped": {
            "shadowai": {
                "verdict": verdict_str(f.verdict),
                "service_id": f.service_id,
                "ai_provider": f.vendor,
            }
        },
    })
}
