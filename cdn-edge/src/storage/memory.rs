//! The memory tier: complete objects in a TinyUFO cache bounded in bytes, plus the objects
//! being written, which readers stream as their bytes arrive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use pingora_cache::storage::{HandleHit, HitHandler, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType, Result};
use tinyufo::TinyUfo;
use tokio::sync::watch;

use super::decoded::DecodedMeta;
use super::stats::{incr, StorageStats};
use super::{MetaBytes, ObjectKey};

/// A complete object held in memory.
pub(crate) struct MemObject {
    key: ObjectKey,
    meta: MetaBytes,
    /// `meta`, decoded: a hit builds its [`CacheMeta`] from it.
    decoded: DecodedMeta,
    /// What the decoded header takes in memory, roughly (it counts against the bound).
    header_size: usize,
    body: Bytes,
}

impl MemObject {
    /// The object with `decoded`, the meta `meta` holds, already decoded.
    fn new(key: ObjectKey, meta: MetaBytes, decoded: DecodedMeta, body: Bytes) -> Self {
        let header_size = decoded
            .header()
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_ENTRY_OVERHEAD)
            .sum();
        MemObject {
            key,
            meta,
            decoded,
            header_size,
            body,
        }
    }

    /// Bytes this object counts against the bound: body, serialized meta and decoded header.
    fn size(&self) -> usize {
        self.meta.0.len() + self.meta.1.len() + self.header_size + self.body.len()
    }
}

/// Memory a decoded header entry takes beyond its name and value (map slot, indices).
const HEADER_ENTRY_OVERHEAD: usize = 32;

/// Progress of an object being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    /// This many chunks are written, more may follow.
    Writing(usize),
    /// All this many chunks are written.
    Done(usize),
    /// The writer went away without finishing: the object is incomplete.
    Aborted,
}

/// An object being written: visible to readers, who stream its chunks as they arrive.
pub(crate) struct TempObject {
    meta: MetaBytes,
    /// `meta`, decoded (as [`MemObject`]'s).
    decoded: DecodedMeta,
    chunks: RwLock<Vec<Bytes>>,
    state: watch::Sender<WriteState>,
    purged: AtomicBool,
}

/// The memory tier.
pub(crate) struct MemoryTier {
    cache: TinyUfo<ObjectKey, Arc<MemObject>>,
    /// Serialises admissions and removals so the byte count and TinyUFO's weights agree.
    admission: Mutex<()>,
    /// Bytes per TinyUFO weight unit (TinyUFO weights are `u16`).
    unit: usize,
    limit: usize,
    max_object: usize,
    temp: RwLock<HashMap<ObjectKey, HashMap<u64, Arc<TempObject>>>>,
    next_write: AtomicU64,
    stats: Arc<StorageStats>,
}

impl MemoryTier {
    /// A tier holding at most `limit` bytes, admitting objects of at most `max_object` bytes.
    pub fn new(limit: usize, max_object: usize, stats: Arc<StorageStats>) -> Self {
        let max_object = max_object.min(limit);
        let unit = max_object.div_ceil(usize::from(u16::MAX)).max(1);
        // TinyUFO sizes its frequency sketch from an estimate of the object count.
        let estimated_objects = (limit / 16_384).clamp(1024, 1 << 20);
        MemoryTier {
            cache: TinyUfo::new(limit / unit, estimated_objects),
            admission: Mutex::new(()),
            unit,
            limit,
            max_object,
            temp: RwLock::new(HashMap::new()),
            next_write: AtomicU64::new(1),
            stats,
        }
    }

    /// Largest object (body plus meta) this tier admits.
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    /// Looks `key` up: an object being written first (so a refreshed object is visible while it
    /// is written), then a complete one.
    pub fn lookup(&self, key: &ObjectKey) -> Result<Option<(CacheMeta, HitHandler)>> {
        let writing = self
            .temp
            .read()
            .get(key)
            .and_then(|writes| writes.values().next().cloned());
        if let Some(temp) = writing {
            return partial_hit(temp).map(Some);
        }
        match self.cache.get(key) {
            Some(object) if object.key == *key => Ok(Some((
                object.decoded.cache_meta(&object.meta)?,
                Box::new(CompleteHit::new(object.body.clone())),
            ))),
            _ => Ok(None),
        }
    }

