//! The surrogate-key index: `Surrogate-Key` response header values → the cache keys of the
//! objects that carried them, so an admin purge by key finds every object.
//!
//! Bounded: at most [`MAX_KEYS`] surrogate keys (the oldest key is forgotten first), at most
//! [`MAX_OBJECTS_PER_KEY`] objects per key (later objects are not indexed), at most
//! [`MAX_KEYS_PER_RESPONSE`] keys per response, keys of at most [`MAX_KEY_LEN`] bytes. A
//! forgotten entry only means a purge by key misses that object: it still expires normally.
//! The index is in memory: after a restart, objects restored from disk are purgeable by URL.

use std::collections::{HashMap, HashSet, VecDeque};

use parking_lot::Mutex;
use pingora_cache::key::CompactCacheKey;
use pingora_cache::CacheKey;
use pingora_http::ResponseHeader;

/// Most surrogate keys indexed.
pub const MAX_KEYS: usize = 100_000;
/// Most objects indexed per surrogate key.
pub const MAX_OBJECTS_PER_KEY: usize = 10_000;
/// Most surrogate keys taken from one response.
pub const MAX_KEYS_PER_RESPONSE: usize = 32;
/// Longest surrogate key.
pub const MAX_KEY_LEN: usize = 256;

/// The response header listing an object's surrogate keys (space separated).
pub const SURROGATE_KEY: &str = "surrogate-key";

/// Surrogate keys → cache keys.
#[derive(Default)]
pub struct SurrogateIndex {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<String, HashSet<CompactCacheKey>>,
    /// Insertion order of `by_key`'s keys, for forgetting the oldest.
    order: VecDeque<String>,
}

impl SurrogateIndex {
    /// Indexes the stored object `key` under the surrogate keys of `resp`.
    pub fn record(&self, resp: &ResponseHeader, key: &CacheKey) {
        let names: Vec<&str> = resp
            .headers
            .get_all(SURROGATE_KEY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(str::split_ascii_whitespace)
            .filter(|k| k.len() <= MAX_KEY_LEN)
            .take(MAX_KEYS_PER_RESPONSE)
            .collect();
        if names.is_empty() {
            return;
        }
        let compact = key.to_compact();
        let mut inner = self.inner.lock();
        for name in names {
            if !inner.by_key.contains_key(name) {
                while inner.by_key.len() >= MAX_KEYS {
                    let Some(oldest) = inner.order.pop_front() else {
                        break;
                    };
                    inner.by_key.remove(&oldest);
                }
                inner.order.push_back(name.to_string());
                inner.by_key.insert(name.to_string(), HashSet::new());
            }
            if let Some(set) = inner.by_key.get_mut(name) {
                if set.len() < MAX_OBJECTS_PER_KEY {
                    set.insert(compact.clone());
                }
            }
        }
    }

    /// Removes `name` from the index and returns the cache keys it covered.
    pub fn take(&self, name: &str) -> Vec<CompactCacheKey> {
        let mut inner = self.inner.lock();
        let Some(set) = inner.by_key.remove(name) else {
            return Vec::new();
        };
        inner.order.retain(|k| k != name);
        drop(inner);
        set.into_iter().collect()
    }

    /// The cache keys `name` covers, leaving the index as it is (soft purges).
    pub fn get(&self, name: &str) -> Vec<CompactCacheKey> {
        self.inner
            .lock()
            .by_key
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many surrogate keys are indexed.
    pub fn len(&self) -> usize {
        self.inner.lock().by_key.len()
    }

    /// Whether no surrogate key is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_index_objects_and_are_bounded_per_response() {
        let index = SurrogateIndex::default();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("surrogate-key", "a b").unwrap();
        index.record(&resp, &CacheKey::new("one", ""));
        index.record(&resp, &CacheKey::new("two", ""));
        assert_eq!(index.get("a").len(), 2);
        assert_eq!(index.take("b").len(), 2);
        assert!(index.take("b").is_empty());
        assert_eq!(index.len(), 1);
        let many: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        resp.insert_header("surrogate-key", many.join(" ")).unwrap();
        index.record(&resp, &CacheKey::new("three", ""));
        assert_eq!(index.len(), 1 + MAX_KEYS_PER_RESPONSE);
    }
}
