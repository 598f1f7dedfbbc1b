//! The prefetch planner: which segment URLs to warm after a playlist or segment request,
//! and the bounded index that remembers which playlist a segment belongs to.

use std::sync::Arc;

use percent_encoding::percent_decode_str;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use url::Url;

use super::classify::Kind;
use super::playlist::{MediaPlaylist, Segment};

/// What was just requested.
#[derive(Debug, Clone, Copy)]
pub enum After<'a> {
    /// The media playlist itself: a live playlist plans its newest segments (where players
    /// join), a finished one its first segments.
    Playlist,
    /// A segment of the playlist (matched by host and path; its query is ignored): plans
    /// the segments that follow it.
    Segment(&'a Url),
}

/// The URLs to prefetch, in order, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Absolute URLs to prefetch: at most `n` segments, each preceded by its `#EXT-X-MAP`
    /// init segment when that differs from the one already in use; no duplicates.
    pub urls: Vec<Url>,
    /// Segments skipped because they are `#EXT-X-BYTERANGE` sub-ranges: prefetching the
    /// whole resource they slice could fetch an entire single-file rendition.
    pub skipped_byte_ranges: usize,
    /// URIs skipped because they do not resolve to an http(s) URL of the playlist's own
    /// scheme, host and port (the edge only warms objects it serves itself).
    pub skipped_foreign: usize,
}

/// Plans up to `n` segment URLs of `playlist` (fetched from `playlist_url`) to prefetch
/// after `after`. A requested segment that is not in the playlist plans nothing.
pub fn plan(playlist: &MediaPlaylist, playlist_url: &Url, after: After<'_>, n: usize) -> Plan {
    let segments = &playlist.segments;
    match after {
        After::Playlist if playlist.finished => plan_from(segments, None, playlist_url, n),
        After::Playlist => {
            let start = live_join_index(segments, n);
            plan_from(&segments[start..], None, playlist_url, n)
        }
        After::Segment(requested) => match position(segments, playlist_url, requested) {
            Some(i) => plan_after_index(segments, i, playlist_url, n),
            None => Plan::default(),
        },
    }
}

/// Where `requested` is in `segments`.
fn position(segments: &[Segment], playlist_url: &Url, requested: &Url) -> Option<usize> {
    // Compare file names first: resolving every URI of a long playlist is slow.
    let name = last_component(requested.path());
    segments
        .iter()
        .position(|s| is_segment(s, name, playlist_url, requested))
}

fn is_segment(segment: &Segment, name: &str, playlist_url: &Url, requested: &Url) -> bool {
    same_name(last_component(strip_query(&segment.uri)), name)
        && playlist_url
            .join(&segment.uri)
            .is_ok_and(|u| same_object(&u, requested))
}

fn plan_after_index(segments: &[Segment], i: usize, playlist_url: &Url, n: usize) -> Plan {
    let init_in_use = segments.get(i).and_then(|s| s.init_uri.as_deref());
    plan_from(
        segments.get(i + 1..).unwrap_or_default(),
        init_in_use,
        playlist_url,
        n,
    )
}

/// Plans up to `n` of `candidates`, each preceded by its init segment when it differs from
/// `init_in_use`.
fn plan_from<'a>(
    candidates: &'a [Segment],
    mut init_in_use: Option<&'a str>,
    playlist_url: &Url,
    n: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut planned = 0;
    for segment in candidates {
        if planned == n {
            break;
        }
        if segment.byte_range.is_some() {
            plan.skipped_byte_ranges += 1;
            continue;
        }
        let Some(url) = resolve(playlist_url, &segment.uri) else {
            plan.skipped_foreign += 1;
            continue;
        };
        if let Some(init) = segment.init_uri.as_deref() {
            if init_in_use != Some(init) {
                match resolve(playlist_url, init) {
                    Some(init_url) => plan.push(init_url),
                    None => plan.skipped_foreign += 1,
                }
                init_in_use = Some(init);
            }
        }
        plan.push(url);
        planned += 1;
    }
    plan
}

