//! Caching on routes with `cache:`: the pingora-cache hooks of [`super::MeridianProxy`].
//!
//! Each gateway has one [`EdgeCache`] (storage, cache lock, surrogate keys, HLS prefetcher, the
//! cache metrics it counts on), created by the builder from the top-level `cache:` section,
//! handed to every listener's proxy and to the admin service, and kept across reloads; a
//! request on a cached route holds it in its [`CacheState`]. A route's [`RouteCachePlan`] says
//! how its responses are keyed and stored. Per request:
//!
//! * `request_cache_filter` ([`enable`]): GET and HEAD on a cached route enable pingora-cache
//!   with the shared storage and lock (so concurrent misses for one key make one origin
//!   request); headers that would change the response without being keyed are removed
//!   ([`UNKEYED_HEADERS`]), and `Range` from a HEAD (ranges are defined for GET only); other
//!   methods bypass the cache and, when unsafe, invalidate the URL after a successful
//!   response (RFC 9111 §4.4). `Accept-Encoding` is normalised to its class
//!   ([`cdn_edge::encoding`]): the variance key and the request sent upstream carry the class.
//! * `cache_key_callback` ([`key`]): scheme, host, path, normalised query.
//! * `upstream_response_filter`: a 304 that validates a stale object is kept, for the next
//!   step to merge ([`upstream_response`]); an encoded response that does not say
//!   `Vary: Accept-Encoding` gets it, so it is never served to a client of another class (and
//!   so does a plain one to the identity class, so it does not replace encoded ones)
//!   ([`vary_encoded`]).
//! * `response_cache_filter` ([`cacheable`]): [`cdn_edge::policy::decide`], after refusing
//!   responses that vary on headers the route does not allow, or that carry a coding the
//!   request's class does not accept; on a revalidation, over the stored header freshened
//!   with every field of the 304 ([`cdn_edge::freshen::merge`]), which pingora then writes
//!   back to storage (`update_meta`).
//! * `cache_vary_filter` ([`variance`]): the stored response's `Vary` over the request.
//! * `should_serve_stale` ([`serve_stale`]): within the object's stale-while-revalidate or
//!   stale-if-error windows (pingora checks them; the route's `stale_if_error`, 1 hour by
//!   default, is the window when the origin sends none), stale is served unless the stored
//!   response forbids it (`must-revalidate`, `proxy-revalidate`, `s-maxage`, `no-cache`).
//!   What the origin did is kept for `Cache-Status` ([`StaleServe`]).
//! * `response_filter` ([`finish_response`]): `Cache-Status`, unsafe-method invalidation,
//!   the surrogate-key index, and the fields the stored copy omits (`private="…"`,
//!   `no-cache="…"`) given back to the response that filled the cache.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cdn_edge::encoding::{self, Class, Encodings};
use cdn_edge::key::QueryRule;
use cdn_edge::metrics::CacheMetrics;
use cdn_edge::policy::Policy;
use cdn_edge::status::{CacheStatus, Forward};
use cdn_edge::surrogate::SurrogateIndex;
use cdn_edge::{DiskConfig, StorageConfig, TieredStorage};
use http::header::HeaderName;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora_cache::key::HashBinary;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, NoCacheReason, RespCacheable,
    VarianceBuilder,
};
use smallvec::SmallVec;

use cdn_edge::hls::HlsRules;

use super::hls::{self, PlaylistFill};
use super::prefetch::Warming;
use crate::config::{CacheProfile, CacheQuery, CacheStorage, RouteCache};
use crate::telemetry::Metrics;

/// Request headers that change what some origins answer but are not part of the key: they
/// are removed from cacheable requests unless the route lists them in `vary`.
pub const UNKEYED_HEADERS: [HeaderName; 10] = [
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("forwarded"),
];

/// Most `Vary` header names taken into a variance key.
const MAX_VARY_NAMES: usize = 16;

