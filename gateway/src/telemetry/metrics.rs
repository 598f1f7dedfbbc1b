//! Prometheus metrics.
//!
//! Each running gateway owns one [`Metrics`] value (its [`super::Telemetry`] holds it, the
//! builder creates it, reloads keep it): a private [`Registry`] with every metric family, and
//! the cache's metrics ([`CacheMetrics`]). Two gateways in one process export their own. Label values are route and upstream names from config plus a status class
//! (`1xx`..`5xx`), so the number of series is bounded by the config. The proxy never builds
//! label vectors on the hot path: it resolves [`RouteMetrics`] and [`UpstreamMetrics`]
//! handles when it compiles a plan and calls their typed methods per request.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cdn_edge::metrics::CacheMetrics;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status class label values, indexed by [`status_class`].
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The `upstream` label of a request that never reached an upstream.
const NO_UPSTREAM: &str = "none";

/// Every metric Meridian exports, registered in a private registry.
pub struct Metrics {
    registry: Registry,
    requests_total: IntCounterVec,
    request_duration: HistogramVec,
    requests_active: IntGauge,
    connections_active: IntGauge,
    target_healthy: IntGaugeVec,
    ejections_total: IntCounterVec,
    retries_total: IntCounterVec,
    upstream_request_duration: HistogramVec,
    reloads_ok: IntCounter,
    reloads_error: IntCounter,
    config_generation: IntGauge,
    access_log_dropped: IntCounter,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    breaker_calls: IntCounterVec,
    worker_silence: GaugeVec,
    worker_stalled: IntGaugeVec,
    worker_stalls: IntCounterVec,
    /// The cache's metrics (their own registry, rendered with these).
    cache: CacheMetrics,
}

