//! The connection table: 4-tuple → connection id, keeping only the 4-byte id in each slot
//! (the tuple lives in the connection, which a lookup reads next anyway). A map keyed by the
//! tuple itself held 64 bytes of key per slot — at a million connections and hashbrown's
//! load factor, ~150 bytes per connection and a cache line per probe.

use crate::contract::ConnId;
use crate::tcp::Endpoints;

/// 4-tuple → id over `hashbrown::HashTable` with a keyed `ahash`, keyed by the compact
/// [`Endpoints`] (hashed as three words, compared as 38 bytes).
pub(crate) struct ConnTable {
    t: hashbrown::HashTable<u32>,
    hasher: ahash::RandomState,
}

impl ConnTable {
    pub(crate) fn new(hasher: ahash::RandomState) -> ConnTable {
        ConnTable { t: hashbrown::HashTable::new(), hasher }
    }

    fn hash(&self, key: &Endpoints) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The id offloaded under `key`; `tuple_of(id)` gives each candidate's tuple.
    pub(crate) fn get<'a>(&self, key: &Endpoints, tuple_of: impl Fn(u32) -> Option<&'a Endpoints>) -> Option<ConnId> {
        self.t.find(self.hash(key), |&id| tuple_of(id) == Some(key)).map(|&id| ConnId(id))
    }

    /// Adds `key → id` (the caller checked it is absent); growing rehashes every entry by
    /// its connection's tuple.
    pub(crate) fn insert<'a>(&mut self, key: &Endpoints, id: ConnId, tuple_of: impl Fn(u32) -> Option<&'a Endpoints>) {
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
    pub(crate) fn remove(&mut self, key: &Endpoints, id: ConnId) {
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
        let key = |i: u32| -> Endpoints {
            let a: SocketAddr = format!("198.18.{}.{}:{}", i >> 8 & 255, i & 255, 1000 + (i % 7)).parse().unwrap();
            Endpoints::new(a, "198.18.0.1:5001".parse().unwrap())
        };
        let mut owners: HashMap<u32, Endpoints> = HashMap::new();
        let mut t = ConnTable::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        for i in 0..5000 {
            owners.insert(i, key(i));
            t.insert(&key(i), ConnId(i), |id| owners.get(&id));
        }
        for i in 0..5000 {
            assert_eq!(t.get(&key(i), |id| owners.get(&id)), Some(ConnId(i)));
        }
        assert_eq!(t.get(&key(6000), |id| owners.get(&id)), None);
        for i in (0..5000).step_by(2) {
            t.remove(&key(i), ConnId(i));
            owners.remove(&i);
        }
        assert_eq!(t.len(), 2500);
        for i in 0..5000 {
            let want = (i % 2 == 1).then_some(ConnId(i));
            assert_eq!(t.get(&key(i), |id| owners.get(&id)), want);
        }
    }
}
