//! IP → name, learned from the DNS answers each process (and each network namespace)
//! received, and from the upstream answers a local resolver fetched for clients the agent
//! cannot see (nss-resolve over varlink sends no DNS packet).
//!
//! CDN addresses are shared by many names, so the answer a process got itself wins over
//! one another process in the same namespace got; entries live as long as the record's
//! TTL (with a short floor: TTL-0 answers are common and the connect follows at once).
//! CNAME chains are followed, so an address reached through `api.openai.com → x.cdn.net`
//! is named `api.openai.com`. The cache is bounded; the entry closest to expiry goes
//! first, found through an expiry index in O(log n).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

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
    /// A local resolver (systemd-resolved, dnsmasq, …) in the same network namespace fetched
    /// this answer upstream with no client lookup seen for it: how an nss-resolve client,
    /// which sends no DNS packet, learnt the address.
    Resolver,
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

/// The name an answer gave, shared by every address and scope it was stored under.
#[derive(Debug)]
struct Named {
    name: String,
    chain: Vec<String>,
}

#[derive(Clone, Debug)]
struct Entry {
    named: Arc<Named>,
    expires_ns: u64,
    /// Insertion number: with `expires_ns`, this entry's key in the expiry index.
    seq: u64,
}

/// Which map an index entry points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Proc(u32, IpAddr),
    Resolver(u64, IpAddr),
    Netns(u64, IpAddr),
    Host(IpAddr),
}

/// Four scopes of address → name, plus one expiry index over all of them, so expiry and
/// eviction cost O(log n) per entry whatever the cache holds: a flood of long-TTL answers
/// cannot make each insert scan the cache.
pub struct DnsCache {
    by_proc: HashMap<(u32, IpAddr), Entry>,
    by_resolver: HashMap<(u64, IpAddr), Entry>,
    by_netns: HashMap<(u64, IpAddr), Entry>,
    by_host: HashMap<IpAddr, Entry>,
    /// (expires_ns, seq) → where the entry lives; exactly one per stored entry.
    expiry: BTreeMap<(u64, u64), Slot>,
    next_seq: u64,
    cap: usize,
    /// Shortest lifetime of an answer: [`MIN_TTL_NS`], or the sensor's DNS de-dup window
    /// when that is longer (see [`DnsCache::set_min_lifetime`]).
    min_ttl_ns: u64,
    /// Entries evicted before expiry because the cache was full.
    pub evicted: u64,
}

impl DnsCache {
    pub fn new(cap: usize) -> Self {
        Self {
            by_proc: HashMap::new(),
            by_resolver: HashMap::new(),
            by_netns: HashMap::new(),
            by_host: HashMap::new(),
            expiry: BTreeMap::new(),
            next_seq: 0,
            cap: cap.max(1),
            min_ttl_ns: MIN_TTL_NS,
            evicted: 0,
        }
    }

    /// Keeps every answer at least `window` (never less than [`MIN_TTL_NS`]). The kernel
    /// does not report a DNS message identical to one reported within its de-dup window,
    /// so an answer with a TTL shorter than the window would expire here while its
    /// repeats, the only evidence that it is still in use, are being suppressed: a
    /// connect to its address would then go unnamed.
    pub fn set_min_lifetime(&mut self, window: std::time::Duration) {
        let ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.min_ttl_ns = ns.clamp(MIN_TTL_NS, MAX_TTL_NS);
    }

    /// Learns from a DNS response delivered to `pid` in namespace `netns`.
    pub fn learn(&mut self, pid: Option<u32>, netns: u64, msg: &DnsMessage, now_ns: u64) {
        self.learn_into(msg, now_ns, |ip| {
            let mut slots = Vec::with_capacity(3);
            if let Some(pid) = pid {
                slots.push(Slot::Proc(pid, ip));
            }
            slots.push(Slot::Netns(netns, ip));
            slots.push(Slot::Host(ip));
            slots
        });
    }

    /// Learns from an upstream answer a local resolver in `netns` received for no client
    /// the agent saw ask: only the resolver scope of that namespace.
    pub fn learn_resolver(&mut self, netns: u64, msg: &DnsMessage, now_ns: u64) {
        self.learn_into(msg, now_ns, |ip| vec![Slot::Resolver(netns, ip)]);
    }

