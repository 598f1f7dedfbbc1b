//! Circuit breakers of upstreams and routes: the [`plugins::breaker`] state machine with the
//! gateway's failure policy, fallback, logs and metrics, kept across reloads while a breaker's
//! config is unchanged.
//!
//! An upstream breaker counts every *attempt* (a retry is a second call), like Envoy's
//! outlier detection: it measures the upstream. A route breaker counts every *request* once,
//! with its final result after retries, like Spring Cloud Gateway's filter: it measures what
//! the route's clients get.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plugins::breaker::{
    BreakerConfig, CallResult, CircuitBreaker, FailurePolicy, Permit, Rejected, Snapshot, State,
    SystemClock, Transition, WindowKind,
};

use super::Outcome;
use crate::config::{self, BreakerFallback, BreakerWindow, Config};
use crate::telemetry::{BreakerMetrics, Metrics};

/// What a breaker guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every attempt to one upstream.
    Upstream,
    /// Every request of one route.
    Route,
}

impl Scope {
    /// `upstream` or `route`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Upstream => "upstream",
            Scope::Route => "route",
        }
    }
}

/// One configured breaker.
pub struct Breaker {
    config: config::CircuitBreaker,
    machine: Arc<CircuitBreaker>,
    policy: FailurePolicy,
    metrics: BreakerMetrics,
}

impl Breaker {
    /// A closed breaker for `name` in `scope`, exporting its state on `metrics`.
    pub fn new(
        scope: Scope,
        name: &str,
        cfg: &config::CircuitBreaker,
        metrics: &Metrics,
    ) -> Breaker {
        let metrics = metrics.breaker_handles(scope.as_str(), name);
        let listener = {
            let metrics = metrics.clone();
            let name = name.to_owned();
            move |t: Transition| {
                metrics.set_state(t.to.code());
                metrics.transition(t.from.as_str(), t.to.as_str());
                let (from, to, scope) = (t.from.as_str(), t.to.as_str(), scope.as_str());
                match t.to {
                    State::Open | State::ForcedOpen => {
                        log::warn!("circuit breaker of {scope} {name}: {from} -> {to}")
                    }
                    _ => log::info!("circuit breaker of {scope} {name}: {from} -> {to}"),
                }
            }
        };
        let machine = CircuitBreaker::new(
            machine_config(cfg),
            Arc::new(SystemClock::default()),
            Box::new(listener),
        );
        metrics.set_state(State::Closed.code());
        Breaker {
            config: cfg.clone(),
            machine: Arc::new(machine),
            policy: FailurePolicy {
                statuses: cfg.failure_statuses.clone(),
                timeouts: cfg.timeouts,
                connect_errors: cfg.connect_errors,
            },
            metrics,
        }
    }

    /// Asks to make one call; a refusal is counted.
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.machine
            .try_acquire()
            .inspect_err(|_| self.metrics.rejected())
    }

    /// Reports a permitted call's result and how long it took.
    pub fn record(&self, permit: Permit, outcome: Outcome, took: Duration) {
        let result = match outcome {
            Outcome::Status(s) => CallResult::Status(s),
            Outcome::ConnectError => CallResult::ConnectError,
            Outcome::Timeout => CallResult::Timeout,
            Outcome::Reset => CallResult::Reset,
        };
        let r = permit.record(self.policy.is_failure(result), took);
        self.metrics.call(r.failed, r.slow);
    }

    /// What to answer when the breaker rejects a call.
    pub fn fallback(&self) -> Option<&BreakerFallback> {
        self.config.fallback.as_ref()
    }

    /// Sets the state by hand (admin); returns the transition, if the state changed.
    pub fn force(&self, state: State) -> Option<Transition> {
        self.machine.force(state)
    }

    /// State, rates and calls in the window.
    pub fn snapshot(&self) -> Snapshot {
        self.machine.snapshot()
    }
}

/// The state machine's settings from the config's.
fn machine_config(c: &config::CircuitBreaker) -> BreakerConfig {
    BreakerConfig {
        window: match c.window {
            BreakerWindow::Calls(n) => WindowKind::Count(n),
            BreakerWindow::Seconds(n) => WindowKind::Time(n),
        },
        failure_rate_threshold: c.failure_rate_threshold,
        slow_call_rate_threshold: c.slow_call_rate_threshold,
        slow_call_duration: c.slow_call_duration,
        minimum_calls: c.minimum_calls,
        wait_in_open: c.wait_in_open,
        backoff_multiplier: c.backoff_multiplier,
        max_wait: c.max_wait,
        permitted_calls_in_half_open: c.permitted_calls_in_half_open,
    }
}

/// Every breaker of one config, by scope and name.
#[derive(Default)]
pub struct BreakerRegistry {
    upstreams: BTreeMap<String, Arc<Breaker>>,
    routes: BTreeMap<String, Arc<Breaker>>,
}

