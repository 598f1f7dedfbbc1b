//! Upstream attempts: choosing a target, timeouts, deciding retries, and mapping the final
//! error to the status the client sees.
//!
//! Retry rules (the nginx/Envoy consensus):
//! - a retry goes to a target not yet tried by this request, after an exponential backoff with
//!   full jitter, and only while the total timeout has time left;
//! - a connect failure is retried for any method: nothing reached the upstream;
//! - anything that happens after the request was sent (timeout, reset, retryable status) is
//!   retried only for idempotent methods, or when the route sets `retry_non_idempotent`, and
//!   only while the request body can be replayed from pingora's retry buffer;
//! - every retry needs a slot in the upstream's retry budget (≤ 20 % of active requests,
//!   at least 3 by default), so retries cannot multiply an outage.
//!
//! A keep-alive connection from the pool that turns out stale (closed or reset by the upstream
//! before any response, or holding the unread tail of an earlier response) is not a failure
//! of the target: the attempt is repeated at once on another connection ([`proxy_failed`]).
//!
//! Circuit breakers ([`admit`]): the route's breaker is asked once per request, the upstream's
//! once per attempt; an open breaker answers 503 `circuit open` or its fallback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use plugins::breaker::Rejected;
use plugins::LocalResponse;

use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, RetryType};

use super::cache::StaleServe;
use super::ctx::RequestCtx;
use super::tier::{self, NextHop};
use crate::config::{BreakerFallback, HashKey, Upstream};
use crate::plan::{Plan, UpstreamPlan};
use crate::upstream::{backoff, hash_key, is_idempotent, should_retry, Outcome, SelectKey};

/// Retries never wait longer than this between attempts, whatever the config says.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn upstream_config(ctx: &RequestCtx) -> Option<&Upstream> {
    ctx.upstream.as_ref().map(|u| u.pool.config())
}

fn status_error(status: u16, why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(status), why)
}

