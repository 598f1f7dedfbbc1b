//! Playlist parsing: `m3u8-rs` for the structure, a line scan for the LL-HLS tags it keeps
//! as unknown, a size limit, and errors instead of panics for anything malformed.

use std::fmt;
use std::time::Duration;

use m3u8_rs::{MediaPlaylistType, Playlist as M3u8Playlist};

/// Default largest playlist body [`parse`] accepts: 1 MiB.
pub const DEFAULT_MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// Largest number of segments kept from one media playlist; a longer playlist is an error.
pub const MAX_SEGMENTS: usize = 100_000;

/// Longest target or part duration accepted (one day); anything longer is malformed.
const MAX_TARGET_SECS: f64 = 86_400.0;

/// A parsed playlist, reduced to what the edge needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    /// A multivariant playlist.
    Master(MasterPlaylist),
    /// A media playlist.
    Media(MediaPlaylist),
}

/// What the edge keeps of a multivariant playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterPlaylist {
    /// Variant stream and rendition playlist URIs, as written (unresolved).
    pub uris: Vec<String>,
}

/// What the edge keeps of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION`.
    pub target_duration: Duration,
    /// `PART-TARGET` of `#EXT-X-PART-INF` (LL-HLS), if any.
    pub part_target: Option<Duration>,
    /// `#EXT-X-MEDIA-SEQUENCE` (0 when absent).
    pub media_sequence: u64,
    /// The playlist will not change: `#EXT-X-ENDLIST` or `#EXT-X-PLAYLIST-TYPE:VOD`.
    pub finished: bool,
    /// `CAN-BLOCK-RELOAD=YES` in `#EXT-X-SERVER-CONTROL` (LL-HLS blocking reloads).
    pub can_block_reload: bool,
    /// Segments in playlist order.
    pub segments: Vec<Segment>,
}

/// One media segment of a media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The segment URI, as written (unresolved).
    pub uri: String,
    /// `#EXT-X-BYTERANGE` of this segment, if it is a sub-range of `uri`.
    pub byte_range: Option<ByteRange>,
    /// URI of the `#EXT-X-MAP` init segment in force for this segment, if any.
    pub init_uri: Option<String>,
}

/// A byte range of a segment or init segment resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Length in bytes.
    pub length: u64,
    /// Offset of the first byte, when given.
    pub offset: Option<u64>,
}

/// Why a playlist was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistError {
    /// The body is larger than the configured limit.
    TooLarge {
        /// Body size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not UTF-8 text.
    NotUtf8,
    /// The body does not start with `#EXTM3U`.
    NotAPlaylist,
    /// The body starts like a playlist but does not parse.
    Malformed(String),
}

impl fmt::Display for PlaylistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaylistError::TooLarge { size, limit } => {
                write!(f, "playlist of {size} bytes exceeds the {limit}-byte limit")
            }
            PlaylistError::NotUtf8 => f.write_str("playlist is not UTF-8 text"),
            PlaylistError::NotAPlaylist => f.write_str("body does not start with #EXTM3U"),
            PlaylistError::Malformed(why) => write!(f, "malformed playlist: {why}"),
        }
    }
}

impl std::error::Error for PlaylistError {}

