//! Consistent hashing on a ketama ring (nginx-compatible, via `pingora-ketama`).
//!
//! Each endpoint gets `160 × weight` points on the ring; a request key lands on the next
//! point clockwise. When that endpoint is not usable, the walk goes on clockwise to the next
//! usable one, so an excluded target's keys spread over the others and every other key keeps
//! its target.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use pingora_ketama::{Bucket, Continuum, DEFAULT_POINT_MULTIPLE};

use super::round_robin::RoundRobin;
use super::SelectKey;
use crate::upstream::target::Endpoint;

/// Weights above this are clamped on the ring, which bounds its memory (each weight unit is
/// 160 points of 8 bytes).
pub const MAX_RING_WEIGHT: u32 = 64;

/// A ring over one endpoint set.
pub(crate) struct Ketama {
    /// The points.
    ring: Continuum,
    /// Number of points, an upper bound for a walk.
    points: usize,
    /// Endpoint index of each address on the ring.
    index_of: HashMap<SocketAddr, usize>,
    /// Used for requests without a hash key.
    fallback: RoundRobin,
}

impl fmt::Debug for Ketama {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ketama")
            .field("points", &self.points)
            .field("endpoints", &self.index_of.len())
            .finish()
    }
}

impl Ketama {
    /// The ring of `endpoints` (addresses are unique in a target set).
    pub(crate) fn new(endpoints: &[Endpoint]) -> Self {
        let buckets: Vec<Bucket> = endpoints
            .iter()
            .map(|e| Bucket::new(e.addr, e.weight.clamp(1, MAX_RING_WEIGHT)))
            .collect();
        let points = endpoints
            .iter()
            .map(|e| e.weight.clamp(1, MAX_RING_WEIGHT) as usize)
            .sum::<usize>()
            * DEFAULT_POINT_MULTIPLE as usize;
        Ketama {
            ring: Continuum::new(&buckets),
            points,
            index_of: endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| (e.addr, i))
                .collect(),
            fallback: RoundRobin::default(),
        }
    }

    /// The first usable endpoint clockwise from the key's point; round robin without a key.
    pub(crate) fn pick<F: Fn(usize) -> bool>(
        &self,
        endpoints: &[Endpoint],
        key: &SelectKey,
        usable: F,
    ) -> Option<usize> {
        let Some(hash) = key.hash else {
            return self.fallback.pick(endpoints.len(), usable);
        };
        // Endpoints found unusable so far; allocated only once the first choice is unusable.
        let mut seen: Vec<bool> = Vec::new();
        let mut unseen = endpoints.len();
        for addr in self.ring.node_iter(&hash.to_le_bytes()).take(self.points) {
            let Some(&i) = self.index_of.get(addr) else {
                continue;
            };
            if usable(i) {
                return Some(i);
            }
            if seen.is_empty() {
                seen.resize(endpoints.len(), false);
            }
            if let Some(flag) = seen.get_mut(i).filter(|flag| !**flag) {
                *flag = true;
                unseen -= 1;
                if unseen == 0 {
                    return None;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balance::test_support::endpoints;
    use crate::upstream::hash_key;

    fn key(i: u32) -> SelectKey {
        SelectKey {
            hash: Some(hash_key(format!("user-{i}").as_bytes())),
        }
    }

    #[test]
    fn same_key_same_target() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let ring = Ketama::new(&eps);
        for i in 0..200 {
            let first = ring.pick(&eps, &key(i), |_| true);
            assert!(first.is_some());
            assert_eq!(ring.pick(&eps, &key(i), |_| true), first);
            // A second ring over the same set agrees.
            assert_eq!(Ketama::new(&eps).pick(&eps, &key(i), |_| true), first);
        }
    }

    #[test]
    fn removing_a_target_remaps_only_its_keys() {
        let eps = endpoints(&[1; 10]);
        let ring = Ketama::new(&eps);
        let fewer: Vec<_> = eps[1..].to_vec();
        let smaller = Ketama::new(&fewer);
        let keys = 10_000;
        let mut moved = 0;
        for i in 0..keys {
            let before = eps[ring.pick(&eps, &key(i), |_| true).unwrap()].addr;
            let after = fewer[smaller.pick(&fewer, &key(i), |_| true).unwrap()].addr;
            if before != after {
                assert_eq!(before, eps[0].addr, "a key of a remaining target moved");
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(keys);
        assert!((0.05..0.15).contains(&share), "moved share {share}");
    }

    #[test]
    fn weights_are_point_multiplicity() {
        let eps = endpoints(&[3, 1]);
        let ring = Ketama::new(&eps);
        let heavy = (0..4000)
            .filter(|&i| ring.pick(&eps, &key(i), |_| true) == Some(0))
            .count();
        let share = heavy as f64 / 4000.0;
        assert!((0.65..0.85).contains(&share), "heavy share {share}");
    }

    #[test]
    fn excluded_target_walks_to_the_next() {
        let eps = endpoints(&[1, 1, 1]);
        let ring = Ketama::new(&eps);
        for i in 0..100 {
            let first = ring.pick(&eps, &key(i), |_| true).unwrap();
            let next = ring.pick(&eps, &key(i), |j| j != first).unwrap();
            assert_ne!(next, first);
            assert_eq!(ring.pick(&eps, &key(i), |j| j != first), Some(next));
        }
        assert_eq!(ring.pick(&eps, &key(1), |_| false), None);
    }

    #[test]
    fn no_key_falls_back_to_round_robin() {
        let eps = endpoints(&[1, 1]);
        let ring = Ketama::new(&eps);
        let none = SelectKey { hash: None };
        let picks: Vec<_> = (0..4)
            .map(|_| ring.pick(&eps, &none, |_| true).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        assert_eq!(Ketama::new(&[]).pick(&[], &key(1), |_| true), None);
    }
}
