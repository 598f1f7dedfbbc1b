//! Load-balancing algorithms, one file each, behind one [`Balancer`].
//!
//! A balancer is built for one resolved target set (it is rebuilt when DNS changes the set)
//! and picks an index into it among the targets a `usable` predicate accepts; the pool
//! decides what is usable (health, ejection, already tried).

mod ketama;
mod least_conn;
mod p2c;
mod round_robin;
mod weighted;

use crate::config::Balance;

use super::target::Endpoint;

pub use ketama::MAX_RING_WEIGHT;

/// The per-request input of selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectKey {
    /// The consistent-hash key of the request (see [`super::hash_key`]); used by `ketama`
    /// only. `None` makes `ketama` fall back to round robin.
    pub hash: Option<u64>,
}

/// One balancing algorithm with its state, for one target set.
#[derive(Debug)]
pub(crate) enum Balancer {
    /// Each target in turn.
    RoundRobin(round_robin::RoundRobin),
    /// Smooth weighted round robin.
    Weighted(weighted::SmoothWeighted),
    /// Fewest in-flight requests per weight.
    LeastConn(least_conn::LeastConn),
    /// Consistent hashing on a ring.
    Ketama(ketama::Ketama),
    /// Power of two choices by EWMA latency.
    P2c(p2c::P2c),
}

impl Balancer {
    /// A balancer of kind `balance` for `endpoints`.
    pub(crate) fn new(balance: &Balance, endpoints: &[Endpoint]) -> Self {
        match balance {
            Balance::RoundRobin => Balancer::RoundRobin(round_robin::RoundRobin::default()),
            Balance::Weighted => Balancer::Weighted(weighted::SmoothWeighted::new(endpoints.len())),
            Balance::LeastConn => Balancer::LeastConn(least_conn::LeastConn::default()),
            Balance::Ketama { .. } => Balancer::Ketama(ketama::Ketama::new(endpoints)),
            Balance::P2cEwma => Balancer::P2c(p2c::P2c),
        }
    }

    /// The index of the chosen endpoint among those `usable` accepts, `None` if it accepts none.
    pub(crate) fn pick<F>(
        &self,
        endpoints: &[Endpoint],
        key: &SelectKey,
        usable: F,
    ) -> Option<usize>
    where
        F: Fn(usize) -> bool,
    {
        match self {
            Balancer::RoundRobin(rr) => rr.pick(endpoints.len(), usable),
            Balancer::Weighted(w) => w.pick(endpoints, usable),
            Balancer::LeastConn(lc) => lc.pick(endpoints, usable),
            Balancer::Ketama(k) => k.pick(endpoints, key, usable),
            Balancer::P2c(p) => p.pick(endpoints, usable),
        }
    }
}

/// The name of an algorithm as written in config (for snapshots).
pub(crate) fn algorithm_name(balance: &Balance) -> &'static str {
    match balance {
        Balance::RoundRobin => "round_robin",
        Balance::Weighted => "weighted",
        Balance::LeastConn => "least_conn",
        Balance::Ketama { .. } => "ketama",
        Balance::P2cEwma => "p2c_ewma",
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Endpoints for balancer tests.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use crate::upstream::target::{Endpoint, TargetState};

    /// Endpoints `127.0.0.1:(10001 + i)` with the given weights.
    pub(crate) fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let addr = SocketAddr::from(([127, 0, 0, 1], 10001 + i as u16));
                Endpoint {
                    addr,
                    weight,
                    authority: Arc::from(addr.to_string()),
                    state: Arc::new(TargetState::default()),
                }
            })
            .collect()
    }

    /// How many times each index was picked over `rounds` picks.
    pub(crate) fn histogram(
        len: usize,
        rounds: usize,
        mut pick: impl FnMut() -> usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; len];
        for _ in 0..rounds {
            counts[pick()] += 1;
        }
        counts
    }
}
