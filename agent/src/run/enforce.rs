//! Enforce mode: what the kernel refuses, derived from the rules. For every catalogue
//! service whose verdict on this host is `blocked` (policy mode `enforce`), its domains and
//! hosts go into the kernel's DNS query filter (a query for the name or any name below it
//! fails with EPERM before it leaves the host) and its published CIDRs into the connect
//! filter (connect()/sendmsg() fail with EPERM). Precise to the service: nothing outside
//! the catalogue entry is touched, and shared infrastructure is never in an entry.
//!
//! Not enforced in the kernel: rules scoped to users or unix groups (the filters are
//! per host), and connections to addresses the host resolved before the block (no
//! name in the packet; a later version marks such sockets from the ClientHello).

use std::net::IpAddr;

use shadowai_rules::Engine;
use shadowai_rules::Verdict;
use shadowai_rules::engine::Query;
use shadowai_rules::policy::Mode;

pub use crate::sensor::blocklist::{Blocklist, name_key};

fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.trim().parse().ok()?;
    let len: u32 = len.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// What to block on a host with `host_tags`, from the engine's catalogue and policy.
pub fn blocklist(engine: &Engine, host_tags: &[&str]) -> Blocklist {
    let mut out = Blocklist::default();
    if engine.policy().mode != Mode::Enforce {
        return out;
    }
    // Blocks that depend on who connects are decided per process in userspace (from the
    // SNI), so the kernel must report every ClientHello at once.
    out.scoped = engine
        .policy()
        .rules
        .iter()
        .chain(&engine.policy().exceptions)
        .any(|r| !r.users.is_empty() || !r.unix_groups.is_empty() || !r.flags.is_empty());
    for svc in &engine.catalogue().services {
        let probe = svc.hosts.first().or(svc.domains.first());
        let q = Query {
            name: probe.map(String::as_str),
            ip: if probe.is_none() {
                svc.cidrs
                    .first()
                    .and_then(|c| parse_cidr(c))
                    .map(|(ip, _)| ip)
            } else {
                None
            },
            host_tags,
            ..Query::default()
        };
        let Some(d) = engine.classify(&q) else {
            continue;
        };
        if d.service.id != svc.id || d.verdict != Verdict::Blocked {
            continue;
        }
        out.services.push(svc.id.clone());
        let globs = svc.sni.iter().filter_map(|p| p.strip_prefix("*."));
        for n in svc
            .domains
            .iter()
            .map(String::as_str)
            .chain(svc.hosts.iter().map(String::as_str))
            .chain(globs)
        {
            match name_key(n) {
                Some(k) => out.names.push(k),
                None => {
                    tracing::warn!(service = %svc.id, name = %n, "name not enforceable in the kernel (invalid or over 128 bytes)")
                }
            }
        }
        for c in &svc.cidrs {
            match parse_cidr(c) {
                Some((IpAddr::V4(a), l)) => out.nets4.push((a.octets(), l)),
                Some((IpAddr::V6(a), l)) => out.nets6.push((a.octets(), l)),
                None => tracing::warn!(service = %svc.id, cidr = %c, "unparsable CIDR skipped"),
            }
        }
    }
    out.names.sort_unstable();
    out.names.dedup();
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    /// The kernel's lookup, modelled: the question name in wire form, reversed and
    /// lower-cased, matched against stored keys by longest prefix.
    fn kernel_blocks(qname: &str, stored: &[([u8; shadowai_common::QNAME_MAX], u32)]) -> bool {
        let (q, qbits) = name_key(qname).unwrap();
        stored.iter().any(|(k, bits)| {
            let n = (*bits / 8) as usize;
            *bits <= qbits && k[..n] == q[..n]
        })
    }

    #[test]
    fn suffixes_match_at_label_boundaries_only() {
        let stored = vec![name_key("deepseek.com").unwrap()];
        assert!(kernel_blocks("api.deepseek.com", &stored));
        assert!(
            kernel_blocks("API.DeepSeek.COM.", &stored),
            "case and root dot"
        );
        assert!(kernel_blocks("deepseek.com", &stored));
        assert!(!kernel_blocks("notdeepseek.com", &stored));
        assert!(!kernel_blocks("deepseek.com.evil.example", &stored));
        assert!(!kernel_blocks("com", &stored));
        assert_eq!(name_key(""), None);
        assert_eq!(name_key("a..b"), None);
        assert_eq!(name_key(&"a".repeat(64)), None, "label over 63 bytes");
        assert_eq!(
            name_key(&["abcdefghij"; 12].join(".")),
            None,
            "over 128 wire bytes"
        );
    }

    #[test]
    fn cidrs_parse_or_are_refused() {
        assert_eq!(
            parse_cidr("160.79.104.0/23"),
            Some(("160.79.104.0".parse().unwrap(), 23))
        );
        assert_eq!(parse_cidr("2607:6bc0::/48").map(|(_, l)| l), Some(48));
        assert_eq!(parse_cidr("1.2.3.4/33"), None);
        assert_eq!(parse_cidr("nonsense"), None);
    }
}
