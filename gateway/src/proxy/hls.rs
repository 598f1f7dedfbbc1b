//! The HLS profile of cached routes (`cache: { profile: hls }`), on top of [`super::cache`].
//!
//! * Key: playlists and segments keep only the LL-HLS directives of playlists and the route's
//!   `key_query_keep` parameters in their key query ([`HlsRules::key_query`]).
//! * Coalescing: a blocking playlist reload (`_HLS_msn` / `_HLS_part`) waits up to
//!   `blocking_reload_lock_timeout` for another request's fill.
//! * Freshness: a stored 200 playlist or segment is fresh for its HLS TTL
//!   ([`HlsRules::ttl`]); origin `no-store`/`private` still refuse storage. A media playlist
//!   is stored with the kind's TTL (no body yet: the minimum live TTL) and, once its body
//!   (at most `max_playlist_bytes`) has been filled and parsed, its stored freshness is
//!   rewritten from the parsed playlist. A playlist that does not parse or is larger keeps
//!   that first TTL and is served as the origin sent it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cdn_edge::hls::{classify, is_blocking_reload, parse, HlsRules, Kind, Playlist};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora_cache::trace::Span;
use pingora_cache::{CacheMeta, CachePhase, Storage};

use super::cache::{EdgeCache, RouteCachePlan};

/// A playlist being filled into the cache: its body, kept to re-derive its freshness.
#[derive(Debug)]
pub struct PlaylistFill {
    /// The body so far; emptied when it grows past `max_playlist_bytes`.
    body: Vec<u8>,
    /// The body grew past `max_playlist_bytes`: it is not interpreted.
    oversize: bool,
}

/// What the HLS profile does with a request path, when the route has it and the path is a
/// playlist or segment.
fn rules_for<'p>(plan: Option<&'p RouteCachePlan>, path: &str) -> Option<(&'p HlsRules, Kind)> {
    let rules = plan?.hls.as_ref()?;
    match classify(path, None) {
        Kind::Other => None,
        kind => Some((rules, kind)),
    }
}

/// The key query of an HLS object (`None`: not an HLS object of an `hls` route).
pub fn key_query(plan: Option<&RouteCachePlan>, req: &RequestHeader) -> Option<String> {
    let (rules, kind) = rules_for(plan, req.uri.path())?;
    Some(rules.key_query(kind, req.uri.query().unwrap_or("")))
}

/// How long `req` waits for another request's fill of its key.
pub fn lock_timeout(plan: &RouteCachePlan, req: &RequestHeader) -> Duration {
    match rules_for(Some(plan), req.uri.path()) {
        Some((rules, kind)) if is_blocking_reload(kind, req.uri.query().unwrap_or("")) => {
            rules.blocking_reload_lock_timeout
        }
        _ => plan.lock_timeout,
    }
}

/// The HLS freshness of a 200 response to `req` (`None`: the HTTP policy decides), and
/// whether it is a playlist whose body should be parsed once filled.
pub fn freshness(
    plan: &RouteCachePlan,
    req: &RequestHeader,
    resp: &ResponseHeader,
) -> Option<(Duration, bool)> {
    let rules = plan.hls.as_ref()?;
    if resp.status != http::StatusCode::OK {
        return None;
    }
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kind = classify(req.uri.path(), content_type);
    let ttl = rules.ttl(kind, None)?;
    Some((ttl, kind.is_playlist()))
}

/// `meta` made fresh for `ttl` from its creation, keeping its stale windows.
pub fn with_ttl(meta: &mut CacheMeta, ttl: Duration) {
    let swr = meta.stale_while_revalidate_sec();
    let sie = meta.stale_if_error_sec();
    let until = meta
        .created()
        .checked_add(ttl)
        .unwrap_or_else(SystemTime::now);
    meta.update_freshness(until, swr, sie);
}

impl PlaylistFill {
    /// A fill that has not seen its body yet.
    pub fn new() -> Self {
        PlaylistFill {
            body: Vec::new(),
            oversize: false,
        }
    }

    /// Keeps a chunk of the body, up to `max` bytes in all.
    pub fn push(&mut self, chunk: Option<&Bytes>, max: usize) {
        if let Some(chunk) = chunk {
            if !self.oversize && self.body.len() + chunk.len() <= max {
                self.body.extend_from_slice(chunk);
            } else {
                self.oversize = true;
                self.body = Vec::new();
            }
        }
    }
}

impl Default for PlaylistFill {
    fn default() -> Self {
        Self::new()
    }
}

/// After a playlist fill whose response completed without error: parses the filled body and
/// rewrites the object's freshness in `edge`'s storage from it. Returns the parsed playlist (for prefetch
/// planning). A body shorter than the response's `Content-Length` is not interpreted.
pub async fn finish_fill(
    session: &Session,
    plan: &RouteCachePlan,
    fill: PlaylistFill,
    edge: &EdgeCache,
) -> Option<Playlist> {
    let rules = plan.hls.as_ref()?;
    let filled = matches!(
        session.cache.phase(),
        CachePhase::Miss | CachePhase::Expired
    );
    let length = session
        .cache
        .maybe_cache_meta()
        .and_then(|m| m.headers().get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let complete = length.is_none_or(|n| n == fill.body.len());
    if !complete || fill.oversize || !filled {
        return None;
    }
    let playlist = match parse(&fill.body, rules.max_playlist_bytes) {
        Ok(p) => p,
        Err(e) => {
            log::debug!(
                "playlist {} not interpreted: {e}",
                session.req_header().uri.path()
            );
            return None;
        }
    };
    let kind = match &playlist {
        Playlist::Master(_) => Kind::MasterPlaylist,
        Playlist::Media(_) => Kind::MediaPlaylist,
    };
    let Some(ttl) = rules.ttl(kind, Some(&playlist)) else {
        return Some(playlist);
    };
    // `CacheMeta` is not `Clone`: a copy through its own serialization keeps every field.
    let copy = session.cache.maybe_cache_meta().map(|m| {
        m.serialize()
            .and_then(|(i, h)| CacheMeta::deserialize(&i, &h))
    });
    let mut meta = match copy {
        Some(Ok(meta)) => meta,
        Some(Err(e)) => {
            log::warn!("could not copy a playlist's cache meta: {e}");
            return Some(playlist);
        }
        None => return Some(playlist),
    };
    with_ttl(&mut meta, ttl);
    let span = Span::inactive();
    if let Err(e) = edge
        .storage
        .update_meta(session.cache.cache_key(), &meta, &span.handle())
        .await
    {
        log::warn!("could not update a playlist's freshness: {e}");
    }
    Some(playlist)
}
