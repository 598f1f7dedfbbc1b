//! Prometheus metrics of the cache, in their own registry (each gateway owns one and renders it
//! with its own). Every label has a fixed, small set of values.
//!
//! * `meridian_cache_requests_total{result}`: `hit`, `miss`, `collapsed` (waited for another
//!   request's fill), `stale` (served stale: while revalidating or on an origin error),
//!   `revalidated` (304 from the origin), `expired` (refetched in full), `bypass`.
//! * `meridian_cache_response_bytes_total{source}`: body bytes sent from `cache` or `origin`;
//!   the origin offload ratio is `cache / (cache + origin)`.
//! * `meridian_cache_storage_bytes{tier}`, `meridian_cache_storage_objects{tier}`: fill of the
//!   `memory` and `disk` tiers; `meridian_cache_storage_evictions_total{tier}`,
//!   `meridian_cache_corrupt_dropped_total`: from [`crate::StatsSnapshot`].
//! * `meridian_cache_prefetch_total{result}`: HLS segment prefetches, `enqueued`, `dropped`
//!   (queue full), `deduplicated`, `fetched`, `failed`; `meridian_cache_prefetch_bytes_total`:
//!   body bytes they read. From [`crate::hls::PrefetchStatsSnapshot`].
//! * `meridian_cache_shield_requests_total{shield,result}`: fills sent to a parent tier, by
//!   shield address (bounded by the configured shields) and `ok` (answered), `error` (failed
//!   after connecting), `connect_error` (failed over); `{shield="origin",result="fallback"}`
//!   counts fills that went to the origin because every shield refused.

use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::hls::PrefetchStatsSnapshot;
use crate::status::{CacheStatus, Forward};
use crate::StatsSnapshot;

/// The cache's metrics.
pub struct CacheMetrics {
    registry: Registry,
    /// `meridian_cache_requests_total`, one counter per [`OUTCOMES`] entry (resolved once: a
    /// label lookup per response would hash and lock).
    requests: [IntCounter; OUTCOMES.len()],
    /// `meridian_cache_response_bytes_total{source="cache"}` and `{source="origin"}`.
    bytes_from_cache: IntCounter,
    bytes_from_origin: IntCounter,
    storage_bytes: IntGaugeVec,
    storage_objects: IntGaugeVec,
    evictions: IntCounterVec,
    corrupt: IntCounter,
    /// The storage counters last copied into `evictions` and `corrupt`.
    last: Mutex<StatsSnapshot>,
    prefetch: IntCounterVec,
    prefetch_bytes: IntCounter,
    /// The prefetch counters last copied into `prefetch` and `prefetch_bytes`.
    last_prefetch: Mutex<PrefetchStatsSnapshot>,
    shield: IntCounterVec,
}

