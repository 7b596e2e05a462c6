//! The connection table: 4-tuple → connection id, keeping only the 4-byte id in each slot
//! (the tuple lives in the connection, which a lookup reads next anyway). A map keyed by the
//! tuple itself held 64 bytes of key per slot — at a million connections and hashbrown's
//! load factor, ~150 bytes per connection and a cache line per probe.

use super::FourTuple;
use crate::contract::ConnId;

/// 4-tuple → id over `hashbrown::HashTable` with a keyed `ahash`.
pub(crate) struct ConnTable {
    t: hashbrown::HashTable<u32>,
    hasher: ahash::RandomState,
}

impl ConnTable {
    pub(crate) fn new(hasher: ahash::RandomState) -> ConnTable {
        ConnTable { t: hashbrown::HashTable::new(), hasher }
    }

    fn hash(&self, key: &FourTuple) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The id offloaded under `key`; `tuple_of(id)` gives each candidate's tuple.
    pub(crate) fn get(&self, key: &FourTuple, tuple_of: impl Fn(u32) -> Option<FourTuple>) -> Option<ConnId> {
        self.t.find(self.hash(key), |&id| tuple_of(id).as_ref() == Some(key)).map(|&id| ConnId(id))
    }

    /// Adds `key → id` (the caller checked it is absent); growing rehashes every entry by
    /// its connection's tuple.
    pub(crate) fn insert(&mut self, key: &FourTuple, id: ConnId, tuple_of: impl Fn(u32) -> Option<FourTuple>) {
        let h = self.hash(key);
        let hasher = &self.hasher;
        self.t.insert_unique(h, id.0, |&other| {
            // Every id in the table has its connection in place while the table can grow
            // (the engine inserts only outside a terminate's upcalls).
            let k = tuple_of(other);
            debug_assert!(k.is_some(), "connection {other} missing while the table grows");
            k.map_or(0, |k| hasher.hash_one(k))
        });
    }

    /// Removes `key → id`.
    pub(crate) fn remove(&mut self, key: &FourTuple, id: ConnId) {
        if let Ok(e) = self.t.find_entry(self.hash(key), |&x| x == id.0) {
            e.remove();
        }
    }

    /// Entries (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.t.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    #[test]
    fn behaves_like_a_map_through_growth_and_removal() {
        let key = |i: u32| -> FourTuple {
            let a: SocketAddr = format!("198.18.{}.{}:{}", i >> 8 & 255, i & 255, 1000 + (i % 7)).parse().unwrap();
            (a, "198.18.0.1:5001".parse().unwrap())
        };
        let mut owners: HashMap<u32, FourTuple> = HashMap::new();
        let mut t = ConnTable::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        for i in 0..5000 {
            owners.insert(i, key(i));
            let o = owners.clone();
            t.insert(&key(i), ConnId(i), |id| o.get(&id).copied());
        }
        let o = owners.clone();
        for i in 0..5000 {
            assert_eq!(t.get(&key(i), |id| o.get(&id).copied()), Some(ConnId(i)));
        }
        assert_eq!(t.get(&key(6000), |id| o.get(&id).copied()), None);
        for i in (0..5000).step_by(2) {
            t.remove(&key(i), ConnId(i));
            owners.remove(&i);
        }
        assert_eq!(t.len(), 2500);
        for i in 0..5000 {
            let want = (i % 2 == 1).then_some(ConnId(i));
            assert_eq!(t.get(&key(i), |id| owners.get(&id).copied()), want);
        }
    }
}
