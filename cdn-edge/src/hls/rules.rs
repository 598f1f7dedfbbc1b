//! The HLS caching rules: freshness per object kind, the playlist size limit, the extra query
//! parameters kept in the cache key, and how many segments to prefetch.

use std::time::Duration;

use serde::Deserialize;

use super::classify::Kind;
use super::key::key_query;
use super::playlist::{Playlist, DEFAULT_MAX_PLAYLIST_BYTES};
use super::units;

/// HLS rules of a cache route. Every field has a default; unknown fields are refused.
///
/// Durations are integers (seconds) or strings with a unit (`500ms`, `30s`, `5m`, `2h`,
/// `1d`); sizes are integers (bytes) or strings with a unit (`64KiB`, `1MiB`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsRules {
    /// Freshness of finished (VOD / `#EXT-X-ENDLIST`) media playlists. Default 1 day.
    #[serde(deserialize_with = "units::duration")]
    pub vod_playlist_ttl: Duration,
    /// Freshness of multivariant playlists. Default 30 s.
    #[serde(deserialize_with = "units::duration")]
    pub master_playlist_ttl: Duration,
    /// Lower bound of a live playlist's freshness (half its part or target duration).
    /// Default 100 ms.
    #[serde(deserialize_with = "units::duration")]
    pub live_playlist_min_ttl: Duration,
    /// Upper bound of a live playlist's freshness. Default 10 s.
    #[serde(deserialize_with = "units::duration")]
    pub live_playlist_max_ttl: Duration,
    /// Freshness of media segments. Default 1 day.
    #[serde(deserialize_with = "units::duration")]
    pub segment_ttl: Duration,
    /// Freshness of init segments. Default 1 day.
    #[serde(deserialize_with = "units::duration")]
    pub init_segment_ttl: Duration,
    /// How long requests coalesced behind a blocking playlist reload (`_HLS_msn`) wait for
    /// the one origin request. Default 10 s (LL-HLS servers hold such a request up to three
    /// target durations).
    #[serde(deserialize_with = "units::duration")]
    pub blocking_reload_lock_timeout: Duration,
    /// Largest playlist body parsed; a larger one is served but not interpreted.
    /// Default 1 MiB.
    #[serde(deserialize_with = "units::size")]
    pub max_playlist_bytes: usize,
    /// Query parameters kept in the cache key of every HLS object, in addition to the LL-HLS
    /// `_HLS_msn`, `_HLS_part` and `_HLS_skip` of playlists. Default none.
    pub key_query_keep: Vec<String>,
    /// Segments prefetched after a playlist or segment hit (0 disables). Default 2, at most
    /// [`MAX_PREFETCH`].
    #[serde(deserialize_with = "prefetch_count")]
    pub prefetch: usize,
}

/// Largest accepted `prefetch` count.
pub const MAX_PREFETCH: usize = 16;

const DAY: Duration = Duration::from_secs(86_400);

impl Default for HlsRules {
    fn default() -> Self {
        HlsRules {
            vod_playlist_ttl: DAY,
            master_playlist_ttl: Duration::from_secs(30),
            live_playlist_min_ttl: Duration::from_millis(100),
            live_playlist_max_ttl: Duration::from_secs(10),
            segment_ttl: DAY,
            init_segment_ttl: DAY,
            blocking_reload_lock_timeout: Duration::from_secs(10),
            max_playlist_bytes: DEFAULT_MAX_PLAYLIST_BYTES,
            key_query_keep: Vec::new(),
            prefetch: 2,
        }
    }
}

impl HlsRules {
    /// Freshness of an object of `kind`, given its parsed playlist when it is one.
    ///
    /// `None` for [`Kind::Other`]: the HLS rules do not apply and the HTTP policy decides.
    /// A parsed body overrides the kind guessed from the path (a `.m3u8` that parses as a
    /// multivariant playlist gets the master TTL). A media playlist whose body is not
    /// available or did not parse is treated as live with the minimum TTL.
    pub fn ttl(&self, kind: Kind, playlist: Option<&Playlist>) -> Option<Duration> {
        match (kind, playlist) {
            (Kind::Other, _) => None,
            (Kind::Segment, _) => Some(self.segment_ttl),
            (Kind::InitSegment, _) => Some(self.init_segment_ttl),
            (_, Some(Playlist::Master(_))) => Some(self.master_playlist_ttl),
            (_, Some(Playlist::Media(media))) if media.finished => Some(self.vod_playlist_ttl),
            (_, Some(Playlist::Media(media))) => {
                let basis = media.part_target.unwrap_or(media.target_duration);
                Some(self.live_ttl(basis / 2))
            }
            (Kind::MasterPlaylist, None) => Some(self.master_playlist_ttl),
            (Kind::MediaPlaylist, None) => Some(self.live_playlist_min_ttl),
        }
    }