/// How long a fill may hold a cache lock before waiters stop trusting it.
const LOCK_AGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A gateway's cache: storage, the lock that coalesces fills, the surrogate-key index, the
/// HLS prefetcher that warms it, and the gateway's metrics it counts on.
pub struct EdgeCache {
    /// The tiered storage (memory, optional disk).
    pub storage: &'static TieredStorage,
    /// The cache lock shared by every cached route.
    lock: &'static CacheKeyLockImpl,
    /// Surrogate keys → cache keys, for purges by key.
    pub surrogates: SurrogateIndex,
    /// Largest object stored, over every tier.
    max_object: usize,
    /// The gateway's metrics (the cache's are [`Metrics::cache`]).
    metrics: Arc<Metrics>,
    /// The HLS segment prefetcher and playlist index of this cache.
    pub(super) warming: Warming,
}

impl EdgeCache {
    /// Opens a gateway's cache from `config` (scans the disk tier: blocking), counting on
    /// `metrics`. The builder calls it once per gateway. pingora-cache takes the storage and
    /// the lock as `'static`: they are leaked, one of each per gateway built.
    pub fn open(config: &CacheStorage, metrics: Arc<Metrics>) -> std::io::Result<Arc<EdgeCache>> {
        let memory_bytes = usize::try_from(config.memory).unwrap_or(usize::MAX);
        let memory_max_object = usize::try_from(config.memory_max_object).unwrap_or(usize::MAX);
        let disk = config.disk.as_ref().map(|d| DiskConfig {
            path: d.path.clone(),
            bytes: d.size,
            max_object: d.max_object,
        });
        let largest = disk.as_ref().map_or(config.memory_max_object, |d| {
            d.max_object.max(config.memory_max_object)
        });
        let max_object = config.max_object.map_or(largest, |m| m.min(largest));
        let storage = TieredStorage::new(StorageConfig {
            memory_bytes,
            memory_max_object,
            disk,
        })?
        .leak();
        let lock: &'static CacheKeyLockImpl = Box::leak(CacheLock::new_boxed(LOCK_AGE_TIMEOUT));
        Ok(Arc::new(EdgeCache {
            storage,
            lock,
            surrogates: SurrogateIndex::default(),
            max_object: usize::try_from(max_object).unwrap_or(usize::MAX),
            metrics,
            warming: Warming::default(),
        }))
    }

    /// The cache's metrics.
    pub fn metrics(&self) -> &CacheMetrics {
        self.metrics.cache()
    }

    /// Copies the storage and prefetch statistics into the cache metrics (before a scrape).
    pub fn observe(&self) {
        let metrics = self.metrics();
        metrics.observe_storage(&self.storage.stats_snapshot());
        self.warming.observe(metrics);
    }
}

/// A route's caching rules, compiled.
#[derive(Debug)]
pub struct RouteCachePlan {
    /// The rules set.
    pub profile: CacheProfile,
    /// The HLS rules, on an `hls` route.
    pub hls: Option<HlsRules>,
    /// Defaults where the origin says nothing.
    pub policy: Policy,
    /// Query parameters in the key.
    pub query: QueryRule,
    /// Request headers a response may vary on (with `Accept-Encoding` when `encodings` is
    /// set, so the HLS prefetcher forwards the normalised value too).
    pub vary: Vec<HeaderName>,
    /// The codings `Accept-Encoding` is normalised over; `None`: not normalised.
    pub encodings: Option<Encodings>,
    /// How long a request waits for another request's fill.
    pub lock_timeout: Duration,
    /// Largest object this route stores (`None`: the storage's limit).
    pub max_object: Option<u64>,
    /// The parent tier fills go to, when the route has `shield:`.
    pub shield: Option<Arc<super::tier::ShieldPlan>>,
}

