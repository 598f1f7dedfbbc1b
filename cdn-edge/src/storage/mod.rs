//! Cache storage: a memory tier, a disk tier and the tiered [`pingora_cache::Storage`] over them.
//!
//! See `docs/STORAGE.md` for the file format, the index and the reload story.

mod decoded;
mod disk;
mod memory;
mod stats;
mod tiered;

use std::path::PathBuf;

pub use stats::{StatsSnapshot, StorageStats};
pub use tiered::TieredStorage;

/// The identity of a stored object: the combined (primary + variance) hash of its cache key.
type ObjectKey = pingora_cache::key::HashBinary;

/// Serialized [`pingora_cache::CacheMeta`]: its internal part and its header part.
type MetaBytes = (Vec<u8>, Vec<u8>);

/// Sizes and places of the storage tiers.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Upper bound of the memory tier in bytes (body plus serialized meta of every object).
    pub memory_bytes: usize,
    /// Largest object (body plus meta) the memory tier admits.
    pub memory_max_object: usize,
    /// The disk tier, if any.
    pub disk: Option<DiskConfig>,
}

/// Place and size of the disk tier.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Directory holding the object files (created if missing).
    pub path: PathBuf,
    /// Upper bound of the disk tier in bytes (sum of the object file sizes).
    pub bytes: u64,
    /// Largest object file the disk tier admits.
    pub max_object: u64,
}

/// Builds a pingora error of type `InternalError` from a context and a cause.
fn internal_error<E>(context: &'static str, cause: E) -> Box<pingora_error::Error>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pingora_error::Error::because(pingora_error::ErrorType::InternalError, context, cause)
}
