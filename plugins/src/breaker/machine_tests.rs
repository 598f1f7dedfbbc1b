use std::sync::atomic::{AtomicU64, Ordering};

use super::super::config::WindowKind;
use super::*;

/// A clock moved by hand.
#[derive(Default)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(
            u64::try_from(d.as_nanos()).expect("small"),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

const FAST: Duration = Duration::from_millis(1);
const SLOW: Duration = Duration::from_secs(10);

struct Setup {
    breaker: Arc<CircuitBreaker>,
    clock: Arc<ManualClock>,
    transitions: Arc<Mutex<Vec<(State, State)>>>,
}

fn setup(config: BreakerConfig) -> Setup {
    let clock = Arc::new(ManualClock::default());
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let breaker = Arc::new(CircuitBreaker::new(
        config,
        clock.clone(),
        Box::new(move |t| seen.lock().expect("lock").push((t.from, t.to))),
    ));
    Setup {
        breaker,
        clock,
        transitions,
    }
}

fn small() -> BreakerConfig {
    BreakerConfig {
        window: WindowKind::Count(10),
        minimum_calls: 4,
        wait_in_open: Duration::from_secs(1),
        permitted_calls_in_half_open: 2,
        ..BreakerConfig::default()
    }
}

impl Setup {
    fn call(&self, failed: bool, took: Duration) {
        self.breaker
            .try_acquire()
            .expect("permitted")
            .record(failed, took);
    }

    fn state(&self) -> State {
        self.breaker.state()
    }

    fn transitions(&self) -> Vec<(State, State)> {
        self.transitions.lock().expect("lock").clone()
    }

    /// Drives a fresh `small()` breaker open.
    fn open(&self) {
        for _ in 0..4 {
            self.call(true, FAST);
        }
        assert_eq!(self.state(), State::Open);
    }
}

#[test]
fn closed_until_minimum_calls_then_opens_on_failure_rate() {
    let s = setup(small());
    s.call(true, FAST);
    s.call(true, FAST);
    s.call(true, FAST);
    assert_eq!(s.state(), State::Closed, "3 calls are below the minimum");
    s.call(false, FAST);
    assert_eq!(s.state(), State::Open, "2 of 4 failed: 50% ≥ 50%");
    assert_eq!(s.transitions(), vec![(State::Closed, State::Open)]);
    let r = s.breaker.try_acquire().expect_err("open rejects");
    assert_eq!(r.state, State::Open);
    assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
}

#[test]
fn stays_closed_below_the_failure_rate() {
    let s = setup(small());
    for i in 0..20 {
        s.call(i % 3 == 2, FAST);
    }
    assert_eq!(s.state(), State::Closed);
    let snap = s.breaker.snapshot();
    assert_eq!(snap.calls, 10);
    assert!(snap.failure_rate.is_some_and(|r| r < 50.0), "{snap:?}");
}

#[test]
fn count_window_forgets_old_failures() {
    let s = setup(BreakerConfig {
        minimum_calls: 10,
        ..small()
    });
    for _ in 0..4 {
        s.call(true, FAST);
    }
    for _ in 0..10 {
        s.call(false, FAST);
    }
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.breaker.snapshot().failed_calls, 0);
}

#[test]
fn time_window_counts_only_recent_seconds() {
    let s = setup(BreakerConfig {
        window: WindowKind::Time(2),
        ..small()
    });
    s.call(true, FAST);
    s.call(true, FAST);
    s.call(true, FAST);
    s.clock.advance(Duration::from_secs(3));
    s.call(true, FAST);
    assert_eq!(s.state(), State::Closed, "old failures left the window");
    assert_eq!(s.breaker.snapshot().calls, 1);
    s.call(false, FAST);
    s.call(true, FAST);
    s.clock.advance(Duration::from_secs(1));
    s.call(false, FAST);
    assert_eq!(s.state(), State::Open, "2 of 4 failed within 2s");
}

#[test]
fn slow_calls_open_the_breaker() {
    let s = setup(BreakerConfig {
        slow_call_rate_threshold: 75,
        slow_call_duration: Duration::from_millis(100),
        ..small()
    });
    s.call(false, SLOW);
    s.call(false, SLOW);
    s.call(false, FAST);
    s.call(false, SLOW);
    assert_eq!(s.state(), State::Open, "3 of 4 slow: 75%");
    let s = setup(BreakerConfig {
        slow_call_duration: Duration::from_millis(100),
        ..small()
    });
    for _ in 0..3 {
        s.call(false, SLOW);
    }
    s.call(false, FAST);
    assert_eq!(s.state(), State::Closed, "default slow threshold is 100%");
}

#[test]
fn record_reports_the_classification() {
    let s = setup(small());
    let p = s.breaker.try_acquire().expect("permit");
    assert!(!p.is_trial());
    let r = p.record(true, SLOW);
    assert_eq!(
        r,
        Recorded {
            failed: true,
            slow: true
        }
    );
}