    /// Looks up the in-flight write `write_id` of `key`.
    pub fn lookup_write(
        &self,
        key: &ObjectKey,
        write_id: u64,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let temp = self
            .temp
            .read()
            .get(key)
            .and_then(|writes| writes.get(&write_id).cloned());
        temp.map(partial_hit).transpose()
    }

    /// Registers a write of `key` with `meta` (`decoded` is the same meta, decoded); returns its
    /// id and the shared object.
    pub fn start_write(
        &self,
        key: ObjectKey,
        meta: MetaBytes,
        decoded: DecodedMeta,
    ) -> (u64, Arc<TempObject>) {
        let (state, _) = watch::channel(WriteState::Writing(0));
        let temp = Arc::new(TempObject {
            meta,
            decoded,
            chunks: RwLock::new(Vec::new()),
            state,
            purged: AtomicBool::new(false),
        });
        let id = self.next_write.fetch_add(1, Ordering::Relaxed);
        self.temp
            .write()
            .entry(key)
            .or_default()
            .insert(id, temp.clone());
        (id, temp)
    }

    /// Forgets the write `write_id` of `key` (finished or abandoned).
    pub fn end_write(&self, key: &ObjectKey, write_id: u64) {
        let mut temp = self.temp.write();
        if let Some(writes) = temp.get_mut(key) {
            writes.remove(&write_id);
            if writes.is_empty() {
                temp.remove(key);
            }
        }
    }

    /// Offers an object (`decoded` is `meta`, decoded) to the tier.
    /// Returns whether it was admitted (it may be too large, or TinyLFU may prefer the object
    /// it would have evicted).
    pub fn admit(
        &self,
        key: ObjectKey,
        meta: MetaBytes,
        decoded: DecodedMeta,
        body: Bytes,
    ) -> bool {
        self.insert(Arc::new(MemObject::new(key, meta, decoded, body)), false)
    }

    /// Offers the finished fill `temp` of `key`, stored as `meta` (the fill's, or the fill's
    /// completed with its length) and `body`, to the tier, unless it was purged while it was
    /// written. Returns whether it was admitted.
    ///
    /// The purge flag is read under the admission lock, which [`MemoryTier::purge`] takes
    /// after setting it: a purge is either seen here or removes what this admits. (Read
    /// before the lock, a purge could land in between and the fill be stored after it.)
    pub fn admit_fill(
        &self,
        key: ObjectKey,
        temp: &TempObject,
        meta: (MetaBytes, DecodedMeta),
        body: Bytes,
    ) -> bool {
        let object = MemObject::new(key, meta.0, meta.1, body);
        let object = Arc::new(object);
        let _guard = self.admission.lock();
        !temp.purged() && self.insert_locked(object, false)
    }

    /// Replaces any object of the same key with `object` (if admitted). `force` skips the
    /// TinyLFU comparison (for a meta update of an object already held).
    fn insert(&self, object: Arc<MemObject>, force: bool) -> bool {
        let _guard = self.admission.lock();
        self.insert_locked(object, force)
    }

    /// [`MemoryTier::insert`], the admission lock held by the caller.
    fn insert_locked(&self, object: Arc<MemObject>, force: bool) -> bool {
        // The new version supersedes the old one, admitted or not.
        self.remove_locked(&object.key);
        let size = object.size();
        let weight = size.div_ceil(self.unit).max(1);
        // Sizes round up to whole units, so an object near the bound may not fit in units.
        let Ok(weight) = u16::try_from(weight) else {
            incr(&self.stats.memory_rejections);
            return false;
        };
        if size > self.max_object || usize::from(weight) > self.limit / self.unit {
            incr(&self.stats.memory_rejections);
            return false;
        }
        let evicted = if force {
            self.cache.force_put(object.key, object.clone(), weight)
        } else {
            self.cache.put(object.key, object.clone(), weight)
        };
        // Evictions are counted out before the new object is counted in, so that a reader of
        // the counters (which takes no lock) never sees more bytes than the bound.
        let mut admitted = true;
        for kv in evicted {
            if Arc::ptr_eq(&kv.data, &object) {
                admitted = false;
                incr(&self.stats.memory_rejections);
                continue;
            }
            self.stats
                .memory_bytes
                .fetch_sub(kv.data.size() as u64, Ordering::Relaxed);
            self.stats.memory_objects.fetch_sub(1, Ordering::Relaxed);
            incr(&self.stats.memory_evictions);
        }
        if admitted {
            self.stats
                .memory_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
            self.stats.memory_objects.fetch_add(1, Ordering::Relaxed);
        }
        debug_assert!(self.stats.memory_bytes.load(Ordering::Relaxed) <= self.limit as u64);
        admitted
    }

