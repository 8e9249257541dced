//! CSV export of findings (RFC 4180 quoting, spreadsheet formula injection neutralised).

use shadowai_api::Finding;

pub const CSV_HEADER: &str = "id,host_id,hostname,window_start_ms,window_end_ms,service_id,service_name,vendor,category,risk_score,verdict,action,rule,user,uid,exe,process_name,exe_sha256,container_id,count,first_seen_ms,last_seen_ms,sni,dns_names,ips,policy_version,layer,bytes_out,bytes_in,naming_source,naming_confidence,session_id,session_kind,flags,truncated";

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

pub fn to_csv(findings: &[Finding]) -> String {
    let mut out = String::with_capacity(256 * (findings.len() + 1));
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    out.push_str(&csv_rows(findings));
    out
}

/// The rows of `findings`, without the header (exports stream page by page).
pub fn csv_rows(findings: &[Finding]) -> String {
    let mut out = String::with_capacity(256 * findings.len());
    for f in findings {
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
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cell;

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
