//! The resolved target set of a pool and the balancer built for it; swapped whole (via
//! `ArcSwap`) when DNS changes the addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Balance;

use super::balance::Balancer;
use super::discovery::EndpointSpec;
use super::target::{Endpoint, TargetState};

/// Endpoints and their balancer.
#[derive(Debug)]
pub(crate) struct TargetSet {
    /// Resolved targets, unique by address.
    pub(crate) endpoints: Vec<Endpoint>,
    /// Balancer over exactly these endpoints.
    pub(crate) balancer: Balancer,
}

impl TargetSet {
    /// A set of `specs`, reusing the state of every address already in `previous` so health,
    /// ejections, counters and latency carry over.
    pub(crate) fn build(
        balance: &Balance,
        specs: &[EndpointSpec],
        previous: Option<&TargetSet>,
    ) -> Self {
        let mut known: HashMap<SocketAddr, &Arc<TargetState>> = previous
            .map(|set| set.endpoints.iter().map(|e| (e.addr, &e.state)).collect())
            .unwrap_or_default();
        let endpoints: Vec<Endpoint> = specs
            .iter()
            .map(|spec| Endpoint {
                addr: spec.addr,
                weight: spec.weight,
                authority: Arc::clone(&spec.authority),
                state: known.remove(&spec.addr).map(Arc::clone).unwrap_or_default(),
            })
            .collect();
        let balancer = Balancer::new(balance, &endpoints);
        TargetSet {
            endpoints,
            balancer,
        }
    }

    /// Whether this set has exactly these addresses, weights and authorities, in order.
    pub(crate) fn matches(&self, specs: &[EndpointSpec]) -> bool {
        self.endpoints.len() == specs.len()
            && self.endpoints.iter().zip(specs).all(|(e, s)| {
                e.addr == s.addr && e.weight == s.weight && e.authority == s.authority
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str, weight: u32) -> EndpointSpec {
        EndpointSpec {
            addr: addr.parse().unwrap(),
            weight,
            authority: Arc::from(addr),
        }
    }

    #[test]
    fn rebuild_keeps_state_of_remaining_addresses() {
        let first = TargetSet::build(
            &Balance::RoundRobin,
            &[spec("127.0.0.1:1", 1), spec("127.0.0.1:2", 1)],
            None,
        );
        first.endpoints[1].state.set_healthy(false);
        let specs = [spec("127.0.0.1:2", 1), spec("127.0.0.1:3", 1)];
        assert!(!first.matches(&specs));
        let second = TargetSet::build(&Balance::RoundRobin, &specs, Some(&first));
        assert!(second.matches(&specs));
        assert!(Arc::ptr_eq(
            &first.endpoints[1].state,
            &second.endpoints[0].state
        ));
        assert!(!second.endpoints[0].state.is_healthy());
        assert!(second.endpoints[1].state.is_healthy());
    }
}
