//! Per-address state shared by selection, reporting, health checks and snapshots.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::ewma::Ewma;

/// Mutable state of one target address. All fields are atomics: the hot path never locks.
///
/// A state is keyed by its address and survives DNS re-resolution as long as the address
/// stays in the set, so health, ejections and latency are not forgotten.
#[derive(Debug)]
pub(crate) struct TargetState {
    /// Healthy by active checks. Targets start healthy so a fresh pool serves at once.
    healthy: AtomicBool,
    /// Consecutive successful active checks.
    pub(crate) check_successes: AtomicU32,
    /// Consecutive failed active checks.
    pub(crate) check_failures: AtomicU32,
    /// Consecutive failed requests (passive outlier detection).
    pub(crate) consecutive_failures: AtomicU32,
    /// [`super::clock::now_ns`] until which the target is ejected; 0 when never ejected.
    ejected_until_ns: AtomicU64,
    /// How many times the target has been ejected.
    pub(crate) ejections: AtomicU32,
    /// Requests currently using the target.
    in_flight: AtomicU64,
    /// Latency average of its responses.
    pub(crate) latency: Ewma,
}

impl Default for TargetState {
    fn default() -> Self {
        TargetState {
            healthy: AtomicBool::new(true),
            check_successes: AtomicU32::new(0),
            check_failures: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ns: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            in_flight: AtomicU64::new(0),
            latency: Ewma::default(),
        }
    }
}

impl TargetState {
    /// Healthy by active checks (always true when checks are off).
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Sets the active-check verdict.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    /// Ejected at `now_ns`. Ejections expire by themselves: no timer clears them.
    pub(crate) fn is_ejected(&self, now_ns: u64) -> bool {
        now_ns < self.ejected_until_ns.load(Ordering::Acquire)
    }

    /// The end of the current or last ejection (0: never ejected).
    pub(crate) fn ejected_until_ns(&self) -> u64 {
        self.ejected_until_ns.load(Ordering::Acquire)
    }

    /// Ejects the target until `until_ns`.
    pub(crate) fn eject_until(&self, until_ns: u64) {
        self.ejected_until_ns.store(until_ns, Ordering::Release);
    }

    /// Requests currently using the target.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One resolved target of a pool: an address, its weight, and its shared state.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// Relative weight, at least 1.
    pub(crate) weight: u32,
    /// `host:port` as configured (the DNS name for resolved targets); the default `Host`
    /// of HTTP health checks.
    pub(crate) authority: Arc<str>,
    /// Shared mutable state.
    pub(crate) state: Arc<TargetState>,
}

/// Counts one request in flight on a target for as long as it lives (see
/// [`super::UpstreamPool::begin`]).
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlightGuard {
    /// The target being used.
    state: Arc<TargetState>,
}

impl InFlightGuard {
    /// Counts one more request on `state` until the guard drops.
    pub(crate) fn new(state: Arc<TargetState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { state }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_healthy_and_not_ejected() {
        let state = TargetState::default();
        assert!(state.is_healthy());
        assert!(!state.is_ejected(1));
        assert_eq!(state.in_flight(), 0);
    }

    #[test]
    fn ejection_expires_with_time() {
        let state = TargetState::default();
        state.eject_until(100);
        assert!(state.is_ejected(99));
        assert!(!state.is_ejected(100));
    }

    #[test]
    fn guard_counts_while_alive() {
        let state = Arc::new(TargetState::default());
        let a = InFlightGuard::new(Arc::clone(&state));
        let b = InFlightGuard::new(Arc::clone(&state));
        assert_eq!(state.in_flight(), 2);
        drop(a);
        assert_eq!(state.in_flight(), 1);
        drop(b);
        assert_eq!(state.in_flight(), 0);
    }
}
