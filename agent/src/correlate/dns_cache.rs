//! IP → name, learned from the DNS answers each process (and each network namespace)
//! received.
//!
//! CDN addresses are shared by many names, so the answer a process got itself wins over
//! one another process in the same namespace got; entries live as long as the record's
//! TTL (with a short floor: TTL-0 answers are common and the connect follows at once).
//! CNAME chains are followed, so an address reached through `api.openai.com → x.cdn.net`
//! is named `api.openai.com`. The cache is bounded; the entry closest to expiry goes first.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;
use shadowai_decode::{DnsMessage, RData};

/// Shortest lifetime given to an answer, whatever its TTL.
pub const MIN_TTL_NS: u64 = 10 * 1_000_000_000;
/// Longest lifetime, whatever its TTL (a day-long TTL should not pin a CDN address).
pub const MAX_TTL_NS: u64 = 3600 * 1_000_000_000;

/// Which cache answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameScope {
    /// The same process resolved this name to this address.
    Process,
    /// Another process in the same network namespace did.
    Namespace,
    /// Some process on this host did, in another namespace.
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The name the application asked for.
    pub name: String,
    /// The CNAME chain from that name to the address record (first element = `name`).
    pub chain: Vec<String>,
    pub scope: NameScope,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    chain: Vec<String>,
    expires_ns: u64,
}

pub struct DnsCache {
    by_proc: HashMap<(u32, IpAddr), Entry>,
    by_netns: HashMap<(u64, IpAddr), Entry>,
    by_host: HashMap<IpAddr, Entry>,
    cap: usize,
}

