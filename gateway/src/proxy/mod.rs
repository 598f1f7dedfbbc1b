//! The pingora `ProxyHttp` implementation: the phases of one request, in order.
//!
//! 1. `request_filter`: request id and trace context, protection ([`guard`]), IP access, path
//!    normalisation, routing, rewrite, upstream choice, plugin request hooks, circuit
//!    breakers (route, then upstream; an open one answers or diverts to its fallback).
//! 2. `request_body_filter`: body size limit for streamed bodies.
//! 3. `upstream_peer`: target selection ([`attempt`]), backoff before a retry, timeouts.
//! 4. `upstream_request_filter`: rewrite, hop-by-hop stripping, forwarded headers, header
//!    rules, `traceparent`, plugin upstream hooks.
//! 5. `upstream_response_filter`: a head over the header limits is refused (502); outcome
//!    reported to the pool; a retryable status turns into a retry before anything is sent
//!    downstream.
//! 6. `response_filter`: header rules, request id, plugin response hooks.
//! 7. `logging`: metrics, access log, span end, plugin logging hooks.
//!
//! Routes with `cache:` also run pingora-cache's hooks, all in [`cache`]: enable, key,
//! cacheability, variance, stale serving, and `Cache-Status` in `response_filter`. With a
//! `cache.tier`, every request is checked for loops and every forwarded one carries the hop
//! header; fills on routes with `cache.shield` go to the shield of their key ([`tier`]).

mod attempt;
pub mod cache;
mod ctx;
pub mod forward;
pub mod guard;
pub mod handback;
mod hls;
mod observe;
mod prefetch;
mod respond;
mod tier;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType};
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, RespCacheable};

pub use ctx::RequestCtx;

use crate::config::IpAccess;
use crate::plan::Plan;
use crate::router::{normalize::normalize_path, RequestView};
use crate::telemetry::{
    new_request_id, valid_incoming as valid_incoming_request_id, Metrics, Telemetry, TraceParent,
};
use cache::EdgeCache;
use observe::Observer;

/// The proxy of one listener. All listeners of a gateway share its plan, telemetry (with
/// the metrics) and cache.
pub struct MeridianProxy {
    plan: Arc<ArcSwap<Plan>>,
    observer: Observer,
    metrics: Arc<Metrics>,
    edge: Option<Arc<EdgeCache>>,
    draining: Arc<AtomicBool>,
    tls: bool,
}

impl MeridianProxy {
    /// A proxy serving `plan` for a listener (`tls` tells `X-Forwarded-Proto`), reporting to
    /// `telemetry` and caching in `edge` (the gateway's); while `draining` is set, responses
    /// close their connections.
    pub fn new(
        plan: Arc<ArcSwap<Plan>>,
        telemetry: Arc<Telemetry>,
        edge: Option<Arc<EdgeCache>>,
        draining: Arc<AtomicBool>,
        tls: bool,
    ) -> Self {
        Self {
            plan,
            metrics: telemetry.metrics().clone(),
            observer: Observer::new(telemetry),
            edge,
            draining,
            tls,
        }
    }

    /// Refuses the request: records why and writes a short response. Returns `Ok(true)`
    /// (the request is answered) for pingora.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        reason: &'static str,
    ) -> pingora::Result<bool> {
        ctx.own_status = Some(status);
        ctx.reason = Some(reason);
        respond::respond(session, status, reason, &ctx.request_id).await?;
        Ok(true)
    }
}

fn allowed(access: &IpAccess, ip: Option<std::net::IpAddr>) -> bool {
    if access.allow.is_empty() && access.deny.is_empty() {
        return true;
    }
    let Some(ip) = ip else { return false };
    if access.deny.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    access.allow.is_empty() || access.allow.iter().any(|n| n.contains(&ip))
}

/// The host a request is addressed to: `Host` (HTTP/1) or the URI authority (HTTP/2), lower
/// case, without port or trailing dot.
fn request_host(req: &RequestHeader) -> String {
    let raw = req
        .uri
        .host()
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(strip_port)
        })
        .unwrap_or_default();
    raw.trim_end_matches('.').to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The routing decision for a request.
