//! What an HLS request or response is: a playlist (master or media), a segment, an init
//! segment, or something else.

/// The HLS role of an object, decided from its path, content type and (for playlists) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A multivariant ("master") playlist: lists variant streams and renditions.
    MasterPlaylist,
    /// A media playlist: lists the segments of one rendition.
    MediaPlaylist,
    /// A media segment (`.ts`, `.m4s`, `.aac`, `.vtt`, ...).
    Segment,
    /// An initialisation segment (`init.mp4`, `*.init`, or a `#EXT-X-MAP` URI).
    InitSegment,
    /// Not an HLS object.
    Other,
}

impl Kind {
    /// Whether this is a playlist of either kind.
    pub fn is_playlist(self) -> bool {
        matches!(self, Kind::MasterPlaylist | Kind::MediaPlaylist)
    }

    /// Whether this is a media or init segment.
    pub fn is_segment(self) -> bool {
        matches!(self, Kind::Segment | Kind::InitSegment)
    }
}

/// Content types that mark a playlist (compared case-insensitively, parameters ignored).
const PLAYLIST_TYPES: [&str; 4] = [
    "application/vnd.apple.mpegurl",
    "application/x-mpegurl",
    "audio/mpegurl",
    "audio/x-mpegurl",
];

/// Extensions of media segments (lower case, without the dot).
const SEGMENT_EXTENSIONS: [&str; 10] = [
    "ts", "m4s", "mp4", "aac", "m4a", "vtt", "cmfv", "cmfa", "webvtt", "mp3",
];

/// Classifies an object by its URL path (query excluded) and optional `Content-Type`.
///
/// A playlist content type or a `.m3u8`/`.m3u` path is a playlist: a master playlist when
/// the file is conventionally named one (`master`, `main` or `multivariant`), a media
/// playlist otherwise. Call [`classify_body`] when the body is available: it is
/// authoritative. `*.init`, and segment extensions on names starting with `init` or
/// containing `_init.`/`-init.`, are init segments; other segment extensions are segments.
pub fn classify(path: &str, content_type: Option<&str>) -> Kind {
    let name = file_name(path);
    let ext = extension(name);
    let playlist_type = content_type.is_some_and(is_playlist_content_type);
    if playlist_type || matches!(ext.as_deref(), Some("m3u8" | "m3u")) {
        return if is_master_name(name) {
            Kind::MasterPlaylist
        } else {
            Kind::MediaPlaylist
        };
    }
    match ext.as_deref() {
        Some("init") => Kind::InitSegment,
        Some(e) if SEGMENT_EXTENSIONS.contains(&e) => {
            if is_init_name(name) {
                Kind::InitSegment
            } else {
                Kind::Segment
            }
        }
        _ => Kind::Other,
    }
}

/// Classifies a playlist by its body: [`Kind::MasterPlaylist`] when it carries a variant
/// tag (`#EXT-X-STREAM-INF`, `#EXT-X-MEDIA`, ...), [`Kind::MediaPlaylist`] when it starts
/// with `#EXTM3U` and has none, `None` when the body is not a playlist at all.
pub fn classify_body(body: &[u8]) -> Option<Kind> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !text.trim_start().starts_with("#EXTM3U") {
        return None;
    }
    let master = text.lines().any(|line| {
        let line = line.trim_start();
        MASTER_TAGS.iter().any(|tag| line.starts_with(tag))
    });
    Some(if master {
        Kind::MasterPlaylist
    } else {
        Kind::MediaPlaylist
    })
}

/// Tags that only appear in multivariant playlists.
const MASTER_TAGS: [&str; 5] = [
    "#EXT-X-STREAM-INF",
    "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-MEDIA:",
    "#EXT-X-SESSION-DATA",
    "#EXT-X-SESSION-KEY",
];

/// Whether a `Content-Type` value names an HLS playlist.
pub fn is_playlist_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    PLAYLIST_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(essence))
}

fn file_name(path: &str) -> &str {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or(path)
}

fn extension(name: &str) -> Option<String> {
    let (_, ext) = name.rsplit_once('.')?;
    Some(ext.to_ascii_lowercase())
}

fn is_master_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default();
    ["master", "main", "multivariant"]
        .iter()
        .any(|m| stem.eq_ignore_ascii_case(m))
}

fn is_init_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("init") || lower.contains("_init.") || lower.contains("-init.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_by_extension_and_type() {
        assert_eq!(classify("/live/a.m3u8", None), Kind::MediaPlaylist);
        assert_eq!(classify("/live/A.M3U8?x=1", None), Kind::MediaPlaylist);
        assert_eq!(classify("/v/master.m3u8", None), Kind::MasterPlaylist);
        assert_eq!(
            classify("/p", Some("application/vnd.apple.mpegurl; charset=utf-8")),
            Kind::MediaPlaylist
        );
        assert_eq!(classify("/p", Some("Audio/MpegURL")), Kind::MediaPlaylist);
        assert_eq!(classify("/p", Some("text/plain")), Kind::Other);
    }

    #[test]
    fn segments_and_init_segments() {
        for p in [
            "/a/seg1.ts",
            "/a/1.m4s",
            "/a/x.aac",
            "/a/x.m4a",
            "/a/s.vtt",
            "/a/v.cmfv",
            "/a/a.cmfa",
            "/a/full.mp4",
        ] {
            assert_eq!(classify(p, None), Kind::Segment, "{p}");
        }
        for p in [
            "/a/init.mp4",
            "/a/video.init",
            "/a/init_0.m4s",
            "/a/v-init.mp4",
        ] {
            assert_eq!(classify(p, None), Kind::InitSegment, "{p}");
        }
        assert_eq!(classify("/index.html", None), Kind::Other);
        assert_eq!(classify("/", None), Kind::Other);
        assert_eq!(classify("/noext", None), Kind::Other);
    }

    #[test]
    fn body_decides_master_or_media() {
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow.m3u8\n";
        let media = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n";
        assert_eq!(classify_body(master), Some(Kind::MasterPlaylist));
        assert_eq!(classify_body(media), Some(Kind::MediaPlaylist));
        assert_eq!(classify_body(b"<html>"), None);
        assert_eq!(classify_body(&[0xff, 0xfe, 0x00]), None);
    }
}