/// Chooses the target of the next attempt and builds its peer.
pub async fn next_peer(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Box<HttpPeer>> {
    let peer = choose_peer(session, ctx).await;
    ctx.attempt_error = peer.is_err();
    // A stale serve asked for by the previous attempt's answer is not this attempt's.
    ctx.stale_requested = false;
    peer
}

async fn choose_peer(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Box<HttpPeer>> {
    if let Some(addr) = ctx.repeat.take() {
        return repeat_peer(ctx, addr);
    }
    tier::begin(session, ctx);
    match tier::next_hop(ctx) {
        Some(NextHop::Shield(addr)) => return shield_peer(ctx, addr),
        Some(NextHop::Unavailable) => {
            ctx.reason = Some(NO_SHIELD);
            return Err(status_error(502, NO_SHIELD));
        }
        Some(NextHop::Origin) | None => {}
    }
    let Some(upstream) = ctx.upstream.clone() else {
        ctx.reason = Some("no upstream for route");
        return Err(status_error(503, "no upstream for route"));
    };
    let pool = &upstream.pool;
    let up = pool.config();
    let deadline = ctx.start + up.timeouts.total;
    if ctx.attempts > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = backoff(&up.retries, ctx.attempts - 1, &mut rand::rng())
            .min(left)
            .min(MAX_BACKOFF);
        tokio::time::sleep(wait).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        ctx.reason = Some("upstream total timeout");
        return Err(status_error(504, "upstream total timeout"));
    }
    if ctx.attempts > 0 {
        if let Some(breaker) = &upstream.breaker {
            match breaker.try_acquire() {
                Ok(permit) => ctx.attempt_permit = Some(permit),
                Err(_) => {
                    ctx.reason = Some(CIRCUIT_OPEN);
                    return Err(status_error(503, CIRCUIT_OPEN));
                }
            }
        }
    }
    let key = SelectKey {
        hash: select_hash(session, up),
    };
    let Some(pick) = pool.select(&key, &ctx.tried) else {
        ctx.reason = Some("no healthy upstream target");
        return Err(status_error(503, "no healthy upstream target"));
    };
    ctx.tried.push(pick.addr);
    ctx.inflight = Some(pool.begin(&pick));
    let addr = pick.addr;
    ctx.target = Some(pick);
    ctx.attempt_start = Some(Instant::now());
    ctx.attempts += 1;
    ctx.reported = false;
    Ok(Box::new(peer_for(&upstream, addr, left)))
}

/// The reason of a fill refused because no shield could be connected to.
const NO_SHIELD: &str = "no shield reachable";

/// The peer of an attempt on a shield (through the shield upstream, now `ctx.upstream`).
/// Nothing is reported to the shield upstream's pool: the ring, not the balancer, chose it.
fn shield_peer(ctx: &mut RequestCtx, addr: SocketAddr) -> pingora::Result<Box<HttpPeer>> {
    let Some(upstream) = ctx.upstream.clone() else {
        ctx.reason = Some(NO_SHIELD);
        return Err(status_error(502, NO_SHIELD));
    };
    let left = (ctx.start + upstream.pool.config().timeouts.total)
        .saturating_duration_since(Instant::now());
    if left.is_zero() {
        ctx.reason = Some("upstream total timeout");
        return Err(status_error(504, "upstream total timeout"));
    }
    ctx.tried.push(addr);
    // The attempt's outcome feeds the shield upstream's pool (latency, outlier ejection).
    ctx.target = upstream.pool.pick_addr(addr);
    ctx.inflight = ctx.target.as_ref().map(|pick| upstream.pool.begin(pick));
    ctx.reported = ctx.target.is_none();
    ctx.attempt_start = Some(Instant::now());
    ctx.attempts += 1;
    Ok(Box::new(peer_for(&upstream, addr, left)))
}

/// The peer of an attempt repeated on the same target (origin or shield) because the pooled
/// connection it used was stale: no backoff, no new target, not counted as an attempt.
fn repeat_peer(ctx: &mut RequestCtx, addr: SocketAddr) -> pingora::Result<Box<HttpPeer>> {
    let Some(upstream) = ctx.upstream.clone() else {
        ctx.reason = Some("no upstream for route");
        return Err(status_error(503, "no upstream for route"));
    };
    let left = (ctx.start + upstream.pool.config().timeouts.total)
        .saturating_duration_since(Instant::now());
    if left.is_zero() {
        ctx.reason = Some("upstream total timeout");
        return Err(status_error(504, "upstream total timeout"));
    }
    ctx.attempt_start = Some(Instant::now());
    Ok(Box::new(peer_for(&upstream, addr, left)))
}

/// A peer for `addr` of `upstream` with its timeouts (capped at `left`), TLS and keep-alive.
fn peer_for(upstream: &UpstreamPlan, addr: SocketAddr, left: Duration) -> HttpPeer {
    let up = upstream.pool.config();
    let (tls, sni) = match &up.tls {
        Some(t) => (
            true,
            t.sni.clone().unwrap_or_else(|| {
                up.targets
                    .first()
                    .map(|t| t.host.clone())
                    .unwrap_or_default()
            }),
        ),
        None => (false, String::new()),
    };
    let mut peer = HttpPeer::new(addr, tls, sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(up.timeouts.connect.min(left));
    o.total_connection_timeout = Some(up.timeouts.connect.min(left));
    o.read_timeout = Some(up.timeouts.read.min(left));
    o.write_timeout = Some(up.timeouts.write.min(left));
    o.idle_timeout = Some(up.keepalive.idle_timeout);
    if let Some(t) = &up.tls {
        o.verify_cert = t.verify;
        o.verify_hostname = t.verify;
        o.ca = upstream.ca.clone();
        o.alpn = if t.http2 { ALPN::H2H1 } else { ALPN::H1 };
    }
    peer
}

/// The hash a consistent-hash balancer selects by (`None` for other algorithms).
fn select_hash(session: &Session, up: &Upstream) -> Option<u64> {
    let crate::config::Balance::Ketama { key } = &up.balance else {
        return None;
    };
    let req = session.req_header();
    let from_ip = || super::client_ip(session).map(|ip| hash_key(ip.to_string().as_bytes()));
    match key {
        HashKey::Header(name) => req
            .headers
            .get(name.as_str())
            .map(|v| hash_key(v.as_bytes()))
            .or_else(from_ip),
        HashKey::Cookie(name) => cookie(&req.headers, name)
            .map(|v| hash_key(v.as_bytes()))
            .or_else(from_ip),
        HashKey::ClientIp => from_ip(),
        HashKey::Path => Some(hash_key(req.uri.path().as_bytes())),
    }
}

fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Reports the current attempt's outcome to its pool, once.
fn report(ctx: &mut RequestCtx, outcome: Outcome) {
    if ctx.reported {
        return;
    }
    ctx.reported = true;
    ctx.inflight = None;
    if let (Some(upstream), Some(pick)) = (&ctx.upstream, &ctx.target) {
        let took = ctx.attempt_start.map(|t| t.elapsed()).unwrap_or_default();
        upstream.pool.report(pick, outcome, took);
        upstream.metrics.observe_attempt(took);
        if let (Some(breaker), Some(permit)) = (&upstream.breaker, ctx.attempt_permit.take()) {
            breaker.record(permit, outcome, took);
        }
    }
}

/// Whether another attempt may be made for `condition`; takes a retry-budget slot if so.
fn may_retry(
    session: &Session,
    ctx: &mut RequestCtx,
    outcome: &Outcome,
    request_sent: bool,
) -> bool {
    let Some(up) = upstream_config(ctx) else {
        return false;
    };
    if ctx.attempts > up.retries.attempts || !should_retry(&up.retries, outcome) {
        return false;
    }
    if request_sent {
        let route_allows = ctx
            .route
            .and_then(|i| ctx.plan.config.routes.get(i))
            .is_some_and(|r| r.retry_non_idempotent);
        let method_ok = route_allows || is_idempotent(session.req_header().method.as_str());
        if !method_ok || session.retry_buffer_truncated() || session.response_written().is_some() {
            return false;
        }
    }
    if Instant::now() >= ctx.start + up.timeouts.total {
        return false;
    }
    let Some(upstream) = &ctx.upstream else {
        return false;
    };
    match upstream.pool.retry_budget().try_retry() {
        Some(slot) => {
            upstream.metrics.retried();
            ctx.retry_slot = Some(slot);
            true
        }
        None => {
            log::debug!("retry budget of upstream {} exhausted", upstream.name);
            false
        }
    }
}

/// pingora could not connect to the chosen target.
pub fn connect_failed(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    ctx.attempt_error = true;
    if let Some(retry) = tier::connect_failed(ctx) {
        report(ctx, Outcome::ConnectError);
        // Failing over to the next shield (or the origin) is bounded by the shield count.
        e.set_retry(retry);
        if !retry {
            ctx.reason.get_or_insert(NO_SHIELD);
        }
        return e;
    }
    report(ctx, Outcome::ConnectError);
    let retry = may_retry(session, ctx, &Outcome::ConnectError, false);
    e.set_retry(retry);
    if !retry {
        ctx.reason.get_or_insert("upstream connect failed");
    }
    e
}

/// Most times one request repeats an attempt whose pooled connection was stale.
const MAX_STALE_REPEATS: u32 = 3;

/// Whether `e`, on a connection taken from the pool, says the connection was stale rather than
/// that the upstream failed this request: it was closed or reset before any response (pingora
/// marks those `ReusedOnly`), or what came first was not a response head (the unread tail of
/// the previous response on it: bytes after a 204, a 304, a HEAD response, or past a
/// `Content-Length`).
fn stale_connection(e: &Error, reused: bool) -> bool {
    reused
        && e.esource() == &ErrorSource::Upstream
        && (e.retry == RetryType::ReusedOnly || e.etype() == &ErrorType::InvalidHTTPHeader)
}

/// Whether the attempt may be repeated on a fresh connection: the request can be sent again
/// (idempotent, or the route allows it, and its body is still buffered), nothing went to the
/// client yet, and time is left. Neither a retry of the policy nor a failure of the target:
/// no retry budget, no backoff, nothing reported to the pool (as nginx, which does not count
/// a failed cached connection as a try).
fn may_repeat(session: &Session, ctx: &RequestCtx) -> bool {
    let Some(up) = upstream_config(ctx) else {
        return false;
    };
    let route_allows = ctx
        .route
        .and_then(|i| ctx.plan.config.routes.get(i))
        .is_some_and(|r| r.retry_non_idempotent);
    ctx.stale_repeats < MAX_STALE_REPEATS
        && (route_allows || is_idempotent(session.req_header().method.as_str()))
        && !session.retry_buffer_truncated()
        && session.response_written().is_none()
        && Instant::now() < ctx.start + up.timeouts.total
}

/// Something failed after connecting (timeout, reset, or a retryable status we raised).
/// `reused`: the connection came from the pool.
pub fn proxy_failed(
    _peer: &HttpPeer,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    reused: bool,
) -> Box<Error> {
    ctx.attempt_error = true;
    if let ErrorType::HTTPStatus(_) = e.etype() {
        if e.esource() == &ErrorSource::Upstream && (e.retry() || ctx.stale_requested) {
            // Raised by `response_received`, which already decided the retry, or that the
            // stale object answers.
            return e;
        }
    }
    if stale_connection(&e, reused) && may_repeat(session, ctx) {
        ctx.stale_repeats += 1;
        ctx.repeat = ctx.tried.last().copied();
        log::debug!(
            "request {}: pooled upstream connection was stale ({e}); sent again",
            ctx.request_id
        );
        e.set_retry(ctx.repeat.is_some());
        return e;
    }
    let outcome = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Outcome::Timeout,
        _ => Outcome::Reset,
    };
    let upstream_side = e.esource() == &ErrorSource::Upstream;
    if upstream_side {
        tier::attempt_done(ctx, false);
        report(ctx, outcome);
    }
    let retry = upstream_side && may_retry(session, ctx, &outcome, true);
    e.set_retry(retry);
    e
}

/// Upstream response headers arrived. A retryable status becomes an error that pingora retries
/// (nothing has been sent downstream yet); otherwise the response goes through. On a request
/// through the cache, see [`final_for_cache`]; a 5xx without explicit freshness to a request
/// holding a stale object that may stand in for it, with no retry left, becomes an error that
/// pingora answers with the stale object (nginx likewise passes a request to the next server
/// before it serves stale). Interim (1xx) heads pass untouched.
pub fn response_received(
    session: &mut Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let status = resp.status.as_u16();
    if resp.status.is_informational() && status != 101 {
        // An interim response (100, 103) is not the attempt's answer: the final one follows.
        return Ok(());
    }
    ctx.upstream_status = Some(status);
    ctx.upstream_time = ctx.attempt_start.map(|t| t.elapsed());
    tier::attempt_done(ctx, true);
    let outcome = Outcome::Status(status);
    report(ctx, outcome);
    if !final_for_cache(session, ctx, resp) && may_retry(session, ctx, &outcome, true) {
        let mut e = Error::explain(ErrorType::HTTPStatus(status), "retryable upstream status");
        e.set_retry(true);
        return Err(e.into_up());
    }
    if resp.status.is_server_error()
        && !super::cache::explicit_freshness(resp)
        && super::cache::stale_may_stand_in(session, &ctx.cache)
    {
        // No retry left: the stale object this request holds answers instead of the 5xx.
        // pingora serves it from its error path, asking `should_serve_stale` again.
        ctx.stale_requested = true;
        return Err(Error::explain(
            ErrorType::HTTPStatus(status),
            "upstream 5xx: a stale object stands in",
        )
        .into_up());
    }
    Ok(())
}

/// Whether a response to a request through the cache is final although its status is in
/// `retries.on`. It is when it carries explicit freshness (RFC 9111 §4.2.1: `max-age`,
/// `s-maxage`, `no-cache` or `Expires`; the origin said how long this answer holds, so it is
/// stored or passed as it is, §3), or when no target is left that this request has not tried:
/// asking the same origin the same cacheable question twice doubles its load when it is
/// already failing, and a stored copy, not a repeat, is the cache's answer to origin errors
/// (nginx's `proxy_next_upstream` likewise only passes a request to the next server). Failures
/// without an answer (connect failure, timeout, reset) follow the retry policy unchanged.
fn final_for_cache(session: &Session, ctx: &RequestCtx, resp: &ResponseHeader) -> bool {
    if ctx.cache.plan.is_none() || ctx.cache.bypass.is_some() {
        return false;
    }
    super::cache::explicit_freshness(resp) || !untried_target(session, ctx)
}

/// Whether a target this request has not tried is left to retry on.
fn untried_target(session: &Session, ctx: &RequestCtx) -> bool {
    let Some(upstream) = &ctx.upstream else {
        return false;
    };
    let key = SelectKey {
        hash: select_hash(session, upstream.pool.config()),
    };
    upstream
        .pool
        .select(&key, &ctx.tried)
        .is_some_and(|pick| !ctx.tried.contains(&pick.addr))
}

/// What the origin did when pingora asks whether a stale object may stand in for `e`: answered
/// with a 5xx status (pingora raises `e` from the response head, nothing failed before it), or
/// failed without an answer, with the status the client would get for `e` ([`error_status`]).
pub fn stale_cause(e: &Error, ctx: &RequestCtx) -> StaleServe {
    match e.etype() {
        ErrorType::HTTPStatus(code) if !ctx.attempt_error || ctx.stale_requested => {
            StaleServe::Answered(*code)
        }
        _ => StaleServe::Unanswered(error_status(e, ctx).0),
    }
}

/// The request is over: report an attempt nobody reported yet. A client that went away says
/// nothing about the upstream, so that attempt is not reported (its in-flight count ends).
pub fn finish(ctx: &mut RequestCtx, e: Option<&Error>) {
    if !ctx.reported {
        let outcome = match e {
            Some(e) if e.esource() != &ErrorSource::Upstream => None,
            Some(e)
                if matches!(
                    e.etype(),
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout
                ) =>
            {
                Some(Outcome::Timeout)
            }
            Some(_) => Some(Outcome::Reset),
            None => Some(Outcome::Status(ctx.upstream_status.unwrap_or(200))),
        };
        match outcome {
            Some(o) => report(ctx, o),
            None => {
                ctx.reported = true;
                ctx.inflight = None;
            }
        }
    }
    // An attempt that was never reported gives its permit back.
    ctx.attempt_permit = None;
    let breaker = ctx.route_plan().and_then(|r| r.breaker.clone());
    if let (Some(breaker), Some(permit)) = (breaker, ctx.route_permit.take()) {
        if let Some(result) = request_result(ctx, e) {
            breaker.record(permit, result, ctx.start.elapsed());
        }
    }
    ctx.retry_slot = None;
    ctx.active = None;
}

/// How a request ended, for its route's breaker; `None` when the upstream is not to blame
/// (the client went away, the request was refused before reaching it).
fn request_result(ctx: &RequestCtx, e: Option<&Error>) -> Option<Outcome> {
    use ErrorType::*;
    let Some(e) = e else {
        return ctx.upstream_status.map(Outcome::Status);
    };
    if is_connect_error(e) {
        return Some(Outcome::ConnectError);
    }
    if e.esource() != &ErrorSource::Upstream {
        return None;
    }
    Some(match e.etype() {
        HTTPStatus(code) => Outcome::Status(*code),
        ReadTimedout | WriteTimedout => Outcome::Timeout,
        _ => Outcome::Reset,
    })
}

/// The reason of a request an open breaker refused.
pub const CIRCUIT_OPEN: &str = "circuit open";

/// Asks the route's breaker, then the upstream's, whether the request may go ahead. An open
/// breaker's fallback upstream replaces the request's upstream (its own breaker is asked, its
/// own fallback is not followed, so fallbacks cannot loop). Returns the response to write when
/// the request is refused.
pub fn admit(ctx: &mut RequestCtx) -> Result<(), Box<LocalResponse>> {
    let plan = ctx.plan.clone();
    if let Some(breaker) = ctx.route_plan().and_then(|r| r.breaker.clone()) {
        match breaker.try_acquire() {
            Ok(permit) => ctx.route_permit = Some(permit),
            Err(rejected) => {
                let other = divert(&plan, breaker.fallback(), rejected)?;
                switch_upstream(ctx, other);
            }
        }
    }
    let Some(upstream) = ctx.upstream.clone() else {
        return Ok(());
    };
    let Some(breaker) = &upstream.breaker else {
        return Ok(());
    };
    match breaker.try_acquire() {
        Ok(permit) => ctx.attempt_permit = Some(permit),
        Err(rejected) => {
            let other = divert(&plan, breaker.fallback(), rejected)?;
            if let Some(b) = &other.breaker {
                let permit = b.try_acquire().map_err(|r| circuit_open(r.retry_after))?;
                ctx.attempt_permit = Some(permit);
            }
            switch_upstream(ctx, other);
        }
    }
    Ok(())
}

/// The fallback upstream of a breaker that rejected a call, or the response to write.
fn divert(
    plan: &Plan,
    fallback: Option<&BreakerFallback>,
    rejected: Rejected,
) -> Result<Arc<UpstreamPlan>, Box<LocalResponse>> {
    match fallback {
        Some(BreakerFallback::Upstream(name)) => plan
            .upstream_plans
            .get(name)
            .cloned()
            .ok_or_else(|| circuit_open(rejected.retry_after)),
        Some(BreakerFallback::Response(r)) => {
            let mut local = LocalResponse::new(r.status);
            local.body = Bytes::from(r.body.clone());
            let mut local = local
                .with_header("content-type", &r.content_type)
                .with_header("x-meridian-reason", CIRCUIT_OPEN);
            for (name, value) in &r.headers {
                if let Err(e) = local.header.append_header(name.clone(), value.as_str()) {
                    log::debug!("breaker fallback: header {name} skipped: {e}");
                }
            }
            Err(Box::new(local))
        }
        None => Err(circuit_open(rejected.retry_after)),
    }
}

/// 503 `circuit open`, with `Retry-After` when the breaker knows when it will try again.
pub fn circuit_open(retry_after: Option<Duration>) -> Box<LocalResponse> {
    let mut r =
        LocalResponse::text(503, CIRCUIT_OPEN).with_header("x-meridian-reason", CIRCUIT_OPEN);
    if let Some(after) = retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        r = r.with_header("retry-after", secs.to_string());
    }
    Box::new(r)
}

