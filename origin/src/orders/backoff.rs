//! Exponential backoff with jitter, for consumer retries and participant calls.

use std::time::Duration;

/// Delays that double from `base` up to `cap`, each with "equal jitter": half the delay fixed,
/// half random, so retries of many messages spread out instead of arriving together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let full = self.base.saturating_mul(factor).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_under_the_cap_and_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 1..=40 {
            let full = Duration::from_millis(100 * 2u64.pow(attempt.min(11) - 1))
                .min(Duration::from_secs(1));
            let d = b.delay(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }
}
