//! Findings made to fit what the collector accepts, before they are spooled.
//!
//! The collector refuses a whole batch for one bad value (a control character in an exe
//! name, a 254-byte SNI, too many findings), and a refused batch must never hold up the
//! ones behind it. So every value is cleaned here: control characters become visible
//! escapes (`\x1b`), values over their limit are cut at a character boundary and end in
//! `…`, lists keep their first entries, and a window is split into batches that respect
//! the per-batch count and size. Each finding that was changed is reported, so the loss of
//! detail is never silent.
//!
//! The limits mirror the collector's ingest checks (`collector/src/server/agent_routes.rs`)
//! and its default `limits.findings_per_batch`; a test keeps the two honest.

use shadowai_api::Finding;

/// Most findings in one uploaded batch (the collector's default allows 10,000).
pub const MAX_FINDINGS_PER_BATCH: usize = 500;
/// Most JSON bytes in one batch (the collector inflates at most 32 MiB).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Largest count per finding the collector stores.
pub const MAX_COUNT: u64 = u32::MAX as u64;
/// Largest payload byte count per direction and finding the collector stores (1 TiB).
pub const MAX_BYTES: u64 = 1 << 40;
/// Latest time the collector accepts (Unix ms, end of year 9999).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Text field limits in bytes, as the collector checks them.
pub mod limit {
    pub const HOSTNAME: usize = 253;
    pub const SERVICE_ID: usize = 128;
    pub const NAME: usize = 256;
    pub const CATEGORY: usize = 64;
    pub const EXE: usize = 4096;
    pub const PROCESS_NAME: usize = 64;
    pub const LIST_ITEMS: usize = 64;
    pub const DNS_NAME: usize = 253;
    pub const IP: usize = 64;
    pub const PROTOCOLS: usize = 16;
    pub const PROTOCOL: usize = 16;
}

const ELLIPSIS: &str = "…";

/// `s` without control characters and at most `max` bytes; true when it changed.
pub fn clean(s: &mut String, max: usize) -> bool {
    let mut changed = false;
    if s.chars().any(char::is_control) {
        let mut out = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            if c.is_control() {
                let v = u32::from(c);
                if v <= 0xff {
                    out.push_str(&format!("\\x{v:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{v:x}}}"));
                }
            } else {
                out.push(c);
            }
        }
        *s = out;
        changed = true;
    }
    if s.len() > max {
        let keep = max.saturating_sub(ELLIPSIS.len());
        let mut cut = keep;
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        if max >= ELLIPSIS.len() {
            s.push_str(ELLIPSIS);
        }
        changed = true;
    }
    changed
}

fn clean_opt(s: &mut Option<String>, max: usize) -> bool {
    s.as_mut().is_some_and(|v| clean(v, max))
}

fn clean_list(items: &mut Vec<String>, max_items: usize, max_len: usize) -> bool {
    let mut changed = false;
    if items.len() > max_items {
        items.truncate(max_items);
        changed = true;
    }
    for s in items.iter_mut() {
        changed |= clean(s, max_len);
    }
    changed
}

/// Makes `f` acceptable to the collector; true when anything was cut or cleaned, and then
/// the finding says so itself (`truncated: true`), so the SOC knows a value is not whole.
pub fn sanitize(f: &mut Finding) -> bool {
    use limit::*;
    let mut t = false;
    t |= clean(&mut f.hostname, HOSTNAME);
    t |= clean(&mut f.service_id, SERVICE_ID);
    t |= clean(&mut f.service_name, NAME);
    t |= clean(&mut f.vendor, NAME);
    t |= clean(&mut f.category, CATEGORY);
    t |= clean(&mut f.rule, NAME);
    t |= clean(&mut f.user, NAME);
    t |= clean(&mut f.process.exe, EXE);
    t |= clean(&mut f.process.name, PROCESS_NAME);
    t |= clean_opt(&mut f.process.exe_sha256, NAME);
    t |= clean_opt(&mut f.process.container_id, NAME);
    t |= clean_opt(&mut f.process.systemd_unit, NAME);
    t |= clean_list(&mut f.evidence.dns_names, LIST_ITEMS, DNS_NAME);
    t |= clean_list(&mut f.evidence.sni, LIST_ITEMS, DNS_NAME);
    t |= clean_list(&mut f.evidence.ips, LIST_ITEMS, IP);
    t |= clean_list(&mut f.evidence.protocols, PROTOCOLS, PROTOCOL);
    if f.evidence.ports.len() > LIST_ITEMS {
        f.evidence.ports.truncate(LIST_ITEMS);
        t = true;
    }
    if f.risk_score > 100 {
        f.risk_score = 100;
        t = true;
    }
    if f.count > MAX_COUNT {
        f.count = MAX_COUNT;
        t = true;
    }
    for b in [&mut f.bytes_out, &mut f.bytes_in].into_iter().flatten() {
        if *b > MAX_BYTES {
            *b = MAX_BYTES;
            t = true;
        }
    }
    for v in [
        &mut f.window_start_ms,
        &mut f.window_end_ms,
        &mut f.first_seen_ms,
        &mut f.last_seen_ms,
    ] {
        let c = (*v).clamp(0, MAX_TIME_MS);
        t |= c != *v;
        *v = c;
    }
    if f.window_end_ms < f.window_start_ms {
        f.window_end_ms = f.window_start_ms;
        t = true;
    }
    if f.last_seen_ms < f.first_seen_ms {
        f.last_seen_ms = f.first_seen_ms;
        t = true;
    }
    if t {
        f.truncated = true;
    }
    t
}

