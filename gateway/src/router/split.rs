//! Weighted choice between upstream pools for a split route.

/// A weighted split, picked in O(log n) by binary search over cumulative weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedSplit {
    /// Pool names.
    names: Box<[Box<str>]>,
    /// `cumulative[i]` is the sum of the weights of entries `0..=i`.
    cumulative: Box<[u64]>,
}

impl WeightedSplit {
    /// Builds a split from `(pool, weight)` pairs. Entries of weight 0 are never picked.
    /// Returns `None` when the total weight is 0 (including an empty list).
    pub fn new(entries: &[(String, u32)]) -> Option<Self> {
        let mut total = 0u64;
        let cumulative: Box<[u64]> = entries
            .iter()
            .map(|(_, w)| {
                total += u64::from(*w);
                total
            })
            .collect();
        (total > 0).then(|| Self {
            names: entries.iter().map(|(n, _)| n.as_str().into()).collect(),
            cumulative,
        })
    }

    /// Picks a pool from a random number `r` (uniform over `u64`); the same `r` always picks
    /// the same pool.
    pub fn pick(&self, r: u64) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let point = r % total;
        let i = self.cumulative.partition_point(|&c| c <= point);
        self.names.get(i).map_or("", |n| n)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn split(entries: &[(&str, u32)]) -> Option<WeightedSplit> {
        let owned: Vec<(String, u32)> = entries.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        WeightedSplit::new(&owned)
    }

    #[test]
    fn distribution_follows_weights() {
        let s = split(&[("a", 70), ("b", 20), ("off", 0), ("c", 10)]).expect("non-zero total");
        let mut rng = StdRng::seed_from_u64(7);
        let picks = 10_000;
        let mut counts = [0u32; 3];
        for _ in 0..picks {
            match s.pick(rng.random()) {
                "a" => counts[0] += 1,
                "b" => counts[1] += 1,
                "c" => counts[2] += 1,
                other => panic!("picked {other:?}"),
            }
        }
        for (count, weight) in counts.iter().zip([70.0, 20.0, 10.0]) {
            let percent = f64::from(*count) * 100.0 / f64::from(picks);
            assert!((percent - weight).abs() <= 3.0, "{counts:?}");
        }
    }

    #[test]
    fn pick_is_deterministic_and_exact_at_boundaries() {
        let s = split(&[("a", 1), ("b", 2)]).expect("non-zero total");
        assert_eq!(s.pick(0), "a");
        assert_eq!(s.pick(1), "b");
        assert_eq!(s.pick(2), "b");
        assert_eq!(s.pick(3), "a");
        assert_eq!(s.pick(u64::MAX), s.pick(u64::MAX));
    }

    #[test]
    fn zero_total_is_refused() {
        assert!(split(&[]).is_none());
        assert!(split(&[("a", 0), ("b", 0)]).is_none());
        assert_eq!(
            split(&[("only", 5)]).map(|s| s.pick(12345).to_owned()),
            Some("only".into())
        );
    }
}
