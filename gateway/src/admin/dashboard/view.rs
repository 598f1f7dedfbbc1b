//! The JSON the dashboard page renders: one [`Panel`] per scrape target, built from the last
//! two [`Digest`]s of that target. Rates and the "window" latency quantiles come from the
//! differences between the two scrapes; the "total" quantiles from the counters since start.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::digest::{Digest, Histogram, Traffic, MAX_ROWS};

/// Cache results that were answered from the cache (a `collapsed` request waited for another
/// request's fill instead of going to the origin).
const FROM_CACHE: [&str; 4] = ["hit", "stale", "revalidated", "collapsed"];
/// Cache results that are not lookups at all.
const NOT_LOOKUPS: [&str; 1] = ["bypass"];

/// The previous scrape of the same target and how long before the current one it was made.
pub(crate) struct Previous<'a> {
    /// What that scrape found.
    pub(crate) digest: &'a Digest,
    /// Time between the two scrapes.
    pub(crate) elapsed: Duration,
}

/// Everything known about one scrape target; absent series are left out.
#[derive(Debug, Serialize, Default, PartialEq)]
pub(crate) struct Panel {
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<Requests>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<Origin>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    saga: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dlq_depth: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks_flushed: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    video_jobs: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    breakers: Vec<Breaker>,
}

/// Requests through a Meridian process.
#[derive(Debug, Serialize, PartialEq)]
struct Requests {
    #[serde(flatten)]
    all: RouteRow,
    routes: Vec<RouteRow>,
}

/// Requests of one route (or all of them).
#[derive(Debug, Serialize, PartialEq)]
struct RouteRow {
    name: String,
    requests_total: u64,
    errors_5xx_total: u64,
    requests_per_s: Option<f64>,
    errors_5xx_per_s: Option<f64>,
    /// Latency over the time between the last two scrapes.
    latency_window_ms: Quantiles,
    /// Latency since the process started.
    latency_total_ms: Quantiles,
}

/// Median and 99th percentile in milliseconds, over `count` requests.
#[derive(Debug, Serialize, PartialEq)]
struct Quantiles {
    count: u64,
    p50: Option<f64>,
    p99: Option<f64>,
}

/// Cache results and the hit ratio.
#[derive(Debug, Serialize, PartialEq)]
struct Cache {
    results: BTreeMap<String, u64>,
    /// Answered from the cache / lookups, since start.
    hit_ratio: Option<f64>,
    /// The same between the last two scrapes.
    hit_ratio_window: Option<f64>,
}

/// Requests an origin service answered.
#[derive(Debug, Serialize, PartialEq)]
struct Origin {
    requests_total: u64,
    errors_5xx_total: u64,
    requests_per_s: Option<f64>,
    routes: Vec<OriginRow>,
}

/// Requests an origin service answered on one route.
#[derive(Debug, Serialize, PartialEq)]
struct OriginRow {
    route: String,
    requests_total: u64,
    errors_5xx_total: u64,
}

/// A circuit breaker's state.
#[derive(Debug, Serialize, PartialEq)]
struct Breaker {
    scope: String,
    name: String,
    state: &'static str,
}

impl Panel {
    /// The panel of a target whose last scrape found `now`.
    pub(crate) fn build(now: &Digest, previous: Option<Previous<'_>>) -> Panel {
        let seconds = previous
            .as_ref()
            .map(|p| p.elapsed.as_secs_f64())
            .filter(|s| *s > 0.0);
        let before = previous.as_ref().map(|p| p.digest);
        let rate = |now: f64, then: Option<f64>| {
            let (then, seconds) = (then?, seconds?);
            // A counter that went down was reset: everything counted since happened now.
            let delta = if now >= then { now - then } else { now };
            Some(delta / seconds)
        };
        Panel {
            requests: requests(now, before, &rate),
            cache: cache(&now.cache, before.map(|b| &b.cache)),
            origin: origin(now, before, &rate),
            saga: now
                .saga
                .iter()
                .take(MAX_ROWS)
                .map(|(k, v)| (k.clone(), whole(*v)))
                .collect(),
            dlq_depth: now.dlq_depth,
            clicks_flushed: now.clicks_flushed.map(whole),
            video_jobs: now
                .video_jobs
                .iter()
                .take(MAX_ROWS)
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            breakers: now
                .breakers
                .iter()
                .take(MAX_ROWS)
                .map(|b| Breaker {
                    scope: b.scope.clone(),
                    name: b.name.clone(),
                    state: b.state,
                })
                .collect(),
        }
    }
}

