//! [`TieredStorage`]: the [`Storage`] Meridian hands to pingora-cache.

use std::any::Any;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use log::warn;
use pingora_cache::eviction::CacheEntryKey;
use pingora_cache::key::{CacheHashKey, CompactCacheKey};
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{
    HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType,
    Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType, Result};

use super::decoded::DecodedMeta;
use super::disk::{DiskLookup, DiskTier};
use super::memory::{CompleteHit, MemoryTier, TempObject};
use super::stats::{incr, StatsSnapshot, StorageStats};
use super::{MetaBytes, ObjectKey, StorageConfig};
use crate::variants::VariantIndex;

/// Memory tier in front of an optional disk tier.
///
/// Lookups try memory, then disk (a disk hit is offered to memory). A fill streams into memory,
/// where concurrent readers follow it, and is stored in both tiers when it finishes.
pub struct TieredStorage {
    memory: MemoryTier,
    disk: Option<DiskTier>,
    stats: Arc<StorageStats>,
    variants: VariantIndex,
}

impl TieredStorage {
    /// Builds the tiers. With a disk tier this opens its directory and rebuilds its index
    /// from the files there (blocking I/O: call it once at startup).
    pub fn new(config: StorageConfig) -> io::Result<Self> {
        let stats = Arc::new(StorageStats::default());
        let variants = VariantIndex::default();
        let disk = match &config.disk {
            Some(disk) => {
                let (tier, found) = DiskTier::open(disk, stats.clone())?;
                for (primary, object) in found {
                    variants.record(primary, object);
                }
                Some(tier)
            }
            None => None,
        };
        Ok(TieredStorage {
            memory: MemoryTier::new(config.memory_bytes, config.memory_max_object, stats.clone()),
            disk,
            stats,
            variants,
        })
    }

    /// Leaks the storage to get the `&'static` pingora-cache requires. Call it once per process:
    /// the storage outlives configuration reloads.
    pub fn leak(self) -> &'static Self {
        Box::leak(Box::new(self))
    }

    /// The live counters.
    pub fn stats(&self) -> &StorageStats {
        &self.stats
    }

    /// A copy of the counters.
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Removes `key` (its exact variant) from every tier, including a fill in flight.
    /// Returns whether anything was stored. For the admin API.
    pub async fn purge_key(&self, key: &CompactCacheKey) -> Result<bool> {
        self.remove(key.combined_bin()).await
    }

    /// Removes every `Vary` variant stored for the URL whose primary key is `primary` (the
    /// primary slot and each secondary variant the [`VariantIndex`] knows), from every tier.
    /// Returns how many objects were stored.
    pub async fn purge_url(&self, primary: &CompactCacheKey) -> Result<usize> {
        let mut found = usize::from(self.remove(primary.primary).await?);
        for object in self.variants.take(&primary.primary) {
            found += usize::from(self.remove(object).await?);
        }
        Ok(found)
    }

    /// Marks every `Vary` variant stored for the URL whose primary key is `primary` stale
    /// (soft purge). Returns how many objects were stored.
    pub async fn expire_url(&self, primary: &CompactCacheKey) -> Result<usize> {
        let mut found = usize::from(self.expire_object(primary.primary).await?);
        for object in self.variants.get(&primary.primary) {
            found += usize::from(self.expire_object(object).await?);
        }
        Ok(found)
    }

    /// Marks one object stale in every tier; returns whether any held it.
    async fn expire_object(&self, key: ObjectKey) -> Result<bool> {
        let now = SystemTime::now();
        let expire = move |meta: &MetaBytes| {
            let mut meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
            meta.expire_at(now);
            meta.serialize()
        };
        self.rewrite_meta(key, expire).await
    }

    async fn remove(&self, key: ObjectKey) -> Result<bool> {
        let in_memory = self.memory.purge(&key);
        let on_disk = match &self.disk {
            Some(disk) => disk.purge(key).await?,
            None => false,
        };
        Ok(in_memory || on_disk)
    }

    /// Applies `update` to the stored meta of `key` in every tier; returns whether any held it.
    async fn rewrite_meta<F>(&self, key: ObjectKey, update: F) -> Result<bool>
    where
        F: Fn(&MetaBytes) -> Result<MetaBytes> + Send + Clone + 'static,
    {
        let in_memory = self.memory.update_meta(&key, update.clone())?;
        let on_disk = match &self.disk {
            Some(disk) => disk.update_meta(key, update).await?,
            None => false,
        };
        Ok(in_memory || on_disk)
    }

    /// The largest body a fill may buffer: what the larger tier admits.
    fn max_fill(&self) -> usize {
        let disk = self
            .disk
            .as_ref()
            .map_or(0, |d| usize::try_from(d.max_object()).unwrap_or(usize::MAX));
        self.memory.max_object().max(disk)
    }
}

