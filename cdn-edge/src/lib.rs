//! Meridian CDN edge: cache storage and caching rules for pingora-cache, the HLS profile and
//! tiering.
//!
//! * [`storage::TieredStorage`] is the [`pingora_cache::Storage`] the edge hands to
//!   pingora-cache: a byte-bounded memory tier (TinyUFO admission and eviction) in front of an
//!   optional byte-bounded disk tier that survives restarts and drops corrupt objects.
//! * [`key`] builds cache keys (scheme, host, path, normalised query); [`encoding`] normalises
//!   `Accept-Encoding` to a few classes so `Vary: Accept-Encoding` stays cacheable.
//! * [`policy`] decides what is stored and for how long (RFC 9111, RFC 9213).
//! * [`targeted`] checks `CDN-Cache-Control` as a Structured Field (RFC 9213).
//! * [`freshen`] updates a stored response's header from a `304` (RFC 9111 §4.3.4).
//! * [`status`] renders `Cache-Status` (RFC 9211).
//! * [`metrics`] counts hits, misses, stale, bytes by source, storage fill.
//! * [`surrogate`] indexes `Surrogate-Key` response headers for purges by key.
//! * [`hls`] recognises playlists and segments, sets their freshness and cache-key query, and
//!   prefetches the next segments; [`shield`] picks a parent tier by consistent hashing and
//!   refuses forwarding loops.

pub mod encoding;
pub mod freshen;
pub mod hls;
pub mod key;
pub mod metrics;
pub mod policy;
pub mod shield;
pub mod status;
pub mod storage;
pub mod surrogate;
pub mod targeted;
pub mod variants;

pub use storage::{DiskConfig, StatsSnapshot, StorageConfig, StorageStats, TieredStorage};
