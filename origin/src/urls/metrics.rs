//! The shortener's own Prometheus metrics (request counts and latencies come from
//! [`crate::http::finish`]).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and gauges of links, redirects and click flushing.
#[derive(Clone)]
pub struct Metrics {
    /// `urls_links_created_total`: links created.
    pub links_created: IntCounter,
    /// `urls_redirects_total{status}`: answers of `/r/{code}` by status.
    pub redirects: IntCounterVec,
    /// `urls_click_flushes_total`: batches of clicks written to the store.
    pub flushes: IntCounter,
    /// `urls_click_flush_failures_total`: batches the store refused (their clicks kept).
    pub flush_failures: IntCounter,
    /// `urls_clicks_flushed_total`: clicks written to the store.
    pub clicks_flushed: IntCounter,
    /// `urls_clicks_pending`: clicks counted in memory, not yet in the store.
    pub clicks_pending: IntGauge,
    /// `urls_clicks_dropped_total`: clicks not counted because too many distinct codes were
    /// pending (the store is failing or far behind).
    pub clicks_dropped: IntCounter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            links_created: IntCounter::new("urls_links_created_total", "Links created")?,
            redirects: IntCounterVec::new(
                Opts::new("urls_redirects_total", "Answers of /r/{code} by status"),
                &["status"],
            )?,
            flushes: IntCounter::new(
                "urls_click_flushes_total",
                "Batches of clicks written to the store",
            )?,
            flush_failures: IntCounter::new(
                "urls_click_flush_failures_total",
                "Batches of clicks the store refused (kept in memory and retried)",
            )?,
            clicks_flushed: IntCounter::new(
                "urls_clicks_flushed_total",
                "Clicks written to the store",
            )?,
            clicks_pending: IntGauge::new(
                "urls_clicks_pending",
                "Clicks counted in memory and not yet written to the store",
            )?,
            clicks_dropped: IntCounter::new(
                "urls_clicks_dropped_total",
                "Clicks not counted because the pending codes were at their cap",
            )?,
        };
        registry.register(Box::new(metrics.links_created.clone()))?;
        registry.register(Box::new(metrics.redirects.clone()))?;
        registry.register(Box::new(metrics.flushes.clone()))?;
        registry.register(Box::new(metrics.flush_failures.clone()))?;
        registry.register(Box::new(metrics.clicks_flushed.clone()))?;
        registry.register(Box::new(metrics.clicks_pending.clone()))?;
        registry.register(Box::new(metrics.clicks_dropped.clone()))?;
        Ok(metrics)
    }
}
