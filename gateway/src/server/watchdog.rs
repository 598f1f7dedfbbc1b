//! Noticing a stuck worker.
//!
//! A worker thread runs one event loop ([`super::workers`]). If something on it blocks — a
//! deadlock, a busy loop, a blocking call — every connection on that worker stops, yet the
//! admin listener (its own thread) keeps answering, so no probe would notice. Each worker
//! therefore runs a heartbeat task that stamps its [`WorkerHealth`] slot every
//! [`WorkerHealth::beat_interval`]: the stamp only moves while the loop turns. The watchdog (on
//! the control runtime) compares the stamps with `server.stall_timeout`: a worker past it is
//! logged as an error once, by name, counted in `meridian_worker_stalls_total`, flagged in
//! `meridian_worker_stalled`, and makes `/healthz` fail (liveness: the orchestrator restarts
//! the process) until it beats again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::telemetry::Metrics;

/// Shortest and longest time between two beats of one worker.
const BEAT_BOUNDS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(250));

/// The stamp of a worker that has ended: it reads as always just beaten.
const RETIRED: u64 = u64::MAX;

/// The heartbeats of the worker threads of one gateway.
pub struct WorkerHealth {
    /// What the stamps count from.
    base: Instant,
    /// A worker is stalled once its last beat is older than this.
    stall_after: Duration,
    slots: Box<[Slot]>,
}

/// One worker's heartbeat.
struct Slot {
    /// Milliseconds from `base` to the last beat; [`RETIRED`] once the worker has ended.
    last_beat: AtomicU64,
    /// The watchdog has reported the current stall (so it is reported once).
    reported: AtomicBool,
    /// The worker's runtime, once it runs (for the debug stall hook).
    handle: OnceLock<tokio::runtime::Handle>,
}

/// A worker past its stall timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// The worker's index (its thread is `meridian-w{index}`).
    pub worker: usize,
    /// Time since its last beat.
    pub silent_for: Duration,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "worker {} (thread {}) has not turned its event loop for {:.1}s",
            self.worker,
            thread_name(self.worker),
            self.silent_for.as_secs_f64()
        )
    }
}

/// The name of worker `index`'s thread (at most 15 bytes: Linux's limit for thread names).
pub fn thread_name(index: usize) -> String {
    format!("meridian-w{index}")
}

impl WorkerHealth {
    /// Heartbeat slots for `workers` workers, stalled after `stall_after` without a beat.
    /// Every slot starts as if it had just beaten, so a worker has that long to start.
    pub fn new(workers: usize, stall_after: Duration) -> Self {
        let slots = (0..workers)
            .map(|_| Slot {
                last_beat: AtomicU64::new(0),
                reported: AtomicBool::new(false),
                handle: OnceLock::new(),
            })
            .collect();
        WorkerHealth {
            base: Instant::now(),
            stall_after,
            slots,
        }
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// How often a worker beats: an eighth of the stall timeout, within [`BEAT_BOUNDS`].
    pub fn beat_interval(&self) -> Duration {
        (self.stall_after / 8).clamp(BEAT_BOUNDS.0, BEAT_BOUNDS.1)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that worker `index`'s loop turned just now.
    pub fn beat(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            slot.last_beat.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Records that worker `index` has ended (at shutdown): it no longer beats, and is not
    /// stalled for that.
    pub fn retire(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            slot.last_beat.store(RETIRED, Ordering::Relaxed);
        }
    }

    /// Runs on worker `index`'s runtime: beats until the runtime stops.
    pub async fn heartbeat(self: Arc<Self>, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            // Set once per slot: a worker index is started once.
            let _ = slot.handle.set(tokio::runtime::Handle::current());
        }
        let mut tick = tokio::time::interval(self.beat_interval());
        // A late tick is not made up for: one beat per turn is all that is needed.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.beat(index);
        }
    }

