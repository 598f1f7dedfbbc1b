//! The breaker's state machine, behind one small mutex that is held only to update a few
//! counters (never across an await, never while the transition listener runs).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::BreakerConfig;
use super::window::{Totals, Window};

/// A monotonic clock: time since an arbitrary origin. Injected so tests control time.
pub trait Clock: Send + Sync {
    /// Time elapsed since the clock's origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// The states of a breaker (Resilience4j's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow and are measured.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A fixed number of trial calls decide between closed and open.
    HalfOpen,
    /// Every call is rejected until an operator changes the state.
    ForcedOpen,
    /// Every call flows and nothing is measured.
    Disabled,
}

impl State {
    /// The state's name: `closed`, `open`, `half_open`, `forced_open`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    /// The state as a number for a gauge: 0 closed, 1 open, 2 half-open, 3 forced open,
    /// 4 disabled.
    pub fn code(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

/// Why a call was not permitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that rejected it (open, half-open with no trial left, or forced open).
    pub state: State,
    /// How long until the breaker tries half-open, when it is open.
    pub retry_after: Option<Duration>,
}

/// The breaker's state and window, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Current state.
    pub state: State,
    /// Failure rate in percent over the window, once it holds the minimum number of calls.
    pub failure_rate: Option<f64>,
    /// Slow-call rate in percent, under the same condition.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window (closed) or reported trial calls (half-open).
    pub calls: u32,
    /// Of which failed.
    pub failed_calls: u32,
    /// Of which slow.
    pub slow_calls: u32,
    /// Milliseconds until half-open, when open.
    pub open_remaining_ms: Option<u64>,
    /// Consecutive re-openings from half-open (drives the backoff).
    pub reopenings: u32,
}

/// A function told about every transition, after the breaker's lock is released.
pub type Listener = Box<dyn Fn(Transition) + Send + Sync>;

/// Mutable state of a breaker.
struct Inner {
    state: State,
    /// Increases with every transition; a permit of an older epoch records nothing.
    epoch: u64,
    /// Outcomes while closed.
    window: Window,
    /// When the breaker opened, and for how long.
    opened_at: Duration,
    wait: Duration,
    reopenings: u32,
    /// Trial calls handed out and reported while half-open.
    trials_granted: u32,
    trials: Totals,
}

/// One circuit breaker. Share it in an `Arc`: permits hold a reference.
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    listener: Listener,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Permission for one call. Report its result with [`Permit::record`]; dropping it unreported
/// gives a half-open trial slot back.
#[derive(Debug)]
#[must_use = "a permit reports the call's result with record()"]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    epoch: u64,
    trial: bool,
    done: bool,
}

/// How a recorded call was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The call failed.
    pub failed: bool,
    /// The call was slow.
    pub slow: bool,
}

impl Permit {
    /// Reports the call: whether it failed and how long it took. Returns how it was
    /// classified (slow is judged against `slow_call_duration`).
    pub fn record(mut self, failed: bool, took: Duration) -> Recorded {
        self.done = true;
        let slow = took > self.breaker.config.slow_call_duration;
        self.breaker.on_result(self.epoch, self.trial, failed, slow);
        Recorded { failed, slow }
    }