/// Splits findings into batches of at most [`MAX_FINDINGS_PER_BATCH`] findings and about
/// [`MAX_BATCH_BYTES`] of JSON (a single finding is never split).
pub fn split(findings: Vec<Finding>) -> Vec<Vec<Finding>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0usize;
    for f in findings {
        let size = serde_json::to_vec(&f).map_or(MAX_BATCH_BYTES, |v| v.len() + 1);
        if !cur.is_empty()
            && (cur.len() >= MAX_FINDINGS_PER_BATCH || bytes + size > MAX_BATCH_BYTES)
        {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(f);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::run::findings::tests::finding;
    use proptest::prelude::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        let mut s = "/tmp/ev\u{1b}[31mil\n\u{85}".to_string();
        assert!(clean(&mut s, 4096));
        assert_eq!(s, "/tmp/ev\\x1b[31mil\\x0a\\x85");
        let mut ok = "/usr/bin/curl".to_string();
        assert!(!clean(&mut ok, 4096));
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary_with_a_marker() {
        let mut sni = format!("{}.example", "a".repeat(246));
        assert_eq!(sni.len(), 254);
        assert!(clean(&mut sni, limit::DNS_NAME));
        assert!(sni.len() <= limit::DNS_NAME && sni.ends_with('…'));
        let mut multi = "é".repeat(200);
        assert!(clean(&mut multi, 255));
        assert!(multi.len() <= 255);
    }

    #[test]
    fn a_window_splits_into_fitting_batches() {
        let fs: Vec<Finding> = (0..1234).map(|i| finding(&format!("f{i}"))).collect();
        let batches = split(fs);
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() <= MAX_FINDINGS_PER_BATCH));
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 1234);
    }

    /// What the collector checks, restated: no control characters, lengths, list sizes.
    fn acceptable(f: &Finding) -> bool {
        let text = |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
        let list = |l: &[String], n: usize, m: usize| l.len() <= n && l.iter().all(|s| text(s, m));
        text(&f.hostname, 253)
            && text(&f.user, 256)
            && text(&f.process.exe, 4096)
            && text(&f.process.name, 64)
            && list(&f.evidence.dns_names, 64, 253)
            && list(&f.evidence.sni, 64, 253)
            && list(&f.evidence.ips, 64, 64)
            && list(&f.evidence.protocols, 16, 16)
            && f.evidence.ports.len() <= 64
            && f.count <= MAX_COUNT
            && f.bytes_out.is_none_or(|b| b <= MAX_BYTES)
            && f.bytes_in.is_none_or(|b| b <= MAX_BYTES)
            && (0..=MAX_TIME_MS).contains(&f.window_start_ms)
            && f.window_start_ms <= f.window_end_ms
            && f.window_end_ms <= MAX_TIME_MS
            && (0..=MAX_TIME_MS).contains(&f.first_seen_ms)
            && f.first_seen_ms <= f.last_seen_ms
            && f.last_seen_ms <= MAX_TIME_MS
    }

    proptest! {
        #[test]
        fn any_finding_becomes_acceptable(
            exe in "\\PC{0,5000}|[\\x00-\\x1f\\x7f-\\u{9f}a-z/]{0,300}",
            name in ".{0,100}",
            user in ".{0,300}",
            snis in proptest::collection::vec(".{0,300}", 0..80),
            ports in proptest::collection::vec(any::<u16>(), 0..100),
            count in any::<u64>(),
            bytes in proptest::array::uniform2(any::<Option<u64>>()),
            times in proptest::array::uniform4(any::<i64>()),
        ) {
            let mut f = finding("x");
            f.process.exe = exe;
            f.process.name = name;
            f.user = user;
            f.evidence.sni = snis;
            f.evidence.ports = ports;
            f.count = count;
            [f.bytes_out, f.bytes_in] = bytes;
            [f.window_start_ms, f.window_end_ms, f.first_seen_ms, f.last_seen_ms] = times;
            let before = f.clone();
            let changed = sanitize(&mut f);
            prop_assert!(acceptable(&f), "{f:?}");
            prop_assert_eq!(changed, f != before);
            prop_assert_eq!(f.truncated, changed, "a changed finding says so, an unchanged one does not");
        }
    }
}