impl RouteCachePlan {
    /// Compiles a route's `cache:` section.
    pub fn new(cfg: &RouteCache) -> Arc<Self> {
        let query = match &cfg.query {
            CacheQuery::All => QueryRule::All,
            CacheQuery::Allow(names) => QueryRule::Allow(names.clone()),
            CacheQuery::Deny(names) => QueryRule::Deny(names.clone()),
            CacheQuery::Ignore => QueryRule::Ignore,
        };
        let encodings = (!cfg.accept_encoding.is_empty())
            .then(|| Encodings::new(&cfg.accept_encoding).ok())
            .flatten();
        let mut vary: Vec<HeaderName> = cfg
            .vary
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        if encodings.is_some() && !vary.contains(&http::header::ACCEPT_ENCODING) {
            vary.push(http::header::ACCEPT_ENCODING);
        }
        Arc::new(Self {
            profile: cfg.profile,
            hls: (cfg.profile == CacheProfile::Hls).then(|| cfg.hls.clone()),
            policy: Policy {
                default_ttl: cfg.default_ttl,
                negative_ttl: cfg.negative_ttl,
                stale_while_revalidate: cfg.stale_while_revalidate,
                stale_if_error: cfg.stale_if_error,
            },
            query,
            vary,
            encodings,
            lock_timeout: cfg.lock_timeout,
            max_object: cfg.max_object,
            shield: cfg
                .shield
                .as_ref()
                .map(|s| Arc::new(super::tier::ShieldPlan::new(s))),
        })
    }

    fn varies_on(&self, name: &str) -> bool {
        self.vary
            .iter()
            .any(|v| v.as_str().eq_ignore_ascii_case(name))
    }
}

/// What the cache did for one request, for `Cache-Status`, invalidation and metrics.
#[derive(Default)]
pub struct CacheState {
    /// The route has `cache:`.
    pub plan: Option<Arc<RouteCachePlan>>,
    /// The gateway's cache, on a cached route.
    pub edge: Option<Arc<EdgeCache>>,
    /// Why the cache was not used for this request.
    pub bypass: Option<&'static str>,
    /// The forwarded response was found storable.
    pub stored: bool,
    /// Why the forwarded response was not stored.
    pub not_stored: Option<&'static str>,
    /// An unsafe method: invalidate the URL when the response is a success.
    pub invalidate: bool,
    /// The response body comes from the cache (hit, stale, revalidated), not the origin.
    pub from_cache: bool,
    /// A playlist being stored on an `hls` route: its body, to derive its freshness.
    pub playlist_fill: Option<PlaylistFill>,
    /// Why a stale object stands in for the origin's answer, when one does.
    pub stale: Option<StaleServe>,
    /// The origin's 304 validating the stale object, until it is merged into the stored
    /// header.
    pub not_modified: Option<Box<ResponseHeader>>,
    /// Fields of the stored response that its stored copy omits (`private="…"`,
    /// `no-cache="…"`): the response that filled the cache still carries them.
    pub withheld: Vec<(HeaderName, http::HeaderValue)>,
    /// The request is a cached GET/HEAD on a route that normalises `Accept-Encoding`.
    pub normalises: bool,
    /// The request's `Accept-Encoding` class, once computed ([`encoding_class`]).
    pub encoding_class: Option<Class>,
}

/// `request_cache_filter`: enables the cache (`edge`, the gateway's) for GET/HEAD on a cached
/// route.
pub fn enable(
    session: &mut Session,
    state: &mut CacheState,
    plan: Option<Arc<RouteCachePlan>>,
    edge: Option<&Arc<EdgeCache>>,
) {
    let Some(plan) = plan else { return };
    let method = session.req_header().method.clone();
    let timeout = hls::lock_timeout(&plan, session.req_header());
    let route_max = plan.max_object;
    state.plan = Some(plan.clone());
    let Some(edge) = edge else {
        state.bypass = Some("no-storage");
        return;
    };
    state.edge = Some(edge.clone());
    if method != Method::GET && method != Method::HEAD {
        state.bypass = Some("method");
        state.invalidate = !matches!(method, Method::OPTIONS | Method::TRACE | Method::CONNECT);
        return;
    }
    let req = session.req_header_mut();
    // One pass over the request's headers (usually none of these is there), not a lookup of
    // every unkeyed name.
    let unkeyed: SmallVec<[HeaderName; 2]> = req
        .headers
        .keys()
        .filter(|name| UNKEYED_HEADERS.contains(name) && !plan.varies_on(name.as_str()))
        .cloned()
        .collect();
    for name in &unkeyed {
        req.remove_header(name);
    }
    if method == Method::HEAD {
        // RFC 9110 §14.2: range handling is defined for GET only, and a server must ignore
        // `Range` on other methods; pingora's range filter would answer a HEAD with 206.
        req.remove_header(&http::header::RANGE);
    }
    state.normalises = plan.encodings.is_some();
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(timeout);
    session
        .cache
        .enable(edge.storage, None, None, Some(edge.lock), Some(overrides));
    let max = route_max
        .and_then(|m| usize::try_from(m).ok())
        .map_or(edge.max_object, |m| m.min(edge.max_object));
    session.cache.set_max_file_size_bytes(max);
}

