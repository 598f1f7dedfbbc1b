//! The disk tier: one file per object (see [`file`]), an LRU [`index`] bounded in bytes and
//! rebuilt at start by scanning the directory.
//!
//! Every file operation runs on tokio's blocking pool. Files are written under `tmp/`, synced,
//! then renamed into `objects/` while the index lock is held, so the index, the byte bound and
//! the directory agree and no half-written object is ever visible.

mod file;
mod index;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use log::warn;
use parking_lot::Mutex;
use pingora_cache::storage::{HandleHit, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheKey;
use pingora_error::{Error, ErrorType, Result};

use self::file::{ObjectHeader, ReadError, CHUNK};
use self::index::Index;
use super::stats::{incr, StorageStats};
use super::{internal_error, DiskConfig, MetaBytes, ObjectKey};

/// What a disk lookup found.
pub(crate) enum DiskLookup {
    /// A verified object small enough to be held in memory whole.
    Whole {
        /// Its serialized meta.
        meta: MetaBytes,
        /// Its body.
        body: Bytes,
    },
    /// A verified object too large for memory, read from its file in chunks.
    Streamed {
        /// Its serialized meta.
        meta: MetaBytes,
        /// The reader.
        hit: DiskHit,
    },
}

/// The disk tier. Cheap to clone (shared state).
#[derive(Clone)]
pub(crate) struct DiskTier {
    inner: Arc<Inner>,
}

struct Inner {
    objects: PathBuf,
    tmp: PathBuf,
    limit: u64,
    max_object: u64,
    index: Mutex<Index>,
    stats: Arc<StorageStats>,
    next_tmp: AtomicU64,
}

fn hex(key: &ObjectKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal_error("disk cache task failed", e))
}

/// An object file the startup scan found good.
struct FoundFile {
    mtime: SystemTime,
    key: ObjectKey,
    /// `None` for a first-format file.
    primary: Option<ObjectKey>,
    size: u64,
}

impl DiskTier {
    /// Opens (creating if needed) the tier at `config.path`, clears leftover temp files and
    /// rebuilds the index from the object files, dropping those with a bad header. Returns the
    /// tier and the `Vary` variants found in it: (primary key, object key) of each object that
    /// is not its URL's primary slot. Blocking: call it at startup, before serving.
    pub fn open(
        config: &DiskConfig,
        stats: Arc<StorageStats>,
    ) -> io::Result<(Self, Vec<(ObjectKey, ObjectKey)>)> {
        let objects = config.path.join("objects");
        let tmp = config.path.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        for b in 0..=255u8 {
            fs::create_dir_all(objects.join(format!("{b:02x}")))?;
        }
        let inner = Inner {
            objects,
            tmp,
            limit: config.bytes,
            max_object: config.max_object.min(config.bytes),
            index: Mutex::new(Index::default()),
            stats,
            next_tmp: AtomicU64::new(0),
        };
        let variants = inner.scan()?;
        let tier = DiskTier {
            inner: Arc::new(inner),
        };
        Ok((tier, variants))
    }

    /// Largest object file this tier admits.
    pub fn max_object(&self) -> u64 {
        self.inner.max_object
    }

    /// Looks `key` up. A found object is verified (meta and body checksums) before it is
    /// returned; a corrupt one is removed and reported as a miss. Objects whose body and meta
    /// fit in `keep_limit` bytes are returned whole, larger ones as a chunked reader.
    pub async fn lookup(&self, key: ObjectKey, keep_limit: usize) -> Result<Option<DiskLookup>> {
        if !self.inner.may_contain(&key) {
            return Ok(None);
        }
        let inner = self.inner.clone();
        blocking(move || inner.read(key, keep_limit)).await?
    }

    /// Stores an object (of the URL whose primary key is `primary`), evicting least recently
    /// used ones to stay within the byte bound. Returns false when the object is larger than
    /// the tier's `max_object`.
    pub async fn store(
        &self,
        key: ObjectKey,
        primary: ObjectKey,
        meta: MetaBytes,
        body: Bytes,
    ) -> Result<bool> {
        if file::object_file_len(&meta, body.len()) > self.inner.max_object {
            return Ok(false);
        }
        let inner = self.inner.clone();
        blocking(move || {
            let tmp = inner.tmp_path(&key);
            let written = file::write_object(&tmp, &key, &primary, &meta, &body)
                .and_then(|size| inner.commit(key, &tmp, size, None));
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            written.map_err(|e| internal_error("disk cache write failed", e))
        })
        .await?
    }

