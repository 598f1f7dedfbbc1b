//! HLS segment prefetch on `hls` routes: after a playlist or segment request (one not made
//! by the prefetcher itself), the next `prefetch` segments are fetched through this edge so
//! they are cached before the player asks.
//!
//! Each gateway's cache ([`super::cache::EdgeCache`]) has one [`Warming`]: a [`Prefetcher`] and
//! a [`PlaylistIndex`], started on the first prefetch with the address of the listener that
//! request came in on (plain HTTP listeners only: the prefetcher speaks plain HTTP). Media playlists are remembered when they are
//! filled; a segment request plans from the playlist that lists it, the CMCD `nor` hint first.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use cdn_edge::hls::{
    classify, next_object_request, plan, After, Kind, Playlist, PlaylistIndex, PrefetchConfig,
    Prefetcher, PREFETCH_HEADER,
};
use cdn_edge::metrics::CacheMetrics;
use pingora::proxy::Session;
use url::Url;

use super::cache::RouteCachePlan;

/// Segments (and playlists weighted by their segments) the playlist index remembers.
const INDEX_SEGMENTS: usize = 100_000;

/// A cache's prefetcher and playlist index, once started.
struct Warmer {
    prefetcher: Prefetcher,
    index: PlaylistIndex,
}

/// The HLS warmer of one gateway's cache, started on its first prefetch (`None` inside when
/// the prefetcher could not start).
#[derive(Default)]
pub struct Warming(OnceLock<Option<Warmer>>);

impl Warming {
    /// The warmer, started with `local` (the listener address) as its base.
    fn warmer(&self, local: SocketAddr) -> Option<&Warmer> {
        self.0
            .get_or_init(|| {
                let base = Url::parse(&format!("http://{local}")).ok()?;
                match Prefetcher::start(PrefetchConfig::new(base)) {
                    Ok(prefetcher) => Some(Warmer {
                        prefetcher,
                        index: PlaylistIndex::new(INDEX_SEGMENTS),
                    }),
                    Err(e) => {
                        log::warn!("HLS prefetch unavailable: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Copies the prefetcher's counters into `metrics` (before a scrape).
    pub fn observe(&self, metrics: &CacheMetrics) {
        if let Some(Some(w)) = self.0.get() {
            metrics.observe_prefetch(&w.prefetcher.stats().snapshot());
        }
    }
}

/// The URL a request was made for, as the player sees it (its `Host`).
fn request_url(session: &Session) -> Option<Url> {
    let req = session.req_header();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    Url::parse(&format!("http://{host}{path}")).ok()
}

/// After a successful response on an `hls` route: remembers a filled media playlist and
/// queues the segments to warm next on `warming`. `accept_encoding`: the request's class
/// value, which the prefetches carry instead of the player's own spelling.
pub fn after_response(
    session: &Session,
    route: &RouteCachePlan,
    filled: Option<Playlist>,
    warming: &Warming,
    accept_encoding: Option<&http::HeaderValue>,
) {
    let Some(rules) = route.hls.as_ref() else {
        return;
    };
    let req = session.req_header();
    let ok = session
        .response_written()
        .is_some_and(|r| r.status.is_success());
    if rules.prefetch == 0 || !ok || req.headers.contains_key(PREFETCH_HEADER) {
        return;
    }
    let kind = classify(req.uri.path(), None);
    if kind == Kind::Other {
        return;
    }
    let Some(local) = session.server_addr().and_then(|a| a.as_inet()).copied() else {
        return;
    };
    let (Some(warmer), Some(url)) = (warming.warmer(local), request_url(session)) else {
        return;
    };
    let n = rules.prefetch;
    let planned = match filled {
        Some(Playlist::Media(media)) => {
            let media = Arc::new(media);
            warmer.index.remember(&url, media.clone());
            plan(&media, &url, After::Playlist, n)
        }
        Some(Playlist::Master(_)) => return,
        None if kind.is_playlist() => match warmer.index.playlist(&url) {
            Some(media) => plan(&media, &url, After::Playlist, n),
            None => return,
        },
        None => {
            let cmcd = req
                .headers
                .get("cmcd-request")
                .and_then(|v| v.to_str().ok());
            let nor = next_object_request(req.uri.query().unwrap_or(""), cmcd);
            warmer.index.plan_after_segment(&url, nor.as_deref(), n)
        }
    };
    // The variant players ask for: the request's values of the headers the route varies on.
    let variant: Vec<_> = route
        .vary
        .iter()
        .filter_map(|name| {
            let value = match accept_encoding {
                Some(class) if name == http::header::ACCEPT_ENCODING => class,
                _ => req.headers.get(name)?,
            };
            Some((name.clone(), value.clone()))
        })
        .collect();
    for next in &planned.urls {
        warmer.prefetcher.enqueue_variant(next, variant.clone());
    }
}
