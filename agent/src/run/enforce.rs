//! Enforce mode: what the kernel refuses, derived from the rules. For every catalogue
//! service whose verdict on this host is `blocked` (policy mode `enforce`), its domains and
//! hosts go into the kernel's DNS query filter (a query for the name or any name below it
//! fails with EPERM before it leaves the host) and its published CIDRs into the connect
//! filter (connect()/sendmsg() fail with EPERM). Precise to the service: nothing outside
//! the catalogue entry is touched, and shared infrastructure is never in an entry.
//!
//! Not in the kernel filters, decided per process by the agent from the SNI (TLS, QUIC):
//! blocks scoped to users or unix groups, host-wide blocks that an exception or a scoped
//! rule lifts for some users or groups (the filters are per host; the DNS layer cannot be
//! per process — see ARCHITECTURE.md), and observe-only rules (`enforce = false`), which
//! refuse nothing.

use std::net::IpAddr;

use shadowai_rules::Engine;
use shadowai_rules::Verdict;
use shadowai_rules::catalogue::Service;
use shadowai_rules::engine::{DecidedBy, Query};
use shadowai_rules::policy::{Mode, Policy};
use shadowai_rules::time::now_unix;

pub use crate::sensor::blocklist::{Blocklist, name_key};

fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.trim().parse().ok()?;
    let len: u32 = len.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Could a rule or exception scoped to users or unix groups, checked before the one that
/// blocks `svc` host-wide, give some process a verdict that is not an enforced block (an
/// exception for one user, a `sanctioned` for a group, an observe-only rule)? Then the block
/// cannot live in the per-host kernel filters: it is decided per process, by the SNI.
/// Conservative: a scoped rule limited to other hosts' tags also counts.
pub fn lifted_for_some(policy: &Policy, svc: &Service, decider: &DecidedBy<'_>, now: i64) -> bool {
    let decider_id = match decider {
        DecidedBy::Exception(r) | DecidedBy::Rule(r) => Some(r.id.as_str()),
        DecidedBy::Default => None,
    };
    let active = policy
        .exceptions
        .iter()
        .filter(|r| r.expires_at.is_some_and(|t| t > now));
    active
        .chain(&policy.rules)
        .take_while(|r| Some(r.id.as_str()) != decider_id)
        .filter(|r| r.targets(svc) && !(r.users.is_empty() && r.unix_groups.is_empty()))
        .any(|r| !(r.verdict == Verdict::Blocked && r.enforce))
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
        if d.service.id != svc.id || !d.enforce() {
            continue; // not blocked here, or blocked by an observe-only rule
        }
        if lifted_for_some(engine.policy(), svc, &d.decided_by, now_unix()) {
            out.per_process.push(svc.id.clone());
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

    fn engine(rules: &str) -> Engine {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        let cat = shadowai_rules::catalogue::Catalogue::load_dir(&dir).unwrap();
        let text = format!("mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n{rules}");
        let (p, report) = Policy::parse(std::path::Path::new("p.toml"), &text, &cat, 0);
        Engine::new(cat, p.unwrap_or_else(|| panic!("{report:?}"))).unwrap()
    }

    #[test]
    fn observe_only_and_lifted_blocks_stay_out_of_the_kernel_filters() {
        let b = blocklist(
            &engine(
                "[[rules]]\nid = \"no-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek-api\"]\n\n\
                 [[rules]]\nid = \"watch-mistral\"\nverdict = \"blocked\"\nservices = [\"mistral-api\"]\nenforce = false\n\n\
                 [[exceptions]]\nid = \"alice-anthropic\"\nverdict = \"tolerated\"\nservices = [\"anthropic-api\"]\nusers = [\"alice\"]\n\
                 reason = \"pilot\"\napprover = \"bob\"\nexpires = 2099-01-01T00:00:00Z\n\n\
                 [[rules]]\nid = \"no-anthropic\"\nverdict = \"blocked\"\nservices = [\"anthropic-api\"]\n\n\
                 [[rules]]\nid = \"no-openai\"\nverdict = \"blocked\"\nservices = [\"openai-api\"]\n\n\
                 [[rules]]\nid = \"eve-openai-too\"\nverdict = \"blocked\"\nservices = [\"openai-api\"]\nusers = [\"eve\"]\n",
            ),
            &[],
        );
        assert!(b.services.contains(&"deepseek-api".to_string()), "{b:?}");
        // A scoped rule after the host-wide block never decides: still host-wide.
        assert!(b.services.contains(&"openai-api".to_string()), "{b:?}");
        assert!(
            !b.services.contains(&"mistral-api".to_string()),
            "observe-only: {b:?}"
        );
        assert_eq!(b.per_process, vec!["anthropic-api".to_string()], "{b:?}");
        assert!(b.scoped, "hellos go to the agent");
        assert!(
            !b.nets4.iter().any(|(a, _)| a[..2] == [160, 79]),
            "Anthropic's CIDRs: {b:?}"
        );
        let key = name_key("api.anthropic.com").unwrap();
        assert!(
            !b.names
                .iter()
                .any(|k| k.0[..8] == key.0[..8] && k.1 <= key.1),
            "{b:?}"
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
