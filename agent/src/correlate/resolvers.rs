//! Local resolvers (systemd-resolved, dnsmasq, unbound, nscd, …) as the correlator sees
//! them: which processes they are, and which client lookup each of their upstream lookups
//! answers.
//!
//! A local resolver's DNS traffic is never anyone's use of a service: its upstream lookup
//! for `api.openai.com` is made for a client whose own loopback query the agent reports. So
//! its events carry [`crate::event::Signal::LocalResolver`] (classification skips them),
//! an upstream answer that matches a pending loopback client query is a duplicate of the
//! client's own answer, and one that matches none (an nss-resolve client over varlink sends
//! no DNS packet) teaches the resolver scope of the DNS cache.
//!
//! Recognition is by executable path only, from the catalogue's `_local-resolvers.toml`
//! (data, not code): any process can name itself `dnsmasq`, but only root can write the
//! listed system paths.

use std::collections::{BTreeMap, HashMap, HashSet};

use shadowai_rules::catalogue::LocalResolver;

/// How long a client's loopback query waits for the resolver's upstream lookup.
pub const PENDING_NS: u64 = 10 * 1_000_000_000;
/// Loopback client queries remembered at most; the oldest goes first.
pub const PENDING_CAP: usize = 4096;

/// The executable paths of known local resolvers.
#[derive(Clone, Debug, Default)]
pub struct LocalResolvers {
    exes: HashSet<String>,
}

impl LocalResolvers {
    pub fn new(list: &[LocalResolver]) -> Self {
        Self {
            exes: list.iter().flat_map(|r| r.exe.iter().cloned()).collect(),
        }
    }

    /// Is `exe` (`/proc/<pid>/exe`, maybe ending in ` (deleted)`) a known local resolver?
    /// An unknown (empty) path never is.
    pub fn contains(&self, exe: &str) -> bool {
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
        !exe.is_empty() && self.exes.contains(exe)
    }

    pub fn len(&self) -> usize {
        self.exes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exes.is_empty()
    }
}

/// Who asked a local resolver for a name over loopback, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asker {
    pub pid: u32,
    pub ts_ns: u64,
    seq: u64,
}

/// Loopback client queries waiting for the resolver's upstream lookup, keyed by network
/// namespace and lower-cased name (resolvers may randomise the case of upstream queries).
/// Bounded: the oldest query goes first, found through an ordered index in O(log n).
#[derive(Debug, Default)]
pub struct PendingLookups {
    by_name: HashMap<(u64, String), Asker>,
    /// (ts_ns, seq) → key: exactly one per stored query.
    order: BTreeMap<(u64, u64), (u64, String)>,
    next_seq: u64,
    /// Queries pushed out by the bound before their time was up.
    pub evicted: u64,
}

impl PendingLookups {
    /// `pid` in `netns` asked a loopback resolver for `name` at `ts_ns`.
    pub fn asked(&mut self, netns: u64, name: &str, pid: u32, ts_ns: u64) {
        let key = (netns, name.to_ascii_lowercase());
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.by_name.insert(key.clone(), Asker { pid, ts_ns, seq }) {
            self.order.remove(&(old.ts_ns, old.seq));
        }
        self.order.insert((ts_ns, seq), key);
        while self.by_name.len() > PENDING_CAP {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            self.by_name.remove(&k);
            self.evicted += 1;
        }
    }

    /// The client whose pending loopback query for `name` in `netns` an upstream lookup at
    /// `ts_ns` answers, if one asked within [`PENDING_NS`].
    pub fn asker(&self, netns: u64, name: &str, ts_ns: u64) -> Option<Asker> {
        self.by_name
            .get(&(netns, name.to_ascii_lowercase()))
            .filter(|a| ts_ns.saturating_sub(a.ts_ns) <= PENDING_NS)
            .copied()
    }

    /// Forgets queries older than [`PENDING_NS`].
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(e) = self.order.first_entry() {
            if now_ns.saturating_sub(e.key().0) <= PENDING_NS {
                break;
            }
            let k = e.remove();
            self.by_name.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    #[cfg(test)]
    fn consistent(&self) -> bool {
        self.order.len() == self.by_name.len()
            && self.order.iter().all(|((ts, seq), k)| {
                self.by_name
                    .get(k)
                    .is_some_and(|a| a.ts_ns == *ts && a.seq == *seq)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn recognised_by_path_only() {
        let r = LocalResolvers::new(&[LocalResolver {
            name: "dnsmasq".into(),
            exe: vec!["/usr/sbin/dnsmasq".into()],
            comm: vec!["dnsmasq".into()],
            source: "test".into(),
        }]);
        assert!(r.contains("/usr/sbin/dnsmasq"));
        assert!(r.contains("/usr/sbin/dnsmasq (deleted)"));
        assert!(!r.contains("/tmp/dnsmasq"), "a look-alike elsewhere is not");
        assert!(!r.contains(""), "an unknown path never is");
    }

    #[test]
    fn a_pending_query_matches_case_insensitively_within_its_time_and_namespace() {
        let mut p = PendingLookups::default();
        p.asked(7, "API.OpenAI.com", 42, S);
        assert_eq!(p.asker(7, "api.openai.COM", 2 * S).map(|a| a.pid), Some(42));
        assert!(p.asker(8, "api.openai.com", 2 * S).is_none(), "other netns");
        assert!(p.asker(7, "api.openai.com", S + PENDING_NS + 1).is_none());
        p.expire(S + PENDING_NS + 1);
        assert!(p.is_empty());
    }

    #[test]
    fn a_flood_of_distinct_names_stays_at_the_bound_and_keeps_the_newest() {
        let mut p = PendingLookups::default();
        for i in 0..(PENDING_CAP as u64 * 3) {
            p.asked(1, &format!("n{i}.example"), 1, i);
            assert!(p.len() <= PENDING_CAP);
        }
        assert!(p.consistent());
        assert_eq!(p.evicted, PENDING_CAP as u64 * 2);
        p.asked(1, "api.openai.com", 99, 10 * S);
        assert_eq!(
            p.asker(1, "api.openai.com", 10 * S).map(|a| a.pid),
            Some(99)
        );
        // Re-asking the same name keeps one entry.
        p.asked(1, "api.openai.com", 100, 11 * S);
        assert!(p.consistent());
        assert_eq!(
            p.asker(1, "api.openai.com", 11 * S).map(|a| a.pid),
            Some(100)
        );
    }
}
