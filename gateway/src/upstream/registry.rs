//! [`UpstreamRegistry`]: every configured pool by name, rebuilt on reload while keeping the
//! pools whose config did not change.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::runtime::Handle;

use crate::config::Upstream;

use super::pool::UpstreamPool;

/// Whether two upstream configs make the same pool: equal but for the circuit breaker, which
/// lives apart ([`super::breaker::BreakerRegistry`]) so changing it keeps health and counters.
/// A reused pool's [`UpstreamPool::config`] may so hold older breaker settings: breakers are
/// read from the plan, never from the pool.
fn same_pool(a: &Upstream, b: &Upstream) -> bool {
    let strip = |u: &Upstream| Upstream {
        circuit_breaker: None,
        ..u.clone()
    };
    strip(a) == strip(b)
}

/// The pools of one configuration.
#[derive(Debug, Default)]
pub struct UpstreamRegistry {
    /// Pools by upstream name.
    pools: BTreeMap<String, Arc<UpstreamPool>>,
}

impl UpstreamRegistry {
    /// The pools of `cfg`. A pool of `previous` whose config is equal is reused as it is
    /// (health, ejections, counters, latency and background tasks included); new and changed
    /// upstreams get fresh pools whose background tasks start on `rt`. Pools left out stop
    /// their tasks once the last reference to them (the previous registry, requests still in
    /// flight) is gone.
    pub fn build(
        cfg: &BTreeMap<String, Upstream>,
        previous: Option<&UpstreamRegistry>,
        rt: &Handle,
    ) -> UpstreamRegistry {
        let pools = cfg
            .iter()
            .map(|(name, upstream)| {
                let pool = previous
                    .and_then(|registry| registry.pools.get(name))
                    .filter(|pool| same_pool(pool.config(), upstream))
                    .map_or_else(|| Arc::new(UpstreamPool::new(name, upstream)), Arc::clone);
                // Starts the tasks of new pools; a no-op for reused ones.
                pool.start_background(rt);
                (name.clone(), pool)
            })
            .collect();
        UpstreamRegistry { pools }
    }

    /// The pool of upstream `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamPool>> {
        self.pools.get(name)
    }

    /// All pools, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<UpstreamPool>)> {
        self.pools.iter().map(|(name, pool)| (name.as_str(), pool))
    }
}
