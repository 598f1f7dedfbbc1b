//! What the dashboard keeps of one scrape: the well-known series, summed into the few numbers
//! the panels show. Unknown series are dropped here; absent ones stay empty.

use std::collections::BTreeMap;

use super::prom::Sample;

/// Most rows shown per table or group (routes, breakers, saga outcomes…); for routes the
/// busiest win.
pub(crate) const MAX_ROWS: usize = 64;
/// Most buckets kept per histogram (Meridian exports 14); further bounds are ignored.
const MAX_BUCKETS: usize = 64;

/// A histogram as cumulative `(upper bound, count)` pairs, sorted by bound (`+Inf` last).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    pub(crate) buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Adds `count` to the bucket bounded by `le` (a bound beyond [`MAX_BUCKETS`] is ignored).
    fn add(&mut self, le: f64, count: f64) {
        if let Some((_, c)) = self.buckets.iter_mut().find(|(b, _)| *b == le) {
            *c += count;
        } else if self.buckets.len() < MAX_BUCKETS {
            self.buckets.push((le, count));
            self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }

    /// Adds every bucket of `other`.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for &(le, count) in &other.buckets {
            self.add(le, count);
        }
    }

    /// Observations counted (the `+Inf` bucket).
    pub(crate) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |&(_, c)| c)
    }

    /// The observations made since `earlier` (a counter reset yields `self`).
    pub(crate) fn since(&self, earlier: &Histogram) -> Histogram {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for &(le, count) in &self.buckets {
            let before = earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |&(_, c)| c);
            if before > count {
                return self.clone();
            }
            buckets.push((le, count - before));
        }
        Histogram { buckets }
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does; `None` without observations. A rank in the `+Inf` bucket
    /// answers the largest finite bound.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let width = count - lower.1;
                let fraction = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * fraction);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

/// Requests of one route (or of a whole Meridian process).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Traffic {
    /// Requests answered.
    pub(crate) requests: f64,
    /// Of which with a 5xx status.
    pub(crate) errors_5xx: f64,
    /// Their durations in seconds.
    pub(crate) latency: Histogram,
}

/// Requests of an origin service on one route.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OriginTraffic {
    /// Requests answered.
    pub(crate) requests: f64,
    /// Of which with a 5xx status.
    pub(crate) errors_5xx: f64,
}

