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

use std::time::{Duration, Instant};

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use crate::config::{HashKey, Upstream};
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
    Ok(Box::new(peer))
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
    report(ctx, Outcome::ConnectError);
    let retry = may_retry(session, ctx, &Outcome::ConnectError, false);
    e.set_retry(retry);
    if !retry {
        ctx.reason.get_or_insert("upstream connect failed");
    }
    e
}

/// Something failed after connecting (timeout, reset, or a retryable status we raised).
pub fn proxy_failed(
    _peer: &HttpPeer,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    if let ErrorType::HTTPStatus(_) = e.etype() {
        if e.esource() == &ErrorSource::Upstream && e.retry() {
            // Raised by `response_received`, which already decided the retry.
            return e;
        }
    }
    let outcome = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Outcome::Timeout,
        _ => Outcome::Reset,
    };
    let upstream_side = e.esource() == &ErrorSource::Upstream;
    if upstream_side {
        report(ctx, outcome);
    }
    let retry = upstream_side && may_retry(session, ctx, &outcome, true);
    e.set_retry(retry);
    e
}

/// Upstream response headers arrived. A retryable status becomes an error that pingora retries
/// (nothing has been sent downstream yet); otherwise the response goes through.
pub fn response_received(
    session: &mut Session,
    status: u16,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    ctx.upstream_status = Some(status);
    ctx.upstream_time = ctx.attempt_start.map(|t| t.elapsed());
    let outcome = Outcome::Status(status);
    report(ctx, outcome);
    if may_retry(session, ctx, &outcome, true) {
        let mut e = Error::explain(ErrorType::HTTPStatus(status), "retryable upstream status");
        e.set_retry(true);
        return Err(e.into_up());
    }
    Ok(())
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
    ctx.retry_slot = None;
    ctx.active = None;
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
        HTTPStatus(code) => (*code, ctx.reason.unwrap_or("error")),
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
