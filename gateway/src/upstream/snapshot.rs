//! Point-in-time views of pools for the admin API and metrics.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::target::Endpoint;

/// The state of one pool.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolSnapshot {
    /// Upstream name.
    pub name: String,
    /// Balancing algorithm as written in config.
    pub algorithm: &'static str,
    /// Whether the first DNS resolution pass has finished (always true without DNS names).
    pub resolved: bool,
    /// No target is healthy by active checks, so selection ignores health (panic mode).
    pub panic: bool,
    /// The targets, in selection order.
    pub targets: Vec<TargetSnapshot>,
}

/// The state of one target address.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetSnapshot {
    /// Address connected to.
    pub address: SocketAddr,
    /// `host:port` as configured (the DNS name for resolved targets).
    pub authority: String,
    /// Relative weight.
    pub weight: u32,
    /// Healthy by active checks.
    pub healthy: bool,
    /// Milliseconds until the current outlier ejection ends; `None` when not ejected.
    pub ejected_for_ms: Option<u64>,
    /// Times this target has been ejected.
    pub ejections: u32,
    /// Requests using it now.
    pub in_flight: u64,
    /// Latency average in milliseconds; `None` before the first response.
    pub ewma_ms: Option<f64>,
    /// Consecutive failed requests (passive; reset by a success or an ejection).
    pub consecutive_failures: u32,
    /// Consecutive failed active checks.
    pub check_failures: u32,
}

impl TargetSnapshot {
    /// The view of `endpoint` at `now_ns`.
    pub(crate) fn of(endpoint: &Endpoint, now_ns: u64) -> Self {
        let state = &endpoint.state;
        let until = state.ejected_until_ns();
        TargetSnapshot {
            address: endpoint.addr,
            authority: endpoint.authority.to_string(),
            weight: endpoint.weight,
            healthy: state.is_healthy(),
            ejected_for_ms: (until > now_ns).then(|| (until - now_ns).div_ceil(1_000_000)),
            ejections: state.ejections.load(Ordering::Relaxed),
            in_flight: state.in_flight(),
            ewma_ms: state.latency.get_ns().map(|ns| ns as f64 / 1e6),
            consecutive_failures: state.consecutive_failures.load(Ordering::Relaxed),
            check_failures: state.check_failures.load(Ordering::Relaxed),
        }
    }
}