    /// The cache-key query of an object of `kind`: [`key_query`] with this route's
    /// `key_query_keep` list.
    pub fn key_query(&self, kind: Kind, query: &str) -> String {
        key_query(kind, query, &self.key_query_keep)
    }

    fn live_ttl(&self, half: Duration) -> Duration {
        half.min(self.live_playlist_max_ttl)
            .max(self.live_playlist_min_ttl)
    }
}

fn prefetch_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n > MAX_PREFETCH {
        return Err(serde::de::Error::custom(format!(
            "prefetch {n} is more than the {MAX_PREFETCH} allowed"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::playlist::{MediaPlaylist, Segment};

    fn media(target: u64, part_ms: Option<u64>, finished: bool) -> Playlist {
        Playlist::Media(MediaPlaylist {
            target_duration: Duration::from_secs(target),
            part_target: part_ms.map(Duration::from_millis),
            media_sequence: 0,
            finished,
            can_block_reload: false,
            segments: vec![Segment {
                uri: "a.ts".into(),
                byte_range: None,
                init_uri: None,
            }],
        })
    }

    #[test]
    fn ttl_per_kind() {
        let r = HlsRules::default();
        let vod = media(6, None, true);
        let live = media(6, None, false);
        let ll = media(4, Some(1000), false);
        let huge = media(3600, None, false);
        assert_eq!(r.ttl(Kind::MediaPlaylist, Some(&vod)), Some(DAY));
        assert_eq!(
            r.ttl(Kind::MediaPlaylist, Some(&live)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            r.ttl(Kind::MediaPlaylist, Some(&ll)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            r.ttl(Kind::MediaPlaylist, Some(&huge)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            r.ttl(Kind::MediaPlaylist, Some(&media(0, None, false))),
            Some(Duration::from_millis(100))
        );
        let master = Playlist::Master(crate::hls::playlist::MasterPlaylist { uris: vec![] });
        assert_eq!(
            r.ttl(Kind::MediaPlaylist, Some(&master)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            r.ttl(Kind::MasterPlaylist, None),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            r.ttl(Kind::MediaPlaylist, None),
            Some(Duration::from_millis(100))
        );
        assert_eq!(r.ttl(Kind::Segment, None), Some(DAY));
        assert_eq!(r.ttl(Kind::InitSegment, None), Some(DAY));
        assert_eq!(r.ttl(Kind::Other, None), None);
    }

    #[test]
    fn deserializes_with_units_and_refuses_unknown_fields() {
        let r: HlsRules = serde_json::from_str(
            r#"{"vod_playlist_ttl":"2h","master_playlist_ttl":5,"max_playlist_bytes":"64KiB",
                "live_playlist_min_ttl":"250ms","key_query_keep":["token"],"prefetch":4}"#,
        )
        .unwrap();
        assert_eq!(r.vod_playlist_ttl, Duration::from_secs(7200));
        assert_eq!(r.master_playlist_ttl, Duration::from_secs(5));
        assert_eq!(r.live_playlist_min_ttl, Duration::from_millis(250));
        assert_eq!(r.max_playlist_bytes, 64 * 1024);
        assert_eq!(r.key_query_keep, vec!["token".to_string()]);
        assert_eq!(r.prefetch, 4);
        assert_eq!(r.segment_ttl, DAY);

        let e = serde_json::from_str::<HlsRules>(r#"{"vod_ttl":"1d"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `vod_ttl`"), "{e}");
        let e = serde_json::from_str::<HlsRules>(r#"{"segment_ttl":"1 fortnight"}"#).unwrap_err();
        assert!(e.to_string().contains("duration"), "{e}");
        let e = serde_json::from_str::<HlsRules>(r#"{"prefetch":1000}"#).unwrap_err();
        assert!(e.to_string().contains("prefetch 1000"), "{e}");
    }
}
