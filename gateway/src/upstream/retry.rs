//! Retry policy helpers: a per-upstream retry budget, backoff with full jitter, and the
//! checks that decide whether an attempt may be retried.
//!
//! The proxy decides; these functions only answer. Retries are counted (for metrics) by the
//! proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::config::{Retries, RetryOn};

use super::clock;
use super::outcome::Outcome;

/// Live counters of one budget, shared with its guards.
#[derive(Debug, Default)]
struct Counters {
    /// Requests in progress.
    active: AtomicU64,
    /// Retries in progress.
    retries: AtomicU64,
}

/// Limits concurrent retries of one upstream to `max(budget_min, budget_percent% of active
/// requests)`, so retries cannot multiply the load of an upstream that is already failing.
#[derive(Debug)]
pub struct RetryBudget {
    /// Shared counters.
    counters: Arc<Counters>,
    /// Percentage of active requests that may be retrying at once.
    percent: u8,
    /// Concurrent retries always allowed.
    min: u32,
}

/// Counts one active request while it lives (see [`RetryBudget::request_started`]).
#[derive(Debug)]
#[must_use = "the request counts as active only while the guard lives"]
pub struct ActiveGuard {
    /// The budget's counters.
    counters: Arc<Counters>,
}

/// Holds one retry slot of a budget while it lives (see [`RetryBudget::try_retry`]).
#[derive(Debug)]
#[must_use = "the retry holds its slot only while the guard lives"]
pub struct RetryGuard {
    /// The budget's counters.
    counters: Arc<Counters>,
}

impl RetryBudget {
    /// A budget with the limits of `retries`.
    pub fn new(retries: &Retries) -> Self {
        RetryBudget {
            counters: Arc::default(),
            percent: retries.budget_percent,
            min: retries.budget_min,
        }
    }

    /// Counts a request as active until the returned guard drops. Call once per client
    /// request (not per attempt).
    pub fn request_started(&self) -> ActiveGuard {
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            counters: Arc::clone(&self.counters),
        }
    }

    /// A retry slot if fewer than `max(budget_min, budget_percent% of active)` retries are in
    /// progress; `None` when the budget is spent. Hold the guard for the retry's duration.
    pub fn try_retry(&self) -> Option<RetryGuard> {
        let active = self.counters.active.load(Ordering::Relaxed);
        let allowed = (active * u64::from(self.percent) / 100).max(u64::from(self.min));
        self.counters
            .retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |retries| {
                (retries < allowed).then_some(retries + 1)
            })
            .ok()
            .map(|_| RetryGuard {
                counters: Arc::clone(&self.counters),
            })
    }

    /// Requests currently counted as active.
    pub fn active(&self) -> u64 {
        self.counters.active.load(Ordering::Relaxed)
    }

    /// Retries currently in progress.
    pub fn retrying(&self) -> u64 {
        self.counters.retries.load(Ordering::Relaxed)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.counters.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long to wait before retry number `attempt` (0 for the first retry): exponential with
/// full jitter, uniform in `[0, min(backoff_max, backoff_base × 2^attempt)]`.
pub fn backoff<R: Rng + ?Sized>(retries: &Retries, attempt: u32, rng: &mut R) -> Duration {
    let base = u128::from(clock::duration_ns(retries.backoff_base));
    let max = clock::duration_ns(retries.backoff_max);
    let grown = if base == 0 {
        0
    } else {
        1u128
            .checked_shl(attempt)
            .map_or(u128::MAX, |factor| base.saturating_mul(factor))
    };
    let cap = u64::try_from(grown).unwrap_or(u64::MAX).min(max);
    Duration::from_nanos(rng.random_range(0..=cap))
}

/// Methods that may be retried without the route's explicit consent (RFC 9110 idempotent
/// methods). Case-sensitive, as HTTP methods are.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether `outcome` is one of the retry conditions of `retries` (and retries are enabled at
/// all). The attempt count, the budget and idempotency are checked separately.
pub fn should_retry(retries: &Retries, outcome: &Outcome) -> bool {
    retries.attempts > 0
        && retries.on.iter().any(|on| match (on, outcome) {
            (RetryOn::ConnectError, Outcome::ConnectError)
            | (RetryOn::Timeout, Outcome::Timeout)
            | (RetryOn::Reset, Outcome::Reset) => true,
            (RetryOn::Status(want), Outcome::Status(got)) => want == got,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn retries() -> Retries {
        Retries {
            attempts: 2,
            on: vec![
                RetryOn::ConnectError,
                RetryOn::Status(502),
                RetryOn::Status(503),
            ],
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_percent: 20,
            budget_min: 3,
        }
    }

    #[test]
    fn budget_allows_the_minimum_with_few_active() {
        let budget = RetryBudget::new(&retries());
        let _active: Vec<_> = (0..5).map(|_| budget.request_started()).collect();
        let held: Vec<_> = (0..3).map(|_| budget.try_retry().unwrap()).collect();
        assert!(budget.try_retry().is_none());
        assert_eq!(budget.retrying(), 3);
        drop(held);
        assert_eq!(budget.retrying(), 0);
        assert!(budget.try_retry().is_some());
    }

    #[test]
    fn budget_grows_with_active_requests() {
        let budget = RetryBudget::new(&retries());
        let active: Vec<_> = (0..100).map(|_| budget.request_started()).collect();
        assert_eq!(budget.active(), 100);
        let held: Vec<_> = std::iter::from_fn(|| budget.try_retry())
            .take(1000)
            .collect();
        assert_eq!(held.len(), 20);
        drop(active);
        assert_eq!(budget.active(), 0);
        drop(held);
        // With nothing active, only the minimum remains.
        let held: Vec<_> = std::iter::from_fn(|| budget.try_retry())
            .take(1000)
            .collect();
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn backoff_stays_within_its_bounds() {
        let config = retries();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..80 {
            let cap = (25u64 << attempt.min(20)).min(250);
            let mut longest = Duration::ZERO;
            for _ in 0..200 {
                let wait = backoff(&config, attempt, &mut rng);
                assert!(
                    wait <= Duration::from_millis(cap),
                    "attempt {attempt}: {wait:?}"
                );
                longest = longest.max(wait);
            }
            // Full jitter still reaches the upper part of the range.
            assert!(
                longest >= Duration::from_millis(cap) / 2,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn idempotent_methods() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(method), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "get"] {
            assert!(!is_idempotent(method), "{method}");
        }
    }

    #[test]
    fn retry_conditions() {
        let config = retries();
        assert!(should_retry(&config, &Outcome::ConnectError));
        assert!(should_retry(&config, &Outcome::Status(502)));
        assert!(should_retry(&config, &Outcome::Status(503)));
        assert!(!should_retry(&config, &Outcome::Status(504)));
        assert!(!should_retry(&config, &Outcome::Status(200)));
        assert!(!should_retry(&config, &Outcome::Timeout));
        assert!(!should_retry(&config, &Outcome::Reset));
        let off = Retries {
            attempts: 0,
            ..config
        };
        assert!(!should_retry(&off, &Outcome::ConnectError));
    }
}