struct Routed {
    route: usize,
    /// Path and query for the upstream when they differ from the request's.
    rewritten: Option<String>,
    max_body: Option<u64>,
}

/// A refusal during routing (with the route when one matched).
struct RouteRefusal {
    status: u16,
    reason: &'static str,
    route: Option<usize>,
}

/// Normalises the path, routes, checks the route's access list and body limit, and computes
/// the rewritten path.
fn route_request(
    plan: &Plan,
    req: &RequestHeader,
    host: &str,
    ip: Option<std::net::IpAddr>,
    declared_body: Option<u64>,
) -> Result<Routed, RouteRefusal> {
    let refuse = |status, reason, route| RouteRefusal {
        status,
        reason,
        route,
    };
    let raw_path = req.uri.path();
    let path = normalize_path(raw_path, plan.config.limits.encoded_slash)
        .map_err(|e| refuse(400, e.reason(), None))?;
    let view = RequestView {
        host,
        path: &path,
        method: req.method.as_str(),
        headers: &req.headers,
        query: req.uri.query(),
    };
    let matched = plan
        .router
        .route(&view)
        .ok_or(refuse(404, "no route", None))?;
    let index = matched.route;
    let route_cfg = &plan.config.routes[index];
    if !allowed(&route_cfg.access, ip) {
        return Err(refuse(403, "client address not allowed", Some(index)));
    }
    if let (Some(max), Some(declared)) = (route_cfg.max_body, declared_body) {
        if declared > max {
            return Err(refuse(413, "request body too large", Some(index)));
        }
    }
    let with_query = |p: &str| match req.uri.query() {
        Some(q) => format!("{p}?{q}"),
        None => p.to_string(),
    };
    let rewritten = match &route_cfg.rewrite {
        Some(rw) => Some(with_query(&crate::router::rewrite::apply(
            rw, &matched, route_cfg, &path,
        ))),
        // A normalised path must be what the upstream sees, or a rule could be bypassed.
        None if path.as_ref() != raw_path => Some(with_query(&path)),
        None => None,
    };
    Ok(Routed {
        route: index,
        rewritten,
        max_body: route_cfg.max_body,
    })
}

