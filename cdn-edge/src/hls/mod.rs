//! The HLS profile of the edge: recognising playlists and segments, their freshness,
//! LL-HLS cache-key rules, and prefetching the next segments.
//!
//! Pure building blocks the gateway calls from its cache hooks:
//! - [`classify`] / [`classify_body`] → [`Kind`];
//! - [`parse`] a playlist body (size-limited, never panics) → [`Playlist`];
//! - [`HlsRules::ttl`] → freshness per kind; [`key_query`] / [`is_blocking_reload`] for the
//!   cache key and request coalescing;
//! - [`plan`] / [`PlaylistIndex`] → the next segment URLs, honouring CMCD `nor`
//!   ([`next_object_request`]);
//! - [`Prefetcher`] → fetches them once each, in the background, through the edge itself.

mod classify;
mod cmcd;
mod key;
mod planner;
mod playlist;
mod prefetch;
mod rules;
mod units;

pub use classify::{classify, classify_body, is_playlist_content_type, Kind};
pub use cmcd::{next_object_request, MAX_CMCD_LEN};
pub use key::{is_blocking_reload, key_query, LL_HLS_DIRECTIVES};
pub use planner::{plan, After, Plan, PlaylistIndex};
pub use playlist::{
    parse, ByteRange, MasterPlaylist, MediaPlaylist, Playlist, PlaylistError, Segment,
    DEFAULT_MAX_PLAYLIST_BYTES, MAX_SEGMENTS,
};
pub use prefetch::{
    Enqueued, PrefetchConfig, PrefetchStats, PrefetchStatsSnapshot, Prefetcher, StartError,
    PREFETCH_HEADER,
};
pub use rules::{HlsRules, MAX_PREFETCH};
