//! Auth metrics, in [`crate::metrics::registry`].

use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts};

struct Metrics {
    decisions: IntCounterVec,
    jwks_fetches: IntCounterVec,
    introspections: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name} is valid: {e}"));
            if let Err(e) = crate::metrics::registry().register(Box::new(c.clone())) {
                log::warn!("metric {name} not registered: {e}");
            }
            c
        };
        Metrics {
            decisions: counter(
                "meridian_auth_decisions_total",
                "Auth plugin decisions by plugin and result (ok, missing, invalid, forbidden).",
                &["plugin", "result"],
            ),
            jwks_fetches: counter(
                "meridian_auth_jwks_fetches_total",
                "JWKS fetches by result (ok, error, rate_limited).",
                &["result"],
            ),
            introspections: counter(
                "meridian_auth_introspection_total",
                "Introspection lookups by result (cache_hit, active, inactive, error).",
                &["result"],
            ),
        }
    })
}

/// Counts one decision of `plugin`.
pub fn decision(plugin: &str, result: &str) {
    metrics()
        .decisions
        .with_label_values(&[plugin, result])
        .inc();
}

/// Counts one JWKS fetch (or a fetch skipped by the rate limit).
pub fn jwks_fetch(result: &str) {
    metrics().jwks_fetches.with_label_values(&[result]).inc();
}

/// Counts one introspection lookup.
pub fn introspection(result: &str) {
    metrics().introspections.with_label_values(&[result]).inc();
}
