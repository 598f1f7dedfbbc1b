//! Meridian CDN edge: cache storage for pingora-cache, the HLS profile and tiering.
//!
//! [`storage::TieredStorage`] is the [`pingora_cache::Storage`] the edge hands to
//! pingora-cache: a byte-bounded memory tier (TinyUFO admission and eviction) in front of an
//! optional byte-bounded disk tier that survives restarts and drops corrupt objects.
//! [`hls`] recognises playlists and segments, sets their freshness and cache-key query, and
//! prefetches the next segments; [`shield`] picks a parent tier by consistent hashing and
//! refuses forwarding loops.

pub mod hls;
pub mod shield;
pub mod storage;

pub use storage::{DiskConfig, StatsSnapshot, StorageConfig, StorageStats, TieredStorage};
