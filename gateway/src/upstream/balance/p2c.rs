//! Power of two random choices by EWMA latency.
//!
//! Two distinct usable endpoints are drawn at random and the one with the lower
//! `ewma_latency × (in_flight + 1) / weight` wins. An endpoint without latency samples yet is
//! scored with its rival's latency (so it competes on load alone and gets traffic to learn
//! from); when neither has samples, load alone decides.

use rand::Rng;

use crate::upstream::target::Endpoint;

/// Stateless: all it needs lives in the endpoints.
#[derive(Debug)]
pub(crate) struct P2c;

impl P2c {
    /// The better of two random usable endpoints (the only one if just one is usable).
    pub(crate) fn pick<F: Fn(usize) -> bool>(
        &self,
        endpoints: &[Endpoint],
        usable: F,
    ) -> Option<usize> {
        let len = endpoints.len();
        let mut rng = rand::rng();
        if len >= 2 {
            let (a, b) = distinct_pair(&mut rng, len);
            if usable(a) && usable(b) {
                return Some(better(endpoints, a, b));
            }
        }
        // Slow path: some endpoints are excluded; draw among the usable ones only.
        let count = (0..len).filter(|&i| usable(i)).count();
        let nth_usable = |n: usize| (0..len).filter(|&i| usable(i)).nth(n);
        match count {
            0 => None,
            1 => nth_usable(0),
            _ => {
                let (a, b) = distinct_pair(&mut rng, count);
                Some(better(endpoints, nth_usable(a)?, nth_usable(b)?))
            }
        }
    }
}

/// Two distinct uniform indices of `0..len` (`len >= 2`).
fn distinct_pair<R: Rng>(rng: &mut R, len: usize) -> (usize, usize) {
    let a = rng.random_range(0..len);
    let b = rng.random_range(0..len - 1);
    (a, if b >= a { b + 1 } else { b })
}

/// `a` or `b`, whichever has the lower score (`a` on ties).
fn better(endpoints: &[Endpoint], a: usize, b: usize) -> usize {
    let (ea, eb) = (&endpoints[a], &endpoints[b]);
    let (la, lb) = (ea.state.latency.get_ns(), eb.state.latency.get_ns());
    let latency_a = la.or(lb).unwrap_or(1) as f64;
    let latency_b = lb.or(la).unwrap_or(1) as f64;
    let score = |latency: f64, e: &Endpoint| {
        latency * (e.state.in_flight() as f64 + 1.0) / f64::from(e.weight.max(1))
    };
    if score(latency_b, eb) < score(latency_a, ea) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balance::test_support::{endpoints, histogram};
    use crate::upstream::target::InFlightGuard;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn prefers_the_faster_target() {
        let eps = endpoints(&[1, 1]);
        eps[0].state.latency.observe(Duration::from_millis(50), 1);
        eps[1].state.latency.observe(Duration::from_millis(2), 1);
        let counts = histogram(2, 200, || P2c.pick(&eps, |_| true).unwrap());
        assert_eq!(counts, [0, 200]);
    }

    #[test]
    fn load_offsets_latency() {
        let eps = endpoints(&[1, 1]);
        eps[0].state.latency.observe(Duration::from_millis(10), 1);
        eps[1].state.latency.observe(Duration::from_millis(2), 1);
        // 2 ms × (9 + 1) = 20 > 10 ms × 1.
        let _busy: Vec<_> = (0..9)
            .map(|_| InFlightGuard::new(Arc::clone(&eps[1].state)))
            .collect();
        assert_eq!(P2c.pick(&eps, |_| true), Some(0));
    }

    #[test]
    fn unknown_latency_competes_on_load() {
        let eps = endpoints(&[1, 1]);
        eps[0].state.latency.observe(Duration::from_millis(10), 1);
        let _busy = InFlightGuard::new(Arc::clone(&eps[0].state));
        assert_eq!(P2c.pick(&eps, |_| true), Some(1));
    }

    #[test]
    fn draws_only_usable_targets() {
        let eps = endpoints(&[1, 1, 1, 1, 1]);
        let counts = histogram(5, 400, || P2c.pick(&eps, |i| i == 1 || i == 3).unwrap());
        assert_eq!(counts[0] + counts[2] + counts[4], 0);
        assert!(counts[1] > 0 && counts[3] > 0, "{counts:?}");
        assert_eq!(P2c.pick(&eps, |i| i == 4), Some(4));
        assert_eq!(P2c.pick(&eps, |_| false), None);
        assert_eq!(P2c.pick(&[], |_| true), None);
    }
}
