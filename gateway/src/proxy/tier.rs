//! Tiering: loop prevention on every request, and the shield as the peer of cache fills.
//!
//! * Every request is checked against the process's tier ([`check_loop`]): a request whose
//!   `x-meridian-tier` hop header already names this tier, or lists more than `max_hops`
//!   tiers, is refused with 508 Loop Detected before routing, so a misconfigured hierarchy
//!   costs one request per hop, never a storm.
//! * Every forwarded request carries the incoming hop list with this tier's name appended
//!   ([`forward_hops`]).
//! * On a route with `cache.shield`, a fill (miss or revalidation) goes to the shield that
//!   [`Shields::pick`] gives for the cache's primary key, so every edge sends one URL (and
//!   all its `Vary` variants) to the same shield. A shield that refuses the connection is
//!   failed over in ring order ([`Shields::candidates`], each once); when every shield
//!   refused, the route's own upstream (the origin) is used, or 502 is answered
//!   (`fallback: error`). Requests that bypass the cache go to the origin.
//! * The shields are the targets of an ordinary upstream, and their health counts: shields
//!   that its active checks mark down or its outlier detection ejected move to the end of a
//!   key's order (still tried, last, before the fallback), and every shield attempt's outcome
//!   is reported to that upstream's pool like any other attempt (so repeated failures eject
//!   a shield). Only keys of a down shield move, and they come back when it does.
//!
//! The hop header is a loop detector, not a trust boundary: it never enters the cache key
//! (`vary` cannot name it), and a client that forges it can only get its own request
//! refused (a 508 is never stored: it carries no freshness, and 508 has no default one).

use std::net::SocketAddr;
use std::sync::Arc;

use cdn_edge::shield::{LoopError, Shield, Shields, TIER_HEADER};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora_cache::CachePhase;

use super::cache::CacheState;
use super::ctx::RequestCtx;
use crate::config::{RouteShield, ShieldFallback};
use crate::plan::{Plan, UpstreamPlan};

/// A route's shields, compiled.
#[derive(Debug)]
pub struct ShieldPlan {
    /// The upstream whose targets are the shields (its timeouts, TLS and keep-alive apply).
    pub upstream: String,
    /// What to do when no shield can be connected to.
    pub fallback: ShieldFallback,
    /// The consistent-hash ring over the shields.
    pub ring: Shields,
}

impl ShieldPlan {
    /// Compiles a route's `cache.shield:` section.
    pub fn new(cfg: &RouteShield) -> Self {
        let shields: Vec<Shield> = cfg
            .shields
            .iter()
            .map(|&(addr, weight)| Shield { addr, weight })
            .collect();
        ShieldPlan {
            upstream: cfg.upstream.clone(),
            fallback: cfg.fallback,
            ring: Shields::new(&shields),
        }
    }
}

/// A fill's way through the shields: the ring order for its key and how far it got.
pub struct ShieldAttempts {
    /// Shields in failover order.
    order: Vec<SocketAddr>,
    /// Index in `order` of the next shield to try.
    next: usize,
    /// The shield of the current attempt.
    current: Option<SocketAddr>,
    /// The route's own upstream, for `fallback: origin`.
    origin: Option<Arc<UpstreamPlan>>,
    /// What to do when every shield refused.
    fallback: ShieldFallback,
}

/// Where the next attempt of a fill goes.
pub enum NextHop {
    /// This shield, through the shield upstream (now `ctx.upstream`).
    Shield(SocketAddr),
    /// Every shield refused: the route's upstream, as for an uncached request.
    Origin,
    /// Every shield refused and the route says `fallback: error`.
    Unavailable,
}

