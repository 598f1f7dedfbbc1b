//! [`UpstreamPool`]: one named upstream's targets, their state, and selection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Upstream;

use super::background;
use super::balance::{algorithm_name, SelectKey};
use super::clock;
use super::discovery::{self, EndpointSpec};
use super::outcome::Outcome;
use super::outlier::OutlierDetector;
use super::retry::RetryBudget;
use super::set::TargetSet;
use super::snapshot::{PoolSnapshot, TargetSnapshot};
use super::target::{Endpoint, InFlightGuard, TargetState};

/// Selection ignores active health and ejections (panic mode) when at most this percentage of
/// targets is live (healthy and not ejected). 0: only when no target is live.
pub const PANIC_HEALTHY_PERCENT: usize = 0;

/// Latency recorded for an attempt that got no response (connect error, timeout, reset) when
/// it failed faster than this, so a target that fails fast does not look fast to `p2c_ewma`.
pub const FAILURE_LATENCY_PENALTY: Duration = Duration::from_secs(1);

/// One named upstream: its resolved targets with their health, ejection, in-flight and
/// latency state, its balancer and its retry budget. Shared as `Arc<UpstreamPool>`.
#[derive(Debug)]
pub struct UpstreamPool {
    /// Upstream name.
    name: String,
    /// The config it was built from (compared on reload to decide reuse).
    config: Upstream,
    /// Current targets and balancer, replaced whole when DNS changes them.
    set: ArcSwap<TargetSet>,
    /// Passive outlier ejection.
    outlier: OutlierDetector,
    /// Concurrent retry limit.
    retry_budget: RetryBudget,
    /// The first DNS pass has finished (true from the start without names).
    resolved: AtomicBool,
    /// Background tasks were started.
    started: AtomicBool,
    /// Never sent on: dropping it (with the pool) tells background tasks to stop at once.
    stop: watch::Sender<()>,
}

/// A selected target. Keeps the target's state alive, so [`UpstreamPool::begin`] and
/// [`UpstreamPool::report`] account to the right target even if DNS changed the set since.
#[derive(Debug, Clone)]
pub struct Pick {
    /// Position of the target in the pool's set at selection time (as in
    /// [`PoolSnapshot::targets`]).
    pub index: usize,
    /// Where to connect. Push it to the request's `tried` list before a retry.
    pub addr: SocketAddr,
    /// The target's `host:port` as configured (the DNS name for resolved targets).
    pub authority: Arc<str>,
    /// The target's state.
    target: Arc<TargetState>,
}

impl Pick {
    /// The pick of `endpoint`, at `index` in its set.
    fn of(index: usize, endpoint: &Endpoint) -> Self {
        Pick {
            index,
            addr: endpoint.addr,
            authority: Arc::clone(&endpoint.authority),
            target: Arc::clone(&endpoint.state),
        }
    }
}

impl UpstreamPool {
    /// A pool for upstream `name` as configured. IP-literal targets are usable at once; DNS
    /// names are resolved by the task [`UpstreamPool::start_background`] starts (see
    /// [`UpstreamPool::is_resolved`]). A name resolving to several addresses becomes several
    /// targets, each with the name's configured weight (as in nginx); an address listed more
    /// than once becomes one target with the summed weight; weight 0 counts as 1; at most
    /// [`super::MAX_TARGETS`] targets are kept.
    pub fn new(name: &str, config: &Upstream) -> Self {
        let specs = discovery::expand(name, &config.targets, &[]);
        UpstreamPool {
            name: name.to_owned(),
            config: config.clone(),
            set: ArcSwap::from_pointee(TargetSet::build(&config.balance, &specs, None)),
            outlier: OutlierDetector::new(&config.outlier),
            retry_budget: RetryBudget::new(&config.retries),
            resolved: AtomicBool::new(!discovery::has_names(&config.targets)),
            started: AtomicBool::new(false),
            stop: watch::Sender::new(()),
        }
    }

    /// The upstream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config this pool was built from.
    pub fn config(&self) -> &Upstream {
        &self.config
    }