impl Metrics {
    /// Creates a fresh set of metrics in its own registry.
    ///
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new(
                "meridian_http_requests_total",
                "Requests answered, by route, upstream and status class.",
            ),
            &["route", "upstream", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "meridian_http_request_duration_seconds",
                "Time from request start to the end of the response, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let requests_active =
            IntGauge::new("meridian_http_requests_active", "Requests being processed.")?;
        let connections_active = IntGauge::new(
            "meridian_downstream_connections_active",
            "Open client connections.",
        )?;
        let target_healthy = IntGaugeVec::new(
            Opts::new(
                "meridian_upstream_target_healthy",
                "1 when the target takes traffic, 0 when it is unhealthy or ejected.",
            ),
            &["upstream", "target"],
        )?;
        let ejections_total = IntCounterVec::new(
            Opts::new(
                "meridian_upstream_ejections_total",
                "Targets ejected by outlier detection.",
            ),
            &["upstream"],
        )?;
        let retries_total = IntCounterVec::new(
            Opts::new(
                "meridian_upstream_retries_total",
                "Attempts made after the first one.",
            ),
            &["upstream"],
        )?;
        let upstream_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "meridian_upstream_request_duration_seconds",
                "Time of one attempt against an upstream target, to the response headers.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "meridian_config_reloads_total",
                "Configuration reloads, by result.",
            ),
            &["result"],
        )?;
        let config_generation = IntGauge::new(
            "meridian_config_generation",
            "Generation of the configuration in force (1 for the first).",
        )?;
        let access_log_dropped = IntCounter::new(
            "meridian_access_log_dropped_total",
            "Access-log records dropped because the writer fell behind.",
        )?;

        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "meridian_circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half_open, 3 forced_open, 4 disabled.",
            ),
            &["scope", "name"],
        )?;
        let breaker_transitions = IntCounterVec::new(
            Opts::new(
                "meridian_circuit_breaker_transitions_total",
                "Circuit breaker state changes.",
            ),
            &["scope", "name", "from", "to"],
        )?;
        let breaker_calls = IntCounterVec::new(
            Opts::new(
                "meridian_circuit_breaker_calls_total",
                "Calls seen by a circuit breaker, by outcome (success, failure, slow_success, \
                 slow_failure, rejected).",
            ),
            &["scope", "name", "outcome"],
        )?;

        let worker_silence = GaugeVec::new(
            Opts::new(
                "meridian_worker_heartbeat_age_seconds",
                "Time since each worker thread's event loop last turned (its heartbeat).",
            ),
            &["worker"],
        )?;
        let worker_stalled = IntGaugeVec::new(
            Opts::new(
                "meridian_worker_stalled",
                "1 while a worker's heartbeat is older than server.stall_timeout (/healthz fails).",
            ),
            &["worker"],
        )?;
        let worker_stalls = IntCounterVec::new(
            Opts::new(
                "meridian_worker_stalls_total",
                "Times a worker's heartbeat went past server.stall_timeout.",
            ),
            &["worker"],
        )?;

        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(worker_silence.clone()))?;
        registry.register(Box::new(worker_stalled.clone()))?;
        registry.register(Box::new(worker_stalls.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(breaker_transitions.clone()))?;
        registry.register(Box::new(breaker_calls.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(requests_active.clone()))?;
        registry.register(Box::new(connections_active.clone()))?;
        registry.register(Box::new(target_healthy.clone()))?;
        registry.register(Box::new(ejections_total.clone()))?;
        registry.register(Box::new(retries_total.clone()))?;
        registry.register(Box::new(upstream_request_duration.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(config_generation.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;

        Ok(Metrics {
            registry,
            requests_total,
            request_duration,
            requests_active,
            connections_active,
            target_healthy,
            ejections_total,
            retries_total,
            upstream_request_duration,
            reloads_ok: reloads.with_label_values(&["ok"]),
            reloads_error: reloads.with_label_values(&["error"]),
            config_generation,
            access_log_dropped,
            breaker_state,
            breaker_transitions,
            breaker_calls,
            worker_silence,
            worker_stalled,
            worker_stalls,
            cache: CacheMetrics::new()?,
        })
    }

    /// All metrics in the Prometheus text exposition format, version 0.0.4: the gateway's,
    /// then the plugins' ([`plugins::metrics::registry`]) and the cache's ([`Metrics::cache`]).
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(plugins::metrics::registry().gather());
        families.extend(self.cache.gather());
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            log::error!("rendering metrics failed: {e}");
        }
        out
    }

    /// The cache's metrics.
    pub fn cache(&self) -> &CacheMetrics {
        &self.cache
    }

    /// Resolved handles for one route. Build them once per route when compiling a plan.
    pub fn route_handles(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            inner: Arc::new(RouteInner {
                route: route.into(),
                duration: self.request_duration.with_label_values(&[route]),
                requests_total: self.requests_total.clone(),
                by_upstream: ArcSwap::from_pointee(Vec::new()),
            }),
        }
    }

    /// Resolved handles for one upstream pool. Build them once per upstream.
    pub fn upstream_handles(&self, upstream: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            upstream: upstream.into(),
            retries: self.retries_total.with_label_values(&[upstream]),
            ejections: self.ejections_total.with_label_values(&[upstream]),
            attempt_duration: self
                .upstream_request_duration
                .with_label_values(&[upstream]),
            target_healthy: self.target_healthy.clone(),
        }
    }

    /// Resolved handles for one circuit breaker (`scope` is `upstream` or `route`).
    pub fn breaker_handles(&self, scope: &str, name: &str) -> BreakerMetrics {
        let calls = |outcome: &str| {
            self.breaker_calls
                .with_label_values(&[scope, name, outcome])
        };
        BreakerMetrics {
            labels: [scope.into(), name.into()],
            state: self.breaker_state.with_label_values(&[scope, name]),
            transitions: self.breaker_transitions.clone(),
            success: calls("success"),
            failure: calls("failure"),
            slow_success: calls("slow_success"),
            slow_failure: calls("slow_failure"),
            rejected: calls("rejected"),
        }
    }

    /// Removes the state series of a breaker that left the config, so no stale state stays
    /// exported (its counters stay: they only ever grow).
    pub fn remove_breaker(&self, scope: &str, name: &str) {
        // An error only means the series did not exist.
        let _ = self.breaker_state.remove_label_values(&[scope, name]);
    }

    /// Counts a request as active until the returned guard is dropped.
    pub fn track_request(&self) -> ActiveGuard {
        ActiveGuard::new(&self.requests_active)
    }

    /// Counts a client connection as open until the returned guard is dropped.
    pub fn track_connection(&self) -> ActiveGuard {
        ActiveGuard::new(&self.connections_active)
    }

    /// Records the result of a configuration reload attempt.
    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_error.inc();
        }
    }

    /// Sets the generation of the configuration in force.
    pub fn set_config_generation(&self, generation: u64) {
        self.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Exports a worker's heartbeat age and whether it counts as stalled (`worker` is its
    /// index; the label set is bounded by `server.threads`).
    pub fn set_worker(&self, worker: &str, silent_for: Duration, stalled: bool) {
        self.worker_silence
            .with_label_values(&[worker])
            .set(silent_for.as_secs_f64());
        self.worker_stalled
            .with_label_values(&[worker])
            .set(i64::from(stalled));
        // Present from the first pass, so rate() has a starting point.
        self.worker_stalls.with_label_values(&[worker]);
    }

    /// Counts the start of a worker's stall.
    pub fn worker_stall_began(&self, worker: &str) {
        self.worker_stalls.with_label_values(&[worker]).inc();
    }

    /// The counter of dropped access-log records (handed to the access-log writer).
    pub(crate) fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }
}