/// Sends the request to `upstream` instead of the one chosen by the route.
fn switch_upstream(ctx: &mut RequestCtx, upstream: Arc<UpstreamPlan>) {
    ctx.active = Some(upstream.pool.retry_budget().request_started());
    ctx.plugins.upstream = upstream.name.clone();
    ctx.upstream = Some(upstream);
}

/// How the request ended, for the plugins' logging hook.
pub fn outcome(session: &Session, ctx: &RequestCtx, e: Option<&Error>) -> plugins::Outcome {
    use ErrorType::*;
    let error = e
        .filter(|e| e.esource() == &ErrorSource::Upstream || is_connect_error(e))
        .map(|e| match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                plugins::AttemptError::Timeout
            }
            _ if is_connect_error(e) => plugins::AttemptError::Connect,
            _ => plugins::AttemptError::Other,
        });
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.own_status)
        .unwrap_or(0);
    plugins::Outcome {
        status,
        upstream_status: ctx.upstream_status,
        error,
        upstream_time: ctx.upstream_time,
        duration: ctx.start.elapsed(),
        local: ctx.plugins.outcome.local,
    }
}

fn is_connect_error(e: &Error) -> bool {
    use ErrorType::*;
    matches!(
        e.etype(),
        ConnectTimedout
            | ConnectRefused
            | ConnectNoRoute
            | ConnectError
            | TLSHandshakeFailure
            | TLSHandshakeTimedout
            | InvalidCert
            | HandshakeError
            | SocketError
            | BindError
    )
}