    /// Whether this permit is a half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.trial {
            self.breaker.release_trial(self.epoch);
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker with `config`, timed by `clock`; `listener` hears every transition.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>, listener: Listener) -> Self {
        let window = Window::new(config.window);
        CircuitBreaker {
            config,
            clock,
            inner: Mutex::new(Inner {
                state: State::Closed,
                epoch: 0,
                window,
                opened_at: Duration::ZERO,
                wait: Duration::ZERO,
                reopenings: 0,
                trials_granted: 0,
                trials: Totals::default(),
            }),
            listener,
        }
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; recover the data if something ever did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self, t: Option<Transition>) {
        if let Some(t) = t {
            (self.listener)(t);
        }
    }

    /// The current state. An open breaker whose wait is over still reads as open until a
    /// call asks for a permit.
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Asks to make one call.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let mut inner = self.lock();
        // Read under the lock, so times seen by the window never go backwards.
        let now = self.clock.now();
        let mut transition = None;
        if inner.state == State::Open {
            let until = inner.opened_at + inner.wait;
            if now < until {
                return Err(Rejected {
                    state: State::Open,
                    retry_after: Some(until - now),
                });
            }
            transition = Some(self.move_to(&mut inner, State::HalfOpen, now));
        }
        let result = match inner.state {
            State::Closed | State::Disabled => Ok(false),
            State::HalfOpen if inner.trials_granted < self.config.permitted_calls_in_half_open => {
                inner.trials_granted += 1;
                Ok(true)
            }
            state => Err(Rejected {
                state,
                retry_after: None,
            }),
        };
        let epoch = inner.epoch;
        drop(inner);
        self.notify(transition);
        result.map(|trial| Permit {
            breaker: Arc::clone(self),
            epoch,
            trial,
            done: false,
        })
    }

    fn on_result(&self, epoch: u64, trial: bool, failed: bool, slow: bool) {
        let mut inner = self.lock();
        let now = self.clock.now();
        if inner.epoch != epoch {
            return;
        }
        let transition = match inner.state {
            State::Closed => {
                inner.window.record(now.as_secs(), failed, slow);
                let totals = inner.window.totals(now.as_secs());
                self.exceeded(totals, self.config.effective_minimum())
                    .then(|| self.move_to(&mut inner, State::Open, now))
            }
            State::HalfOpen if trial => {
                inner.trials.add(failed, slow);
                if inner.trials.calls >= self.config.permitted_calls_in_half_open {
                    let minimum = self.config.permitted_calls_in_half_open;
                    let next = if self.exceeded(inner.trials, minimum) {
                        State::Open
                    } else {
                        State::Closed
                    };
                    Some(self.move_to(&mut inner, next, now))
                } else {
                    None
                }
            }
            _ => None,
        };
        drop(inner);
        self.notify(transition);
    }

    fn release_trial(&self, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch == epoch && inner.state == State::HalfOpen {
            inner.trials_granted = inner.trials_granted.saturating_sub(1);
        }
    }

    /// Whether `totals` hold at least `minimum` calls and a rate is at or above its threshold.
    fn exceeded(&self, totals: Totals, minimum: u32) -> bool {
        totals.calls >= minimum
            && (totals.rate(totals.failed) >= f64::from(self.config.failure_rate_threshold)
                || totals.rate(totals.slow) >= f64::from(self.config.slow_call_rate_threshold))
    }

    /// Moves to `to`, resetting what the new state starts from.
    fn move_to(&self, inner: &mut Inner, to: State, now: Duration) -> Transition {
        let from = inner.state;
        match to {
            State::Open => {
                inner.reopenings = if from == State::HalfOpen {
                    inner.reopenings.saturating_add(1)
                } else {
                    0
                };
                inner.opened_at = now;
                inner.wait = self.config.wait_after(inner.reopenings);
            }
            State::Closed => {
                inner.window = Window::new(self.config.window);
                inner.reopenings = 0;
            }
            State::HalfOpen | State::ForcedOpen | State::Disabled => {}
        }
        inner.trials_granted = 0;
        inner.trials = Totals::default();
        inner.state = to;
        inner.epoch += 1;
        Transition { from, to }
    }

    /// Sets the state by hand (admin): `Closed` (a fresh window), `ForcedOpen`, `Disabled`, or
    /// `Open` (a normal opening, ends after the wait). Returns the transition, if any; also
    /// tells the listener.
    pub fn force(&self, to: State) -> Option<Transition> {
        let mut inner = self.lock();
        let now = self.clock.now();
        if inner.state == to && to != State::Closed {
            return None;
        }
        let t = self.move_to(&mut inner, to, now);
        drop(inner);
        self.notify(Some(t));
        Some(t)
    }

    /// The state and window, for display.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let now = self.clock.now();
        let totals = match inner.state {
            State::HalfOpen => inner.trials,
            _ => inner.window.totals(now.as_secs()),
        };
        let minimum = match inner.state {
            State::HalfOpen => self.config.permitted_calls_in_half_open,
            _ => self.config.effective_minimum(),
        };
        let rates = totals.calls >= minimum;
        Snapshot {
            state: inner.state,
            failure_rate: rates.then(|| totals.rate(totals.failed)),
            slow_call_rate: rates.then(|| totals.rate(totals.slow)),
            calls: totals.calls,
            failed_calls: totals.failed,
            slow_calls: totals.slow,
            open_remaining_ms: (inner.state == State::Open).then(|| {
                let left = (inner.opened_at + inner.wait).saturating_sub(now);
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            }),
            reopenings: inner.reopenings,
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