    fn learn_into(&mut self, msg: &DnsMessage, now_ns: u64, slots: impl Fn(IpAddr) -> Vec<Slot>) {
        if !msg.is_response {
            return;
        }
        for q in &msg.questions {
            let chain = msg.cname_chain(&q.name);
            let named = Arc::new(Named {
                name: q.name.clone(),
                chain: chain.clone(),
            });
            for a in &msg.answers {
                if !chain.iter().any(|c| c.eq_ignore_ascii_case(&a.name)) {
                    continue;
                }
                let ttl_ns = u64::from(a.ttl).saturating_mul(1_000_000_000);
                let expires_ns = now_ns.saturating_add(ttl_ns.clamp(self.min_ttl_ns, MAX_TTL_NS));
                let ips: Vec<IpAddr> = match &a.data {
                    RData::Addr(ip) => vec![*ip],
                    RData::Svcb(s) => s.ipv4hint.iter().chain(&s.ipv6hint).copied().collect(),
                    _ => continue,
                };
                for ip in ips {
                    for slot in slots(ip) {
                        self.insert(slot, &named, expires_ns);
                    }
                }
            }
        }
        self.bound(now_ns);
    }

    fn insert(&mut self, slot: Slot, named: &Arc<Named>, expires_ns: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let e = Entry {
            named: Arc::clone(named),
            expires_ns,
            seq,
        };
        let old = match slot {
            Slot::Proc(pid, ip) => self.by_proc.insert((pid, ip), e),
            Slot::Resolver(ns, ip) => self.by_resolver.insert((ns, ip), e),
            Slot::Netns(ns, ip) => self.by_netns.insert((ns, ip), e),
            Slot::Host(ip) => self.by_host.insert(ip, e),
        };
        if let Some(old) = old {
            self.expiry.remove(&(old.expires_ns, old.seq));
        }
        self.expiry.insert((expires_ns, seq), slot);
    }

    /// The name behind `ip` for `pid` (or its namespace), if an unexpired answer says so:
    /// the process's own answer, else its namespace's local resolver's, else its
    /// namespace's, else the host's.
    pub fn lookup(&self, pid: u32, netns: u64, ip: IpAddr, now_ns: u64) -> Option<Resolved> {
        if let Some(r) = self.lookup_own(pid, ip, now_ns) {
            return Some(r);
        }
        let live = |e: &&Entry| e.expires_ns > now_ns;
        if let Some(e) = self.by_resolver.get(&(netns, ip)).filter(live) {
            return Some(resolved(e, NameScope::Resolver));
        }
        if let Some(e) = self.by_netns.get(&(netns, ip)).filter(live) {
            return Some(resolved(e, NameScope::Namespace));
        }
        self.by_host
            .get(&ip)
            .filter(live)
            .map(|e| resolved(e, NameScope::Host))
    }

    /// The name behind `ip` from an answer `pid` itself received, if unexpired.
    pub fn lookup_own(&self, pid: u32, ip: IpAddr, now_ns: u64) -> Option<Resolved> {
        self.by_proc
            .get(&(pid, ip))
            .filter(|e| e.expires_ns > now_ns)
            .map(|e| resolved(e, NameScope::Process))
    }

