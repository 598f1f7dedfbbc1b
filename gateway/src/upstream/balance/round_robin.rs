//! Round robin: each target in turn, weights ignored.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A shared rotating cursor.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    /// Incremented on every pick.
    next: AtomicUsize,
}

impl RoundRobin {
    /// The next usable index of `0..len` after the cursor. An unusable target's turn goes to
    /// the next usable one.
    pub(crate) fn pick<F: Fn(usize) -> bool>(&self, len: usize, usable: F) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % len;
        (0..len).map(|k| (start + k) % len).find(|&i| usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_exactly() {
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..9).map(|_| rr.pick(3, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_unusable() {
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..6).map(|_| rr.pick(3, |i| i != 1).unwrap()).collect();
        assert_eq!(picks, [0, 2, 2, 0, 2, 2]);
        assert_eq!(rr.pick(3, |_| false), None);
        assert_eq!(rr.pick(0, |_| true), None);
    }
}
