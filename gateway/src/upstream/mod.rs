//! Upstream pools: target discovery, load balancing, active health checks, passive outlier
//! ejection and retry policy.
//!
//! Per request, the proxy does:
//!
//! ```text
//! let pool = registry.get("api")?;                 // Arc<UpstreamPool>
//! let _active = pool.retry_budget().request_started();
//! let pick = pool.select(&key, &tried)?;           // None → 503
//! let guard = pool.begin(&pick);                   // in-flight count, RAII
//! ... connect to pick.addr and proxy ...
//! pool.report(&pick, Outcome::Status(503), latency);
//! drop(guard);
//! // before a retry: should_retry, is_idempotent, budget.try_retry(), backoff(); tried.push(pick.addr)
//! ```
//!
//! - `pool`: one upstream's targets and the selection rules (skip unhealthy, ejected and
//!   tried targets; panic mode), see [`UpstreamPool::select`].
//! - `balance`: round robin, smooth weighted round robin, weighted least connections, ketama
//!   consistent hashing, and power of two choices by EWMA latency.
//! - `health`, `outlier`, `discovery`: active checks, passive ejection, DNS.
//! - `retry`: the retry budget, backoff with full jitter, and retry conditions.
//! - `registry`: all pools, rebuilt on reload keeping unchanged ones.
//! - [`breaker`]: circuit breakers of upstreams and routes, kept across reloads.

mod background;
mod balance;
pub mod breaker;
mod clock;
mod discovery;
mod ewma;
mod health;
mod outcome;
mod outlier;
mod pool;
mod registry;
mod retry;
mod set;
mod snapshot;
mod target;

#[cfg(test)]
mod tests;

pub use background::{MIN_CHECK_INTERVAL, MIN_DNS_REFRESH};
pub use balance::{SelectKey, MAX_RING_WEIGHT};
pub use discovery::MAX_TARGETS;
pub use ewma::HALF_LIFE as EWMA_HALF_LIFE;
pub use health::MAX_STATUS_LINE;
pub use outcome::Outcome;
pub use outlier::MAX_EJECTION_MULTIPLIER;
pub use pool::{Pick, UpstreamPool, FAILURE_LATENCY_PENALTY, PANIC_HEALTHY_PERCENT};
pub use registry::UpstreamRegistry;
pub use retry::{backoff, is_idempotent, should_retry, ActiveGuard, RetryBudget, RetryGuard};
pub use snapshot::{PoolSnapshot, TargetSnapshot};
pub use target::InFlightGuard;

/// A fast, stable 64-bit hash (XXH3) of a request's hash-key bytes, for [`SelectKey::hash`].
/// Stable across processes, versions and machines, so every gateway replica maps a key to the
/// same target.
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
