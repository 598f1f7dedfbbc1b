//! Per-request state, owned by pingora for the life of one request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use plugins::breaker::Permit;
use plugins::PluginCtx;
use smallvec::SmallVec;

use crate::plan::{Plan, UpstreamPlan};
use crate::telemetry::ProxySpan;
use crate::upstream::{ActiveGuard, InFlightGuard, Pick, RetryGuard};

/// State of one request. The plan snapshot taken at the start is used until the end, so a
/// reload never changes a request half-way.
pub struct RequestCtx {
    /// The plan this request runs on.
    pub plan: Arc<Plan>,
    /// When the request head was read.
    pub start: Instant,
    /// Wall-clock start, for logs and spans.
    pub start_wall: SystemTime,
    /// `X-Request-Id` (kept from the client when valid, else generated).
    pub request_id: String,
    /// Trace span of this request.
    pub span: Option<ProxySpan>,
    /// Index of the matched route in the plan.
    pub route: Option<usize>,
    /// Path and query to send upstream when a rewrite applies.
    pub rewritten: Option<String>,
    /// Host the request was addressed to (lower case, no port).
    pub host: String,
    /// The chosen upstream.
    pub upstream: Option<Arc<UpstreamPlan>>,
    /// Targets tried so far.
    pub tried: SmallVec<[SocketAddr; 4]>,
    /// Current attempt's target.
    pub target: Option<Pick>,
    /// Current attempt's in-flight count.
    pub inflight: Option<InFlightGuard>,
    /// When the current attempt started.
    pub attempt_start: Option<Instant>,
    /// Attempts made (1 after the first).
    pub attempts: u32,
    /// The target of an attempt that failed on a stale pooled connection: the next attempt
    /// goes to it again, at once ([`super::attempt::proxy_failed`]).
    pub repeat: Option<SocketAddr>,
    /// Attempts repeated because their pooled connection was stale.
    pub stale_repeats: u32,
    /// The last attempt ended in an error before any response head went through (no target,
    /// connect failure, timeout, reset, close, or a status Meridian turned into an error to
    /// retry it): a stale object served now stands in for no answer
    /// ([`super::attempt::stale_cause`]).
    pub attempt_error: bool,
    /// The current attempt's 5xx answer was turned into an error so that the stale object
    /// this request holds stands in for it ([`super::attempt::response_received`]).
    pub stale_requested: bool,
    /// Counts this request as active for the retry budget.
    pub active: Option<ActiveGuard>,
    /// Holds a retry-budget slot while a retry is in progress.
    pub retry_slot: Option<RetryGuard>,
    /// Whether the outcome of the current attempt was already reported to the pool.
    pub reported: bool,
    /// Status received from the upstream, if any.
    pub upstream_status: Option<u16>,
    /// Time to upstream response headers of the last attempt.
    pub upstream_time: Option<std::time::Duration>,
    /// Short reason when Meridian itself answered or failed.
    pub reason: Option<&'static str>,
    /// Status Meridian answered itself (refusals, errors).
    pub own_status: Option<u16>,
    /// Request body bytes seen so far.
    pub body_bytes: u64,
    /// Body limit of this request.
    pub max_body: u64,
    /// The upstream breaker's permit for the current attempt.
    pub attempt_permit: Option<Permit>,
    /// The route breaker's permit for this request.
    pub route_permit: Option<Permit>,
    /// State for the plugin chain.
    pub plugins: PluginCtx,
    /// What the cache did (cached routes only).
    pub cache: super::cache::CacheState,
    /// A fill's way through the route's shields (routes with `cache.shield`).
    pub shield: Option<super::tier::ShieldAttempts>,
    /// Counts this request in the active-requests gauge while it lives.
    pub _active_gauge: crate::telemetry::ActiveGuard,
}

impl RequestCtx {
    /// A fresh context on `plan`.
    pub fn new(plan: Arc<Plan>, active_gauge: crate::telemetry::ActiveGuard) -> Self {
        let max_body = plan.config.limits.max_body;
        Self {
            plan,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            request_id: String::new(),
            span: None,
            route: None,
            rewritten: None,
            host: String::new(),
            upstream: None,
            tried: SmallVec::new(),
            target: None,
            inflight: None,
            attempt_start: None,
            attempts: 0,
            repeat: None,
            stale_repeats: 0,
            attempt_error: false,
            stale_requested: false,
            active: None,
            retry_slot: None,
            reported: true,
            upstream_status: None,
            upstream_time: None,
            reason: None,
            own_status: None,
            body_bytes: 0,
            max_body,
            attempt_permit: None,
            route_permit: None,
            plugins: PluginCtx::default(),
            cache: super::cache::CacheState::default(),
            shield: None,
            _active_gauge: active_gauge,
        }
    }

    /// The matched route's plan.
    pub fn route_plan(&self) -> Option<&crate::plan::RoutePlan> {
        self.route.and_then(|i| self.plan.routes.get(i))
    }
}
