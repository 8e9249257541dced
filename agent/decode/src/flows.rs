//! Per-flow decoder state, bounded, with least-recently-seen eviction and idle expiry in
//! O(log n): an ordered index of (last seen, key) sits beside the map, so a flood of new
//! flows never makes an insert scan the table.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::stats::ProtoStats;

pub(crate) struct Flow<S> {
    last_ns: u64,
    /// `None` once the flow is done (its message decoded or given up on).
    pub state: Option<S>,
}

pub(crate) struct FlowTable<K, S> {
    map: HashMap<K, Flow<S>>,
    lru: BTreeSet<(u64, K)>,
}

impl<K: Hash + Eq + Ord + Copy, S> FlowTable<K, S> {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            lru: BTreeSet::new(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, key: &K) -> Option<&Flow<S>> {
        self.map.get(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Flow<S>> {
        self.map.values()
    }

    /// The flow, marked as seen at `ts_ns`, if it is tracked.
    pub fn touch(&mut self, key: K, ts_ns: u64) -> Option<&mut Flow<S>> {
        let f = self.map.get_mut(&key)?;
        if ts_ns > f.last_ns {
            self.lru.remove(&(f.last_ns, key));
            f.last_ns = ts_ns;
            self.lru.insert((ts_ns, key));
        }
        Some(f)
    }

    /// Finds or creates the flow; when `max` flows are tracked, the least recently seen
    /// one is evicted first (counted in `stats.evicted` if it was partial).
    pub fn entry(
        &mut self,
        key: K,
        ts_ns: u64,
        max: usize,
        stats: &mut ProtoStats,
        make: impl FnOnce() -> S,
    ) -> &mut Flow<S> {
        if !self.map.contains_key(&key) {
            while self.map.len() >= max.max(1) {
                let Some((_, old)) = self.lru.pop_first() else {
                    break;
                };
                if self.map.remove(&old).is_some_and(|f| f.state.is_some()) {
                    stats.evicted += 1;
                }
            }
        }
        match self.map.entry(key) {
            Entry::Occupied(o) => {
                let f = o.into_mut();
                if ts_ns > f.last_ns {
                    self.lru.remove(&(f.last_ns, key));
                    f.last_ns = ts_ns;
                    self.lru.insert((ts_ns, key));
                }
                f
            }
            Entry::Vacant(v) => {
                self.lru.insert((ts_ns, key));
                v.insert(Flow {
                    last_ns: ts_ns,
                    state: Some(make()),
                })
            }
        }
    }

    /// Drops flows idle for longer than `timeout_ns`; returns how many of them `partial`
    /// says held unfinished data. Visits only the flows it drops.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, partial: impl Fn(&S) -> bool) -> u64 {
        let mut n = 0;
        while let Some(&(last, key)) = self.lru.first() {
            if now_ns.saturating_sub(last) <= timeout_ns {
                break;
            }
            self.lru.pop_first();
            if let Some(f) = self.map.remove(&key) {
                n += u64::from(f.state.as_ref().is_some_and(&partial));
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_bound_the_least_recently_seen_goes_first() {
        let mut t: FlowTable<u64, u32> = FlowTable::new();
        let mut st = ProtoStats::default();
        for k in 0..100u64 {
            t.entry(k, k, 100, &mut st, || 0);
        }
        t.touch(0, 1000);
        for k in 100..10_100u64 {
            t.entry(k, k + 1000, 100, &mut st, || 0);
            assert!(t.len() <= 100);
        }
        assert_eq!(t.lru.len(), t.len());
        assert!(t.get(&0).is_none() && t.get(&10_099).is_some());
        assert_eq!(st.evicted, 10_000);
        assert_eq!(t.expire(u64::MAX, 0, |_| true), 100);
        assert_eq!(t.len(), 0);
        assert!(t.lru.is_empty());
    }
}
