//! The rate limiter's Prometheus metrics. Labels are bounded by config: the policy name and
//! the decision, never a key.

use std::sync::OnceLock;

use prometheus::{IntCounter, IntCounterVec, Opts};

/// Metric handles of one policy, resolved once when the plugin is built.
#[derive(Clone)]
pub struct Metrics {
    /// Requests let through.
    pub allowed: IntCounter,
    /// Requests refused by a rate or concurrency limit.
    pub limited: IntCounter,
    /// Requests let through because Redis did not answer (`fail: open`).
    pub failed_open: IntCounter,
    /// Requests refused because Redis did not answer (`fail: closed`).
    pub failed_closed: IntCounter,
    /// Redis calls that failed or timed out.
    pub redis_errors: IntCounter,
}

struct Families {
    requests: IntCounterVec,
    redis_errors: IntCounterVec,
}

/// The metric families, made and registered once per process.
fn families() -> Result<&'static Families, String> {
    static FAMILIES: OnceLock<Result<Families, String>> = OnceLock::new();
    FAMILIES
        .get_or_init(|| {
            let requests = counter_vec(
                "meridian_ratelimit_requests_total",
                "Rate-limit decisions, by policy and decision (allowed, limited, failed_open, failed_closed).",
                &["policy", "decision"],
            )?;
            let redis_errors = counter_vec(
                "meridian_ratelimit_redis_errors_total",
                "Redis calls of the rate limiter that failed or timed out, by policy.",
                &["policy"],
            )?;
            Ok(Families {
                requests,
                redis_errors,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, String> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .map_err(|e| format!("metric {name}: {e}"))?;
    crate::metrics::registry()
        .register(Box::new(vec.clone()))
        .map_err(|e| format!("metric {name}: {e}"))?;
    Ok(vec)
}

impl Metrics {
    /// The handles of `policy`. Fails only if the metric families could not be registered.
    pub fn new(policy: &str) -> Result<Metrics, String> {
        let f = families()?;
        let decision = |d: &str| f.requests.with_label_values(&[policy, d]);
        Ok(Metrics {
            allowed: decision("allowed"),
            limited: decision("limited"),
            failed_open: decision("failed_open"),
            failed_closed: decision("failed_closed"),
            redis_errors: f.redis_errors.with_label_values(&[policy]),
        })
    }
}