    /// Time since each worker's last beat.
    pub fn silences(&self) -> impl Iterator<Item = Duration> + '_ {
        let now = self.now_ms();
        self.slots.iter().map(move |slot| {
            // A retired stamp is after every `now`: no silence.
            Duration::from_millis(now.saturating_sub(slot.last_beat.load(Ordering::Relaxed)))
        })
    }

    /// The workers that are stalled now.
    pub fn stalls(&self) -> Vec<Stall> {
        self.silences()
            .enumerate()
            .filter(|(_, silent_for)| *silent_for > self.stall_after)
            .map(|(worker, silent_for)| Stall { worker, silent_for })
            .collect()
    }

    /// Worker `index`'s runtime, once it runs.
    pub fn handle(&self, index: usize) -> Option<&tokio::runtime::Handle> {
        self.slots.get(index).and_then(|slot| slot.handle.get())
    }

    /// One watchdog pass: reports stalls that began and ended since the last pass (log and
    /// metrics) and exports each worker's silence.
    pub fn check(&self, metrics: &Metrics) {
        for (worker, silent_for) in self.silences().enumerate() {
            let label = worker.to_string();
            let stalled = silent_for > self.stall_after;
            metrics.set_worker(&label, silent_for, stalled);
            let was = self.slots[worker].reported.swap(stalled, Ordering::Relaxed);
            if stalled && !was {
                metrics.worker_stall_began(&label);
                log::error!(
                    "{} (server.stall_timeout is {:?}): its connections are stuck; /healthz \
                     fails until it turns again",
                    Stall { worker, silent_for },
                    self.stall_after
                );
            } else if !stalled && was {
                log::warn!(
                    "worker {worker} ({}) turns its event loop again",
                    thread_name(worker)
                );
            }
        }
    }

    /// Runs [`WorkerHealth::check`] at the beat interval, forever (spawn it on the control
    /// runtime; it ends with that runtime).
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut tick = tokio::time::interval(self.beat_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check(&metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beat_interval_follows_the_timeout_within_bounds() {
        assert_eq!(
            WorkerHealth::new(1, Duration::from_secs(5)).beat_interval(),
            Duration::from_millis(250)
        );
        assert_eq!(
            WorkerHealth::new(1, Duration::from_millis(400)).beat_interval(),
            Duration::from_millis(50)
        );
        assert_eq!(
            WorkerHealth::new(1, Duration::from_millis(40)).beat_interval(),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn a_worker_that_stops_beating_is_stalled_until_it_beats_again() {
        let health = WorkerHealth::new(2, Duration::from_millis(30));
        assert!(
            health.stalls().is_empty(),
            "fresh slots count as just beaten"
        );
        std::thread::sleep(Duration::from_millis(60));
        health.beat(0);
        let stalls = health.stalls();
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert_eq!(stalls[0].worker, 1);
        assert!(stalls[0].silent_for >= Duration::from_millis(60));
        assert!(stalls[0]
            .to_string()
            .starts_with("worker 1 (thread meridian-w1) has not turned its event loop for"));
        health.beat(1);
        assert!(health.stalls().is_empty());
        std::thread::sleep(Duration::from_millis(60));
        health.retire(0);
        health.retire(1);
        assert!(health.stalls().is_empty(), "ended workers are not stalled");
    }

    #[test]
    fn check_reports_a_stall_once_and_its_end() {
        let metrics = Metrics::new().expect("metrics");
        let health = WorkerHealth::new(1, Duration::from_millis(20));
        health.check(&metrics);
        assert!(metrics
            .render()
            .contains("meridian_worker_stalled{worker=\"0\"} 0"));
        std::thread::sleep(Duration::from_millis(40));
        health.check(&metrics);
        health.check(&metrics);
        let text = metrics.render();
        assert!(
            text.contains("meridian_worker_stalled{worker=\"0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("meridian_worker_stalls_total{worker=\"0\"} 1"),
            "{text}"
        );
        health.beat(0);
        health.check(&metrics);
        let text = metrics.render();
        assert!(
            text.contains("meridian_worker_stalled{worker=\"0\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("meridian_worker_stalls_total{worker=\"0\"} 1"),
            "{text}"
        );
    }
}
