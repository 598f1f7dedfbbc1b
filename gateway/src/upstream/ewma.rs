//! A lock-free, time-decayed exponentially weighted moving average of latencies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::clock;

/// Half-life of the latency average: a sample weighs half as much after this long.
pub const HALF_LIFE: Duration = Duration::from_secs(10);

/// A time-decayed EWMA of latencies in nanoseconds.
///
/// Each observation first decays the current value by `0.5^(Δt / HALF_LIFE)`, Δt being the
/// time since the previous observation, then mixes the sample in with the remaining weight.
/// Both steps are atomic (a swap of the timestamp, then a compare-and-swap loop on the
/// value), so concurrent observers never lose a sample.
#[derive(Debug, Default)]
pub(crate) struct Ewma {
    /// The average in nanoseconds; 0 while nothing was observed.
    value_ns: AtomicU64,
    /// [`clock::now_ns`] of the last observation; 0 before the first.
    stamp_ns: AtomicU64,
}

impl Ewma {
    /// Mixes in one latency sample observed at `now_ns`.
    pub(crate) fn observe(&self, sample: Duration, now_ns: u64) {
        let previous = self.stamp_ns.swap(now_ns, Ordering::AcqRel);
        let elapsed = now_ns.saturating_sub(previous) as f64;
        let keep = (-elapsed / clock::duration_ns(HALF_LIFE) as f64).exp2();
        let sample = clock::duration_ns(sample).max(1) as f64;
        // The closure always returns `Some`, so this cannot fail.
        let _ = self
            .value_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                let mixed = if old == 0 {
                    sample
                } else {
                    old as f64 * keep + sample * (1.0 - keep)
                };
                Some((mixed.round() as u64).max(1))
            });
    }

    /// The current average, `None` before the first sample.
    pub(crate) fn get_ns(&self) -> Option<u64> {
        match self.value_ns.load(Ordering::Acquire) {
            0 => None,
            value => Some(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn first_sample_is_taken_as_is() {
        let ewma = Ewma::default();
        assert_eq!(ewma.get_ns(), None);
        ewma.observe(Duration::from_millis(7), 1);
        assert_eq!(ewma.get_ns(), Some(7 * MS));
    }

    #[test]
    fn one_half_life_weighs_half() {
        let ewma = Ewma::default();
        ewma.observe(Duration::from_millis(10), 1);
        let later = 1 + clock::duration_ns(HALF_LIFE);
        ewma.observe(Duration::from_millis(30), later);
        assert_eq!(ewma.get_ns(), Some(20 * MS));
    }

    #[test]
    fn close_samples_barely_move_the_average() {
        let ewma = Ewma::default();
        ewma.observe(Duration::from_millis(10), 1);
        ewma.observe(Duration::from_millis(1000), 1 + MS);
        let value = ewma.get_ns().unwrap();
        assert!(value > 10 * MS && value < 11 * MS, "{value}");
    }
}
