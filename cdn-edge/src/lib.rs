//! Meridian CDN edge: cache storage for pingora-cache.
//!
//! [`storage::TieredStorage`] is the [`pingora_cache::Storage`] the edge hands to
//! pingora-cache: a byte-bounded memory tier (TinyUFO admission and eviction) in front of an
//! optional byte-bounded disk tier that survives restarts and drops corrupt objects.

pub mod storage;

pub use storage::{DiskConfig, StatsSnapshot, StorageConfig, StorageStats, TieredStorage};