impl DnsCache {
    pub fn new(cap: usize) -> Self {
        Self {
            by_proc: HashMap::new(),
            by_netns: HashMap::new(),
            by_host: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Learns from a DNS response delivered to `pid` in namespace `netns`.
    pub fn learn(&mut self, pid: Option<u32>, netns: u64, msg: &DnsMessage, now_ns: u64) {
        if !msg.is_response {
            return;
        }
        for q in &msg.questions {
            let chain = msg.cname_chain(&q.name);
            for a in &msg.answers {
                if !chain.iter().any(|c| c.eq_ignore_ascii_case(&a.name)) {
                    continue;
                }
                let ttl_ns = u64::from(a.ttl).saturating_mul(1_000_000_000);
                let expires_ns = now_ns.saturating_add(ttl_ns.clamp(MIN_TTL_NS, MAX_TTL_NS));
                let ips: Vec<IpAddr> = match &a.data {
                    RData::Addr(ip) => vec![*ip],
                    RData::Svcb(s) => s.ipv4hint.iter().chain(&s.ipv6hint).copied().collect(),
                    _ => continue,
                };
                for ip in ips {
                    let e = Entry {
                        name: q.name.clone(),
                        chain: chain.clone(),
                        expires_ns,
                    };
                    if let Some(pid) = pid {
                        self.by_proc.insert((pid, ip), e.clone());
                    }
                    self.by_netns.insert((netns, ip), e.clone());
                    self.by_host.insert(ip, e);
                }
            }
        }
        self.bound(now_ns);
    }

    /// The name behind `ip` for `pid` (or its namespace), if an unexpired answer says so.
    pub fn lookup(&self, pid: u32, netns: u64, ip: IpAddr, now_ns: u64) -> Option<Resolved> {
        let live = |e: &&Entry| e.expires_ns > now_ns;
        if let Some(e) = self.by_proc.get(&(pid, ip)).filter(live) {
            return Some(resolved(e, NameScope::Process));
        }
        if let Some(e) = self.by_netns.get(&(netns, ip)).filter(live) {
            return Some(resolved(e, NameScope::Namespace));
        }
        self.by_host
            .get(&ip)
            .filter(live)
            .map(|e| resolved(e, NameScope::Host))
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now_ns: u64) {
        self.by_proc.retain(|_, e| e.expires_ns > now_ns);
        self.by_netns.retain(|_, e| e.expires_ns > now_ns);
        self.by_host.retain(|_, e| e.expires_ns > now_ns);
    }

    pub fn len(&self) -> usize {
        self.by_proc.len() + self.by_netns.len() + self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bound(&mut self, now_ns: u64) {
        if self.len() <= self.cap {
            return;
        }
        self.expire(now_ns);
        while self.len() > self.cap {
            if let Some(k) = self
                .by_host
                .iter()
                .min_by_key(|(_, e)| e.expires_ns)
                .map(|(k, _)| *k)
            {
                self.by_host.remove(&k);
                if self.len() <= self.cap {
                    break;
                }
            }
            let p = self
                .by_proc
                .iter()
                .min_by_key(|(_, e)| e.expires_ns)
                .map(|(k, e)| (*k, e.expires_ns));
            let n = self
                .by_netns
                .iter()
                .min_by_key(|(_, e)| e.expires_ns)
                .map(|(k, e)| (*k, e.expires_ns));
            match (p, n) {
                (Some((pk, pe)), Some((_, ne))) if pe <= ne => {
                    self.by_proc.remove(&pk);
                }
                (_, Some((nk, _))) => {
                    self.by_netns.remove(&nk);
                }
                (Some((pk, _)), None) => {
                    self.by_proc.remove(&pk);
                }
                (None, None) => break,
            }
        }
    }
}

fn resolved(e: &Entry, scope: NameScope) -> Resolved {
    Resolved {
        name: e.name.clone(),
        chain: e.chain.clone(),
        scope,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;
    use shadowai_decode::{DnsAnswer, DnsQuestion};

    const S: u64 = 1_000_000_000;

    fn answer(q: &str, answers: Vec<(&str, u32, RData)>) -> DnsMessage {
        DnsMessage {
            id: 1,
            is_response: true,
            rcode: 0,
            questions: vec![DnsQuestion {
                name: q.into(),
                qtype: 1,
            }],
            answers: answers
                .into_iter()
                .map(|(n, ttl, data)| DnsAnswer {
                    name: n.into(),
                    ttl,
                    data,
                })
                .collect(),
            edns_udp_size: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn follows_cname_chain_to_the_asked_name() {
        let mut c = DnsCache::new(100);
        let m = answer(
            "api.openai.com",
            vec![
                (
                    "api.openai.com",
                    60,
                    RData::Cname("api.openai.com.cdn.cloudflare.net".into()),
                ),
                (
                    "api.openai.com.cdn.cloudflare.net",
                    60,
                    RData::Addr(ip("104.18.6.192")),
                ),
                ("unrelated.example", 60, RData::Addr(ip("1.2.3.4"))),
            ],
        );
        c.learn(Some(7), 1, &m, 0);
        let r = c.lookup(7, 1, ip("104.18.6.192"), S).unwrap();
        assert_eq!(r.name, "api.openai.com");
        assert_eq!(r.chain.len(), 2);
        assert_eq!(r.scope, NameScope::Process);
        assert!(
            c.lookup(7, 1, ip("1.2.3.4"), S).is_none(),
            "records outside the chain are ignored"
        );
    }

    #[test]
    fn process_answer_wins_over_namespace_and_namespaces_are_separate() {
        let mut c = DnsCache::new(100);
        let cdn = ip("2606:4700::6812:6c0");
        c.learn(
            Some(1),
            10,
            &answer("a.example", vec![("a.example", 60, RData::Addr(cdn))]),
            0,
        );
        c.learn(
            Some(2),
            10,
            &answer("chatgpt.com", vec![("chatgpt.com", 60, RData::Addr(cdn))]),
            0,
        );
        assert_eq!(c.lookup(1, 10, cdn, S).unwrap().name, "a.example");
        assert_eq!(c.lookup(2, 10, cdn, S).unwrap().name, "chatgpt.com");
        let other = c.lookup(3, 10, cdn, S).unwrap();
        assert_eq!(other.scope, NameScope::Namespace);
        let host = c.lookup(3, 11, cdn, S).unwrap();
        assert_eq!(
            host.scope,
            NameScope::Host,
            "another namespace: host-wide answer only"
        );
        assert!(
            c.lookup(3, 11, ip("192.0.2.1"), S).is_none(),
            "never resolved"
        );
    }

    #[test]
    fn ttl_bounds_lifetime_with_floor() {
        let mut c = DnsCache::new(100);
        let a = ip("10.0.0.1");
        c.learn(
            Some(1),
            0,
            &answer("x.example", vec![("x.example", 0, RData::Addr(a))]),
            0,
        );
        assert!(c.lookup(1, 0, a, MIN_TTL_NS - 1).is_some());
        assert!(c.lookup(1, 0, a, MIN_TTL_NS).is_none());
        c.learn(
            Some(1),
            0,
            &answer("x.example", vec![("x.example", 300, RData::Addr(a))]),
            0,
        );
        assert!(c.lookup(1, 0, a, 299 * S).is_some());
        assert!(c.lookup(1, 0, a, 300 * S).is_none());
        c.expire(300 * S);
        assert!(c.is_empty());
    }

    #[test]
    fn queries_teach_nothing_and_size_is_bounded() {
        let mut c = DnsCache::new(10);
        let mut q = answer(
            "q.example",
            vec![("q.example", 60, RData::Addr(ip("1.1.1.1")))],
        );
        q.is_response = false;
        c.learn(Some(1), 0, &q, 0);
        assert!(c.is_empty());
        for i in 0..50u32 {
            let a = IpAddr::from(i.to_be_bytes());
            c.learn(
                Some(i),
                0,
                &answer("n.example", vec![("n.example", 60 + i, RData::Addr(a))]),
                0,
            );
        }
        assert!(c.len() <= 10);
    }
}
