//! Counters the gateway exports as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live storage counters (atomics, updated by the tiers as they work).
#[derive(Debug, Default)]
pub struct StorageStats {
    pub(crate) memory_bytes: AtomicU64,
    pub(crate) memory_objects: AtomicU64,
    pub(crate) memory_hits: AtomicU64,
    pub(crate) memory_evictions: AtomicU64,
    pub(crate) memory_rejections: AtomicU64,
    pub(crate) disk_bytes: AtomicU64,
    pub(crate) disk_objects: AtomicU64,
    pub(crate) disk_hits: AtomicU64,
    pub(crate) disk_evictions: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) corrupt_dropped: AtomicU64,
}

/// A point-in-time copy of [`StorageStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Bytes held by the memory tier (bodies plus serialized meta).
    pub memory_bytes: u64,
    /// Objects held by the memory tier.
    pub memory_objects: u64,
    /// Lookups answered by the memory tier (complete or in-flight objects).
    pub memory_hits: u64,
    /// Objects the memory tier evicted to stay within its bound.
    pub memory_evictions: u64,
    /// Objects the memory tier declined to admit (too large or less popular than the victim).
    pub memory_rejections: u64,
    /// Bytes held by the disk tier (object file sizes).
    pub disk_bytes: u64,
    /// Objects held by the disk tier.
    pub disk_objects: u64,
    /// Lookups answered by the disk tier.
    pub disk_hits: u64,
    /// Objects the disk tier evicted to stay within its bound.
    pub disk_evictions: u64,
    /// Lookups found in no tier.
    pub misses: u64,
    /// Torn or corrupt object files found and removed (on read or at the startup scan).
    pub corrupt_dropped: u64,
}

impl StorageStats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            memory_bytes: get(&self.memory_bytes),
            memory_objects: get(&self.memory_objects),
            memory_hits: get(&self.memory_hits),
            memory_evictions: get(&self.memory_evictions),
            memory_rejections: get(&self.memory_rejections),
            disk_bytes: get(&self.disk_bytes),
            disk_objects: get(&self.disk_objects),
            disk_hits: get(&self.disk_hits),
            disk_evictions: get(&self.disk_evictions),
            misses: get(&self.misses),
            corrupt_dropped: get(&self.corrupt_dropped),
        }
    }
}

/// Adds one to a counter.
pub(crate) fn incr(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