/// Our entries carry no [`pingora_cache::CacheEntryId`]: an exact target naming one is not ours.
fn foreign_target(target: &PurgeTarget<'_>) -> bool {
    matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. }))
}

#[async_trait]
impl Storage for TieredStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let object = key.combined_bin();
        if let Some(hit) = self.memory.lookup(&object)? {
            incr(&self.stats.memory_hits);
            return Ok(Some(hit));
        }
        let found = match &self.disk {
            Some(disk) => disk.lookup(object, self.memory.max_object()).await?,
            None => None,
        };
        let Some(found) = found else {
            incr(&self.stats.misses);
            return Ok(None);
        };
        incr(&self.stats.disk_hits);
        match found {
            DiskLookup::Whole { meta, body } => {
                let cache_meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
                let decoded = DecodedMeta::of(&cache_meta);
                self.memory.admit(object, meta, decoded, body.clone());
                Ok(Some((cache_meta, Box::new(CompleteHit::new(body)))))
            }
            DiskLookup::Streamed { meta, hit } => {
                let cache_meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
                Ok(Some((cache_meta, Box::new(hit))))
            }
        }
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id = U64WriteId::try_from(tag)
            .map_err(|e| Error::because(ErrorType::InternalError, "bad streaming write tag", e))?;
        match self.memory.lookup_write(&key.combined_bin(), id.into())? {
            Some(hit) => Ok(Some(hit)),
            None => Error::e_explain(
                ErrorType::InternalError,
                "the streaming write is gone (purged)",
            ),
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let object = key.combined_bin();
        let primary = key.primary_bin();
        if key.variance_bin().is_some() {
            self.variants.record(primary, object);
        }
        let (id, temp) = self
            .memory
            .start_write(object, meta.serialize()?, DecodedMeta::of(meta));
        Ok(Box::new(TieredMiss {
            storage: self,
            key: object,
            primary,
            id: id.into(),
            temp,
            written: 0,
            limit: self.max_fill(),
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if foreign_target(&target) {
            return Ok(PurgeOutcome::NotFound);
        }
        Ok(if self.remove(target.key().combined_bin()).await? {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if foreign_target(&target) {
            return Ok(PurgeOutcome::NotFound);
        }
        Ok(if self.expire_object(target.key().combined_bin()).await? {
            PurgeOutcome::Expired
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let meta = meta.serialize()?;
        self.rewrite_meta(key.combined_bin(), move |_| Ok(meta.clone()))
            .await
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Writes one fill: into memory as it arrives, into the tiers when finished.
struct TieredMiss {
    storage: &'static TieredStorage,
    key: ObjectKey,
    /// The primary (URL) key the object is a variant of (`key` itself for the primary slot).
    primary: ObjectKey,
    id: U64WriteId,
    temp: Arc<TempObject>,
    written: usize,
    limit: usize,
    finished: bool,
}

#[async_trait]
impl HandleMiss for TieredMiss {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        self.written += data.len();
        let meta = self.temp.meta();
        if self.written + meta.0.len() + meta.1.len() > self.limit {
            self.temp.abort();
            return Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "object larger than the cache's max object ({} bytes)",
                    self.limit
                ),
            );
        }
        self.temp.append(data, eof)
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let body = self.temp.complete()?;
        self.finished = true;
        let storage = self.storage;
        let (meta, decoded) = match with_length(&self.temp, body.len())? {
            Some((meta, decoded)) => (meta, decoded),
            None => (self.temp.meta().clone(), self.temp.decoded().clone()),
        };
        let size = body.len() + meta.0.len() + meta.1.len();
        if !self.temp.purged() {
            // Disk first, then memory, then retire the in-flight object: a lookup finds the
            // object somewhere at every step.
            if let Some(disk) = &storage.disk {
                if let Err(e) = disk
                    .store(self.key, self.primary, meta.clone(), body.clone())
                    .await
                {
                    warn!("cache object not stored on disk: {e}");
                }
                // A purge that ran while the file was written must not be undone by it.
                if self.temp.purged() {
                    disk.purge(self.key).await?;
                }
            }
            storage
                .memory
                .admit_fill(self.key, &self.temp, (meta, decoded), body);
        }
        storage.memory.end_write(&self.key, self.id.into());
        Ok(MissFinishType::Created(size))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(self.id.as_bytes())
    }
}

/// The meta to store for a fill whose response head had no `Content-Length` (chunked or
/// close-delimited): the same meta with `Content-Length: len`, now that the body is complete.
/// A hit then carries its length, so a range can be cut from it (pingora's range filter, like
/// nginx's, needs one) and the client is not sent a stored object chunked. `None` when the head
/// has a length already, or its status has no body (1xx, 204, 304).
fn with_length(temp: &TempObject, len: usize) -> Result<Option<(MetaBytes, DecodedMeta)>> {
    let header = temp.decoded().header();
    if header.headers.contains_key(CONTENT_LENGTH)
        || matches!(header.status.as_u16(), 100..=199 | 204 | 304)
    {
        return Ok(None);
    }
    let meta = temp.meta();
    let mut cache_meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
    let header = cache_meta.response_header_mut();
    header.remove_header(&TRANSFER_ENCODING);
    header.insert_header(CONTENT_LENGTH, len.to_string())?;
    let decoded = DecodedMeta::of(&cache_meta);
    Ok(Some((cache_meta.serialize()?, decoded)))
}

impl Drop for TieredMiss {
    fn drop(&mut self) {
        if !self.finished {
            self.temp.abort();
            self.storage.memory.end_write(&self.key, self.id.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pingora_cache::trace::Span;
    use pingora_http::ResponseHeader;

    use super::*;

    async fn fill_and_get(status: u16, length: Option<&str>, chunks: &[&[u8]]) -> CacheMeta {
        let storage = TieredStorage::new(StorageConfig {
            memory_bytes: 1 << 20,
            memory_max_object: 1 << 20,
            disk: None,
        })
        .expect("storage")
        .leak();
        let key = CacheKey::new("tiered/length", "");
        let mut header = ResponseHeader::build(status, None).expect("header");
        header.append_header("x-tag", "t").expect("header");
        if let Some(length) = length {
            header
                .append_header("Content-Length", length)
                .expect("header");
        }
        let now = SystemTime::now();
        let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header);
        let span = Span::inactive().handle();
        let mut miss = storage
            .get_miss_handler(&key, &meta, &span)
            .await
            .expect("miss");
        // As a chunked or close-delimited body arrives: no eof write, the end is `finish`.
        for chunk in chunks {
            miss.write_body(Bytes::copy_from_slice(chunk), false)
                .await
                .expect("write");
        }
        miss.finish().await.expect("finish");
        let (meta, _) = storage
            .lookup(&key, &span)
            .await
            .expect("lookup")
            .expect("stored");
        meta
    }

    fn length(meta: &CacheMeta) -> Option<&str> {
        meta.headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_fill_without_a_length_is_stored_with_the_length_of_its_body() {
        let meta = fill_and_get(200, None, &[b"hello ", b"chunked ", b"world"]).await;
        assert_eq!(length(&meta), Some("19"));
        assert_eq!(
            meta.headers().get("x-tag").map(|v| v.as_bytes()),
            Some(&b"t"[..])
        );
        // A length the origin sent is kept as it is.
        let meta = fill_and_get(200, Some("5"), &[b"hello"]).await;
        assert_eq!(length(&meta), Some("5"));
        // A 204 has no body and gets no length (RFC 9110 §8.6).
        let meta = fill_and_get(204, None, &[]).await;
        assert_eq!(length(&meta), None);
    }
}