#[async_trait]
impl ProxyHttp for MeridianProxy {
    type CTX = RequestCtx;

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        // The `compression` plugin's encoder (pingora's, finishing brotli streams), off until a
        // plugin turns it on for a response; it replaces pingora's default compression module.
        modules.add_module(plugins::response_encoder());
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.plan.load_full(), self.metrics.track_request())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let req = session.req_header();
        ctx.request_id = match req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) if valid_incoming_request_id(id) => id.to_string(),
            _ => new_request_id(),
        };
        let parent = req
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        ctx.host = request_host(req);
        let client = client_ip(session);
        ctx.span = Some(
            self.observer
                .start_span(session, client, parent.as_ref(), ctx),
        );

        let plan = ctx.plan.clone();
        if let Err(e) = tier::check_loop(&plan, session.req_header()) {
            log::debug!("request {} refused: {e}", ctx.request_id);
            return self
                .refuse(
                    session,
                    ctx,
                    cdn_edge::shield::LOOP_DETECTED,
                    "tier loop detected",
                )
                .await;
        }
        let limits = &plan.config.limits;
        let raw = session.as_http1().map(|_| session.to_h1_raw());
        let uri_len = session.req_header().raw_path().len();
        let declared_body =
            match guard::check_head(limits, uri_len, &session.req_header().headers, raw.as_ref()) {
                Ok(length) => length,
                Err(r) => return self.refuse(session, ctx, r.status, r.reason).await,
            };
        if !allowed(&plan.config.access, client) {
            return self
                .refuse(session, ctx, 403, "client address not allowed")
                .await;
        }

        let routed = match route_request(
            &plan,
            session.req_header(),
            &ctx.host,
            client,
            declared_body,
        ) {
            Ok(r) => r,
            Err(r) => {
                ctx.route = r.route;
                return self.refuse(session, ctx, r.status, r.reason).await;
            }
        };
        ctx.route = Some(routed.route);
        ctx.rewritten = routed.rewritten;
        if let Some(max) = routed.max_body {
            ctx.max_body = max;
        }

        let Some(route) = plan.routes.get(routed.route) else {
            return self.refuse(session, ctx, 500, "route plan missing").await;
        };
        let Some(upstream) = route.pick(rand::random()).cloned() else {
            return self
                .refuse(session, ctx, 503, "no upstream for route")
                .await;
        };
        ctx.active = Some(upstream.pool.retry_budget().request_started());
        let upstream_name = upstream.name.clone();
        ctx.upstream = Some(upstream);
        ctx.plugins.route = route.name.clone();
        ctx.plugins.upstream = upstream_name;
        ctx.plugins.client_ip = client;
        match route
            .plugins
            .request_filter(session, &mut ctx.plugins)
            .await?
        {
            Some(local) => {
                ctx.own_status = Some(local.header.status.as_u16());
                ctx.reason = Some("answered by plugin");
                ctx.plugins.outcome.local = true;
                respond::local(session, *local, &ctx.request_id).await?;
                Ok(true)
            }
            None => {
                // A plugin (`size_limit`) may tighten the streamed-body limit, never loosen it.
                if let Some(limit) = ctx.plugins.extensions.get::<plugins::RequestBodyLimit>() {
                    ctx.max_body = ctx.max_body.min(limit.0);
                }
                match attempt::admit(ctx) {
                    Ok(()) => Ok(false),
                    Err(local) => {
                        let mut local = *local;
                        route
                            .plugins
                            .response_filter(session, &mut local.header, &mut ctx.plugins)
                            .await?;
                        ctx.own_status = Some(local.header.status.as_u16());
                        ctx.reason = Some(attempt::CIRCUIT_OPEN);
                        respond::local(session, local, &ctx.request_id).await?;
                        Ok(true)
                    }
                }
            }
        }
    }

    fn request_cache_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let plan = ctx.route_plan().and_then(|r| r.cache.clone());
        cache::enable(session, &mut ctx.cache, plan, self.edge.as_ref());
        Ok(())
    }

    fn cache_key_callback(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<CacheKey> {
        Ok(cache::key(
            session.req_header(),
            &ctx.host,
            self.tls,
            ctx.cache.plan.as_deref(),
        ))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<RespCacheable> {
        Ok(cache::cacheable(session.req_header(), resp, &mut ctx.cache))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache::variance(meta, req, &mut ctx.cache)
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        let failure = error.map(|e| attempt::stale_cause(e, ctx));
        if let (Some(cache::StaleServe::Answered(_)), Some(e)) = (failure, error) {
            if !ctx.stale_requested && !e.retry() {
                // pingora asks on a 5xx head before `upstream_response_filter` has seen it:
                // not yet. That filter knows the response's freshness (a 5xx with explicit
                // freshness is final) and the retries left, and asks for the stale object
                // itself when it should stand in (`attempt::response_received`).
                return false;
            }
        }
        cache::serve_stale(session, &mut ctx.cache, failure)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > ctx.max_body {
                ctx.reason = Some("request body too large");
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body too large",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        attempt::next_peer(session, ctx).await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        attempt::connect_failed(session, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        attempt::proxy_failed(peer, session, ctx, e, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(p) = &ctx.rewritten {
            let uri = p.parse::<http::Uri>().map_err(|_| {
                Error::explain(
                    ErrorType::InternalError,
                    "rewritten path is not a valid URI",
                )
            })?;
            upstream_request.set_uri(uri);
        }
        forward::strip_request_hop_by_hop(upstream_request);
        cache::upstream_request(session, &mut ctx.cache, upstream_request);
        cache::hold_interim(session);
        forward::set_forwarded(upstream_request, client_ip(session), self.tls, &ctx.host);
        if !upstream_request.headers.contains_key(http::header::HOST) {
            // An HTTP/1.0 request may come without `Host`; it goes upstream as HTTP/1.1, which
            // requires one: the target's configured authority (as nginx's `$proxy_host`).
            if let Some(pick) = &ctx.target {
                upstream_request.insert_header(http::header::HOST, &*pick.authority)?;
            }
        }
        tier::forward_hops(&ctx.plan, upstream_request)?;
        upstream_request.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(span) = &ctx.span {
            upstream_request.insert_header("traceparent", span.traceparent_for_upstream())?;
        }
        let Some(route) = ctx.route.and_then(|i| ctx.plan.routes.get(i)) else {
            return Ok(());
        };
        route.request_headers.apply_request(upstream_request);
        route
            .plugins
            .upstream_request_filter(session, upstream_request, &mut ctx.plugins)
            .await
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let limits = &ctx.plan.config.limits;
        if let Err(reason) = guard::check_response_head(limits, &upstream_response.headers) {
            ctx.reason = Some(reason);
            return Err(Error::explain(ErrorType::HTTPStatus(502), reason).into_up());
        }
        attempt::response_received(session, upstream_response, ctx)?;
        forward::strip_response_hop_by_hop(upstream_response);
        cache::upstream_response(session, upstream_response, &mut ctx.cache);
        cache::vary_encoded(&mut ctx.cache, session.req_header(), upstream_response);
        // The HTTP version is per hop: the client talks to Meridian, which speaks HTTP/1.1
        // even when an HTTP/1.0 upstream answered.
        if upstream_response.version == http::Version::HTTP_10 {
            upstream_response.set_version(http::Version::HTTP_11);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
        cache::finish_response(
            session,
            upstream_response,
            &mut ctx.cache,
            &ctx.host,
            self.tls,
            ctx.upstream_status,
        )
        .await;
        if self.draining.load(Ordering::Relaxed) && session.as_http1().is_some() {
            upstream_response.insert_header(http::header::CONNECTION, "close")?;
            session.set_keepalive(None);
        }
        let Some(route) = ctx.route.and_then(|i| ctx.plan.routes.get(i)) else {
            return Ok(());
        };
        route.response_headers.apply_response(upstream_response);
        route
            .plugins
            .response_filter(session, upstream_response, &mut ctx.plugins)
            .await
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        cache::count_body(&mut ctx.cache, body.as_ref());
        if let Some(route) = ctx.route.and_then(|i| ctx.plan.routes.get(i)) {
            route
                .plugins
                .response_body_filter(session, body, end_of_stream, &mut ctx.plugins)?;
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (status, reason) = attempt::error_status(e, ctx);
        ctx.own_status = Some(status);
        ctx.reason.get_or_insert(reason);
        let written = session.response_written().is_some();
        if !written && ctx.reason == Some(attempt::CIRCUIT_OPEN) {
            // A retry refused by the upstream's breaker.
            let local = *attempt::circuit_open(None);
            if let Err(err) = respond::local(session, local, &ctx.request_id).await {
                log::debug!("could not write error response: {err}");
            }
        } else if !written && status > 0 {
            let cache_status = cache::error_status(session, &ctx.cache);
            let sent =
                respond::respond_with(session, status, reason, &ctx.request_id, cache_status).await;
            if let Err(err) = sent {
                log::debug!("could not write error response: {err}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        attempt::finish(ctx, e);
        if e.is_none() {
            cache::finish_request(session, &mut ctx.cache, self.tls).await;
        }
        let plan = ctx.plan.clone();
        if let Some(route) = ctx.route.and_then(|i| plan.routes.get(i)) {
            ctx.plugins.outcome = attempt::outcome(session, ctx, e);
            route.plugins.logging(session, &mut ctx.plugins).await;
        }
        self.observer.request_done(session, ctx, e);
        let from_error_path = match ctx.cache.stale {
            Some(cache::StaleServe::Unanswered(_)) => true,
            Some(cache::StaleServe::Answered(_)) => ctx.stale_requested,
            None => false,
        };
        if e.is_none() && from_error_path {
            // pingora served this stale response from its error path and drops the client's
            // connection after it; it is kept.
            handback::hand_back(session).await;
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request is already in the access log with its reason.
        true
    }
}