/// The status and short reason for a request that failed.
pub fn error_status(e: &Error, ctx: &RequestCtx) -> (u16, &'static str) {
    use ErrorType::*;
    match e.etype() {
        // A plugin's refusal explains itself in the error's static context.
        HTTPStatus(code) => {
            let explained = match &e.context {
                Some(pingora::ImmutStr::Static(s)) => Some(*s),
                _ => None,
            };
            (*code, ctx.reason.or(explained).unwrap_or("error"))
        }
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
        | TLSHandshakeTimedout | InvalidCert | HandshakeError | SocketError | BindError => {
            (502, "upstream connect failed")
        }
        ReadTimedout | WriteTimedout if e.esource() == &ErrorSource::Upstream => {
            (504, "upstream timeout")
        }
        _ => match e.esource() {
            ErrorSource::Upstream => (502, "upstream failed"),
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => (0, "client went away"),
                ReadTimedout | WriteTimedout => (408, "client timeout"),
                _ => (400, "malformed request"),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, "internal error"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_error(etype: ErrorType, retry: RetryType) -> Box<Error> {
        let mut e = Error::new(etype);
        e.retry = retry;
        e.into_up()
    }

    #[test]
    fn only_errors_of_a_pooled_connection_before_a_response_are_stale() {
        let closed = upstream_error(ErrorType::ConnectionClosed, RetryType::ReusedOnly);
        let garbage = upstream_error(ErrorType::InvalidHTTPHeader, RetryType::Decided(false));
        let timeout = upstream_error(ErrorType::ReadTimedout, RetryType::Decided(false));
        assert!(stale_connection(&closed, true));
        assert!(stale_connection(&garbage, true));
        assert!(!stale_connection(&closed, false), "a fresh connection");
        assert!(!stale_connection(&garbage, false), "a fresh connection");
        assert!(!stale_connection(&timeout, true), "the upstream is slow");
        let mut downstream = Error::new(ErrorType::InvalidHTTPHeader);
        downstream.esource = ErrorSource::Downstream;
        assert!(!stale_connection(&downstream, true), "the client's fault");
    }
}