/// The canonical `Accept-Encoding` value of the request's class, on a cached GET/HEAD of a
/// route that normalises it: what the variance key ([`variance`]) and the origin on a fill
/// ([`upstream_request`]) see instead of the client's own value. The client's request keeps
/// its value (a hit rewrites no header; the `compression` plugin negotiates with it).
pub fn accept_encoding_value(
    state: &mut CacheState,
    req: &RequestHeader,
) -> Option<http::HeaderValue> {
    let class = encoding_class(state, req)?;
    Some(
        state
            .plan
            .as_ref()?
            .encodings
            .as_ref()?
            .value(class)
            .clone(),
    )
}

/// The request's `Accept-Encoding` class on a cached GET/HEAD of a route that normalises it,
/// computed on first use: a hit on an object that does not vary on it never needs it.
pub fn encoding_class(state: &mut CacheState, req: &RequestHeader) -> Option<Class> {
    if !state.normalises {
        return None;
    }
    if state.encoding_class.is_none() {
        let encodings = state.plan.as_ref()?.encodings.as_ref()?;
        state.encoding_class = Some(
            encodings.classify(
                req.headers
                    .get_all(http::header::ACCEPT_ENCODING)
                    .iter()
                    .map(http::HeaderValue::as_bytes),
            ),
        );
    }
    state.encoding_class
}

/// `upstream_response_filter` on a cached GET/HEAD whose `Accept-Encoding` was normalised: a
/// response without `Vary: Accept-Encoding` gets it when it is encoded (an origin that forgot
/// it, as nginx's default `gzip_vary off`), so it is never served to a client of another
/// class; and when the request's class is identity, since a plain answer to a client that
/// accepts no coding says nothing of what the origin sends others (stored without `Vary`, it
/// would replace their encoded variants). A plain answer to a class that accepts codings is
/// left as is: stored once, it serves every class.
pub fn vary_encoded(state: &mut CacheState, req: &RequestHeader, resp: &mut ResponseHeader) {
    let Some(class) = encoding_class(state, req) else {
        return;
    };
    if resp.status == http::StatusCode::NOT_MODIFIED {
        return;
    }
    let encoded = resp
        .headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| encoding::is_encoded(v.as_bytes()));
    let varies = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|n| n == b"*" || n.eq_ignore_ascii_case(b"accept-encoding"));
    if (encoded || class == Class::IDENTITY) && !varies {
        let _ = resp.append_header(http::header::VARY, "Accept-Encoding");
    }
}

/// The scheme of a listener, as keys and purge URLs spell it.
pub fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// `cache_key_callback`: the key of a request on a cached route.
pub fn key(req: &RequestHeader, host: &str, tls: bool, plan: Option<&RouteCachePlan>) -> CacheKey {
    let path = req.uri.path();
    if let Some(query) = hls::key_query(plan, req) {
        let query = (!query.is_empty()).then_some(query.as_str());
        return cdn_edge::key::cache_key(scheme(tls), host, path, query, &QueryRule::All);
    }
    let rule = plan.map_or(&QueryRule::All, |p| &p.query);
    cdn_edge::key::cache_key(scheme(tls), host, path, req.uri.query(), rule)
}

