//! Telemetry: metrics, access log, tracing and request ids.
//!
//! - [`metrics`]: Prometheus metrics in a private registry, one [`Metrics`] per gateway, with
//!   per-route and per-upstream handles resolved once per plan so the hot path only bumps
//!   atomics; [`Metrics::render`] serves `/metrics`.
//! - [`access_log`]: one JSON line per request, written by a background thread from a bounded
//!   channel; records are dropped and counted rather than slowing requests.
//! - [`traceparent`]: the W3C `traceparent` header, parsed strictly.
//! - [`trace`]: a server span per request; ids are always produced and propagated, and
//!   sampled spans are exported by OTLP/HTTP when configured.
//! - [`Telemetry`]: the metrics, tracer and current access logger of a running gateway.
//! - [`request_id`]: `X-Request-Id` generation and validation of a client's value.

pub mod access_log;
mod hub;
pub mod metrics;
pub mod request_id;
pub mod trace;
pub mod traceparent;

pub use access_log::{protocol_name, AccessLogRecord, AccessLogger};
pub use hub::Telemetry;
pub use metrics::{ActiveGuard, BreakerMetrics, Metrics, RouteMetrics, UpstreamMetrics};
pub use request_id::{new_request_id, valid_incoming};
pub use trace::{ProxySpan, RequestAttrs, ResponseAttrs, TraceExportError, Tracer};
pub use traceparent::TraceParent;