#[test]
fn open_moves_to_half_open_after_the_wait() {
    let s = setup(small());
    s.open();
    s.clock.advance(Duration::from_millis(999));
    assert!(s.breaker.try_acquire().is_err());
    s.clock.advance(Duration::from_millis(1));
    let first = s.breaker.try_acquire().expect("trial 1");
    assert!(first.is_trial());
    assert_eq!(s.state(), State::HalfOpen);
    let second = s.breaker.try_acquire().expect("trial 2");
    let third = s.breaker.try_acquire().expect_err("only 2 trials");
    assert_eq!(third.state, State::HalfOpen);
    first.record(false, FAST);
    assert_eq!(s.state(), State::HalfOpen, "undecided after 1 of 2");
    second.record(false, FAST);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(
        s.transitions(),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
    assert_eq!(
        s.breaker.snapshot().calls,
        0,
        "closed starts a fresh window"
    );
}

#[test]
fn half_open_failure_reopens_with_backoff() {
    let s = setup(BreakerConfig {
        backoff_multiplier: 2.0,
        max_wait: Duration::from_secs(3),
        ..small()
    });
    s.open();
    for expected in [2, 3, 3] {
        s.clock.advance(s.breaker.config().max_wait);
        s.call(false, FAST);
        s.call(true, FAST);
        assert_eq!(s.state(), State::Open, "1 of 2 trials failed: 50%");
        let left = s.breaker.snapshot().open_remaining_ms;
        assert_eq!(left, Some(expected * 1000));
    }
    assert_eq!(s.breaker.snapshot().reopenings, 3);
    s.clock.advance(Duration::from_secs(3));
    s.call(false, FAST);
    s.call(false, FAST);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.breaker.snapshot().reopenings, 0);
    s.open();
    assert_eq!(
        s.breaker.snapshot().open_remaining_ms,
        Some(1000),
        "backoff restarts after closing"
    );
}

#[test]
fn dropped_trial_gives_its_slot_back() {
    let s = setup(small());
    s.open();
    s.clock.advance(Duration::from_secs(1));
    let a = s.breaker.try_acquire().expect("trial");
    let b = s.breaker.try_acquire().expect("trial");
    assert!(s.breaker.try_acquire().is_err());
    drop(a);
    let c = s.breaker.try_acquire().expect("slot given back");
    b.record(false, FAST);
    c.record(false, FAST);
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn results_from_an_older_state_are_ignored() {
    let s = setup(small());
    let late = s.breaker.try_acquire().expect("closed permit");
    s.open();
    s.clock.advance(Duration::from_secs(1));
    let trial = s.breaker.try_acquire().expect("trial");
    late.record(true, FAST);
    assert_eq!(
        s.state(),
        State::HalfOpen,
        "a pre-open result decides nothing"
    );
    trial.record(false, FAST);
    assert_eq!(s.state(), State::HalfOpen);
    assert_eq!(s.breaker.snapshot().calls, 1);
}

#[test]
fn forced_open_rejects_and_disabled_permits_everything() {
    let s = setup(small());
    assert_eq!(
        s.breaker.force(State::ForcedOpen),
        Some(Transition {
            from: State::Closed,
            to: State::ForcedOpen
        })
    );
    assert_eq!(s.breaker.force(State::ForcedOpen), None);
    s.clock.advance(Duration::from_secs(3600));
    let r = s.breaker.try_acquire().expect_err("forced open");
    assert_eq!((r.state, r.retry_after), (State::ForcedOpen, None));

    s.breaker.force(State::Disabled);
    for _ in 0..50 {
        s.call(true, SLOW);
    }
    assert_eq!(s.state(), State::Disabled);
    assert_eq!(s.breaker.snapshot().calls, 0, "disabled records nothing");

    s.breaker.force(State::Closed);
    s.open();
    s.breaker.force(State::Closed);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.breaker.snapshot().calls, 0);
    assert!(s.breaker.try_acquire().is_ok());
}

#[test]
fn snapshot_hides_rates_below_the_minimum() {
    let s = setup(small());
    s.call(true, FAST);
    let snap = s.breaker.snapshot();
    assert_eq!(snap.state, State::Closed);
    assert_eq!((snap.calls, snap.failed_calls), (1, 1));
    assert_eq!(snap.failure_rate, None);
    assert_eq!(snap.open_remaining_ms, None);
}

#[test]
fn permits_are_safe_across_threads() {
    let s = setup(BreakerConfig {
        window: WindowKind::Count(1000),
        minimum_calls: 1000,
        ..small()
    });
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = s.breaker.clone();
            std::thread::spawn(move || {
                for _ in 0..250 {
                    b.try_acquire().expect("closed").record(false, FAST);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(s.breaker.snapshot().calls, 1000);
}