    fn remove_locked(&self, key: &ObjectKey) -> bool {
        match self.cache.remove(key) {
            Some(old) => {
                self.stats
                    .memory_bytes
                    .fetch_sub(old.size() as u64, Ordering::Relaxed);
                self.stats.memory_objects.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Removes `key`, complete or being written (an in-flight write of it is then not stored
    /// when it finishes). Returns whether anything was found.
    pub fn purge(&self, key: &ObjectKey) -> bool {
        let writes = self.temp.write().remove(key);
        let writing = writes.is_some_and(|writes| {
            for temp in writes.values() {
                temp.purged.store(true, Ordering::Release);
            }
            !writes.is_empty()
        });
        let _guard = self.admission.lock();
        self.remove_locked(key) || writing
    }

    /// Replaces the meta of the complete object `key` with `update` applied to it; returns
    /// whether `key` was held (and still was when the new meta was ready).
    ///
    /// `update` runs without a lock. The new object replaces the old one only if the old one
    /// is still held, checked under the admission lock: a purge or a new version that came in
    /// meanwhile wins (as the disk tier's rewrite does, by the file's identity).
    pub fn update_meta<F>(&self, key: &ObjectKey, update: F) -> Result<bool>
    where
        F: FnOnce(&MetaBytes) -> Result<MetaBytes>,
    {
        let Some(old) = self.cache.get(key).filter(|o| o.key == *key) else {
            return Ok(false);
        };
        let meta = update(&old.meta)?;
        let decoded = DecodedMeta::of(&CacheMeta::deserialize(&meta.0, &meta.1)?);
        let object = Arc::new(MemObject::new(*key, meta, decoded, old.body.clone()));
        let _guard = self.admission.lock();
        let still_held = self
            .cache
            .get(key)
            .is_some_and(|now| Arc::ptr_eq(&now, &old));
        Ok(still_held && self.insert_locked(object, true))
    }
}

impl TempObject {
    /// Appends a chunk (empty chunks are skipped) and publishes the progress. One writer (the
    /// fill) appends, completes and aborts, so the count cannot change between the two locks.
    pub fn append(&self, data: Bytes, eof: bool) -> Result<()> {
        let mut chunks = self.chunks.write();
        let state = *self.state.borrow();
        if state != WriteState::Writing(chunks.len()) {
            return Error::e_explain(ErrorType::InternalError, "cache write after its end");
        }
        if !data.is_empty() {
            chunks.push(data);
        }
        let n = chunks.len();
        // The chunk is in before its count is published, and the lock is free by then: the
        // readers the count wakes (on other threads too) do not queue for it.
        drop(chunks);
        self.state.send_replace(if eof {
            WriteState::Done(n)
        } else {
            WriteState::Writing(n)
        });
        Ok(())
    }

    /// Marks the body complete and returns it as one buffer.
    pub fn complete(&self) -> Result<Bytes> {
        let chunks = self.chunks.read();
        // The watch's read guard must be gone before `send_replace` takes its write lock on
        // the same thread (parking_lot's locks are not reentrant): copy the state out first.
        let state = *self.state.borrow();
        match state {
            WriteState::Aborted => {
                return Error::e_explain(ErrorType::InternalError, "cache write was aborted")
            }
            WriteState::Writing(_) => {
                self.state.send_replace(WriteState::Done(chunks.len()));
            }
            WriteState::Done(_) => {}
        }
        Ok(match chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut body = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for chunk in many {
                    body.extend_from_slice(chunk);
                }
                body.freeze()
            }
        })
    }

    /// Marks the write incomplete: readers get an error instead of a truncated body.
    pub fn abort(&self) {
        self.state.send_if_modified(|state| {
            let writing = matches!(state, WriteState::Writing(_));
            if writing {
                *state = WriteState::Aborted;
            }
            writing
        });
    }

    /// Whether the object was purged while being written.
    pub fn purged(&self) -> bool {
        self.purged.load(Ordering::Acquire)
    }

    /// The serialized meta.
    pub fn meta(&self) -> &MetaBytes {
        &self.meta
    }

    /// [`TempObject::meta`], decoded.
    pub fn decoded(&self) -> &DecodedMeta {
        &self.decoded
    }
}

fn partial_hit(temp: Arc<TempObject>) -> Result<(CacheMeta, HitHandler)> {
    let meta = temp.decoded.cache_meta(&temp.meta)?;
    let state = temp.state.subscribe();
    Ok((
        meta,
        Box::new(PartialHit {
            temp,
            state,
            next: 0,
        }),
    ))
}

/// Reads a complete in-memory body, seekable for single and multipart ranges.
pub(crate) struct CompleteHit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

impl CompleteHit {
    /// A reader of the whole `body`.
    pub fn new(body: Bytes) -> Self {
        let end = body.len();
        CompleteHit {
            body,
            start: 0,
            end,
            done: false,
        }
    }
}

#[async_trait]
impl HandleHit for CompleteHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {}", self.body.len()),
            );
        }
        self.start = start;
        // An end before the start reads nothing (rather than slicing backwards).
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()).max(start));
        // A seek rearms the reader so one handler serves several ranges.
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Streams an object being written, chunk by chunk as the writer appends them.
pub(crate) struct PartialHit {
    temp: Arc<TempObject>,
    state: watch::Receiver<WriteState>,
    next: usize,
}

