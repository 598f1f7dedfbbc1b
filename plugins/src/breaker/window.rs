//! Sliding windows of call outcomes, with running totals so reading a rate is O(1).

use super::config::WindowKind;

/// Counts over the calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Calls recorded.
    pub calls: u32,
    /// Of which failed.
    pub failed: u32,
    /// Of which slow (a slow call may also be failed).
    pub slow: u32,
}

impl Totals {
    pub fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failed += u32::from(failed);
        self.slow += u32::from(slow);
    }

    fn sub(&mut self, other: Totals) {
        self.calls -= other.calls;
        self.failed -= other.failed;
        self.slow -= other.slow;
    }

    /// `part` of the calls in percent.
    pub fn rate(&self, part: u32) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(part) * 100.0 / f64::from(self.calls)
        }
    }
}

/// A count-based or time-based sliding window.
#[derive(Debug)]
pub(crate) enum Window {
    /// The last `ring.len()` calls; each slot is `None` until written.
    Count {
        ring: Vec<Option<Totals>>,
        next: usize,
        totals: Totals,
    },
    /// The last `buckets.len()` seconds, one bucket per second (second `s` in `s % len`).
    Time {
        buckets: Vec<Totals>,
        /// The latest second the window has been advanced to.
        head: u64,
        totals: Totals,
    },
}

impl Window {
    /// An empty window of `kind` (sizes below 1 are taken as 1).
    pub fn new(kind: WindowKind) -> Window {
        match kind {
            WindowKind::Count(n) => Window::Count {
                ring: vec![None; n.max(1) as usize],
                next: 0,
                totals: Totals::default(),
            },
            WindowKind::Time(n) => Window::Time {
                buckets: vec![Totals::default(); n.max(1) as usize],
                head: 0,
                totals: Totals::default(),
            },
        }
    }

    /// Records one call that ended at `second` (seconds on the breaker's clock, never earlier
    /// than a second already seen).
    pub fn record(&mut self, second: u64, failed: bool, slow: bool) {
        match self {
            Window::Count { ring, next, totals } => {
                if let Some(old) = ring[*next].take() {
                    totals.sub(old);
                }
                let mut one = Totals::default();
                one.add(failed, slow);
                ring[*next] = Some(one);
                totals.add(failed, slow);
                *next = (*next + 1) % ring.len();
            }
            Window::Time { .. } => {
                self.advance(second);
                if let Window::Time {
                    buckets, totals, ..
                } = self
                {
                    let len = buckets.len() as u64;
                    buckets[(second % len) as usize].add(failed, slow);
                    totals.add(failed, slow);
                }
            }
        }
    }

    /// The totals of the window as of `second`.
    pub fn totals(&mut self, second: u64) -> Totals {
        self.advance(second);
        match self {
            Window::Count { totals, .. } | Window::Time { totals, .. } => *totals,
        }
    }

    /// Drops the buckets of a time window that fell out of it by `second`.
    fn advance(&mut self, second: u64) {
        let Window::Time {
            buckets,
            head,
            totals,
        } = self
        else {
            return;
        };
        if second <= *head {
            return;
        }
        let len = buckets.len() as u64;
        let from = (*head + 1).max(second.saturating_sub(len - 1));
        for s in from..=second {
            let bucket = &mut buckets[(s % len) as usize];
            totals.sub(*bucket);
            *bucket = Totals::default();
        }
        *head = second;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_the_last_n_calls() {
        let mut w = Window::new(WindowKind::Count(3));
        w.record(0, true, false);
        w.record(0, true, true);
        w.record(0, false, false);
        let t = w.totals(0);
        assert_eq!((t.calls, t.failed, t.slow), (3, 2, 1));
        w.record(0, false, false);
        w.record(0, false, false);
        let t = w.totals(0);
        assert_eq!((t.calls, t.failed, t.slow), (3, 0, 0));
        assert_eq!(t.rate(t.failed), 0.0);
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let mut w = Window::new(WindowKind::Time(3));
        w.record(10, true, false);
        w.record(11, true, false);
        w.record(12, false, true);
        assert_eq!(w.totals(12).calls, 3);
        assert_eq!(w.totals(13).calls, 2);
        let t = w.totals(14);
        assert_eq!((t.calls, t.failed, t.slow), (1, 0, 1));
        assert_eq!(w.totals(100).calls, 0);
        w.record(100, true, false);
        w.record(100, false, false);
        let t = w.totals(100);
        assert_eq!((t.calls, t.failed), (2, 1));
        assert_eq!(t.rate(t.failed), 50.0);
    }

    #[test]
    fn time_window_handles_a_long_gap() {
        let mut w = Window::new(WindowKind::Time(2));
        w.record(1, true, false);
        w.record(2, true, false);
        assert_eq!(w.totals(1_000_000).calls, 0);
    }
}