/// The hop header values of `req` (values that are not text are ignored).
fn hops(req: &RequestHeader) -> impl Iterator<Item = &str> {
    req.headers
        .get_all(TIER_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// Refuses a request that already passed through this tier or through too many tiers.
pub fn check_loop(plan: &Plan, req: &RequestHeader) -> Result<(), LoopError> {
    match plan.config.cache.as_ref().and_then(|c| c.tier.as_ref()) {
        Some(guard) => guard.check(hops(req)),
        None => Ok(()),
    }
}

/// Appends this tier's name to the hop header of a forwarded request.
pub fn forward_hops(plan: &Plan, upstream_request: &mut RequestHeader) -> pingora::Result<()> {
    if let Some(guard) = plan.config.cache.as_ref().and_then(|c| c.tier.as_ref()) {
        let value = guard.forward(hops(upstream_request));
        upstream_request.insert_header(TIER_HEADER, value)?;
    }
    Ok(())
}

/// Before the first attempt: a fill on a route with a shield goes through the shields of its
/// cache key (the request's upstream becomes the shield upstream).
pub fn begin(session: &Session, ctx: &mut RequestCtx) {
    if ctx.attempts > 0 || ctx.shield.is_some() {
        return;
    }
    // A revalidation goes upstream in the `Stale` phase (`Expired` once refetched in full).
    if !matches!(
        session.cache.phase(),
        CachePhase::Miss | CachePhase::Stale | CachePhase::Expired
    ) {
        return;
    }
    let Some(plan) = ctx.cache.plan.as_ref().and_then(|p| p.shield.clone()) else {
        return;
    };
    let Some(key) = session.cache.maybe_cache_key() else {
        return;
    };
    let Some(upstream) = ctx.plan.upstream_plans.get(&plan.upstream).cloned() else {
        return;
    };
    // Ring order, with the shields the upstream knows to be down moved (in order) to the end.
    let order = upstream
        .pool
        .live_first(plan.ring.candidates(key.primary_key()));
    if order.is_empty() {
        return;
    }
    ctx.shield = Some(ShieldAttempts {
        order,
        next: 0,
        current: None,
        origin: ctx.upstream.replace(upstream.clone()),
        fallback: plan.fallback,
    });
    ctx.plugins.upstream = upstream.name.clone();
}

/// Chooses where the next attempt of a fill through the shields goes.
pub fn next_hop(ctx: &mut RequestCtx) -> Option<NextHop> {
    let attempts = ctx.shield.as_mut()?;
    if let Some(&addr) = attempts.order.get(attempts.next) {
        attempts.next += 1;
        attempts.current = Some(addr);
        return Some(NextHop::Shield(addr));
    }
    attempts.current = None;
    let hop = match attempts.fallback {
        ShieldFallback::Error => NextHop::Unavailable,
        ShieldFallback::Origin => {
            let origin = attempts.origin.take();
            ctx.shield = None;
            if let Some(origin) = origin {
                ctx.plugins.upstream = origin.name.clone();
                ctx.upstream = Some(origin);
            }
            ctx.attempts = 0;
            ctx.tried.clear();
            record(&ctx.cache, "origin", "fallback");
            NextHop::Origin
        }
    };
    Some(hop)
}

/// The current attempt's shield could not be connected to. `Some(retry)` when the attempt
/// was a shield's: retried while another shield or the origin fallback is left.
pub fn connect_failed(ctx: &mut RequestCtx) -> Option<bool> {
    let attempts = ctx.shield.as_mut()?;
    let addr = attempts.current.take()?;
    record(&ctx.cache, &addr.to_string(), "connect_error");
    Some(attempts.next < attempts.order.len() || attempts.fallback == ShieldFallback::Origin)
}

/// The current attempt's shield answered (`ok`) or failed after the connection (`error`).
pub fn attempt_done(ctx: &RequestCtx, ok: bool) {
    if let Some(addr) = ctx.shield.as_ref().and_then(|a| a.current) {
        record(
            &ctx.cache,
            &addr.to_string(),
            if ok { "ok" } else { "error" },
        );
    }
}

/// Counts a fill attempt on the metrics of the request's cache.
fn record(cache: &CacheState, shield: &str, result: &'static str) {
    if let Some(edge) = &cache.edge {
        edge.metrics().shield(shield, result);
    }
}