impl BreakerRegistry {
    /// The breakers of `cfg`. A breaker of `previous` with the same scope, name and config is
    /// reused with its state; the others start closed. The state series of breakers that are
    /// gone are removed from `metrics`.
    pub fn build(
        cfg: &Config,
        previous: Option<&BreakerRegistry>,
        metrics: &Metrics,
    ) -> BreakerRegistry {
        let keep = |old: Option<&Arc<Breaker>>, scope, name: &str, c: &config::CircuitBreaker| {
            old.filter(|b| b.config == *c)
                .cloned()
                .unwrap_or_else(|| Arc::new(Breaker::new(scope, name, c, metrics)))
        };
        let upstreams = cfg
            .upstreams
            .iter()
            .filter_map(|(name, u)| {
                let c = u.circuit_breaker.as_ref()?;
                let old = previous.and_then(|p| p.upstreams.get(name));
                Some((name.clone(), keep(old, Scope::Upstream, name, c)))
            })
            .collect();
        let routes = cfg
            .routes
            .iter()
            .filter_map(|r| {
                let c = r.circuit_breaker.as_ref()?;
                let old = previous.and_then(|p| p.routes.get(&r.name));
                Some((r.name.clone(), keep(old, Scope::Route, &r.name, c)))
            })
            .collect();
        let registry = BreakerRegistry { upstreams, routes };
        if let Some(previous) = previous {
            for name in previous.upstreams.keys() {
                if registry.upstream(name).is_none() {
                    metrics.remove_breaker(Scope::Upstream.as_str(), name);
                }
            }
            for name in previous.routes.keys() {
                if registry.route(name).is_none() {
                    metrics.remove_breaker(Scope::Route.as_str(), name);
                }
            }
        }
        registry
    }

    /// The breaker of upstream `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Breaker>> {
        self.upstreams.get(name)
    }

    /// The breaker of route `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<Breaker>> {
        self.routes.get(name)
    }

    /// Route breakers, by route name.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Arc<Breaker>)> {
        self.routes.iter().map(|(n, b)| (n.as_str(), b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Route, Target, Upstream};

    fn config(wait: Duration) -> Config {
        let breaker = config::CircuitBreaker {
            window: BreakerWindow::Calls(2),
            minimum_calls: 2,
            wait_in_open: wait,
            max_wait: wait,
            ..config::CircuitBreaker::default()
        };
        let mut up = Upstream::with_targets(vec![Target {
            host: "127.0.0.1".into(),
            port: 1,
            weight: 1,
        }]);
        up.circuit_breaker = Some(breaker.clone());
        let mut route = Route::prefix("r", "/", "api");
        route.circuit_breaker = Some(breaker);
        let mut cfg = Config::default();
        cfg.upstreams.insert("api".into(), up);
        cfg.routes.push(route);
        cfg
    }

    fn open(b: &Breaker) {
        for _ in 0..2 {
            let p = b.try_acquire().expect("closed");
            b.record(p, Outcome::Status(502), Duration::ZERO);
        }
        assert_eq!(b.snapshot().state, State::Open);
    }

    #[test]
    fn state_survives_an_unchanged_config_only() {
        let metrics = Metrics::new().expect("metrics");
        let first = BreakerRegistry::build(&config(Duration::from_secs(60)), None, &metrics);
        let up = first.upstream("api").expect("upstream breaker");
        open(up);
        open(first.route("r").expect("route breaker"));
        let same = BreakerRegistry::build(&config(Duration::from_secs(60)), Some(&first), &metrics);
        assert!(Arc::ptr_eq(up, same.upstream("api").expect("kept")));
        assert_eq!(same.route("r").expect("kept").snapshot().state, State::Open);
        let changed =
            BreakerRegistry::build(&config(Duration::from_secs(61)), Some(&same), &metrics);
        let fresh = changed.upstream("api").expect("rebuilt");
        assert_eq!(fresh.snapshot().state, State::Closed);
    }

    #[test]
    fn failure_policy_decides_what_fails() {
        let metrics = Metrics::new().expect("metrics");
        let cfg = config(Duration::from_secs(60));
        let reg = BreakerRegistry::build(&cfg, None, &metrics);
        let b = reg.upstream("api").expect("breaker");
        for outcome in [Outcome::Status(404), Outcome::Status(200)] {
            let p = b.try_acquire().expect("closed");
            b.record(p, outcome, Duration::ZERO);
        }
        assert_eq!(b.snapshot().failed_calls, 0);
        let p = b.try_acquire().expect("closed");
        b.record(p, Outcome::Timeout, Duration::ZERO);
        assert_eq!(b.snapshot().failed_calls, 1);
    }
}