fn requests(
    now: &Digest,
    before: Option<&Digest>,
    rate: &impl Fn(f64, Option<f64>) -> Option<f64>,
) -> Option<Requests> {
    if now.routes.is_empty() {
        return None;
    }
    let row = |name: &str, t: &Traffic, then: Option<&Traffic>| RouteRow {
        name: name.to_owned(),
        requests_total: whole(t.requests),
        errors_5xx_total: whole(t.errors_5xx),
        requests_per_s: rate(t.requests, then.map(|b| b.requests)),
        errors_5xx_per_s: rate(t.errors_5xx, then.map(|b| b.errors_5xx)),
        latency_window_ms: quantiles(&match then {
            Some(b) => t.latency.since(&b.latency),
            None => Histogram::default(),
        }),
        latency_total_ms: quantiles(&t.latency),
    };
    let mut routes: Vec<RouteRow> = now
        .routes
        .iter()
        .map(|(name, t)| row(name, t, before.and_then(|b| b.routes.get(name))))
        .collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.requests_total));
    routes.truncate(MAX_ROWS);
    let before_total = before.map(Digest::total);
    Some(Requests {
        all: row("all", &now.total(), before_total.as_ref()),
        routes,
    })
}

fn quantiles(h: &Histogram) -> Quantiles {
    let ms = |q| {
        h.quantile(q)
            .map(|s| (s * 1000.0 * 1000.0).round() / 1000.0)
    };
    Quantiles {
        count: whole(h.count()),
        p50: ms(0.5),
        p99: ms(0.99),
    }
}

fn cache(now: &BTreeMap<String, f64>, before: Option<&BTreeMap<String, f64>>) -> Option<Cache> {
    if now.is_empty() {
        return None;
    }
    let window: Option<BTreeMap<String, f64>> = before.map(|b| {
        now.iter()
            .map(|(k, v)| (k.clone(), (v - b.get(k).copied().unwrap_or(0.0)).max(0.0)))
            .collect()
    });
    Some(Cache {
        results: now
            .iter()
            .take(MAX_ROWS)
            .map(|(k, v)| (k.clone(), whole(*v)))
            .collect(),
        hit_ratio: hit_ratio(now),
        hit_ratio_window: window.as_ref().and_then(hit_ratio),
    })
}

/// Answered from the cache / lookups; `None` before the first lookup.
fn hit_ratio(results: &BTreeMap<String, f64>) -> Option<f64> {
    let count = |keep: &dyn Fn(&str) -> bool| -> f64 {
        results
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, v)| *v)
            .sum()
    };
    let served = count(&|k| FROM_CACHE.contains(&k));
    let lookups = count(&|k| !NOT_LOOKUPS.contains(&k));
    (lookups > 0.0).then(|| served / lookups)
}

fn origin(
    now: &Digest,
    before: Option<&Digest>,
    rate: &impl Fn(f64, Option<f64>) -> Option<f64>,
) -> Option<Origin> {
    if now.origin.is_empty() {
        return None;
    }
    let sum = |d: &Digest| d.origin.values().map(|o| o.requests).sum::<f64>();
    let requests = sum(now);
    let mut routes: Vec<OriginRow> = now
        .origin
        .iter()
        .map(|(route, o)| OriginRow {
            route: route.clone(),
            requests_total: whole(o.requests),
            errors_5xx_total: whole(o.errors_5xx),
        })
        .collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.requests_total));
    routes.truncate(MAX_ROWS);
    Some(Origin {
        requests_total: whole(requests),
        errors_5xx_total: whole(now.origin.values().map(|o| o.errors_5xx).sum()),
        requests_per_s: rate(requests, before.map(sum)),
        routes,
    })
}

