//! A circuit breaker with Resilience4j semantics, free of any I/O: the gateway asks it for a
//! permit before each call, reports how the call went, and reads its state.
//!
//! # States
//! - `CLOSED`: calls flow; outcomes fill a sliding window. Once the window holds at least
//!   `minimum_calls` calls, a failure rate ≥ `failure_rate_threshold` or a slow-call rate ≥
//!   `slow_call_rate_threshold` opens the breaker.
//! - `OPEN`: calls are rejected for `wait_in_open` (multiplied by `backoff_multiplier` for each
//!   consecutive re-opening, capped at `max_wait`). The first call asked for after that time
//!   moves the breaker to `HALF_OPEN`.
//! - `HALF_OPEN`: exactly `permitted_calls_in_half_open` calls are let through; the rest are
//!   rejected. Once all of them are reported, the breaker closes when both rates are below their
//!   thresholds, and opens again (with backoff) otherwise.
//! - `FORCED_OPEN`: every call is rejected until an operator changes the state.
//! - `DISABLED`: every call is let through and nothing is recorded.
//!
//! A result reported for a permit granted before the last transition is ignored, so a slow
//! call that started while `CLOSED` cannot decide a `HALF_OPEN` trial. A permit dropped without
//! a result (the client went away) gives its half-open slot back.

mod config;
mod failure;
mod machine;
mod window;

pub use config::{BreakerConfig, WindowKind};
pub use failure::{CallResult, FailurePolicy};
pub use machine::{
    CircuitBreaker, Clock, Listener, Permit, Recorded, Rejected, Snapshot, State, SystemClock,
    Transition,
};