    /// Removes `key`; returns whether it was stored.
    pub async fn purge(&self, key: ObjectKey) -> Result<bool> {
        let inner = self.inner.clone();
        blocking(move || inner.remove(&key)).await
    }

    /// Replaces the meta of the stored `key` with the result of `update` applied to the
    /// stored meta; returns whether `key` was stored (and is still, uncorrupted).
    pub async fn update_meta<F>(&self, key: ObjectKey, update: F) -> Result<bool>
    where
        F: FnOnce(&MetaBytes) -> Result<MetaBytes> + Send + 'static,
    {
        if !self.inner.may_contain(&key) {
            return Ok(false);
        }
        let inner = self.inner.clone();
        blocking(move || inner.rewrite(key, update)).await?
    }
}

impl Inner {
    /// Whether `key` may be stored, without waiting for the index lock (its holders do file
    /// I/O, and this runs on the async runtime): when the lock is busy, the answer is yes.
    fn may_contain(&self, key: &ObjectKey) -> bool {
        self.index
            .try_lock()
            .is_none_or(|index| index.contains(key))
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        let name = hex(key);
        self.objects.join(&name[..2]).join(name)
    }

    fn tmp_path(&self, key: &ObjectKey) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}.{n}.tmp", hex(key)))
    }

    /// Rebuilds the index from the object files, oldest first, then trims it to the bound.
    /// Returns (primary key, object key) of the secondary `Vary` variants kept.
    fn scan(&self) -> io::Result<Vec<(ObjectKey, ObjectKey)>> {
        let mut found = Vec::new();
        for dir in fs::read_dir(&self.objects)? {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                let Some(key) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(pingora_cache::key::str2hex)
                else {
                    continue;
                };
                if let Some(found_file) = self.check_file(&path, &key)? {
                    found.push(found_file);
                }
            }
        }
        found.sort_by_key(|f| f.mtime);
        let mut index = self.index.lock();
        for f in &found {
            index.insert(f.key, f.size);
        }
        self.evict_to_fit(&mut index, 0);
        index.publish(&self.stats);
        let variants = found
            .iter()
            .filter_map(|f| Some((f.primary?, f.key)))
            .filter(|(primary, key)| primary != key && index.contains(key))
            .collect();
        drop(index);
        Ok(variants)
    }

    /// Checks the header of one file found by the scan; drops it when torn or corrupt.
    fn check_file(&self, path: &Path, key: &ObjectKey) -> io::Result<Option<FoundFile>> {
        let file = File::open(path)?;
        match file::read_header(&file) {
            Ok(header) if header.key == *key => Ok(Some(FoundFile {
                mtime: file.metadata()?.modified()?,
                key: *key,
                primary: header.primary,
                size: header.file_len(),
            })),
            Ok(_) => {
                self.drop_corrupt(path, "key does not match the file name");
                Ok(None)
            }
            Err(ReadError::Corrupt(why)) => {
                self.drop_corrupt(path, why);
                Ok(None)
            }
            Err(ReadError::Io(e)) => Err(e),
        }
    }

    fn drop_corrupt(&self, path: &Path, why: &str) {
        warn!("dropping corrupt cache object {}: {why}", path.display());
        if let Err(e) = fs::remove_file(path) {
            warn!("cannot remove corrupt cache object {}: {e}", path.display());
        }
        incr(&self.stats.corrupt_dropped);
    }

    /// Drops `key` from the index and its file from disk, after finding it corrupt.
    fn drop_corrupt_key(&self, key: &ObjectKey, why: &str) {
        let mut index = self.index.lock();
        index.remove(key);
        self.drop_corrupt(&self.path(key), why);
        index.publish(&self.stats);
    }

    fn read(&self, key: ObjectKey, keep_limit: usize) -> Result<Option<DiskLookup>> {
        let file = match File::open(self.path(&key)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut index = self.index.lock();
                index.remove(&key);
                index.publish(&self.stats);
                drop(index);
                return Ok(None);
            }
            Err(e) => return Err(internal_error("disk cache open failed", e)),
        };
        let checked = file::read_meta(&file).and_then(|(header, meta)| {
            if header.key != key {
                return Err(ReadError::Corrupt("key does not match the file name"));
            }
            let whole = header.body_len + (meta.0.len() + meta.1.len()) as u64;
            let keep = whole <= keep_limit as u64;
            let body = file::verify_body(&file, &header, keep)?;
            Ok((header, meta, body))
        });
        match checked {
            Ok((header, meta, body)) => {
                self.index.lock().touch(&key);
                Ok(Some(match body {
                    Some(body) => DiskLookup::Whole { meta, body },
                    None => DiskLookup::Streamed {
                        meta,
                        hit: DiskHit::new(Arc::new(file), &header),
                    },
                }))
            }
            Err(ReadError::Corrupt(why)) => {
                self.drop_corrupt_key(&key, why);
                Ok(None)
            }
            Err(ReadError::Io(e)) => Err(internal_error("disk cache read failed", e)),
        }
    }

    /// Evicts least recently used objects until `incoming` more bytes fit in the bound.
    fn evict_to_fit(&self, index: &mut Index, incoming: u64) {
        while index.bytes() + incoming > self.limit {
            let Some((victim, _)) = index.pop_lru() else {
                break;
            };
            if let Err(e) = fs::remove_file(self.path(&victim)) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!("cannot remove evicted cache object: {e}");
                }
            }
            incr(&self.stats.disk_evictions);
        }
    }

    /// Moves the synced temp file into place as `key` under the index lock, after evicting
    /// enough to stay within the bound. With `expected` (device, inode), only replaces the
    /// file that is still that one (a concurrent store wins over a meta rewrite).
    fn commit(
        &self,
        key: ObjectKey,
        tmp: &Path,
        size: u64,
        expected: Option<(u64, u64)>,
    ) -> io::Result<bool> {
        let path = self.path(&key);
        let mut index = self.index.lock();
        if let Some(expected) = expected {
            let current = fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            if current != Some(expected) || !index.contains(&key) {
                fs::remove_file(tmp)?;
                return Ok(false);
            }
        }
        index.remove(&key);
        self.evict_to_fit(&mut index, size);
        fs::rename(tmp, &path)?;
        index.insert(key, size);
        index.publish(&self.stats);
        drop(index);
        Ok(true)
    }

    fn remove(&self, key: &ObjectKey) -> bool {
        let mut index = self.index.lock();
        let found = index.remove(key).is_some();
        if found {
            if let Err(e) = fs::remove_file(self.path(key)) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!("cannot remove purged cache object: {e}");
                }
            }
        }
        index.publish(&self.stats);
        found
    }

    fn rewrite<F>(&self, key: ObjectKey, update: F) -> Result<bool>
    where
        F: FnOnce(&MetaBytes) -> Result<MetaBytes>,
    {
        let file = match File::open(self.path(&key)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(internal_error("disk cache open failed", e)),
        };
        let (header, meta) = match file::read_meta(&file) {
            Ok(found) => found,
            Err(ReadError::Corrupt(why)) => {
                self.drop_corrupt_key(&key, why);
                return Ok(false);
            }
            Err(ReadError::Io(e)) => return Err(internal_error("disk cache read failed", e)),
        };
        let new_meta = update(&meta)?;
        let identity = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| internal_error("disk cache stat failed", e))?;
        let tmp = self.tmp_path(&key);
        let written = file::rewrite_meta(&file, &header, &tmp, &new_meta)
            .and_then(|size| self.commit(key, &tmp, size, Some(identity)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(|e| internal_error("disk cache meta rewrite failed", e))
    }
}

/// A hit handler reading a verified object file in chunks, seekable for ranges.
pub(crate) struct DiskHit {
    file: Arc<File>,
    body_offset: u64,
    body_len: u64,
    pos: u64,
    end: u64,
}

impl DiskHit {
    fn new(file: Arc<File>, header: &ObjectHeader) -> Self {
        DiskHit {
            file,
            body_offset: header.body_offset(),
            body_len: header.body_len,
            pos: 0,
            end: header.body_len,
        }
    }
}

#[async_trait]
impl HandleHit for DiskHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let n = usize::try_from((self.end - self.pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        let file = self.file.clone();
        let offset = self.body_offset + self.pos;
        let chunk = blocking(move || {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, offset).map(|()| buf)
        })
        .await?
        .map_err(|e| internal_error("disk cache read failed", e))?;
        self.pos += n as u64;
        Ok(Some(Bytes::from(chunk)))
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
        let start = start as u64;
        if start >= self.body_len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {}", self.body_len),
            );
        }
        self.pos = start;
        self.end = end.map_or(self.body_len, |e| (e as u64).min(self.body_len));
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        usize::try_from(self.body_len).unwrap_or(usize::MAX)
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn std::any::Any + Send + Sync) {
        self
    }
}
