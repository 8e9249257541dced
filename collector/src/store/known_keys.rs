//! The first-use keys this process has seen committed, so an ingest skips the statements for
//! keys that cannot change: a `first_uses` row only ever moves earlier, and an `alert_keys`
//! row (scopes `fleet`, `host`, `user`) is never deleted. Knowing that a key is stored with a
//! time at or before a batch's, the batch has nothing to write for it; any other key (never
//! seen, evicted, learned by another replica, or earlier than known) goes to the database.
//!
//! Only what a committed transaction read or wrote is learned, so a rolled-back ingest
//! teaches nothing. Bounded: two generations of at most half the capacity each; when the
//! young one fills, the old one is dropped and the young one takes its place (a key read in
//! the old generation moves back to the young one), so eviction costs O(1) per insert
//! amortised and a flood of new keys from one host only costs statements, never memory or
//! answers.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Which table a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Table {
    FirstUses,
    AlertKeys,
}

/// (table, scope, subject, service_id).
pub(super) type Key = (Table, &'static str, String, String);

/// Keys known to be stored, each with a time the stored row is at or before.
pub(super) struct KnownKeys {
    gens: Mutex<Generations>,
    half: usize,
}

#[derive(Default)]
struct Generations {
    young: HashMap<Key, i64>,
    old: HashMap<Key, i64>,
}

/// Entries kept at most (about 150 bytes each).
pub(super) const CAPACITY: usize = 65_536;

impl KnownKeys {
    pub(super) fn new(capacity: usize) -> KnownKeys {
        KnownKeys {
            gens: Mutex::new(Generations::default()),
            half: (capacity / 2).max(1),
        }
    }

    /// The time `key`'s stored row is known to be at or before, if it is known.
    pub(super) fn get(&self, key: &Key) -> Option<i64> {
        let mut g = self.gens.lock();
        if let Some(t) = g.young.get(key) {
            return Some(*t);
        }
        let t = g.old.remove(key)?;
        self.put(&mut g, key.clone(), t);
        Some(t)
    }

    /// Records keys a committed transaction stored (or found stored) at or before a time.
    pub(super) fn learn(&self, keys: impl IntoIterator<Item = (Key, i64)>) {
        let mut g = self.gens.lock();
        for (k, t) in keys {
            let t = match g.young.get(&k).or_else(|| g.old.get(&k)) {
                Some(known) => t.min(*known),
                None => t,
            };
            g.old.remove(&k);
            self.put(&mut g, k, t);
        }
    }

    fn put(&self, g: &mut Generations, k: Key, t: i64) {
        if g.young.len() >= self.half && !g.young.contains_key(&k) {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(k, t);
    }

    /// Entries held now (both generations).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        let g = self.gens.lock();
        g.young.len() + g.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Key, KnownKeys, Table};

    fn key(i: usize) -> Key {
        (Table::FirstUses, "user", format!("user{i}"), String::new())
    }

    #[test]
    fn a_known_time_only_moves_earlier() {
        let k = KnownKeys::new(16);
        k.learn([(key(1), 100)]);
        k.learn([(key(1), 200)]);
        assert_eq!(k.get(&key(1)), Some(100));
        k.learn([(key(1), 50)]);
        assert_eq!(k.get(&key(1)), Some(50));
        assert_eq!(k.get(&key(2)), None);
    }

    #[test]
    fn a_flood_of_new_keys_keeps_the_bound_and_a_hot_key() {
        let k = KnownKeys::new(1_000);
        k.learn([(key(0), 7)]);
        for i in 1..100_000 {
            k.learn([(key(i), i as i64)]);
            assert!(k.len() <= 1_000, "{} entries after {i}", k.len());
            if i % 300 == 0 {
                // Read now and then: a hot key survives any number of rotations.
                assert_eq!(k.get(&key(0)), Some(7), "after {i}");
            }
        }
        // Cold keys are gone; nothing answers wrongly for them (unknown, not a made-up time).
        assert_eq!(k.get(&key(1)), None);
        assert_eq!(k.get(&key(99_999)), Some(99_999));
    }

    #[test]
    fn tables_do_not_share_keys() {
        let k = KnownKeys::new(16);
        k.learn([((Table::AlertKeys, "user", "u".into(), "s".into()), 0)]);
        assert_eq!(
            k.get(&(Table::FirstUses, "user", "u".into(), "s".into())),
            None
        );
    }
}