    /// The retry budget of this upstream.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.retry_budget
    }

    /// Whether the first DNS resolution pass has finished (always true without DNS names).
    /// Until then, name targets are not selectable.
    pub fn is_resolved(&self) -> bool {
        self.resolved.load(Ordering::Acquire)
    }

    /// Chooses a target for an attempt of a request. `tried` holds the addresses this request
    /// already tried. `None`: no usable target.
    ///
    /// Selection rules, in order:
    /// 1. A target is *live* when it is healthy by active checks and not ejected by outlier
    ///    detection. Targets start healthy, so a new pool serves before its first check.
    /// 2. The balancer picks among live targets not yet tried by this request.
    /// 3. If every live target was already tried, a tried one is reused (a single-target pool
    ///    retries on its only target); the balancer picks among all live targets.
    /// 4. Panic mode (as in Envoy, with the threshold fixed at [`PANIC_HEALTHY_PERCENT`]): when
    ///    no target is live, health and ejections are ignored and every target is eligible:
    ///    serving through a doubtful target beats answering 503 to everyone (a one-target pool
    ///    whose target was ejected keeps serving). The tried rule still applies.
    /// 5. Otherwise there is no target (an empty pool, or a name not yet resolved): `None`,
    ///    and the proxy answers 503.
    pub fn select(&self, key: &SelectKey, tried: &[SocketAddr]) -> Option<Pick> {
        let set = self.set.load();
        let endpoints = &set.endpoints;
        let now = clock::now_ns();
        let panic = in_panic(endpoints, now);
        let live = |i: usize| panic || is_live(&endpoints[i], now);
        let index = set
            .balancer
            .pick(endpoints, key, |i| {
                live(i) && !tried.contains(&endpoints[i].addr)
            })
            .or_else(|| {
                if tried.is_empty() {
                    None
                } else {
                    set.balancer.pick(endpoints, key, live)
                }
            })?;
        Some(Pick::of(index, &endpoints[index]))
    }

    /// The target at `addr`, picked as [`UpstreamPool::select`] would (for a caller that
    /// chose the address itself, like the shield ring); `None` when no target has it.
    pub fn pick_addr(&self, addr: SocketAddr) -> Option<Pick> {
        let set = self.set.load();
        let index = set.endpoints.iter().position(|e| e.addr == addr)?;
        Some(Pick::of(index, &set.endpoints[index]))
    }

    /// `addrs` (chosen by the caller, like the shield ring's order for a key) with the targets
    /// that are not live moved to the end, each group in its order. Live is
    /// [`UpstreamPool::select`]'s rule: healthy by active checks and not ejected, or every
    /// target in panic mode. An address that is not a target counts as live: nothing is known
    /// against it.
    pub fn live_first(&self, addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let set = self.set.load();
        let now = clock::now_ns();
        if in_panic(&set.endpoints, now) {
            return addrs;
        }
        let (mut live, down): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|&addr| {
            set.endpoints
                .iter()
                .find(|e| e.addr == addr)
                .is_none_or(|e| is_live(e, now))
        });
        live.extend(down);
        live
    }

    /// Counts a request in flight on the picked target until the guard drops (used by
    /// `least_conn` and `p2c_ewma`). Call right after [`UpstreamPool::select`].
    pub fn begin(&self, pick: &Pick) -> InFlightGuard {
        InFlightGuard::new(Arc::clone(&pick.target))
    }

    /// Reports how an attempt on the picked target ended and how long it took (to response
    /// headers, or to the failure). Feeds the latency average and outlier ejection.
    pub fn report(&self, pick: &Pick, outcome: Outcome, latency: Duration) {
        let now = clock::now_ns();
        let sample = match outcome {
            Outcome::Status(_) => latency,
            Outcome::ConnectError | Outcome::Timeout | Outcome::Reset => {
                latency.max(FAILURE_LATENCY_PENALTY)
            }
        };
        pick.target.latency.observe(sample, now);
        let set = self.set.load();
        if self
            .outlier
            .record(&pick.target, outcome.is_failure(), &set.endpoints, now)
        {
            log::warn!(
                "upstream {}: target {} ejected (ejection #{})",
                self.name,
                pick.addr,
                pick.target.ejections.load(Ordering::Relaxed)
            );
        }
    }

    /// The current state of the pool and each target.
    pub fn snapshot(&self) -> PoolSnapshot {
        let set = self.set.load();
        let now = clock::now_ns();
        PoolSnapshot {
            name: self.name.clone(),
            algorithm: algorithm_name(&self.config.balance),
            resolved: self.is_resolved(),
            panic: in_panic(&set.endpoints, now),
            targets: set
                .endpoints
                .iter()
                .map(|e| TargetSnapshot::of(e, now))
                .collect(),
        }
    }

    /// Starts the pool's background tasks on `rt`: DNS resolution (at once, then every
    /// `dns_refresh`) when a target is a name, and active health checks when configured.
    /// The tasks hold only a weak reference and stop as soon as the pool is dropped. Calling
    /// it again does nothing.
    pub fn start_background(self: &Arc<Self>, rt: &Handle) {
        if !self.started.swap(true, Ordering::AcqRel) {
            self.spawn_background(rt);
        }
    }

    /// Spawns the background tasks and returns their handles.
    pub(crate) fn spawn_background(self: &Arc<Self>, rt: &Handle) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::with_capacity(2);
        if discovery::has_names(&self.config.targets) {
            tasks.push(rt.spawn(background::resolve_loop(
                Arc::downgrade(self),
                self.name.clone(),
                self.config.targets.clone(),
                self.config.dns_refresh,
                self.stop.subscribe(),
            )));
        }
        if let Some(check) = &self.config.health {
            tasks.push(rt.spawn(background::check_loop(
                Arc::downgrade(self),
                self.name.clone(),
                check.clone(),
                self.stop.subscribe(),
            )));
        }
        tasks
    }

    /// The current endpoints.
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        self.set.load().endpoints.clone()
    }

    /// Replaces the target set with `specs` (keeping the state of addresses that stay) unless
    /// it is unchanged, and marks the pool resolved.
    pub(crate) fn install(&self, specs: &[EndpointSpec]) {
        let current = self.set.load();
        if !current.matches(specs) {
            let next = TargetSet::build(&self.config.balance, specs, Some(&current));
            log::info!(
                "upstream {}: targets now {:?}",
                self.name,
                next.endpoints.iter().map(|e| e.addr).collect::<Vec<_>>()
            );
            self.set.store(Arc::new(next));
        }
        self.resolved.store(true, Ordering::Release);
    }
}

/// Healthy by active checks and not ejected at `now`.
fn is_live(endpoint: &Endpoint, now: u64) -> bool {
    endpoint.state.is_healthy() && !endpoint.state.is_ejected(now)
}

/// Whether few enough targets are live for panic mode (never for an empty set).
fn in_panic(endpoints: &[Endpoint], now: u64) -> bool {
    let live = endpoints.iter().filter(|e| is_live(e, now)).count();
    !endpoints.is_empty() && live * 100 <= endpoints.len() * PANIC_HEALTHY_PERCENT
}
