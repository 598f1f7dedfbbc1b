//! Passive outlier ejection with Envoy's semantics.
//!
//! `consecutive_5xx` failures in a row (5xx, connect errors, timeouts, resets; any other
//! response resets the count) eject a target for `n × base_ejection`, `n` being how many
//! times it has been ejected (capped at [`MAX_EJECTION_MULTIPLIER`]). At most
//! `max_ejection_percent` of the pool's targets are ejected at once, but one always may be.
//! Ejections end by themselves when their time is up: selection compares with the clock, so
//! no timer task is needed.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use crate::config::Outlier;

use super::clock;
use super::target::{Endpoint, TargetState};

/// The n-th ejection lasts `n × base` up to this many times `base`.
pub const MAX_EJECTION_MULTIPLIER: u32 = 10;

/// Outlier policy of one pool.
#[derive(Debug)]
pub(crate) struct OutlierDetector {
    /// Settings.
    config: Outlier,
    /// Serialises ejection decisions so concurrent ones cannot exceed the percentage. Only
    /// taken when a target reaches the threshold.
    ejecting: Mutex<()>,
}

impl OutlierDetector {
    /// A detector with these settings.
    pub(crate) fn new(config: &Outlier) -> Self {
        OutlierDetector {
            config: config.clone(),
            ejecting: Mutex::new(()),
        }
    }

    /// Records one request outcome on `target`, a member of `endpoints`, at `now_ns`;
    /// ejects it when it crosses the threshold and the percentage allows. Returns whether it
    /// was ejected by this call.
    pub(crate) fn record(
        &self,
        target: &TargetState,
        failure: bool,
        endpoints: &[Endpoint],
        now_ns: u64,
    ) -> bool {
        if !failure {
            target.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        if !self.config.enabled {
            return false;
        }
        let failures = target.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.config.consecutive_5xx.max(1) {
            return false;
        }
        let _decision = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        if target.is_ejected(now_ns) {
            // Answers of requests sent before the ejection.
            return false;
        }
        let ejected = endpoints
            .iter()
            .filter(|e| e.state.is_ejected(now_ns))
            .count();
        if ejected >= max_ejected(endpoints.len(), self.config.max_ejection_percent) {
            return false;
        }
        let nth = target
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let duration = self.config.base_ejection * nth.min(MAX_EJECTION_MULTIPLIER);
        target.eject_until(now_ns.saturating_add(clock::duration_ns(duration)));
        target.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }
}

/// How many of `targets` may be ejected at once: `percent`% rounded down, at least one.
fn max_ejected(targets: usize, percent: u8) -> usize {
    (targets * usize::from(percent.min(100)) / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balance::test_support::endpoints;
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    fn outlier(percent: u8) -> Outlier {
        Outlier {
            enabled: true,
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: percent,
        }
    }

    #[test]
    fn five_failures_eject_and_a_success_resets() {
        let eps = endpoints(&[1, 1]);
        let detector = OutlierDetector::new(&outlier(50));
        let target = &eps[0].state;
        for _ in 0..4 {
            assert!(!detector.record(target, true, &eps, SECOND));
        }
        assert!(!detector.record(target, false, &eps, SECOND));
        for _ in 0..4 {
            assert!(!detector.record(target, true, &eps, SECOND));
        }
        assert!(detector.record(target, true, &eps, SECOND));
        assert!(target.is_ejected(SECOND));
        assert!(target.is_ejected(31 * SECOND - 1));
        assert!(!target.is_ejected(31 * SECOND));
    }

    #[test]
    fn nth_ejection_lasts_n_times_base_capped() {
        let eps = endpoints(&[1]);
        let detector = OutlierDetector::new(&outlier(10));
        let target = &eps[0].state;
        let mut now = SECOND;
        for n in 1..=12u64 {
            for _ in 0..5 {
                detector.record(target, true, &eps, now);
            }
            let lasts = target.ejected_until_ns() - now;
            assert_eq!(lasts, 30 * SECOND * n.min(10), "ejection {n}");
            now = target.ejected_until_ns();
        }
        assert_eq!(target.ejections.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn percentage_caps_ejections_but_one_is_always_allowed() {
        let eps = endpoints(&[1; 4]);
        let detector = OutlierDetector::new(&outlier(10));
        let fail5 = |i: usize| {
            for _ in 0..5 {
                detector.record(&eps[i].state, true, &eps, SECOND);
            }
        };
        fail5(0);
        fail5(1);
        assert!(eps[0].state.is_ejected(SECOND));
        assert!(!eps[1].state.is_ejected(SECOND));
        // Once the first ejection ends, the next failure ejects the second target.
        let later = eps[0].state.ejected_until_ns();
        assert!(detector.record(&eps[1].state, true, &eps, later));

        let eps = endpoints(&[1; 4]);
        let detector = OutlierDetector::new(&outlier(50));
        for i in 0..4 {
            for _ in 0..5 {
                detector.record(&eps[i].state, true, &eps, SECOND);
            }
        }
        let ejected = eps.iter().filter(|e| e.state.is_ejected(SECOND)).count();
        assert_eq!(ejected, 2);
    }

    #[test]
    fn disabled_never_ejects() {
        let eps = endpoints(&[1]);
        let mut config = outlier(100);
        config.enabled = false;
        let detector = OutlierDetector::new(&config);
        for _ in 0..20 {
            assert!(!detector.record(&eps[0].state, true, &eps, SECOND));
        }
    }

    #[test]
    fn max_ejected_rounds_down_with_floor_one() {
        assert_eq!(max_ejected(4, 10), 1);
        assert_eq!(max_ejected(20, 10), 2);
        assert_eq!(max_ejected(3, 100), 3);
        assert_eq!(max_ejected(3, 250), 3);
        assert_eq!(max_ejected(0, 10), 1);
    }
}