#[async_trait]
impl HandleHit for PartialHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let state = *self.state.borrow_and_update();
            let available = match state {
                WriteState::Aborted => {
                    return Error::e_explain(ErrorType::InternalError, "cache write was aborted")
                }
                WriteState::Writing(n) | WriteState::Done(n) => n,
            };
            if self.next < available {
                let chunk = self.temp.chunks.read().get(self.next).cloned();
                self.next += 1;
                if let Some(chunk) = chunk {
                    return Ok(Some(chunk));
                }
            } else if matches!(state, WriteState::Done(_)) {
                return Ok(None);
            } else if self.state.changed().await.is_err() {
                return Error::e_explain(ErrorType::InternalError, "cache writer went away");
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn should_count_access(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use pingora_http::ResponseHeader;

    use super::*;

    fn meta() -> CacheMeta {
        let header = ResponseHeader::build(200, None).expect("header");
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    fn admitted(tier: &MemoryTier, key: ObjectKey) {
        let meta = meta();
        let bytes = meta.serialize().expect("meta");
        let body = Bytes::from_static(b"body");
        assert!(tier.admit(key, bytes, DecodedMeta::of(&meta), body));
    }

    /// A purge that lands while a meta update (a revalidation, a soft purge) of the same object
    /// is being computed wins: the update must not put the purged object back.
    #[test]
    fn a_purge_during_a_meta_update_is_not_undone() {
        let tier = MemoryTier::new(1 << 20, 1 << 20, Arc::default());
        let key = [7; 16];
        admitted(&tier, key);
        let updated = tier
            .update_meta(&key, |old| {
                assert!(tier.purge(&key), "the object was there");
                Ok(old.clone())
            })
            .expect("update");
        assert!(!updated, "the object it updated is gone");
        assert!(
            tier.lookup(&key).expect("lookup").is_none(),
            "purged, then put back"
        );
        assert_eq!(tier.stats.memory_objects.load(Ordering::Relaxed), 0);
    }

    /// A new version admitted while an update of the old one was being computed is kept.
    #[test]
    fn a_new_version_during_a_meta_update_is_kept() {
        let tier = MemoryTier::new(1 << 20, 1 << 20, Arc::default());
        let key = [8; 16];
        admitted(&tier, key);
        let fresh = Bytes::from_static(b"new version");
        let updated = tier
            .update_meta(&key, |old| {
                let meta = meta();
                let bytes = meta.serialize().expect("meta");
                assert!(tier.admit(key, bytes, DecodedMeta::of(&meta), fresh.clone()));
                Ok(old.clone())
            })
            .expect("update");
        assert!(!updated);
        let (_, mut hit) = tier.lookup(&key).expect("lookup").expect("held");
        let body = futures::executor::block_on(hit.read_body()).expect("read");
        assert_eq!(body, Some(fresh));
    }
}