/// One circuit breaker's state as exported by a Meridian process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BreakerState {
    /// `upstream` or `route`.
    pub(crate) scope: String,
    /// The upstream or route name.
    pub(crate) name: String,
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled` (or `unknown`).
    pub(crate) state: &'static str,
}

/// The well-known series of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Digest {
    /// `meridian_http_requests_total` and `meridian_http_request_duration_seconds` by route.
    pub(crate) routes: BTreeMap<String, Traffic>,
    /// `meridian_cache_requests_total` by `result`.
    pub(crate) cache: BTreeMap<String, f64>,
    /// `origin_http_requests_total` by `route`.
    pub(crate) origin: BTreeMap<String, OriginTraffic>,
    /// `orders_saga_outcomes_total` by `outcome`.
    pub(crate) saga: BTreeMap<String, f64>,
    /// `orders_dlq_depth`.
    pub(crate) dlq_depth: Option<f64>,
    /// `urls_clicks_flushed_total`.
    pub(crate) clicks_flushed: Option<f64>,
    /// `video_jobs` by `state`.
    pub(crate) video_jobs: BTreeMap<String, f64>,
    /// `meridian_circuit_breaker_state`.
    pub(crate) breakers: Vec<BreakerState>,
}

impl Digest {
    /// Sums the well-known series of `samples`.
    pub(crate) fn of(samples: &[Sample]) -> Digest {
        let mut d = Digest::default();
        for s in samples {
            let label = |name: &str| s.label(name).unwrap_or("").to_owned();
            match s.name.as_str() {
                "meridian_http_requests_total" => {
                    let t = d.routes.entry(label("route")).or_default();
                    t.requests += s.value;
                    if s.label("status_class") == Some("5xx") {
                        t.errors_5xx += s.value;
                    }
                }
                "meridian_http_request_duration_seconds_bucket" => {
                    if let Some(le) = s.label("le").and_then(parse_le) {
                        let t = d.routes.entry(label("route")).or_default();
                        t.latency.add(le, s.value);
                    }
                }
                "meridian_cache_requests_total" => {
                    *d.cache.entry(label("result")).or_default() += s.value;
                }
                "origin_http_requests_total" => {
                    let o = d.origin.entry(label("route")).or_default();
                    o.requests += s.value;
                    if s.label("status").is_some_and(|c| c.starts_with('5')) {
                        o.errors_5xx += s.value;
                    }
                }
                "orders_saga_outcomes_total" => {
                    *d.saga.entry(label("outcome")).or_default() += s.value;
                }
                "orders_dlq_depth" => d.dlq_depth = Some(d.dlq_depth.unwrap_or(0.0) + s.value),
                "urls_clicks_flushed_total" => {
                    d.clicks_flushed = Some(d.clicks_flushed.unwrap_or(0.0) + s.value);
                }
                "video_jobs" => *d.video_jobs.entry(label("state")).or_default() += s.value,
                "meridian_circuit_breaker_state" => d.breakers.push(BreakerState {
                    scope: label("scope"),
                    name: label("name"),
                    state: breaker_state_name(s.value),
                }),
                _ => {}
            }
        }
        d
    }

    /// Requests of every route together.
    pub(crate) fn total(&self) -> Traffic {
        let mut all = Traffic::default();
        for t in self.routes.values() {
            all.requests += t.requests;
            all.errors_5xx += t.errors_5xx;
            all.latency.merge(&t.latency);
        }
        all
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => s.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// The state names behind `meridian_circuit_breaker_state`'s codes.
fn breaker_state_name(code: f64) -> &'static str {
    match code {
        0.0 => "closed",
        1.0 => "open",
        2.0 => "half_open",
        3.0 => "forced_open",
        4.0 => "disabled",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::super::prom::parse;
    use super::*;

    const EDGE: &str = r#"
# TYPE meridian_http_requests_total counter
meridian_http_requests_total{route="videos",status_class="2xx",upstream="video"} 90
meridian_http_requests_total{route="videos",status_class="5xx",upstream="video"} 10
meridian_http_requests_total{route="api",status_class="2xx",upstream="api"} 5
meridian_http_request_duration_seconds_bucket{route="videos",le="0.01"} 50
meridian_http_request_duration_seconds_bucket{route="videos",le="0.1"} 100
meridian_http_request_duration_seconds_bucket{route="videos",le="+Inf"} 100
meridian_http_request_duration_seconds_sum{route="videos"} 3
meridian_http_request_duration_seconds_count{route="videos"} 100
meridian_cache_requests_total{result="hit"} 75
meridian_cache_requests_total{result="miss"} 25
meridian_circuit_breaker_state{scope="upstream",name="video"} 1
orders_saga_outcomes_total{outcome="completed"} 7
orders_saga_outcomes_total{outcome="compensated"} 2
orders_dlq_depth 2
origin_http_requests_total{service="orders",route="/api/orders",method="POST",status="201"} 9
origin_http_requests_total{service="orders",route="/api/orders",method="POST",status="503"} 1
video_jobs{state="queued"} 3
urls_clicks_flushed_total 40
something_else 1
"#;

    #[test]
    fn well_known_series_are_summed() {
        let d = Digest::of(&parse(EDGE).expect("parses"));
        let videos = &d.routes["videos"];
        assert_eq!((videos.requests, videos.errors_5xx), (100.0, 10.0));
        assert_eq!(videos.latency.count(), 100.0);
        assert_eq!(d.routes["api"].latency.count(), 0.0);
        assert_eq!(d.total().requests, 105.0);
        assert_eq!(d.cache["hit"], 75.0);
        assert_eq!(d.saga["completed"], 7.0);
        assert_eq!(d.dlq_depth, Some(2.0));
        assert_eq!(d.clicks_flushed, Some(40.0));
        assert_eq!(d.video_jobs["queued"], 3.0);
        let orders = &d.origin["/api/orders"];
        assert_eq!((orders.requests, orders.errors_5xx), (10.0, 1.0));
        assert_eq!(d.breakers[0].state, "open");
        assert_eq!(d.breakers[0].name, "video");
    }

    #[test]
    fn absent_series_stay_empty() {
        let d = Digest::of(&parse("up 1\n").expect("parses"));
        assert_eq!(d, Digest::default());
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram {
            buckets: vec![(0.01, 50.0), (0.1, 100.0), (f64::INFINITY, 100.0)],
        };
        assert_eq!(h.quantile(0.5), Some(0.01));
        let p99 = h.quantile(0.99).expect("observations");
        assert!((p99 - 0.0982).abs() < 1e-9, "{p99}");
        let h = Histogram {
            buckets: vec![(0.01, 0.0), (f64::INFINITY, 4.0)],
        };
        assert_eq!(h.quantile(0.5), Some(0.01));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn buckets_are_bounded() {
        let mut h = Histogram::default();
        for i in 0..1000 {
            h.add(f64::from(i), 1.0);
        }
        assert_eq!(h.buckets.len(), MAX_BUCKETS);
    }

    #[test]
    fn deltas_between_scrapes_and_resets() {
        let before = Histogram {
            buckets: vec![(0.01, 10.0), (f64::INFINITY, 10.0)],
        };
        let after = Histogram {
            buckets: vec![(0.01, 10.0), (f64::INFINITY, 14.0)],
        };
        assert_eq!(
            after.since(&before).buckets,
            vec![(0.01, 0.0), (f64::INFINITY, 4.0)]
        );
        assert_eq!(before.since(&after), before);
    }
}
