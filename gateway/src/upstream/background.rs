//! The background tasks of a pool: DNS re-resolution and active health checks.
//!
//! Both hold only a `Weak` to their pool and a stop receiver whose sender lives in the pool:
//! when the pool is dropped, they return at their next await point rather than at their next
//! tick.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::config::{HealthCheck, Target};

use super::discovery;
use super::health;
use super::pool::UpstreamPool;
use super::target::Endpoint;

/// Shortest DNS refresh period honoured.
pub const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);

/// Shortest health-check interval honoured.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Resolves the pool's names at once and then every `refresh`, installing the result.
pub(crate) async fn resolve_loop(
    pool: Weak<UpstreamPool>,
    name: String,
    targets: Vec<Target>,
    refresh: Duration,
    mut stop: watch::Receiver<()>,
) {
    let refresh = refresh.max(MIN_DNS_REFRESH);
    let mut last_good: Vec<Option<Vec<SocketAddr>>> = vec![None; targets.len()];
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = discovery::refresh(&name, &targets, &mut last_good) => {}
        }
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.install(&discovery::expand(&name, &targets, &last_good));
        drop(pool);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(refresh) => {}
        }
    }
}

/// Checks every target of the pool once per `interval`, the targets' probes spread evenly
/// over the interval.
pub(crate) async fn check_loop(
    pool: Weak<UpstreamPool>,
    name: String,
    check: HealthCheck,
    mut stop: watch::Receiver<()>,
) {
    let interval = check.interval.max(MIN_CHECK_INTERVAL);
    let check = Arc::new(check);
    let name: Arc<str> = Arc::from(name);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let endpoints = pool.endpoints();
        drop(pool);
        tokio::select! {
            _ = stop.changed() => return,
            () = check_round(&name, endpoints, &check, interval) => {}
        }
    }
}

/// Probes every endpoint once, the i-th of n after `interval × i / n`, and applies the
/// results. Dropping the future aborts the probes.
async fn check_round(
    name: &Arc<str>,
    endpoints: Vec<Endpoint>,
    check: &Arc<HealthCheck>,
    interval: Duration,
) {
    let count = endpoints.len();
    let mut probes = JoinSet::new();
    for (i, endpoint) in endpoints.into_iter().enumerate() {
        let delay = interval.mul_f64(i as f64 / count as f64);
        let check = Arc::clone(check);
        let name = Arc::clone(name);
        probes.spawn(async move {
            tokio::time::sleep(delay).await;
            let result = health::probe(
                endpoint.addr,
                &check.kind,
                &endpoint.authority,
                check.timeout,
            )
            .await;
            match (
                health::record_check(&endpoint.state, result.is_ok(), &check),
                result,
            ) {
                (Some(true), _) => log::info!("upstream {name}: target {} healthy", endpoint.addr),
                (Some(false), Err(err)) => {
                    log::warn!("upstream {name}: target {} unhealthy: {err}", endpoint.addr);
                }
                _ => {}
            }
        });
    }
    while probes.join_next().await.is_some() {}
}
