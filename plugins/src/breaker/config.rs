//! The settings of one circuit breaker.

use std::time::Duration;

/// How the sliding window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `n` seconds, counted per second.
    Time(u32),
}

/// Breaker settings. Defaults follow Resilience4j except where a gateway wants otherwise
/// (`slow_call_duration` 5s instead of 60s, `minimum_calls` 20 instead of 100, `wait_in_open`
/// 30s instead of 60s).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// The sliding window (default the last 100 calls).
    pub window: WindowKind,
    /// Failure rate in percent (1..=100) at or above which the breaker opens (default 50).
    pub failure_rate_threshold: u8,
    /// Slow-call rate in percent (1..=100) at or above which the breaker opens (default 100).
    pub slow_call_rate_threshold: u8,
    /// A call taking longer than this is slow (default 5s).
    pub slow_call_duration: Duration,
    /// Calls the window must hold before a rate is computed (default 20).
    pub minimum_calls: u32,
    /// How long the breaker stays open before trying half-open (default 30s).
    pub wait_in_open: Duration,
    /// Each consecutive re-opening multiplies the wait by this (default 1: no backoff).
    pub backoff_multiplier: f64,
    /// The longest wait in open, whatever the backoff (default 5m).
    pub max_wait: Duration,
    /// Calls let through in half-open to decide (default 10).
    pub permitted_calls_in_half_open: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: WindowKind::Count(100),
            failure_rate_threshold: 50,
            slow_call_rate_threshold: 100,
            slow_call_duration: Duration::from_secs(5),
            minimum_calls: 20,
            wait_in_open: Duration::from_secs(30),
            backoff_multiplier: 1.0,
            max_wait: Duration::from_secs(300),
            permitted_calls_in_half_open: 10,
        }
    }
}

impl BreakerConfig {
    /// The wait in open after `reopenings` consecutive re-openings (0 for the first opening).
    pub fn wait_after(&self, reopenings: u32) -> Duration {
        if self.backoff_multiplier <= 1.0 || reopenings == 0 {
            return self.wait_in_open;
        }
        let factor = self
            .backoff_multiplier
            .powi(i32::try_from(reopenings).unwrap_or(i32::MAX));
        let secs = self.wait_in_open.as_secs_f64() * factor;
        let cap = self.max_wait.max(self.wait_in_open);
        if secs.is_finite() && secs < cap.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            cap
        }
    }

    /// Calls needed before a rate is computed: `minimum_calls`, but never more than a count
    /// window holds (as in Resilience4j).
    pub(crate) fn effective_minimum(&self) -> u32 {
        match self.window {
            WindowKind::Count(n) => self.minimum_calls.min(n),
            WindowKind::Time(_) => self.minimum_calls,
        }
        .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = BreakerConfig {
            wait_in_open: Duration::from_millis(100),
            backoff_multiplier: 2.0,
            max_wait: Duration::from_millis(500),
            ..BreakerConfig::default()
        };
        assert_eq!(c.wait_after(0), Duration::from_millis(100));
        assert_eq!(c.wait_after(1), Duration::from_millis(200));
        assert_eq!(c.wait_after(2), Duration::from_millis(400));
        assert_eq!(c.wait_after(3), Duration::from_millis(500));
        assert_eq!(c.wait_after(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn no_backoff_by_default() {
        let c = BreakerConfig::default();
        assert_eq!(c.wait_after(5), Duration::from_secs(30));
    }

    #[test]
    fn minimum_is_capped_by_a_count_window() {
        let c = BreakerConfig {
            window: WindowKind::Count(10),
            minimum_calls: 20,
            ..BreakerConfig::default()
        };
        assert_eq!(c.effective_minimum(), 10);
        let t = BreakerConfig {
            window: WindowKind::Time(10),
            ..c
        };
        assert_eq!(t.effective_minimum(), 20);
    }
}
