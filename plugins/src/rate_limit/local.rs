//! `mode: local`: GCRA per key in this process, with governor, in a key table of bounded size.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, QuantaInstant, Reference};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::units::Rate;
use super::Verdict;

/// How often idle keys are dropped from the table, in ns.
const SWEEP_EVERY: u64 = 10_000_000_000;
/// How often at most they are dropped while the table is full, in ns.
const SWEEP_WHEN_FULL: u64 = 1_000_000_000;

/// A keyed GCRA limiter whose key table holds at most `max_keys` keys.
pub struct LocalLimiter {
    limiter: RateLimiter<String, BoundedStore, DefaultClock, StateInformationMiddleware>,
    interval: Duration,
    burst: u32,
    max_keys: usize,
    start: QuantaInstant,
    /// When the last sweep ran, in ns since `start`.
    last_sweep: AtomicU64,
}

impl LocalLimiter {
    /// A limiter allowing `rate` with bursts of `burst` (at least 1) per key.
    pub fn new(rate: Rate, burst: NonZeroU32, max_keys: usize) -> LocalLimiter {
        let interval = rate.emission_interval();
        // `emission_interval` is at least 1 ns, so a quota always exists; the fallback is only
        // there to avoid a panic path.
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = DefaultClock::default();
        let store = BoundedStore::new(max_keys);
        let limiter =
            RateLimiter::<_, _, _, NoOpMiddleware<QuantaInstant>>::new(quota, store, clock)
                .with_middleware::<StateInformationMiddleware>();
        // Read after the limiter was made: our elapsed times are never ahead of governor's.
        let start = limiter.clock().now();
        LocalLimiter {
            limiter,
            interval,
            burst: burst.get(),
            max_keys,
            start,
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Counts one request under `key`.
    pub fn check(&self, key: &String) -> Verdict {
        self.sweep_if_due();
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Verdict {
                    allowed: true,
                    remaining: u64::from(remaining),
                    retry_after: Duration::ZERO,
                    reset: self.interval * self.burst.saturating_sub(remaining),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Verdict {
                    allowed: false,
                    remaining: 0,
                    retry_after: wait,
                    reset: wait + self.interval * (self.burst - 1),
                }
            }
        }
    }

    /// Keys currently held.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Drops keys whose state equals a fresh one, every 10 s (every second while the table is
    /// full). Runs inline on the request that finds it due; the others go on.
    fn sweep_if_due(&self) {
        let now = u64::from(self.limiter.clock().now().duration_since(self.start));
        let last = self.last_sweep.load(Ordering::Relaxed);
        let every = if self.limiter.len() >= self.max_keys {
            SWEEP_WHEN_FULL
        } else {
            SWEEP_EVERY
        };
        if now.saturating_sub(last) >= every
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

/// Governor's per-key states in a table of at most `max` keys (give or take the requests that
/// race to add the last ones). Requests with a new key while it is full share one overflow
/// state: a flood of new keys cannot grow memory, and is itself limited.
struct BoundedStore {
    map: DashMap<String, InMemoryState>,
    len: AtomicUsize,
    max: usize,
    overflow: InMemoryState,
}

impl BoundedStore {
    fn new(max: usize) -> BoundedStore {
        BoundedStore {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            max,
            overflow: InMemoryState::default(),
        }
    }
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.len.load(Ordering::Relaxed) >= self.max {
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let state = self.map.entry(key.clone()).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            InMemoryState::default()
        });
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<String> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain(|_, state| {
            // Reads the theoretical arrival time without changing it.
            let tat = state
                .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
                .err()
                .flatten();
            let keep = tat.is_some_and(|tat| tat > drop_below);
            if !keep {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            keep
        });
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: &str, burst: u32, max_keys: usize) -> LocalLimiter {
        let rate = super::super::units::parse_rate(rate).unwrap();
        LocalLimiter::new(rate, NonZeroU32::new(burst).unwrap(), max_keys)
    }

    #[test]
    fn allows_the_burst_then_refuses_with_the_wait() {
        let l = limiter("10/s", 3, 100);
        let key = "a".to_string();
        let remaining: Vec<u64> = (0..3).map(|_| l.check(&key)).map(|v| v.remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let v = l.check(&key);
        assert!(!v.allowed);
        assert!(
            v.retry_after > Duration::from_millis(50),
            "{:?}",
            v.retry_after
        );
        assert!(
            v.retry_after <= Duration::from_millis(100),
            "{:?}",
            v.retry_after
        );
        assert!(v.reset > Duration::from_millis(250) && v.reset <= Duration::from_millis(300));
        assert!(
            l.check(&"b".to_string()).allowed,
            "keys have separate budgets"
        );
    }

    #[test]
    fn the_key_table_is_bounded_and_new_keys_share_the_overflow() {
        let l = limiter("1/m", 1, 2);
        assert!(l.check(&"a".to_string()).allowed);
        assert!(l.check(&"b".to_string()).allowed);
        assert!(l.check(&"c".to_string()).allowed, "first overflow request");
        assert!(
            !l.check(&"d".to_string()).allowed,
            "overflow shares one budget"
        );
        assert_eq!(l.keys(), 2);
    }

    #[test]
    fn sweeping_drops_idle_keys_only() {
        let l = limiter("1000/s", 1, 10);
        for k in ["a", "b", "c"] {
            assert!(l.check(&k.to_string()).allowed);
        }
        assert_eq!(l.keys(), 3);
        std::thread::sleep(Duration::from_millis(5));
        let busy = limiter("1/h", 1, 10);
        assert!(busy.check(&"x".to_string()).allowed);
        l.limiter.retain_recent();
        busy.limiter.retain_recent();
        assert_eq!(l.keys(), 0, "fresh-equivalent keys are dropped");
        assert_eq!(busy.keys(), 1, "a key still inside its window stays");
    }
}
