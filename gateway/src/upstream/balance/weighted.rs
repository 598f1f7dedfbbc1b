//! Smooth weighted round robin, nginx's algorithm.
//!
//! Every pick adds each usable target's weight to its running `current` value, chooses the
//! largest, and subtracts the total of the weights from the chosen one. Weights 5:3:1 give
//! `a a b a c a b a b`-like interleaved sequences that are exact over every 9 picks.

use std::sync::{Mutex, PoisonError};

use crate::upstream::target::Endpoint;

/// Running `current` values, one per endpoint, behind a short lock.
#[derive(Debug)]
pub(crate) struct SmoothWeighted {
    /// nginx's `current_weight` of each endpoint.
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    /// State for `len` endpoints.
    pub(crate) fn new(len: usize) -> Self {
        SmoothWeighted {
            current: Mutex::new(vec![0; len]),
        }
    }

    /// The next pick among the usable endpoints. `usable` runs under the lock: it must only
    /// read (the pool's liveness rule reads atomics), never pick again or take a lock.
    pub(crate) fn pick<F: Fn(usize) -> bool>(
        &self,
        endpoints: &[Endpoint],
        usable: F,
    ) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, (endpoint, slot)) in endpoints.iter().zip(current.iter_mut()).enumerate() {
            if !usable(i) {
                continue;
            }
            let weight = i64::from(endpoint.weight);
            *slot += weight;
            total += weight;
            if best.is_none_or(|(_, value)| *slot > value) {
                best = Some((i, *slot));
            }
        }
        let (chosen, _) = best?;
        current[chosen] -= total;
        drop(current);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balance::test_support::{endpoints, histogram};

    #[test]
    fn five_three_one_is_exact_over_900() {
        let eps = endpoints(&[5, 3, 1]);
        let w = SmoothWeighted::new(eps.len());
        let counts = histogram(3, 900, || w.pick(&eps, |_| true).unwrap());
        assert_eq!(counts, [500, 300, 100]);
    }

    #[test]
    fn sequence_is_smooth() {
        let eps = endpoints(&[5, 1, 1]);
        let w = SmoothWeighted::new(eps.len());
        let picks: Vec<_> = (0..7).map(|_| w.pick(&eps, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn unusable_targets_are_left_out() {
        let eps = endpoints(&[5, 3, 1]);
        let w = SmoothWeighted::new(eps.len());
        let counts = histogram(3, 800, || w.pick(&eps, |i| i != 0).unwrap());
        assert_eq!(counts, [0, 600, 200]);
        assert_eq!(w.pick(&eps, |_| false), None);
    }
}