/// `upstream_response_filter` on a cached route: keeps a 304 that validates the stale object
/// (the origin's answer to the validators sent), for [`cacheable`] to merge.
pub fn upstream_response(session: &Session, resp: &ResponseHeader, state: &mut CacheState) {
    if resp.status == http::StatusCode::NOT_MODIFIED
        && state.plan.is_some()
        && matches!(session.cache.phase(), CachePhase::Stale)
    {
        state.not_modified = Some(Box::new(resp.clone()));
    }
}

/// `response_cache_filter`: whether the response is stored, and its meta. On a revalidation
/// `resp` is the stored header with pingora's few merged fields; every field of the 304 is
/// merged in first (RFC 9111 §4.3.4).
pub fn cacheable(
    req: &RequestHeader,
    resp: &ResponseHeader,
    state: &mut CacheState,
) -> RespCacheable {
    let Some(plan) = state.plan.clone() else {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("route not cached"));
    };
    let now = SystemTime::now();
    let freshened = state
        .not_modified
        .take()
        .map(|not_modified| cdn_edge::freshen::merge(resp, &not_modified, now));
    let resp = freshened.as_ref().unwrap_or(resp);
    let vary_ok = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("*").split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .all(|n| n != "*" && plan.varies_on(n));
    if !vary_ok {
        state.not_stored = Some("vary");
        return RespCacheable::Uncacheable(NoCacheReason::Custom("vary"));
    }
    let class = encoding_class(state, req);
    if let (Some(encodings), Some(class)) = (&plan.encodings, class) {
        let servable = resp
            .headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .all(|v| encodings.serves(class, v.as_bytes()));
        if !servable {
            state.not_stored = Some("content-encoding");
            return RespCacheable::Uncacheable(NoCacheReason::Custom("content-encoding"));
        }
    }
    let authorization = req.headers.contains_key(http::header::AUTHORIZATION);
    let hls = hls::freshness(&plan, req, resp);
    let mut decision = match hls {
        // The HLS TTL is the default when the origin gives no freshness, and replaces the
        // origin's when the response is storable.
        Some((ttl, _)) => {
            let policy = Policy {
                default_ttl: Some(ttl),
                ..plan.policy.clone()
            };
            cdn_edge::policy::decide(resp, authorization, &policy, now)
        }
        None => cdn_edge::policy::decide(resp, authorization, &plan.policy, now),
    };
    match &mut decision {
        RespCacheable::Cacheable(meta) => {
            state.stored = true;
            state.withheld = cdn_edge::policy::withheld(resp);
            if let Some((ttl, playlist)) = hls {
                hls::with_ttl(meta, ttl);
                state.playlist_fill = playlist.then(PlaylistFill::new);
            }
        }
        RespCacheable::Uncacheable(reason) => {
            state.not_stored = Some(match reason {
                NoCacheReason::Custom(why) => *why,
                _ => "origin",
            });
        }
    }
    decision
}