impl CacheMetrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "meridian_cache_requests_total",
                "Requests on cached routes, by what the cache did.",
            ),
            &["result"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "meridian_cache_response_bytes_total",
                "Response body bytes on cached routes, by where they came from.",
            ),
            &["source"],
        )?;
        let storage_bytes = IntGaugeVec::new(
            Opts::new(
                "meridian_cache_storage_bytes",
                "Bytes held by a storage tier.",
            ),
            &["tier"],
        )?;
        let storage_objects = IntGaugeVec::new(
            Opts::new(
                "meridian_cache_storage_objects",
                "Objects held by a storage tier.",
            ),
            &["tier"],
        )?;
        let evictions = IntCounterVec::new(
            Opts::new(
                "meridian_cache_storage_evictions_total",
                "Objects a storage tier evicted to stay within its bound.",
            ),
            &["tier"],
        )?;
        let corrupt = IntCounter::new(
            "meridian_cache_corrupt_dropped_total",
            "Torn or corrupt disk objects found and removed.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        let prefetch = IntCounterVec::new(
            Opts::new(
                "meridian_cache_prefetch_total",
                "HLS segment prefetches, by outcome.",
            ),
            &["result"],
        )?;
        let prefetch_bytes = IntCounter::new(
            "meridian_cache_prefetch_bytes_total",
            "Body bytes read by HLS segment prefetches.",
        )?;
        registry.register(Box::new(prefetch.clone()))?;
        registry.register(Box::new(prefetch_bytes.clone()))?;
        registry.register(Box::new(storage_bytes.clone()))?;
        registry.register(Box::new(storage_objects.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        registry.register(Box::new(corrupt.clone()))?;
        let shield = IntCounterVec::new(
            Opts::new(
                "meridian_cache_shield_requests_total",
                "Cache fills sent to a parent tier (shield), by shield and outcome.",
            ),
            &["shield", "result"],
        )?;
        registry.register(Box::new(shield.clone()))?;
        Ok(Self {
            registry,
            requests: OUTCOMES.map(|r| requests.with_label_values(&[r.label()])),
            bytes_from_cache: bytes.with_label_values(&["cache"]),
            bytes_from_origin: bytes.with_label_values(&["origin"]),
            storage_bytes,
            storage_objects,
            evictions,
            corrupt,
            last: Mutex::new(StatsSnapshot::default()),
            prefetch,
            prefetch_bytes,
            last_prefetch: Mutex::new(PrefetchStatsSnapshot::default()),
            shield,
        })
    }

    /// Counts one response by its `Cache-Status`.
    pub fn record(&self, status: &CacheStatus) {
        self.requests[result(status) as usize].inc();
    }

    /// Counts `n` body bytes sent from the cache (`from_cache`) or from the origin.
    pub fn body_bytes(&self, from_cache: bool, n: usize) {
        let counter = if from_cache {
            &self.bytes_from_cache
        } else {
            &self.bytes_from_origin
        };
        counter.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Counts one fill attempt on `shield` (an address, or `origin` for the fallback).
    pub fn shield(&self, shield: &str, result: &'static str) {
        self.shield.with_label_values(&[shield, result]).inc();
    }

    /// Copies the storage's fill and counters (call before rendering).
    pub fn observe_storage(&self, now: &StatsSnapshot) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.storage_bytes
            .with_label_values(&["memory"])
            .set(gauge(now.memory_bytes));
        self.storage_bytes
            .with_label_values(&["disk"])
            .set(gauge(now.disk_bytes));
        self.storage_objects
            .with_label_values(&["memory"])
            .set(gauge(now.memory_objects));
        self.storage_objects
            .with_label_values(&["disk"])
            .set(gauge(now.disk_objects));
        let mut last = self.last.lock();
        self.evictions
            .with_label_values(&["memory"])
            .inc_by(now.memory_evictions.saturating_sub(last.memory_evictions));
        self.evictions
            .with_label_values(&["disk"])
            .inc_by(now.disk_evictions.saturating_sub(last.disk_evictions));
        self.corrupt
            .inc_by(now.corrupt_dropped.saturating_sub(last.corrupt_dropped));
        *last = *now;
    }

    /// Copies the prefetcher's counters (call before rendering).
    pub fn observe_prefetch(&self, now: &PrefetchStatsSnapshot) {
        let mut last = self.last_prefetch.lock();
        let counts = [
            ("enqueued", now.enqueued, last.enqueued),
            ("dropped", now.dropped, last.dropped),
            ("deduplicated", now.deduplicated, last.deduplicated),
            ("fetched", now.fetched, last.fetched),
            ("failed", now.failed, last.failed),
        ];
        for (label, now, before) in counts {
            self.prefetch
                .with_label_values(&[label])
                .inc_by(now.saturating_sub(before));
        }
        self.prefetch_bytes
            .inc_by(now.bytes.saturating_sub(last.bytes));
        *last = *now;
    }

    /// The metric families, for rendering.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

/// The `result` label of `meridian_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Hit,
    Stale,
    Revalidated,
    Expired,
    Bypass,
    Collapsed,
    Miss,
}

/// Every [`Outcome`], in declaration order (its discriminant indexes this array).
const OUTCOMES: [Outcome; 7] = [
    Outcome::Hit,
    Outcome::Stale,
    Outcome::Revalidated,
    Outcome::Expired,
    Outcome::Bypass,
    Outcome::Collapsed,
    Outcome::Miss,
];

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Revalidated => "revalidated",
            Outcome::Expired => "expired",
            Outcome::Bypass => "bypass",
            Outcome::Collapsed => "collapsed",
            Outcome::Miss => "miss",
        }
    }
}

/// The `result` label of a response.
fn result(status: &CacheStatus) -> Outcome {
    match (status.hit, status.forward) {
        (true, None) => Outcome::Hit,
        (true, Some(_)) => Outcome::Stale,
        (false, _) if status.detail == Some("stale-while-revalidate") => Outcome::Stale,
        (false, Some(Forward::Stale)) if status.forward_status == Some(304) => Outcome::Revalidated,
        (false, Some(Forward::Stale)) => Outcome::Expired,
        (false, Some(Forward::Bypass)) => Outcome::Bypass,
        (false, _) if status.collapsed => Outcome::Collapsed,
        (false, _) => Outcome::Miss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_valid_and_results_bounded() {
        let m = CacheMetrics::new().unwrap();
        let hit = CacheStatus {
            hit: true,
            ..CacheStatus::default()
        };
        m.record(&hit);
        m.body_bytes(true, 10);
        m.observe_storage(&StatsSnapshot {
            memory_evictions: 3,
            ..StatsSnapshot::default()
        });
        m.observe_prefetch(&PrefetchStatsSnapshot {
            fetched: 2,
            ..PrefetchStatsSnapshot::default()
        });
        m.observe_prefetch(&PrefetchStatsSnapshot {
            fetched: 5,
            ..PrefetchStatsSnapshot::default()
        });
        assert_eq!(m.prefetch.with_label_values(&["fetched"]).get(), 5);
        m.shield("127.0.0.1:1", "ok");
        assert_eq!(m.shield.with_label_values(&["127.0.0.1:1", "ok"]).get(), 1);
        let names: Vec<String> = m.gather().iter().map(|f| f.name().to_string()).collect();
        assert!(names.contains(&"meridian_cache_requests_total".to_string()));
        assert_eq!(result(&hit), Outcome::Hit);
        assert_eq!(m.requests[Outcome::Hit as usize].get(), 1);
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?} indexes its own counter");
        }
        assert_eq!(m.bytes_from_cache.get(), 10);
        assert_eq!(m.bytes_from_origin.get(), 0);
    }
}
