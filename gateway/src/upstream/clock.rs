//! A monotonic clock as plain integers, so deadlines and timestamps fit in atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process-wide origin of [`now_ns`].
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (monotonic; never 0 after the first call
/// returns, so 0 can mean "never" in stored timestamps).
pub(crate) fn now_ns() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    duration_ns(epoch.elapsed()).saturating_add(1)
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_nonzero() {
        let a = now_ns();
        let b = now_ns();
        assert!(a > 0);
        assert!(b >= a);
    }

    #[test]
    fn duration_saturates() {
        assert_eq!(duration_ns(Duration::from_millis(3)), 3_000_000);
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
    }
}