impl Plan {
    fn push(&mut self, url: Url) {
        if !self.urls.contains(&url) {
            self.urls.push(url);
        }
    }
}

/// Index of the first of the last segments a live player starts with: the playlist end
/// minus `n` non-byte-range segments.
fn live_join_index(segments: &[Segment], n: usize) -> usize {
    let mut found = 0;
    for (i, s) in segments.iter().enumerate().rev() {
        if s.byte_range.is_none() {
            found += 1;
            if found == n {
                return i;
            }
        }
    }
    0
}

/// `uri` resolved against `base`, if it is an http(s) URL with `base`'s origin.
fn resolve(base: &Url, uri: &str) -> Option<Url> {
    let mut url = base.join(uri).ok()?;
    url.set_fragment(None);
    let same_origin = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    (same_origin && matches!(url.scheme(), "http" | "https")).then_some(url)
}

/// `uri` without its query and fragment (single-byte searches: this runs per segment).
fn strip_query(uri: &str) -> &str {
    let uri = uri.find('#').map_or(uri, |i| &uri[..i]);
    uri.find('?').map_or(uri, |i| &uri[..i])
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether two path components name the same file once percent-decoded (a URI as written
/// may carry characters that [`Url`] encodes).
fn same_name(a: &str, b: &str) -> bool {
    a == b
        || ((a.contains('%') || b.contains('%')) && percent_decode_str(a).eq(percent_decode_str(b)))
}

fn same_object(a: &Url, b: &Url) -> bool {
    a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
}

/// The key a segment is remembered by: host, port and path (no scheme, no query).
fn segment_key(url: &Url) -> String {
    format!(
        "{}:{}{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default(),
        url.path()
    )
}

/// A segment or init segment of a remembered playlist.
#[derive(Clone)]
struct Member {
    playlist: Arc<Url>,
    kind: Kind,
    /// Media sequence number of a segment: finds it in a newer version of its playlist
    /// without a search.
    sequence: Option<u64>,
}

/// A remembered media playlist.
#[derive(Clone)]
struct Remembered {
    url: Arc<Url>,
    playlist: Arc<MediaPlaylist>,
}

impl Remembered {
    /// Plans after `segment`, found by its media sequence number when that still points at
    /// it, by a search otherwise.
    fn plan_after(&self, segment: &Url, sequence: Option<u64>, n: usize) -> Plan {
        let segments = &self.playlist.segments;
        let name = last_component(segment.path());
        let at_sequence = sequence
            .and_then(|s| s.checked_sub(self.playlist.media_sequence))
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| {
                segments
                    .get(i)
                    .is_some_and(|s| is_segment(s, name, &self.url, segment))
            });
        match at_sequence.or_else(|| position(segments, &self.url, segment)) {
            Some(i) => plan_after_index(segments, i, &self.url, n),
            None => Plan::default(),
        }
    }
}

/// Weighs a remembered playlist by its segment count (at least 1).
#[derive(Clone)]
struct BySegments;

impl Weighter<String, Remembered> for BySegments {
    fn weight(&self, _key: &String, value: &Remembered) -> u64 {
        value.playlist.segments.len().max(1) as u64
    }
}

/// Remembers which media playlist each segment and init segment belongs to, so a segment
/// request can plan the segments after it (and an `#EXT-X-MAP` URI is known as an init
/// segment). Bounded: about `segments` member entries and remembered playlists totalling at
/// most `segments` segments; the cold entries are evicted first (quick_cache's
/// CLOCK-Pro-style policy).
pub struct PlaylistIndex {
    members: Cache<String, Member>,
    playlists: Cache<String, Remembered, BySegments>,
}

impl PlaylistIndex {
    /// An index of at most `segments` segments (at least 1).
    pub fn new(segments: usize) -> Self {
        let segments = segments.max(1);
        PlaylistIndex {
            members: Cache::new(segments),
            playlists: Cache::with_weighter(segments.min(1024), segments as u64, BySegments),
        }
    }

    /// Records `playlist`, fetched from `url`: its newest version replaces any earlier one
    /// and each of its segments now points at it. Call when a media playlist is fetched
    /// from the origin (not on every hit).
    pub fn remember(&self, url: &Url, playlist: Arc<MediaPlaylist>) {
        let url = Arc::new(url.clone());
        let mut last_init: Option<&str> = None;
        for (segment, sequence) in playlist.segments.iter().zip(playlist.media_sequence..) {
            if let Some(init) = segment.init_uri.as_deref() {
                if last_init != Some(init) {
                    self.insert_member(&url, init, Kind::InitSegment, None);
                    last_init = Some(init);
                }
            }
            self.insert_member(&url, &segment.uri, Kind::Segment, Some(sequence));
        }
        self.playlists
            .insert(url.as_str().to_owned(), Remembered { url, playlist });
    }

    fn insert_member(&self, playlist: &Arc<Url>, uri: &str, kind: Kind, sequence: Option<u64>) {
        if let Ok(member) = playlist.join(uri) {
            self.members.insert(
                segment_key(&member),
                Member {
                    playlist: Arc::clone(playlist),
                    kind,
                    sequence,
                },
            );
        }
    }

    /// What a remembered playlist says `url` is: [`Kind::InitSegment`] for an `#EXT-X-MAP`
    /// URI (whatever its name), [`Kind::Segment`] for a segment; `None` when no remembered
    /// playlist lists it (fall back to [`classify`](super::classify)).
    pub fn kind(&self, url: &Url) -> Option<Kind> {
        self.members.get(&segment_key(url)).map(|m| m.kind)
    }

    /// Plans up to `n` segments to prefetch after a request for `segment`. A player's CMCD
    /// `nor` hint (resolved against `segment`; ignored and counted as foreign unless it has
    /// the same origin) comes first and takes one of the `n` places. Empty when the
    /// segment's playlist is unknown and no hint was given.
    pub fn plan_after_segment(&self, segment: &Url, nor: Option<&str>, n: usize) -> Plan {
        if n == 0 {
            return Plan::default();
        }
        let hint = nor.map(|nor| resolve(segment, nor));
        let from_playlist = match hint {
            Some(Some(_)) => n - 1,
            _ => n,
        };
        let mut plan = self
            .members
            .get(&segment_key(segment))
            .and_then(|m| Some((self.playlists.get(m.playlist.as_str())?, m.sequence)))
            .map(|(r, sequence)| r.plan_after(segment, sequence, from_playlist))
            .unwrap_or_default();
        match hint {
            Some(Some(hint)) => {
                plan.urls.retain(|u| u != &hint);
                plan.urls.insert(0, hint);
            }
            Some(None) => plan.skipped_foreign += 1,
            None => {}
        }
        plan
    }

    /// The most recently remembered version of the playlist fetched from `url`.
    pub fn playlist(&self, url: &Url) -> Option<Arc<MediaPlaylist>> {
        self.playlists.get(url.as_str()).map(|r| r.playlist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::playlist::ByteRange;

    fn seg(uri: &str, init: Option<&str>) -> Segment {
        Segment {
            uri: uri.into(),
            byte_range: None,
            init_uri: init.map(Into::into),
        }
    }

    fn playlist(segments: Vec<Segment>, finished: bool) -> MediaPlaylist {
        MediaPlaylist {
            target_duration: std::time::Duration::from_secs(2),
            part_target: None,
            media_sequence: 0,
            finished,
            can_block_reload: false,
            segments,
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn strs(plan: &Plan) -> Vec<&str> {
        plan.urls.iter().map(Url::as_str).collect()
    }

    #[test]
    fn next_segments_resolved_relative_and_absolute() {
        let p = playlist(
            vec![
                seg("s0.ts", None),
                seg("../b/s1.ts", None),
                seg("/abs/s2.ts", None),
                seg("http://cdn.test/v/s3.ts?tok=1", None),
                seg("https://other.test/s4.ts", None),
                seg("s5.ts", None),
            ],
            true,
        );
        let base = url("http://cdn.test/v/a/index.m3u8");
        let requested = url("http://cdn.test/v/a/s0.ts?CMCD=x");
        let plan_ = plan(&p, &base, After::Segment(&requested), 4);
        assert_eq!(
            strs(&plan_),
            [
                "http://cdn.test/v/b/s1.ts",
                "http://cdn.test/abs/s2.ts",
                "http://cdn.test/v/s3.ts?tok=1",
                "http://cdn.test/v/a/s5.ts"
            ]
        );
        assert_eq!(plan_.skipped_foreign, 1);
        let spaced = playlist(vec![seg("a b.ts", None), seg("c.ts", None)], true);
        let encoded = url("http://cdn.test/v/a/a%20b.ts");
        assert_eq!(
            strs(&plan(&spaced, &base, After::Segment(&encoded), 1)),
            ["http://cdn.test/v/a/c.ts"]
        );
        let last = url("http://cdn.test/v/a/s5.ts");
        assert!(plan(&p, &base, After::Segment(&last), 4).urls.is_empty());
        let unknown = url("http://cdn.test/v/a/zz.ts");
        assert!(plan(&p, &base, After::Segment(&unknown), 4).urls.is_empty());
        assert!(plan(&p, &base, After::Segment(&requested), 0)
            .urls
            .is_empty());
    }

    #[test]
    fn playlist_plans_live_edge_or_start_with_init() {
        let segs = vec![
            seg("1.m4s", Some("init.mp4")),
            seg("2.m4s", Some("init.mp4")),
            seg("3.m4s", Some("init.mp4")),
            seg("4.m4s", Some("init2.mp4")),
        ];
        let base = url("http://e.test/l/p.m3u8");
        let live = plan(&playlist(segs.clone(), false), &base, After::Playlist, 2);
        assert_eq!(
            strs(&live),
            [
                "http://e.test/l/init.mp4",
                "http://e.test/l/3.m4s",
                "http://e.test/l/init2.mp4",
                "http://e.test/l/4.m4s"
            ]
        );
        let vod = plan(&playlist(segs.clone(), true), &base, After::Playlist, 2);
        assert_eq!(
            strs(&vod),
            [
                "http://e.test/l/init.mp4",
                "http://e.test/l/1.m4s",
                "http://e.test/l/2.m4s"
            ]
        );
        // After a segment, the init already in use is not planned again.
        let after = plan(
            &playlist(segs, true),
            &base,
            After::Segment(&url("http://e.test/l/2.m4s")),
            5,
        );
        assert_eq!(
            strs(&after),
            [
                "http://e.test/l/3.m4s",
                "http://e.test/l/init2.mp4",
                "http://e.test/l/4.m4s"
            ]
        );
    }

    #[test]
    fn byte_range_segments_are_skipped() {
        let mut segs = vec![seg("a.ts", None), seg("all.ts", None), seg("all.ts", None)];
        for s in &mut segs[1..] {
            s.byte_range = Some(ByteRange {
                length: 10,
                offset: None,
            });
        }
        segs.push(seg("b.ts", None));
        let base = url("http://e.test/p.m3u8");
        let p = plan(
            &playlist(segs, true),
            &base,
            After::Segment(&url("http://e.test/a.ts")),
            3,
        );
        assert_eq!(strs(&p), ["http://e.test/b.ts"]);
        assert_eq!(p.skipped_byte_ranges, 2);
    }

    #[test]
    fn index_remembers_playlists_and_prefers_cmcd_hint() {
        let index = PlaylistIndex::new(100);
        let base = url("http://e.test/live/p.m3u8");
        let v1 = playlist(vec![seg("1.ts", None), seg("2.ts", None)], false);
        index.remember(&base, Arc::new(v1));
        let s1 = url("http://e.test/live/1.ts");
        assert_eq!(
            strs(&index.plan_after_segment(&s1, None, 2)),
            ["http://e.test/live/2.ts"]
        );
        // The live playlist grows: the newest version is used.
        let v2 = playlist(
            vec![seg("1.ts", None), seg("2.ts", None), seg("3.ts", None)],
            false,
        );
        index.remember(&base, Arc::new(v2));
        assert_eq!(
            strs(&index.plan_after_segment(&s1, None, 2)),
            ["http://e.test/live/2.ts", "http://e.test/live/3.ts"]
        );
        assert_eq!(
            strs(&index.plan_after_segment(&s1, Some("../x/9.ts"), 2)),
            ["http://e.test/x/9.ts", "http://e.test/live/2.ts"]
        );
        let foreign = index.plan_after_segment(&s1, Some("http://evil.test/9.ts"), 2);
        assert_eq!(foreign.skipped_foreign, 1);
        assert_eq!(foreign.urls.len(), 2);
        let unknown = url("http://e.test/other/1.ts");
        assert!(index.plan_after_segment(&unknown, None, 2).urls.is_empty());
        assert_eq!(
            strs(&index.plan_after_segment(&unknown, Some("2.ts"), 2)),
            ["http://e.test/other/2.ts"]
        );
        assert!(index.playlist(&base).is_some());
        assert_eq!(index.kind(&s1), Some(Kind::Segment));
        assert_eq!(index.kind(&unknown), None);
        let fmp4 = playlist(vec![seg("1.m4s", Some("hdr.bin"))], true);
        index.remember(&url("http://e.test/f/p.m3u8"), Arc::new(fmp4));
        assert_eq!(
            index.kind(&url("http://e.test/f/hdr.bin")),
            Some(Kind::InitSegment)
        );
    }

    #[test]
    fn index_follows_a_sliding_live_window() {
        let index = PlaylistIndex::new(100);
        let base = url("http://e.test/live/p.m3u8");
        let window = |first: u64, media_sequence: u64| {
            let mut p = playlist(
                (first..first + 3)
                    .map(|i| seg(&format!("{i}.ts"), None))
                    .collect(),
                false,
            );
            p.media_sequence = media_sequence;
            Arc::new(p)
        };
        index.remember(&base, window(10, 10));
        index.remember(&base, window(11, 11));
        let s11 = url("http://e.test/live/11.ts");
        assert_eq!(
            strs(&index.plan_after_segment(&s11, None, 2)),
            ["http://e.test/live/12.ts", "http://e.test/live/13.ts"]
        );
        // A renumbered playlist (sequence numbers no longer match): found by search.
        index.remember(&base, window(11, 500));
        let s10 = url("http://e.test/live/10.ts");
        assert!(index.plan_after_segment(&s10, None, 2).urls.is_empty());
        let fresh = index.playlist(&base).unwrap();
        let stale = Remembered {
            url: Arc::new(base.clone()),
            playlist: fresh,
        };
        assert_eq!(
            strs(&stale.plan_after(&s11, Some(11), 1)),
            ["http://e.test/live/12.ts"]
        );
    }

    #[test]
    fn index_is_bounded() {
        let index = PlaylistIndex::new(50);
        for p in 0..100 {
            let segs = (0..10).map(|i| seg(&format!("{i}.ts"), None)).collect();
            index.remember(
                &url(&format!("http://e.test/{p}/p.m3u8")),
                Arc::new(playlist(segs, true)),
            );
        }
        assert!(index.members.len() <= 60);
        assert!(index.playlists.weight() <= 50);
    }
}