/// The status class index of a status: `1xx` is 0 .. `5xx` is 4. Statuses below 200 count as
/// `1xx` and statuses above 599 as `5xx`, so the label set stays fixed.
fn status_class(status: u16) -> usize {
    usize::from(status.clamp(100, 599) / 100 - 1)
}

/// Decrements a gauge when dropped; see [`Metrics::track_request`].
#[must_use = "the gauge is decremented when the guard is dropped"]
pub struct ActiveGuard {
    gauge: IntGauge,
}

impl ActiveGuard {
    /// Increments `gauge` and returns the guard that undoes it.
    fn new(gauge: &IntGauge) -> ActiveGuard {
        gauge.inc();
        ActiveGuard {
            gauge: gauge.clone(),
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Metric handles of one route. Cheap to clone; clones share their caches.
#[derive(Clone)]
pub struct RouteMetrics {
    inner: Arc<RouteInner>,
}

/// The shared part of [`RouteMetrics`].
struct RouteInner {
    route: Box<str>,
    duration: Histogram,
    requests_total: IntCounterVec,
    /// Request counters per upstream this route has sent to, one per status class. Routes
    /// have one upstream or a short split list, so a linear scan beats hashing; the list is
    /// copied on the rare insert and read without locks.
    by_upstream: ArcSwap<Vec<UpstreamCounters>>,
}

/// The request counters of one (route, upstream) pair, one per status class.
#[derive(Clone)]
struct UpstreamCounters {
    /// The upstream; `None` for requests answered without one.
    upstream: Option<Box<str>>,
    /// Indexed by [`status_class`].
    by_class: [IntCounter; 5],
}

impl RouteMetrics {
    /// Records one finished request: its upstream (`None` when it was answered without one,
    /// e.g. by a plugin), its final status, and its total duration.
    ///
    /// `upstream` must be a pool name from config, which keeps the series bounded.
    pub fn record(&self, upstream: Option<&str>, status: u16, elapsed: Duration) {
        let class = status_class(status);
        let counted = self
            .inner
            .by_upstream
            .load()
            .iter()
            .find(|c| c.upstream.as_deref() == upstream)
            .map(|c| c.by_class[class].inc())
            .is_some();
        if !counted {
            self.first_request_to(upstream)[class].inc();
        }
        self.inner.duration.observe(elapsed.as_secs_f64());
    }

    /// Resolves and caches the counters of an upstream seen for the first time.
    fn first_request_to(&self, upstream: Option<&str>) -> [IntCounter; 5] {
        let label = upstream.unwrap_or(NO_UPSTREAM);
        let by_class = STATUS_CLASSES.map(|class| {
            self.inner
                .requests_total
                .with_label_values(&[&*self.inner.route, label, class])
        });
        self.inner.by_upstream.rcu(|current| {
            let mut next = Vec::clone(current);
            if !next.iter().any(|c| c.upstream.as_deref() == upstream) {
                next.push(UpstreamCounters {
                    upstream: upstream.map(Into::into),
                    by_class: by_class.clone(),
                });
            }
            next
        });
        by_class
    }
}

/// Metric handles of one upstream pool. Cheap to clone.
#[derive(Clone)]
pub struct UpstreamMetrics {
    upstream: Arc<str>,
    retries: IntCounter,
    ejections: IntCounter,
    attempt_duration: Histogram,
    target_healthy: IntGaugeVec,
}

impl UpstreamMetrics {
    /// Counts one retry (an attempt after the first).
    pub fn retried(&self) {
        self.retries.inc();
    }

    /// Counts one outlier ejection.
    pub fn ejected(&self) {
        self.ejections.inc();
    }

    /// Records how long one attempt took.
    pub fn observe_attempt(&self, elapsed: Duration) {
        self.attempt_duration.observe(elapsed.as_secs_f64());
    }

    /// Sets whether a target (`host:port`) takes traffic.
    pub fn set_target_healthy(&self, target: &str, healthy: bool) {
        self.target_healthy
            .with_label_values(&[&*self.upstream, target])
            .set(i64::from(healthy));
    }

    /// Removes a target's health series, when it leaves the pool (config or DNS change).
    pub fn remove_target(&self, target: &str) {
        // An error only means the series did not exist.
        let _ = self
            .target_healthy
            .remove_label_values(&[&*self.upstream, target]);
    }
}

/// Metric handles of one circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct BreakerMetrics {
    labels: [Arc<str>; 2],
    state: IntGauge,
    transitions: IntCounterVec,
    success: IntCounter,
    failure: IntCounter,
    slow_success: IntCounter,
    slow_failure: IntCounter,
    rejected: IntCounter,
}

impl BreakerMetrics {
    /// Sets the state gauge (see [`plugins::breaker::State::code`]).
    pub fn set_state(&self, code: i64) {
        self.state.set(code);
    }

    /// Counts a transition between two named states.
    pub fn transition(&self, from: &str, to: &str) {
        let [scope, name] = &self.labels;
        self.transitions
            .with_label_values(&[scope, name, from, to])
            .inc();
    }

    /// Counts a call that was made, by whether it failed and whether it was slow.
    pub fn call(&self, failed: bool, slow: bool) {
        match (failed, slow) {
            (false, false) => &self.success,
            (true, false) => &self.failure,
            (false, true) => &self.slow_success,
            (true, true) => &self.slow_failure,
        }
        .inc();
    }

    /// Counts a call the breaker did not permit.
    pub fn rejected(&self) {
        self.rejected.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Parses text-format samples into `name{labels} -> value`, labels as written.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut samples = HashMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value.parse().expect("numeric value");
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "duplicate series {series}"
            );
        }
        samples
    }

    fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("missing {series}"))
    }

    #[test]
    fn status_classes() {
        let cases = [
            (0, "1xx"),
            (101, "1xx"),
            (200, "2xx"),
            (204, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (499, "4xx"),
            (502, "5xx"),
            (599, "5xx"),
            (999, "5xx"),
        ];
        for (status, class) in cases {
            assert_eq!(STATUS_CLASSES[status_class(status)], class, "{status}");
        }
    }

    #[test]
    fn renders_and_parses_back() {
        let m = Metrics::new().expect("metrics");
        let api = m.route_handles("api");
        let api_again = m.route_handles("api");
        api.record(Some("urls"), 200, Duration::from_millis(3));
        api.record(Some("urls"), 201, Duration::from_millis(30));
        api_again.record(Some("urls"), 503, Duration::from_secs(20));
        api.record(Some("video"), 404, Duration::from_micros(100));
        api.record(None, 429, Duration::from_micros(100));

        let urls = m.upstream_handles("urls");
        urls.retried();
        urls.retried();
        urls.ejected();
        urls.observe_attempt(Duration::from_millis(2));
        urls.set_target_healthy("10.0.0.1:80", true);
        urls.set_target_healthy("10.0.0.2:80", false);
        urls.set_target_healthy("10.0.0.3:80", true);
        urls.remove_target("10.0.0.3:80");

        let request = m.track_request();
        let _second = m.track_request();
        drop(request);
        let _connection = m.track_connection();
        m.config_reloaded(true);
        m.config_reloaded(false);
        m.config_reloaded(true);
        m.set_config_generation(7);
        m.access_log_dropped().inc();
        let breaker = m.breaker_handles("upstream", "urls");
        breaker.set_state(1);
        breaker.transition("closed", "open");
        breaker.call(false, false);
        breaker.call(true, true);
        breaker.rejected();
        breaker.rejected();
        m.breaker_handles("route", "gone").set_state(3);
        m.remove_breaker("route", "gone");

        let text = m.render();
        let s = parse(&text);
        let r = |upstream: &str, class: &str| {
            value(
                &s,
                &format!(
                    "meridian_http_requests_total{{route=\"api\",status_class=\"{class}\",upstream=\"{upstream}\"}}"
                ),
            )
        };
        assert_eq!(r("urls", "2xx"), 2.0);
        assert_eq!(r("urls", "5xx"), 1.0);
        assert_eq!(r("urls", "4xx"), 0.0);
        assert_eq!(r("video", "4xx"), 1.0);
        assert_eq!(r("none", "4xx"), 1.0);

        let h = |suffix: &str| {
            value(
                &s,
                &format!("meridian_http_request_duration_seconds_{suffix}"),
            )
        };
        assert_eq!(h("count{route=\"api\"}"), 5.0);
        assert_eq!(h("bucket{route=\"api\",le=\"0.0005\"}"), 2.0);
        assert_eq!(h("bucket{route=\"api\",le=\"0.005\"}"), 3.0);
        assert_eq!(h("bucket{route=\"api\",le=\"0.05\"}"), 4.0);
        assert_eq!(h("bucket{route=\"api\",le=\"10\"}"), 4.0);
        assert_eq!(h("bucket{route=\"api\",le=\"+Inf\"}"), 5.0);
        assert!((h("sum{route=\"api\"}") - 20.0332).abs() < 1e-9);

        assert_eq!(
            value(&s, "meridian_upstream_retries_total{upstream=\"urls\"}"),
            2.0
        );
        assert_eq!(
            value(&s, "meridian_upstream_ejections_total{upstream=\"urls\"}"),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "meridian_upstream_request_duration_seconds_count{upstream=\"urls\"}"
            ),
            1.0
        );
        let healthy = |target: &str| {
            s.get(&format!(
                "meridian_upstream_target_healthy{{target=\"{target}\",upstream=\"urls\"}}"
            ))
            .copied()
        };
        assert_eq!(healthy("10.0.0.1:80"), Some(1.0));
        assert_eq!(healthy("10.0.0.2:80"), Some(0.0));
        assert_eq!(healthy("10.0.0.3:80"), None);

        assert_eq!(value(&s, "meridian_http_requests_active"), 1.0);
        assert_eq!(value(&s, "meridian_downstream_connections_active"), 1.0);
        assert_eq!(
            value(&s, "meridian_config_reloads_total{result=\"ok\"}"),
            2.0
        );
        assert_eq!(
            value(&s, "meridian_config_reloads_total{result=\"error\"}"),
            1.0
        );
        assert_eq!(value(&s, "meridian_config_generation"), 7.0);
        assert_eq!(value(&s, "meridian_access_log_dropped_total"), 1.0);
        assert_eq!(
            value(
                &s,
                "meridian_circuit_breaker_state{name=\"urls\",scope=\"upstream\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "meridian_circuit_breaker_transitions_total{from=\"closed\",name=\"urls\",scope=\"upstream\",to=\"open\"}"
            ),
            1.0
        );
        let calls = |outcome: &str| {
            value(
                &s,
                &format!(
                    "meridian_circuit_breaker_calls_total{{name=\"urls\",outcome=\"{outcome}\",scope=\"upstream\"}}"
                ),
            )
        };
        assert_eq!(calls("success"), 1.0);
        assert_eq!(calls("slow_failure"), 1.0);
        assert_eq!(calls("failure"), 0.0);
        assert_eq!(calls("rejected"), 2.0);
        assert!(!text.contains(r#"name="gone",scope="route"} 3"#));
        assert!(text.contains("# TYPE meridian_http_request_duration_seconds histogram"));
        assert!(text.contains("# TYPE meridian_http_requests_total counter"));
    }

    #[test]
    fn guards_return_gauges_to_zero() {
        let m = Metrics::new().expect("metrics");
        {
            let _a = m.track_request();
            let _b = m.track_connection();
            assert_eq!(m.requests_active.get(), 1);
            assert_eq!(m.connections_active.get(), 1);
        }
        assert_eq!(m.requests_active.get(), 0);
        assert_eq!(m.connections_active.get(), 0);
    }

    #[test]
    fn instances_count_apart() {
        let (a, b) = (Metrics::new().expect("a"), Metrics::new().expect("b"));
        a.config_reloaded(true);
        a.cache().body_bytes(true, 7);
        let (text_a, text_b) = (a.render(), b.render());
        assert!(text_a.contains("meridian_config_reloads_total{result=\"ok\"} 1"));
        assert!(text_b.contains("meridian_config_reloads_total{result=\"ok\"} 0"));
        assert!(text_a.contains("meridian_cache_response_bytes_total{source=\"cache\"} 7"));
        assert!(text_b.contains("meridian_cache_response_bytes_total{source=\"cache\"} 0"));
    }
}
