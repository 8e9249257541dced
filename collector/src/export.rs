//! CSV export of findings (RFC 4180 quoting, spreadsheet formula injection neutralised).

use shadowai_api::{Finding, ServiceRisk};

use crate::risk::RiskBook;

pub const CSV_HEADER: &str = "id,host_id,hostname,window_start_ms,window_end_ms,service_id,service_name,vendor,category,risk_score,verdict,action,rule,user,uid,exe,process_name,exe_sha256,container_id,count,first_seen_ms,last_seen_ms,sni,dns_names,ips,policy_version,layer,bytes_out,bytes_in,naming_source,naming_confidence,session_id,session_kind,flags,truncated,risk_level,risk_plan,risk_factors,risk_details";

/// One CSV cell: quoted when needed; a leading `= + - @` (or tab/CR) gets a `'` so
/// spreadsheets do not evaluate it.
pub fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn verdict(f: &Finding) -> String {
    match serde_json::to_value(f.verdict) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The wire name of a unit enum (`dns_answer`, `high`).
fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

pub fn to_csv(findings: &[Finding], risk: Option<&RiskBook>) -> String {
    let mut out = String::with_capacity(256 * (findings.len() + 1));
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    out.push_str(&csv_rows(findings, risk));
    out
}

/// `factor=value:+points` joined by `;` (`training=yes:+35;retention=extended:+20;…`).
fn factor_cells(risk: Option<&ServiceRisk>, score: u8) -> (String, String) {
    match risk.and_then(|r| r.explain(score)) {
        None => (String::new(), String::new()),
        Some(p) => (
            p.plan.clone().unwrap_or_default(),
            p.factors
                .iter()
                .map(|x| {
                    let v = if x.value.is_empty() { "none" } else { &x.value };
                    format!("{}={v}:+{}", x.factor, x.points)
                })
                .collect::<Vec<_>>()
                .join(";"),
        ),
    }
}

/// The rows of `findings`, without the header (exports stream page by page). With the
/// collector catalogue's risk book, each row explains its score (`risk_plan`, `risk_factors`,
/// `risk_details`); without it, `risk_details` says the catalogue is not loaded.
pub fn csv_rows(findings: &[Finding], book: Option<&RiskBook>) -> String {
    let mut out = String::with_capacity(256 * findings.len());
    for f in findings {
        let risk = book.and_then(|b| b.get(&f.service_id)).map(|r| &**r);
        let (plan, factors) = factor_cells(risk, f.risk_score);
        let details = match book {
            Some(_) => shadowai_api::risk_details(f.risk_score, risk),
            None => format!(
                "{}/100 ({}); the collector's catalogue is not loaded, so no factors",
                f.risk_score,
                shadowai_api::risk_band(f.risk_score)
            ),
        };
        let row = [
            cell(&f.id),
            cell(&f.host_id),
            cell(&f.hostname),
            f.window_start_ms.to_string(),
            f.window_end_ms.to_string(),
            cell(&f.service_id),
            cell(&f.service_name),
            cell(&f.vendor),
            cell(&f.category),
            f.risk_score.to_string(),
            verdict(f),
            f.action.as_str().to_owned(),
            cell(&f.rule),
            cell(&f.user),
            f.uid.to_string(),
            cell(&f.process.exe),
            cell(&f.process.name),
            cell(f.process.exe_sha256.as_deref().unwrap_or("")),
            cell(f.process.container_id.as_deref().unwrap_or("")),
            f.count.to_string(),
            f.first_seen_ms.to_string(),
            f.last_seen_ms.to_string(),
            cell(&f.evidence.sni.join(";")),
            cell(&f.evidence.dns_names.join(";")),
            cell(&f.evidence.ips.join(";")),
            cell(f.policy_version.as_deref().unwrap_or("")),
            f.layer.map_or("", |l| l.as_str()).to_owned(),
            f.bytes_out.map_or(String::new(), |b| b.to_string()),
            f.bytes_in.map_or(String::new(), |b| b.to_string()),
            f.naming.map_or(String::new(), |n| snake(&n.source)),
            f.naming.map_or(String::new(), |n| snake(&n.confidence)),
            cell(f.session.as_ref().map_or("", |s| s.id.as_str())),
            cell(f.session.as_ref().map_or("", |s| s.kind.as_str())),
            f.flags
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            f.truncated.to_string(),
            shadowai_api::risk_band(f.risk_score).to_owned(),
            cell(&plan),
            cell(&factors),
            cell(&details),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]
mod tests {
    use super::*;
    use shadowai_api::{Action, Evidence, PlanRisk, ProcessRef, RiskFactor, Verdict};

    fn finding(service: &str, score: u8) -> Finding {
        Finding {
            id: "f1".into(),
            host_id: "h1".into(),
            hostname: "web-01".into(),
            window_start_ms: 1,
            window_end_ms: 2,
            service_id: service.into(),
            service_name: "DeepSeek".into(),
            vendor: "DeepSeek".into(),
            category: "chat_assistant".into(),
            risk_score: score,
            verdict: Verdict::Unsanctioned,
            action: Action::WouldBlock,
            rule: "policy:no-cn".into(),
            process: ProcessRef {
                exe: "/usr/bin/python3".into(),
                name: "python3".into(),
                ..Default::default()
            },
            user: "alice".into(),
            uid: 1000,
            count: 3,
            first_seen_ms: 1,
            last_seen_ms: 2,
            evidence: Evidence::default(),
            layer: None,
            policy_version: Some("7".into()),
            bytes_out: None,
            bytes_in: None,
            naming: None,
            session: None,
            flags: Vec::new(),
            truncated: false,
        }
    }

    fn book() -> RiskBook {
        let f = |factor: &str, value: &str, points, max| RiskFactor {
            factor: factor.into(),
            value: value.into(),
            points,
            max,
        };
        RiskBook::from_risks([ServiceRisk {
            service_id: "deepseek".into(),
            service_name: "DeepSeek".into(),
            plans: vec![PlanRisk {
                plan: Some("free".into()),
                score: 80,
                band: "severe".into(),
                factors: vec![
                    f("training", "yes", 35, 35),
                    f("retention", "unknown", 0, 20),
                    f("jurisdiction", "CN", 25, 25),
                    f("enterprise_controls", "", 15, 15),
                    f("certifications", "", 5, 5),
                ],
            }],
            evidence: vec![],
        }])
    }

    /// The row's last cells, golden: risk band, plan, factors as data, the sentence; the
    /// deciding rule and the policy version stay in their columns.
    #[test]
    fn csv_rows_explain_the_risk_score() {
        let header: Vec<&str> = CSV_HEADER.split(',').collect();
        let csv = to_csv(&[finding("deepseek", 80)], Some(&book()));
        let row = csv.lines().nth(1).unwrap();
        assert!(row.starts_with("f1,h1,web-01,1,2,deepseek,DeepSeek,DeepSeek,chat_assistant,80,unsanctioned,would_block,policy:no-cn,"), "{row}");
        assert!(row.ends_with(
            ",severe,free,training=yes:+35;retention=unknown:+0;jurisdiction=CN:+25;enterprise_controls=none:+15;certifications=none:+5,\
             \"80/100 (severe): training yes +35, retention unknown +0, jurisdiction CN +25, enterprise controls none +15, certifications none +5 (free plan)\""
        ), "{row}");
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[col("policy_version")], "7");
        assert_eq!(cells[col("rule")], "policy:no-cn");
        // A score no plan gives, a service the catalogue lacks, no catalogue at all.
        let other = to_csv(&[finding("deepseek", 60)], Some(&book()));
        assert!(other.lines().nth(1).unwrap().ends_with(",high,,,\"60/100 (high); the collector's catalogue scores deepseek 80 now, so its factors do not explain this score\""), "{other}");
        let unknown = to_csv(&[finding("nope", 10)], Some(&book()));
        assert!(
            unknown.contains("not in the collector's catalogue"),
            "{unknown}"
        );
        let none = to_csv(&[finding("deepseek", 80)], None);
        assert!(none.contains("catalogue is not loaded"), "{none}");
        for out in [csv, other, unknown, none] {
            let row = out.lines().nth(1).unwrap();
            // Quoted cells hold commas: count the header's columns against a CSV parse.
            let mut n = 1;
            let mut quoted = false;
            for c in row.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => n += 1,
                    _ => {}
                }
            }
            assert_eq!(n, header.len(), "{row}");
        }
    }

    #[test]
    fn cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(cell("-1+2"), "'-1+2");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
    }
}
