//! The disk tier's in-memory index: object sizes and an LRU order, rebuilt at start by
//! scanning the object files.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use crate::storage::stats::StorageStats;
use crate::storage::ObjectKey;

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    tick: u64,
}

/// Objects on disk, their sizes and their recency. Not synchronised: the disk tier keeps it
/// behind a mutex and performs the matching file operations under the same lock.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: HashMap<ObjectKey, Entry>,
    lru: BTreeMap<u64, ObjectKey>,
    next_tick: u64,
    bytes: u64,
}

impl Index {
    /// Bytes of all indexed objects.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of indexed objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `key` is indexed.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Copies the totals into the tier's counters (which the metrics read without this lock).
    pub fn publish(&self, stats: &StorageStats) {
        stats.disk_bytes.store(self.bytes, Ordering::Relaxed);
        stats
            .disk_objects
            .store(self.len() as u64, Ordering::Relaxed);
    }

    /// Marks `key` as the most recently used.
    pub fn touch(&mut self, key: &ObjectKey) {
        let tick = self.tick();
        if let Some(entry) = self.entries.get_mut(key) {
            self.lru.remove(&entry.tick);
            entry.tick = tick;
            self.lru.insert(tick, *key);
        }
    }

    /// Indexes `key` with `size` as the most recently used, replacing any previous entry.
    pub fn insert(&mut self, key: ObjectKey, size: u64) {
        self.remove(&key);
        let tick = self.tick();
        self.entries.insert(key, Entry { size, tick });
        self.lru.insert(tick, key);
        self.bytes += size;
    }

    /// Drops `key`; returns its size if it was indexed.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<u64> {
        let entry = self.entries.remove(key)?;
        self.lru.remove(&entry.tick);
        self.bytes -= entry.size;
        Some(entry.size)
    }

    /// Removes and returns the least recently used object, if any.
    pub fn pop_lru(&mut self) -> Option<(ObjectKey, u64)> {
        let (_, key) = self.lru.pop_first()?;
        let entry = self.entries.remove(&key)?;
        self.bytes -= entry.size;
        Some((key, entry.size))
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ObjectKey {
        [n; 16]
    }

    #[test]
    fn lru_order_follows_touches() {
        let mut index = Index::default();
        index.insert(key(1), 10);
        index.insert(key(2), 20);
        index.insert(key(3), 30);
        index.touch(&key(1));
        assert_eq!(index.bytes(), 60);
        assert_eq!(index.pop_lru(), Some((key(2), 20)));
        assert_eq!(index.pop_lru(), Some((key(3), 30)));
        assert_eq!(index.pop_lru(), Some((key(1), 10)));
        assert_eq!(index.pop_lru(), None);
        assert_eq!(index.bytes(), 0);
    }

    #[test]
    fn reinsert_replaces_size() {
        let mut index = Index::default();
        index.insert(key(1), 10);
        index.insert(key(1), 15);
        assert_eq!(index.len(), 1);
        assert_eq!(index.bytes(), 15);
        assert_eq!(index.remove(&key(1)), Some(15));
        assert!(!index.contains(&key(1)));
    }
}