/// A counter as a whole number (negative and non-finite values read as 0).
fn whole(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        // Saturates above u64::MAX, which no counter reaches.
        v.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::super::prom::parse;
    use super::*;

    fn digest(text: &str) -> Digest {
        Digest::of(&parse(text).expect("parses"))
    }

    #[test]
    fn json_of_a_first_scrape_has_totals_but_no_rates() {
        let now = digest(
            "meridian_http_requests_total{route=\"api\",status_class=\"2xx\",upstream=\"a\"} 4\n\
             meridian_http_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 4\n\
             meridian_http_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 4\n\
             meridian_cache_requests_total{result=\"hit\"} 3\n\
             meridian_cache_requests_total{result=\"miss\"} 1\n\
             meridian_cache_requests_total{result=\"bypass\"} 9\n\
             orders_saga_outcomes_total{outcome=\"completed\"} 7\n\
             orders_dlq_depth 2\n",
        );
        let v = serde_json::to_value(Panel::build(&now, None)).expect("json");
        assert_eq!(v["requests"]["requests_total"], 4);
        assert_eq!(v["requests"]["requests_per_s"], serde_json::Value::Null);
        assert_eq!(v["requests"]["latency_total_ms"]["p50"], 2.5);
        assert_eq!(v["requests"]["latency_window_ms"]["count"], 0);
        assert_eq!(v["requests"]["routes"][0]["name"], "api");
        assert_eq!(v["cache"]["hit_ratio"], 0.75);
        assert_eq!(v["cache"]["results"]["bypass"], 9);
        assert_eq!(v["saga"]["completed"], 7);
        assert_eq!(v["dlq_depth"], 2.0);
        assert!(v.get("origin").is_none());
        assert!(v.get("video_jobs").is_none());
    }

    #[test]
    fn rates_and_window_come_from_the_previous_scrape() {
        let text = |n: u32, fast: u32, hits: u32| {
            format!(
                "meridian_http_requests_total{{route=\"api\",status_class=\"2xx\",upstream=\"a\"}} {n}\n\
                 meridian_http_requests_total{{route=\"api\",status_class=\"5xx\",upstream=\"a\"}} 1\n\
                 meridian_http_request_duration_seconds_bucket{{route=\"api\",le=\"0.01\"}} {fast}\n\
                 meridian_http_request_duration_seconds_bucket{{route=\"api\",le=\"1\"}} {n}\n\
                 meridian_http_request_duration_seconds_bucket{{route=\"api\",le=\"+Inf\"}} {n}\n\
                 meridian_cache_requests_total{{result=\"hit\"}} {hits}\n\
                 meridian_cache_requests_total{{result=\"miss\"}} 10\n"
            )
        };
        let before = digest(&text(10, 10, 0));
        let now = digest(&text(30, 10, 10));
        let panel = Panel::build(
            &now,
            Some(Previous {
                digest: &before,
                elapsed: Duration::from_secs(2),
            }),
        );
        let v = serde_json::to_value(panel).expect("json");
        assert_eq!(v["requests"]["requests_total"], 31);
        assert_eq!(v["requests"]["errors_5xx_total"], 1);
        assert_eq!(v["requests"]["requests_per_s"], 10.0);
        assert_eq!(v["requests"]["errors_5xx_per_s"], 0.0);
        // The 20 new requests all took 10ms..1s; since start half were faster.
        assert_eq!(v["requests"]["latency_window_ms"]["count"], 20);
        assert_eq!(v["requests"]["latency_window_ms"]["p50"], 505.0);
        assert_eq!(v["requests"]["latency_total_ms"]["p50"], 257.5);
        assert_eq!(v["cache"]["hit_ratio"], 0.5);
        assert_eq!(v["cache"]["hit_ratio_window"], 1.0);
    }

    #[test]
    fn a_counter_reset_is_not_a_negative_rate() {
        let before = digest("origin_http_requests_total{route=\"/a\",status=\"200\"} 100\n");
        let now = digest("origin_http_requests_total{route=\"/a\",status=\"500\"} 4\n");
        let panel = Panel::build(
            &now,
            Some(Previous {
                digest: &before,
                elapsed: Duration::from_secs(4),
            }),
        );
        let v = serde_json::to_value(panel).expect("json");
        assert_eq!(v["origin"]["requests_per_s"], 1.0);
        assert_eq!(v["origin"]["errors_5xx_total"], 4);
        assert_eq!(v["origin"]["routes"][0]["route"], "/a");
    }

    #[test]
    fn an_empty_scrape_is_an_empty_panel() {
        let v = serde_json::to_value(Panel::build(&Digest::default(), None)).expect("json");
        assert_eq!(v, serde_json::json!({}));
    }
}