/// `cache_vary_filter`: the variance of `req` under the stored response's `Vary`, with
/// `Accept-Encoding` taken as its class's value ([`accept_encoding_value`]).
pub fn variance(
    meta: &CacheMeta,
    req: &RequestHeader,
    state: &mut CacheState,
) -> Option<HashBinary> {
    let mut names: Vec<String> = meta
        .headers()
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .take(MAX_VARY_NAMES)
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut builder = VarianceBuilder::new();
    for name in names {
        // The class is computed here, only for an object that varies on it.
        let class = if name == "accept-encoding" {
            accept_encoding_value(state, req)
        } else {
            None
        };
        let value = match class {
            Some(class) => class.as_bytes().iter().copied().chain(*b",").collect(),
            None => req
                .headers
                .get_all(name.as_str())
                .iter()
                .flat_map(|v| v.as_bytes().iter().copied().chain(*b","))
                .collect::<Vec<u8>>(),
        };
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

/// Counts the body bytes of a cached route's response by where they came from, and keeps
/// the body of a playlist being stored.
pub fn count_body(state: &mut CacheState, body: Option<&bytes::Bytes>) {
    if let (Some(_), Some(b), Some(edge)) = (&state.plan, body, &state.edge) {
        edge.metrics().body_bytes(state.from_cache, b.len());
    }
    let max = state
        .plan
        .as_ref()
        .and_then(|p| p.hls.as_ref())
        .map_or(0, |r| r.max_playlist_bytes);
    if let Some(fill) = &mut state.playlist_fill {
        fill.push(body, max);
    }
}

/// After a response on an `hls` route completed without error (prefetch: not on TLS
/// listeners): a playlist fill
/// gets the freshness of its parsed body, and the next segments are prefetched.
pub async fn finish_request(session: &Session, state: &mut CacheState, tls: bool) {
    let Some(plan) = state.plan.clone() else {
        return;
    };
    let Some(edge) = state.edge.clone() else {
        return;
    };
    let filled = match state.playlist_fill.take() {
        Some(fill) => hls::finish_fill(session, &plan, fill, &edge).await,
        None => None,
    };
    if !tls {
        // Only an `hls` route prefetches: the class is not computed for others.
        let accept_encoding = match plan.hls {
            Some(_) => accept_encoding_value(state, session.req_header()),
            None => None,
        };
        super::prefetch::after_response(
            session,
            &plan,
            filled,
            &edge.warming,
            accept_encoding.as_ref(),
        );
    }
}

/// Why a stale object is being served instead of the origin's answer ([`serve_stale`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleServe {
    /// The origin answered with this 5xx status: the stale object replaces its answer.
    Answered(u16),
    /// The attempt failed without a response (connection refused, closed or reset, timeout,
    /// no attempt left): the status Meridian would have answered instead
    /// ([`super::attempt::error_status`]: 502 for a refused, closed or reset connection, 504
    /// for a timeout). pingora serves the object after giving up on the upstream, and would
    /// then drop the client's connection ([`super::handback`] keeps it).
    Unanswered(u16),
}

/// `should_serve_stale`: on a cached route, stale is served wherever the object's own
/// windows allow it (pingora checks `stale-while-revalidate` and `stale-if-error`; the
/// route's `stale_if_error` is the window of objects whose origin sent none), unless the
/// stored response forbids serving it stale ([`forbids_stale`]), or it is itself a server error
/// standing in for a failure (a stale 5xx is no better than the origin's fresh one, or
/// Meridian's 502/504). `failure` is what the origin did (`None` for stale-while-revalidate).
pub fn serve_stale(session: &Session, state: &mut CacheState, failure: Option<StaleServe>) -> bool {
    if state.plan.is_none() {
        return false;
    }
    let Some(meta) = session.cache.maybe_cache_meta() else {
        return false;
    };
    if forbids_stale(meta) || (failure.is_some() && meta.response_header().status.is_server_error())
    {
        return false;
    }
    state.stale = failure;
    true
}

/// Whether the stale object `session` holds may stand in for a failed origin: the request is
/// revalidating one, within its `stale-if-error` window (pingora's check), and
/// [`serve_stale`] would serve it.
pub fn stale_may_stand_in(session: &Session, state: &CacheState) -> bool {
    state.plan.is_some()
        && session.cache.phase() == CachePhase::Stale
        && session.cache.can_serve_stale_error()
        && session.cache.maybe_cache_meta().is_some_and(|meta| {
            !forbids_stale(meta) && !meta.response_header().status.is_server_error()
        })
}

/// Whether the stored response may not be served stale (RFC 9111 §4.2.4): `must-revalidate`
/// (§5.2.2.2), `proxy-revalidate` and `s-maxage` (§5.2.2.8, §5.2.2.10: shared caches), or a
/// bare `no-cache` (§5.2.2.4: never used without a successful validation), in the controlling
/// `CDN-Cache-Control`/`Cache-Control` (an `s-maxage` with an invalid value counts). The
/// policy already stores zero windows for the first three (pingora-cache's
/// `serve_stale_*_duration`); this also covers `no-cache`, and objects stored under other
/// rules (the disk tier keeps them across restarts and upgrades).
fn forbids_stale(meta: &CacheMeta) -> bool {
    cdn_edge::policy::controlling(meta.response_header()).is_some_and(|cc| {
        cc.must_revalidate()
            || cc.proxy_revalidate()
            || cc.no_cache()
            || !matches!(cc.s_maxage(), Ok(None))
    })
}

/// Whether `resp` carries explicit freshness (RFC 9111 §4.2.1): `s-maxage`, `max-age` or
/// `no-cache` (a zero lifetime) in its controlling cache-control, or `Expires` (an invalid one
/// means already expired, §5.3). Such a response is a final answer to a request through the
/// cache: it is stored or passed, never retried.
pub fn explicit_freshness(resp: &ResponseHeader) -> bool {
    resp.headers.contains_key(http::header::EXPIRES)
        || cdn_edge::policy::controlling(resp).is_some_and(|cc| {
            use pingora_cache::cache_control::InterpretCacheControl;
            cc.fresh_duration().is_some()
        })
}

/// Adjusts the request sent to the origin for a fill: HEAD becomes GET, `Range` and the
/// client's preconditions are removed, a stale object's validators are sent instead, and
/// `Accept-Encoding` is its class's canonical value ([`accept_encoding_value`]), so whatever
/// the origin answers suits every client of the class.
pub fn upstream_request(
    session: &Session,
    state: &mut CacheState,
    upstream_request: &mut RequestHeader,
) {
    if session.cache.enabled() {
        pingora_cache::filters::upstream::request_filter(
            upstream_request,
            session.cache.maybe_cache_meta(),
        );
        if let Some(value) = accept_encoding_value(state, session.req_header()) {
            // Inserting a valid value into a request header cannot fail.
            let _ = upstream_request.insert_header(http::header::ACCEPT_ENCODING, value);
        }
    }
}

/// A request that holds a stale object does not pass interim (1xx) heads from the origin to
/// its client (HTTP/1; HTTP/2 never does): once any head went out, pingora can no longer put
/// the stale object in place of a 5xx answer (a `103 Early Hints` before a `503` would
/// otherwise reach the client with the 503 instead of the stored response). The request to the
/// origin is then the cache's own revalidation, whose answer is not forwarded as such either
/// (a 304, or a 5xx replaced by the stored response); a miss does not pass them on anyway.
pub fn hold_interim(session: &mut Session) {
    if session.cache.phase() == CachePhase::Stale {
        session.downstream_session.set_ignore_info_resp(true);
    }
}

/// `response_filter` on a cached route: `Cache-Status`, invalidation after a successful
/// unsafe request, and the surrogate keys of a stored response. An interim (1xx) head passed
/// to the client before the final one is left alone: the final response carries the status.
pub async fn finish_response(
    session: &Session,
    resp: &mut ResponseHeader,
    state: &mut CacheState,
    host: &str,
    tls: bool,
    upstream_status: Option<u16>,
) {
    if state.plan.is_none() || (resp.status.is_informational() && resp.status != 101) {
        return;
    }
    let status = cache_status(session, state, upstream_status);
    state.from_cache = status.hit || matches!(session.cache.phase(), CachePhase::Revalidated);
    if let Ok(v) = http::HeaderValue::from_str(&status.render()) {
        let _ = resp.insert_header("cache-status", v);
    }
    let Some(edge) = state.edge.clone() else {
        return;
    };
    edge.metrics().record(&status);
    if state.invalidate && (200..400).contains(&resp.status.as_u16()) {
        let key = key(session.req_header(), host, tls, state.plan.as_deref());
        if let Err(e) = edge.storage.purge_url(&key.to_compact()).await {
            log::warn!(
                "cache invalidation after {} failed: {e}",
                session.req_header().method
            );
        }
    }
    if status.stored {
        edge.surrogates.record(resp, session.cache.cache_key());
    }
    if matches!(
        session.cache.phase(),
        CachePhase::Miss | CachePhase::Expired
    ) {
        give_back_withheld(resp, &mut state.withheld);
    }
}

/// Adds to the response that filled the cache (served from the stored copy) the fields that
/// copy omits: RFC 9111 keeps them out of *storage* only (§5.2.2.4, §5.2.2.7).
fn give_back_withheld(
    resp: &mut ResponseHeader,
    withheld: &mut Vec<(HeaderName, http::HeaderValue)>,
) {
    let missing: Vec<(HeaderName, http::HeaderValue)> = std::mem::take(withheld)
        .into_iter()
        .filter(|(name, _)| !resp.headers.contains_key(name))
        .collect();
    for (name, value) in missing {
        // A name and value the origin sent: cannot fail.
        let _ = resp.append_header(name, value);
    }
}

/// The `Cache-Status` of an error Meridian writes itself on a cached route (the origin could
/// not be reached or failed, and nothing stale could stand in): RFC 9211 wants the header on
/// every response, and `response_filter` does not run for these. `None` off cached routes.
pub fn error_status(session: &Session, state: &CacheState) -> Option<http::HeaderValue> {
    state.plan.as_ref()?;
    let mut status = cache_status(session, state, None);
    status.stored = false;
    status.hit = false;
    status.ttl = None;
    // pingora disables the cache when the origin fails; for the client this was a miss that
    // could not be filled, unless the request bypassed the cache in the first place.
    if state.bypass.is_none() && matches!(status.forward, Some(Forward::Bypass) | None) {
        status.forward = Some(Forward::UriMiss);
        status.detail = Some("origin-error");
    }
    if let Some(edge) = &state.edge {
        edge.metrics().record(&status);
    }
    http::HeaderValue::from_str(&status.render()).ok()
}

/// The `Cache-Status` of this response, from the cache phase and what the filters saw.
fn cache_status(
    session: &Session,
    state: &CacheState,
    upstream_status: Option<u16>,
) -> CacheStatus {
    let mut status = CacheStatus::default();
    if let Some(why) = state.bypass {
        status.forward = Some(Forward::Bypass);
        status.detail = Some(why);
        return status;
    }
    let ttl = || {
        session.cache.maybe_cache_meta().map(|m| {
            let now = SystemTime::now();
            match m.fresh_until().duration_since(now) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            }
        })
    };
    let collapsed = session.cache.lock_duration().is_some();
    match session.cache.phase() {
        CachePhase::Hit if collapsed => {
            status.forward = Some(Forward::UriMiss);
            status.collapsed = true;
        }
        CachePhase::Hit => {
            status.hit = true;
            status.ttl = ttl();
        }
        CachePhase::StaleUpdating => {
            status.hit = true;
            status.ttl = ttl();
            status.detail = Some("stale-while-revalidate");
        }
        CachePhase::Stale => {
            status.hit = true;
            status.forward = Some(Forward::Stale);
            status.forward_status = match state.stale {
                Some(StaleServe::Answered(code) | StaleServe::Unanswered(code)) => Some(code),
                None => upstream_status,
            };
            status.ttl = ttl();
            status.detail = Some("stale-if-error");
        }
        CachePhase::Miss => {
            status.forward = Some(Forward::UriMiss);
            status.stored = state.stored;
            status.collapsed = collapsed;
            status.detail = state.not_stored;
        }
        CachePhase::Expired => {
            status.forward = Some(Forward::Stale);
            status.stored = state.stored;
            status.detail = state.not_stored;
        }
        CachePhase::Revalidated => {
            status.forward = Some(Forward::Stale);
            status.forward_status = Some(304);
            status.ttl = ttl();
        }
        CachePhase::RevalidatedNoCache(_) => {
            status.forward = Some(Forward::Stale);
            status.forward_status = Some(304);
            status.detail = state.not_stored.or(Some("not-stored"));
        }
        // Forwarded, and the response was found not storable.
        CachePhase::Disabled(_) if state.not_stored.is_some() => {
            status.forward = Some(Forward::UriMiss);
            status.detail = state.not_stored;
        }
        CachePhase::Disabled(reason) => {
            status.forward = Some(Forward::Bypass);
            status.detail = Some(reason.as_str());
        }
        CachePhase::Bypass | CachePhase::Uninit | CachePhase::CacheKey => {
            status.forward = Some(Forward::Bypass);
            status.detail = state.not_stored;
        }
    }
    status
}