/// Parses a playlist body of at most `max_bytes` bytes.
///
/// Never panics: oversize, non-UTF-8, non-playlist and malformed bodies are errors (the
/// body is validated as UTF-8 before `m3u8-rs` sees it, so its internal UTF-8 conversions
/// cannot fail).
pub fn parse(body: &[u8], max_bytes: usize) -> Result<Playlist, PlaylistError> {
    if body.len() > max_bytes {
        return Err(PlaylistError::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| PlaylistError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !text.starts_with("#EXTM3U") {
        return Err(PlaylistError::NotAPlaylist);
    }
    let parsed = m3u8_rs::parse_playlist_res(text.as_bytes())
        .map_err(|e| PlaylistError::Malformed(describe_nom_error(&e)))?;
    match parsed {
        M3u8Playlist::MasterPlaylist(master) => Ok(Playlist::Master(MasterPlaylist {
            uris: master
                .variants
                .into_iter()
                .map(|v| v.uri)
                .chain(master.alternatives.into_iter().filter_map(|a| a.uri))
                .collect(),
        })),
        M3u8Playlist::MediaPlaylist(media) => media_playlist(text, media).map(Playlist::Media),
    }
}

fn media_playlist(
    text: &str,
    media: m3u8_rs::MediaPlaylist,
) -> Result<MediaPlaylist, PlaylistError> {
    if !has_tag(text, "#EXT-X-TARGETDURATION:") {
        return Err(PlaylistError::Malformed(
            "media playlist without #EXT-X-TARGETDURATION".into(),
        ));
    }
    if media.segments.len() > MAX_SEGMENTS {
        return Err(PlaylistError::Malformed(format!(
            "{} segments, more than the {MAX_SEGMENTS} accepted",
            media.segments.len()
        )));
    }
    let target_duration = seconds(media.target_duration as f64, "TARGETDURATION")?;
    let part_target = tag_attribute(text, "#EXT-X-PART-INF:", "PART-TARGET")
        .map(|v| {
            v.parse::<f64>()
                .map_err(|_| PlaylistError::Malformed(format!("PART-TARGET {v:?} is not a number")))
                .and_then(|s| seconds(s, "PART-TARGET"))
        })
        .transpose()?;
    let can_block_reload = tag_attribute(text, "#EXT-X-SERVER-CONTROL:", "CAN-BLOCK-RELOAD")
        .is_some_and(|v| v == "YES");
    let finished = media.end_list || matches!(media.playlist_type, Some(MediaPlaylistType::Vod));
    // m3u8-rs attaches `#EXT-X-MAP` to the first segment after it only; carry it forward.
    let mut init_uri: Option<String> = None;
    let segments = media
        .segments
        .into_iter()
        .map(|s| {
            if let Some(map) = s.map {
                init_uri = Some(map.uri);
            }
            Segment {
                uri: s.uri,
                byte_range: s.byte_range.map(|b| ByteRange {
                    length: b.length,
                    offset: b.offset,
                }),
                init_uri: init_uri.clone(),
            }
        })
        .collect();
    Ok(MediaPlaylist {
        target_duration,
        part_target,
        media_sequence: media.media_sequence,
        finished,
        can_block_reload,
        segments,
    })
}

fn seconds(value: f64, what: &str) -> Result<Duration, PlaylistError> {
    if !(value.is_finite() && (0.0..=MAX_TARGET_SECS).contains(&value)) {
        return Err(PlaylistError::Malformed(format!(
            "{what} {value} is not between 0 and {MAX_TARGET_SECS} seconds"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

fn has_tag(text: &str, tag: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with(tag))
}

/// The value of `attribute` in the first `tag` line (quotes removed).
fn tag_attribute<'a>(text: &'a str, tag: &str, attribute: &str) -> Option<&'a str> {
    let list = text.lines().find_map(|l| l.trim().strip_prefix(tag))?;
    attribute_list(list).find_map(|(k, v)| (k == attribute).then_some(v))
}

/// Splits an HLS attribute list (`A=1,B="x,y",C=NO`) into pairs, honouring quotes.
fn attribute_list(list: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let mut in_quotes = false;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        in_quotes = !in_quotes;
                    }
                    c == ',' && !in_quotes
                })
                .map_or(rest.len(), |(i, _)| i);
            let item = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            if let Some((k, v)) = item.split_once('=') {
                return Some((k.trim(), v.trim().trim_matches('"')));
            }
        }
        None
    })
}

fn describe_nom_error(e: &nom::Err<nom::error::Error<&[u8]>>) -> String {
    match e {
        nom::Err::Incomplete(_) => "unexpected end of playlist".into(),
        nom::Err::Error(inner) | nom::Err::Failure(inner) => {
            let line = std::str::from_utf8(inner.input)
                .ok()
                .and_then(|s| s.lines().next())
                .unwrap_or_default();
            let shown: String = line.chars().take(80).collect();
            format!("cannot parse at {shown:?}")
        }
    }
}
