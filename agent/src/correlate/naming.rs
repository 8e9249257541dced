//! The naming rules, in the order they apply to a connection (or a ClientHello without
//! SNI):
//!
//! 1. The SNI the process sent names its TLS/QUIC connection (high confidence).
//! 2. Else a DNS answer this very process received for the address (high).
//! 3. Else the answer the namespace's local resolver fetched upstream for a client the agent
//!    did not see ask — nss-resolve over varlink sends no DNS packet (medium).
//! 4. Else an answer another process in the namespace, or on the host, received (low):
//!    CDN addresses are shared by AI services and millions of other sites.
//!
//! Connections to DNS ports (53 DNS, 853 DoT/DoQ, 5353 mDNS, 5355 LLMNR) get no name from
//! DNS answers at all: the resolver's address serving an AI name too does not make a
//! lookup a use of that service. Loopback destinations are named only from the process's
//! own answers.

use std::net::SocketAddr;

use shadowai_api::{Confidence, NameSource as ApiSource, Naming};
use shadowai_rules::engine::{Decision, MatchedBy};

use super::dns_cache::{DnsCache, Resolved};
use crate::event::Event;

/// Ports whose traffic is name resolution, never a use of the service at the address.
pub const DNS_PORTS: [u16; 4] = [53, 853, 5353, 5355];

pub fn is_dns_port(port: u16) -> bool {
    DNS_PORTS.contains(&port)
}

/// The name rules 2–4 give a connection from `pid` in `netns` to `dst`.
pub fn cached_name(
    dns: &DnsCache,
    pid: u32,
    netns: u64,
    dst: SocketAddr,
    now_ns: u64,
) -> Option<Resolved> {
    if is_dns_port(dst.port()) {
        return None;
    }
    if dst.ip().is_loopback() {
        return dns.lookup_own(pid, dst.ip(), now_ns);
    }
    dns.lookup(pid, netns, dst.ip(), now_ns)
}

/// Whether a connection to `dst` that no answer named deserves the `never_resolved`
/// signal: not for loopback, and not for resolvers (their addresses come from
/// configuration, not from DNS).
pub fn never_resolved(dns: &DnsCache, pid: u32, netns: u64, dst: SocketAddr, now_ns: u64) -> bool {
    !dst.ip().is_loopback()
        && !is_dns_port(dst.port())
        && dns.lookup(pid, netns, dst.ip(), now_ns).is_none()
}

/// How the service of a classified event was named: from the event's name (by its
/// source), from the service's published networks (medium: providers share clouds), or not
/// from a name at all (a local runtime recognised by process or port).
pub fn of(e: &Event, d: &Decision<'_>) -> Option<Naming> {
    match d.matched_by {
        MatchedBy::Domain(_) | MatchedBy::Host(_) | MatchedBy::Sni(_) => {
            e.name_source.map(|s| s.naming())
        }
        MatchedBy::Cidr(_) => Some(Naming {
            source: ApiSource::Cidr,
            confidence: Confidence::Medium,
        }),
        MatchedBy::Process { .. } | MatchedBy::Port(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use crate::correlate::dns_cache::NameScope;
    use shadowai_decode::{DnsAnswer, DnsMessage, DnsQuestion, RData};

    const S: u64 = 1_000_000_000;

    fn answer(q: &str, ip: &str) -> DnsMessage {
        DnsMessage {
            id: 1,
            is_response: true,
            rcode: 0,
            questions: vec![DnsQuestion {
                name: q.into(),
                qtype: 1,
            }],
            answers: vec![DnsAnswer {
                name: q.into(),
                ttl: 60,
                data: RData::Addr(ip.parse().unwrap()),
            }],
            edns_udp_size: None,
        }
    }

    fn at(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn a_connect_to_the_resolver_is_never_named_from_dns_answers() {
        // The resolver's address also serves an AI name, and this very process got it.
        let mut c = DnsCache::new(100);
        c.learn(Some(7), 1, &answer("api.openai.com", "10.0.0.53"), 0);
        for port in DNS_PORTS {
            assert!(cached_name(&c, 7, 1, at("10.0.0.53", port), S).is_none());
            assert!(!never_resolved(&c, 8, 1, at("192.0.2.9", port), S));
        }
        assert_eq!(
            cached_name(&c, 7, 1, at("10.0.0.53", 443), S).unwrap().name,
            "api.openai.com",
            "the same address on 443 is the service"
        );
    }

    #[test]
    fn a_shared_address_is_named_by_each_process_own_answer_else_low() {
        let cdn = "104.18.6.192";
        let mut c = DnsCache::new(100);
        c.learn(Some(1), 10, &answer("api.openai.com", cdn), 0);
        c.learn(Some(2), 10, &answer("benign.example", cdn), 0);
        let one = cached_name(&c, 1, 10, at(cdn, 443), S).unwrap();
        let two = cached_name(&c, 2, 10, at(cdn, 443), S).unwrap();
        assert_eq!(
            (one.name.as_str(), one.scope),
            ("api.openai.com", NameScope::Process)
        );
        assert_eq!(
            (two.name.as_str(), two.scope),
            ("benign.example", NameScope::Process)
        );
        // A third process that resolved nothing only gets a namespace-level name.
        let three = cached_name(&c, 3, 10, at(cdn, 443), S).unwrap();
        assert_eq!(three.scope, NameScope::Namespace);
    }

    #[test]
    fn another_process_cached_answer_never_names_a_loopback_connection() {
        let mut c = DnsCache::new(100);
        c.learn(
            Some(1),
            10,
            &answer("localhost.openai.example", "127.0.0.1"),
            0,
        );
        assert!(cached_name(&c, 2, 10, at("127.0.0.1", 8080), S).is_none());
        assert!(cached_name(&c, 1, 10, at("127.0.0.1", 8080), S).is_some());
        assert!(!never_resolved(&c, 2, 10, at("127.0.0.1", 8080), S));
    }

    #[test]
    fn the_resolver_scope_sits_between_own_and_namespace_answers() {
        let ip = "203.0.113.5";
        let mut c = DnsCache::new(100);
        c.learn(Some(1), 10, &answer("benign.example", ip), 0);
        c.learn_resolver(10, &answer("api.anthropic.com", ip), 0);
        let nss_client = cached_name(&c, 2, 10, at(ip, 443), S).unwrap();
        assert_eq!(
            (nss_client.name.as_str(), nss_client.scope),
            ("api.anthropic.com", NameScope::Resolver)
        );
        assert_eq!(
            cached_name(&c, 1, 10, at(ip, 443), S).unwrap().scope,
            NameScope::Process
        );
        assert_eq!(
            cached_name(&c, 2, 11, at(ip, 443), S).unwrap().scope,
            NameScope::Host,
            "another namespace's resolver does not answer for this one"
        );
    }
}
