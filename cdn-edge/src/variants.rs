//! [`VariantIndex`]: which `Vary` variants of a URL are in storage, so that a purge by URL
//! (or an unsafe method's invalidation) reaches every one of them, not only the primary slot.
//!
//! pingora-cache stores the first variant of a URL under the primary key and every other
//! variant under the hash of primary key and variance; storage is only ever asked for one
//! exact key. The storage records each secondary variant it starts writing here, by primary
//! key, and the disk tier's object files record their primary key, so that the index is rebuilt
//! from them at startup. The index is in memory and bounded ([`MAX_PRIMARIES`] URLs,
//! [`MAX_VARIANTS`] variants each, oldest dropped first). A variant the index lost to the bound
//! is still unreachable after a hard purge: pingora-cache only accepts variants newer than
//! their primary slot.

use std::collections::HashMap;

use parking_lot::Mutex;
use pingora_cache::key::HashBinary;

/// Most URLs whose variants are remembered.
pub const MAX_PRIMARIES: usize = 1 << 18;

/// Most variants remembered per URL.
pub const MAX_VARIANTS: usize = 32;

/// Primary key → the object keys of its secondary variants.
#[derive(Default)]
pub struct VariantIndex {
    map: Mutex<HashMap<HashBinary, Vec<HashBinary>>>,
}

impl VariantIndex {
    /// Records that `object` (a combined key) is a variant of `primary`.
    pub fn record(&self, primary: HashBinary, object: HashBinary) {
        if object == primary {
            return;
        }
        let mut map = self.map.lock();
        if !map.contains_key(&primary) && map.len() >= MAX_PRIMARIES {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        add_variant(map.entry(primary).or_default(), object);
    }

    /// The variants of `primary`, forgotten (for a hard purge).
    pub fn take(&self, primary: &HashBinary) -> Vec<HashBinary> {
        self.map.lock().remove(primary).unwrap_or_default()
    }

    /// The variants of `primary`, kept (for a soft purge).
    pub fn get(&self, primary: &HashBinary) -> Vec<HashBinary> {
        self.map.lock().get(primary).cloned().unwrap_or_default()
    }
}

/// Adds `object` to `variants` unless it is there, forgetting the oldest beyond
/// [`MAX_VARIANTS`].
fn add_variant(variants: &mut Vec<HashBinary>, object: HashBinary) {
    if variants.contains(&object) {
        return;
    }
    if variants.len() >= MAX_VARIANTS {
        variants.remove(0);
    }
    variants.push(object);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> HashBinary {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    }

    #[test]
    fn records_variants_bounded_per_url() {
        let index = VariantIndex::default();
        index.record(key(1), key(1));
        assert!(
            index.get(&key(1)).is_empty(),
            "the primary slot is not a variant"
        );
        index.record(key(1), key(2));
        index.record(key(1), key(2));
        index.record(key(1), key(3));
        assert_eq!(index.get(&key(1)), vec![key(2), key(3)]);
        for n in 0..(MAX_VARIANTS as u32 + 5) {
            index.record(key(7), key(100 + n));
        }
        let kept = index.get(&key(7));
        assert_eq!(kept.len(), MAX_VARIANTS);
        assert_eq!(kept.last(), Some(&key(100 + MAX_VARIANTS as u32 + 4)));
        assert_eq!(index.take(&key(1)), vec![key(2), key(3)]);
        assert!(index.get(&key(1)).is_empty());
        assert_eq!(index.get(&key(7)).len(), MAX_VARIANTS);
    }
}
