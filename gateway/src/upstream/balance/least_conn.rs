//! Least connections, weighted: the fewest in-flight requests per unit of weight.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::upstream::target::Endpoint;

/// A rotating start so ties are broken round robin.
#[derive(Debug, Default)]
pub(crate) struct LeastConn {
    /// Where the next scan starts.
    next: AtomicUsize,
}

impl LeastConn {
    /// The usable endpoint with the lowest `in_flight / weight`; among equals, the first one
    /// after a rotating start.
    pub(crate) fn pick<F: Fn(usize) -> bool>(
        &self,
        endpoints: &[Endpoint],
        usable: F,
    ) -> Option<usize> {
        let len = endpoints.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % len;
        let mut best: Option<(usize, u128, u128)> = None;
        for i in (0..len).map(|k| (start + k) % len).filter(|&i| usable(i)) {
            let load = u128::from(endpoints[i].state.in_flight());
            let weight = u128::from(endpoints[i].weight);
            // load/weight < best_load/best_weight, without division.
            if best
                .is_none_or(|(_, best_load, best_weight)| load * best_weight < best_load * weight)
            {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balance::test_support::{endpoints, histogram};
    use crate::upstream::target::InFlightGuard;
    use std::sync::Arc;

    #[test]
    fn prefers_the_idle_target() {
        let eps = endpoints(&[1, 1, 1]);
        let lc = LeastConn::default();
        let _a = InFlightGuard::new(Arc::clone(&eps[0].state));
        let _c = InFlightGuard::new(Arc::clone(&eps[2].state));
        let counts = histogram(3, 50, || lc.pick(&eps, |_| true).unwrap());
        assert_eq!(counts, [0, 50, 0]);
    }

    #[test]
    fn ties_rotate() {
        let eps = endpoints(&[1, 1, 1]);
        let lc = LeastConn::default();
        let counts = histogram(3, 300, || lc.pick(&eps, |_| true).unwrap());
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn load_is_divided_by_weight() {
        let eps = endpoints(&[4, 1]);
        let lc = LeastConn::default();
        // 3 on the weight-4 target (0.75 per weight) beat 1 on the weight-1 target (1.0).
        let _guards: Vec<_> = [0, 0, 0, 1]
            .iter()
            .map(|&i| InFlightGuard::new(Arc::clone(&eps[i].state)))
            .collect();
        assert_eq!(lc.pick(&eps, |_| true), Some(0));
        assert_eq!(lc.pick(&eps, |i| i == 1), Some(1));
        assert_eq!(lc.pick(&eps, |_| false), None);
    }
}
