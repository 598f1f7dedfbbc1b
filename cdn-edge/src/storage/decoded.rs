//! The meta of an object held in memory, kept decoded: a memory hit builds its [`CacheMeta`]
//! from it instead of decoding the serialized meta (msgpack) and response header (zstd + HTTP
//! parse) again.

use std::time::SystemTime;

use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_error::Result;
use pingora_http::ResponseHeader;

use super::MetaBytes;

/// A stored meta, decoded once when its object enters the memory tier.
#[derive(Clone)]
pub(crate) struct DecodedMeta {
    header: ResponseHeader,
    /// What [`CacheMeta::new`] and its setters need to rebuild the meta exactly; `None` for a
    /// meta that was revalidated (its `updated` time has no setter), which is then decoded from
    /// its bytes.
    fresh: Option<Freshness>,
}

/// The internal meta of a never-revalidated object.
#[derive(Clone, Copy)]
struct Freshness {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    variance: Option<HashBinary>,
    epoch_override: Option<SystemTime>,
}

impl DecodedMeta {
    /// Decodes what a hit needs from `meta`.
    pub fn of(meta: &CacheMeta) -> Self {
        let created = meta.created();
        let rebuildable = meta.updated() == created && meta.provenance() == created;
        DecodedMeta {
            header: meta.response_header_copy(),
            fresh: rebuildable.then(|| Freshness {
                fresh_until: meta.fresh_until(),
                created,
                stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
                stale_if_error_sec: meta.stale_if_error_sec(),
                variance: meta.variance(),
                epoch_override: meta.epoch_override(),
            }),
        }
    }

    /// The response header.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The [`CacheMeta`] for a hit. `bytes` is the serialized form of the same meta, decoded
    /// (all but the header) only when the meta cannot be rebuilt from its parts.
    pub fn cache_meta(&self, bytes: &MetaBytes) -> Result<CacheMeta> {
        let Some(f) = self.fresh else {
            let mut meta = CacheMeta::deserialize(&bytes.0, &BARE_HEADER)?;
            *meta.response_header_mut() = self.header.clone();
            return Ok(meta);
        };
        let mut meta = CacheMeta::new(
            f.fresh_until,
            f.created,
            f.stale_while_revalidate_sec,
            f.stale_if_error_sec,
            self.header.clone(),
        );
        if let Some(variance) = f.variance {
            meta.set_variance(variance);
        }
        if let Some(epoch) = f.epoch_override {
            meta.set_epoch_override(epoch);
        }
        Ok(meta)
    }
}

/// A serialized header with no fields, decoded in place of an object's own header when the
/// internal meta has to be decoded: a few bytes, so decoding it costs next to nothing.
static BARE_HEADER: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let header = ResponseHeader::build(200, Some(0)).expect("a bare 200 response header builds");
    let now = SystemTime::now();
    CacheMeta::new(now, now, 0, 0, header)
        .serialize()
        .expect("a bare response header serializes")
        .1
});

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn meta() -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("Cache-Control", "max-age=60").unwrap();
        header.insert_header("ETag", "\"v1\"").unwrap();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        CacheMeta::new(created + Duration::from_secs(60), created, 5, 30, header)
    }

    /// The hit's meta, serialized, equals the stored meta, serialized.
    fn assert_round_trip(stored: &CacheMeta, rebuilt: bool) {
        let bytes = stored.serialize().unwrap();
        let decoded = DecodedMeta::of(stored);
        assert_eq!(decoded.fresh.is_some(), rebuilt);
        let hit = decoded.cache_meta(&bytes).unwrap();
        assert_eq!(hit.serialize().unwrap(), bytes);
        assert_eq!(hit.epoch(), stored.epoch());
    }

    #[test]
    fn a_new_meta_is_rebuilt_from_its_parts() {
        assert_round_trip(&meta(), true);
    }

    #[test]
    fn a_variant_keeps_its_variance() {
        let mut stored = meta();
        stored.set_variance([7; 16]);
        assert_round_trip(&stored, true);
    }

    #[test]
    fn an_expired_meta_is_rebuilt_expired() {
        let mut stored = meta();
        stored.expire_at(SystemTime::UNIX_EPOCH);
        assert_round_trip(&stored, true);
        assert!(!DecodedMeta::of(&stored)
            .cache_meta(&stored.serialize().unwrap())
            .unwrap()
            .is_fresh(SystemTime::now()));
    }

    #[test]
    fn a_revalidated_meta_is_decoded() {
        let mut stored = meta();
        stored.update_freshness(SystemTime::now() + Duration::from_secs(60), 0, 0);
        assert_round_trip(&stored, false);
    }

    #[test]
    fn an_epoch_override_is_kept() {
        // An origin's `Age` (or a `Date` in the past) moves the epoch back.
        let mut stored = meta();
        stored.set_epoch_override(SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_990));
        assert_round_trip(&stored, true);
    }

    #[test]
    fn a_revalidated_variant_with_an_epoch_override_is_decoded() {
        let mut stored = meta();
        stored.set_variance([3; 16]);
        stored.set_epoch_override(SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_990));
        stored.update_freshness(SystemTime::now() + Duration::from_secs(60), 0, 0);
        assert_round_trip(&stored, false);
    }
}
