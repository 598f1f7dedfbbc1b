//! What the proxy tells the world about each request: metrics, one access-log line, a span.

use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Error;

use super::ctx::RequestCtx;
use crate::telemetry::{AccessLogRecord, Metrics, ProxySpan, Telemetry, TraceParent};

/// Records requests into the shared [`Telemetry`].
pub struct Observer {
    telemetry: Arc<Telemetry>,
}

impl Observer {
    /// An observer writing to `telemetry`.
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self { telemetry }
    }

    /// Counts a request as active until its context is dropped.
    pub fn request_started(&self) {
        Metrics::global().request_started();
    }

    /// Starts the server span of a request (a child of `parent` when the client sent one).
    pub fn start_span(
        &self,
        req: &RequestHeader,
        parent: Option<&TraceParent>,
        start: std::time::SystemTime,
    ) -> ProxySpan {
        let name = format!("{} {}", req.method, req.uri.path());
        self.telemetry.tracer().start_server_span(&name, parent, start)
    }

    /// Records a finished request.
    pub fn request_done(&self, session: &Session, ctx: &mut RequestCtx, e: Option<&Error>) {
        let metrics = Metrics::global();
        metrics.request_finished();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_status)
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let route = ctx.route_plan();
        let upstream = ctx.upstream.as_ref().map(|(n, _)| n.as_ref()).unwrap_or("");
        match route {
            Some(r) => r.metrics.observe(upstream, status, elapsed, ctx.upstream_time),
            None => metrics.observe_unrouted(status, elapsed),
        }
        let trace_id = ctx.span.as_ref().map(|s| s.trace_id_hex()).unwrap_or_default();
        if let Some(span) = ctx.span.take() {
            span.end(status);
        }
        let Some(log) = self.telemetry.access_log() else {
            return;
        };
        let req = session.req_header();
        let header = |n: http::header::HeaderName| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        log.log(AccessLogRecord {
            time: ctx.start_wall,
            request_id: std::mem::take(&mut ctx.request_id),
            trace_id,
            client_ip: super::client_ip(session).map(|ip| ip.to_string()).unwrap_or_default(),
            method: req.method.to_string(),
            host: std::mem::take(&mut ctx.host),
            path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            protocol: format!("{:?}", req.version),
            route: route.map(|r| r.name.to_string()),
            upstream: ctx.upstream.as_ref().map(|(n, _)| n.to_string()),
            upstream_addr: ctx.target.map(|(_, a)| a.to_string()),
            status,
            bytes_sent: session.body_bytes_sent() as u64,
            bytes_received: ctx.body_bytes,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            upstream_duration_ms: ctx.upstream_time.map(|d| d.as_secs_f64() * 1000.0),
            attempts: ctx.attempts,
            user_agent: header(http::header::USER_AGENT),
            error: ctx.reason.map(str::to_string).or_else(|| e.map(|e| e.etype().as_str().to_string())),
            cache_status: None,
        });
    }
}
