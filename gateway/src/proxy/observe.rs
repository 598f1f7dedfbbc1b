//! What the proxy tells the world about each request: metrics, one access-log line, a span.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use pingora::proxy::Session;
use pingora::Error;

use super::ctx::RequestCtx;
use crate::telemetry::{
    protocol_name, AccessLogRecord, ProxySpan, RequestAttrs, ResponseAttrs, RouteMetrics,
    Telemetry, TraceParent,
};

/// Records requests into the shared [`Telemetry`].
pub struct Observer {
    telemetry: Arc<Telemetry>,
    /// Requests that matched no route (404s, and refusals before routing).
    unrouted: RouteMetrics,
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

impl Observer {
    /// An observer writing to `telemetry`.
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            unrouted: telemetry.metrics().route_handles("none"),
            telemetry,
        }
    }

    /// Starts the server span of a request (a child of `parent` when the client sent one).
    pub fn start_span(
        &self,
        session: &Session,
        client_ip: Option<IpAddr>,
        parent: Option<&TraceParent>,
        ctx: &RequestCtx,
    ) -> ProxySpan {
        let req = session.req_header();
        let attrs = RequestAttrs {
            method: req.method.as_str(),
            path: req.uri.path(),
            host: &ctx.host,
            route: None,
            client_ip,
            protocol_version: protocol_version(req.version),
            request_id: &ctx.request_id,
        };
        self.telemetry.tracer().start_server_span(
            req.method.as_str(),
            parent,
            ctx.start_wall,
            &attrs,
        )
    }

    /// Records a finished request. Values only the access log or an exported span read (the
    /// upstream address and trace id as text) are formatted only when one of them is on.
    pub fn request_done(&self, session: &Session, ctx: &mut RequestCtx, e: Option<&Error>) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_status)
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let upstream = ctx.upstream.as_ref().map(|u| u.name.clone());
        match ctx.route_plan() {
            Some(r) => r.metrics.record(upstream.as_deref(), status, elapsed),
            None => self.unrouted.record(None, status, elapsed),
        }
        let log = self.telemetry.access_log();
        let span = ctx.span.take();
        if log.is_none() && !span.as_ref().is_some_and(ProxySpan::is_exported) {
            return;
        }
        let error: Option<Cow<'static, str>> = ctx
            .reason
            .map(Cow::Borrowed)
            .or_else(|| e.map(|e| Cow::Owned(e.etype().as_str().to_string())));
        let upstream_addr = ctx.target.as_ref().map(|p| p.addr.to_string());
        let trace_id = span
            .as_ref()
            .map(ProxySpan::trace_id_hex)
            .unwrap_or_default();
        if let Some(span) = span {
            span.end(
                status,
                &ResponseAttrs {
                    upstream: upstream.as_deref(),
                    upstream_addr: upstream_addr.as_deref(),
                    attempts: ctx.attempts,
                    error: error.as_deref(),
                },
            );
        }
        let Some(log) = log.as_ref() else {
            return;
        };
        let req = session.req_header();
        log.log(AccessLogRecord {
            time: ctx.start_wall,
            request_id: std::mem::take(&mut ctx.request_id),
            trace_id,
            client_ip: super::client_ip(session),
            method: req.method.to_string(),
            host: std::mem::take(&mut ctx.host),
            path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            protocol: protocol_name(req.version),
            route: ctx.route_plan().map(|r| r.name.to_string()),
            upstream: upstream.map(|u| u.to_string()),
            upstream_addr,
            status,
            bytes_sent: session.body_bytes_sent() as u64,
            bytes_received: ctx.body_bytes,
            duration: elapsed,
            upstream_duration: ctx.upstream_time,
            attempts: ctx.attempts,
            user_agent: req
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            error,
            cache_status: None,
        });
    }
}