    /// Drops expired entries: O(log n) each, nothing else is visited.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now_ns {
                break;
            }
            let slot = entry.remove();
            self.remove_slot(slot);
        }
    }

    /// Removes the entry closest to expiry.
    fn evict_one(&mut self) -> bool {
        match self.expiry.pop_first() {
            Some((_, slot)) => {
                self.remove_slot(slot);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, slot: Slot) {
        match slot {
            Slot::Proc(pid, ip) => self.by_proc.remove(&(pid, ip)),
            Slot::Resolver(ns, ip) => self.by_resolver.remove(&(ns, ip)),
            Slot::Netns(ns, ip) => self.by_netns.remove(&(ns, ip)),
            Slot::Host(ip) => self.by_host.remove(&ip),
        };
    }

    pub fn len(&self) -> usize {
        self.by_proc.len() + self.by_resolver.len() + self.by_netns.len() + self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps at most `cap` entries: expired ones go first, then those closest to expiry.
    fn bound(&mut self, now_ns: u64) {
        if self.len() <= self.cap {
            return;
        }
        self.expire(now_ns);
        while self.len() > self.cap && self.evict_one() {}
    }
}

fn resolved(e: &Entry, scope: NameScope) -> Resolved {
    Resolved {
        name: e.named.name.clone(),
        chain: e.named.chain.clone(),
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
    fn a_dedup_window_longer_than_the_floor_becomes_the_floor() {
        let a = ip("10.0.0.1");
        let learn = |c: &mut DnsCache, ttl: u32| {
            c.learn(
                Some(1),
                0,
                &answer("x.example", vec![("x.example", ttl, RData::Addr(a))]),
                0,
            );
        };
        // Repeats of this answer are suppressed for 30 s: it must outlive them.
        let mut c = DnsCache::new(100);
        c.set_min_lifetime(std::time::Duration::from_secs(30));
        learn(&mut c, 5);
        assert!(c.lookup(1, 0, a, 30 * S - 1).is_some());
        assert!(c.lookup(1, 0, a, 30 * S).is_none());
        learn(&mut c, 300);
        assert!(
            c.lookup(1, 0, a, 299 * S).is_some(),
            "a longer TTL still wins"
        );
        // A shorter window (or none: `--dedup-secs 0`) keeps the usual floor.
        let mut c = DnsCache::new(100);
        c.set_min_lifetime(std::time::Duration::ZERO);
        learn(&mut c, 0);
        assert!(c.lookup(1, 0, a, MIN_TTL_NS - 1).is_some());
        assert!(c.lookup(1, 0, a, MIN_TTL_NS).is_none());
        // An absurd window is capped like a TTL.
        c.set_min_lifetime(std::time::Duration::from_secs(u64::MAX));
        learn(&mut c, 0);
        assert!(c.lookup(1, 0, a, MAX_TTL_NS - 1).is_some());
        assert!(c.lookup(1, 0, a, MAX_TTL_NS).is_none());
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

    /// Consistency the index must keep: one index entry per stored entry.
    fn consistent(c: &DnsCache) -> bool {
        c.expiry.len() == c.len()
            && c.expiry.iter().all(|((exp, seq), slot)| {
                let e = match *slot {
                    Slot::Proc(p, ip) => c.by_proc.get(&(p, ip)),
                    Slot::Resolver(n, ip) => c.by_resolver.get(&(n, ip)),
                    Slot::Netns(n, ip) => c.by_netns.get(&(n, ip)),
                    Slot::Host(ip) => c.by_host.get(&ip),
                };
                e.is_some_and(|e| e.expires_ns == *exp && e.seq == *seq)
            })
    }

    fn flood(n_records: u32, base: u32, ttl: u32) -> DnsMessage {
        answer(
            "flood.example",
            (0..n_records)
                .map(|i| {
                    (
                        "flood.example",
                        ttl,
                        RData::Addr(IpAddr::from((base + i).to_be_bytes())),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_long_ttl_flood_at_the_bound_evicts_closest_to_expiry_and_stays_consistent() {
        let mut c = DnsCache::new(1000);
        let real = ip("104.18.6.192");
        // A real answer that expires late, then a flood of day-long TTL records.
        c.learn(
            Some(7),
            1,
            &answer(
                "api.openai.com",
                vec![("api.openai.com", 3600, RData::Addr(real))],
            ),
            0,
        );
        for r in 0..50u32 {
            c.learn(Some(100 + r), 1, &flood(200, r * 1000, 30), S);
            assert!(c.len() <= 1000);
        }
        assert!(consistent(&c));
        assert!(c.evicted > 0);
        assert_eq!(
            c.lookup(7, 1, real, 2 * S).map(|r| r.name).as_deref(),
            Some("api.openai.com"),
            "the flood (closer to expiry) went first"
        );
        c.expire(3600 * S);
        assert!(c.is_empty() && c.expiry.is_empty());
    }

    #[test]
    fn re_learning_an_address_replaces_its_index_entry() {
        let mut c = DnsCache::new(100);
        let a = ip("10.0.0.1");
        for ttl in [60, 30, 600, 10] {
            c.learn(
                Some(1),
                0,
                &answer("x.example", vec![("x.example", ttl, RData::Addr(a))]),
                0,
            );
            assert_eq!(c.len(), 3);
            assert!(consistent(&c));
        }
        assert!(c.lookup(1, 0, a, 11 * S).is_none(), "the last TTL counts");
    }

    proptest::proptest! {
        #[test]
        fn any_sequence_keeps_the_bound_and_the_index(
            ops in proptest::collection::vec((0u32..50, 0u32..20, 0u32..7200, 0u64..4000), 1..200),
            cap in 1usize..64,
        ) {
            let mut c = DnsCache::new(cap);
            let mut now = 0;
            for (pid, addr, ttl, step) in ops {
                now += step * 1_000_000;
                let m = answer("p.example", vec![("p.example", ttl, RData::Addr(IpAddr::from([10, 0, 0, addr as u8])))]);
                c.learn(Some(pid), u64::from(pid % 3), &m, now);
                proptest::prop_assert!(c.len() <= cap);
                proptest::prop_assert!(consistent(&c));
                if step % 7 == 0 {
                    c.expire(now);
                    proptest::prop_assert!(consistent(&c));
                }
            }
        }
    }
}
