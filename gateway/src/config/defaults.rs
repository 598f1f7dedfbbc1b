//! Default values of the config model (one place, used by the loader and by code builders).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::model::{
    AccessLog, Admin, Balance, BreakerWindow, CircuitBreaker, ClientTimeouts, Config, Dashboard,
    EncodedSlash, HeaderRules, HealthCheck, HealthKind, IpAccess, Keepalive, Limits, Outlier,
    PathMatch, Retries, RetryOn, Route, RouteMatch, RouteUpstream, ServerSettings, Target,
    Telemetry, Timeouts, Upstream,
};

/// How often DNS names among upstream targets are re-resolved by default.
pub(crate) const DNS_REFRESH: Duration = Duration::from_secs(30);
/// Default accepted statuses of an HTTP health check.
pub(crate) const HEALTH_EXPECT: (u16, u16) = (200, 399);

impl Default for Config {
    /// No listeners, routes or upstreams; every section at its defaults.
    fn default() -> Self {
        Config {
            server: ServerSettings::default(),
            listeners: Vec::new(),
            admin: Admin::default(),
            upstreams: BTreeMap::new(),
            routes: Vec::new(),
            limits: Limits::default(),
            telemetry: Telemetry::default(),
            access: IpAccess::default(),
            plugins: Vec::new(),
            cache: None,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 1,
            stall_timeout: Duration::from_secs(5),
            grace_period: Duration::from_secs(10),
            upgrade_sock: PathBuf::from("/tmp/meridian_upgrade.sock"),
            pid_file: PathBuf::from("/tmp/meridian.pid"),
            watch_config: true,
            client_timeouts: ClientTimeouts::default(),
        }
    }
}

impl Default for ClientTimeouts {
    /// nginx's `client_header_timeout`, `client_body_timeout` and `send_timeout`: 60 s each.
    fn default() -> Self {
        ClientTimeouts {
            header: Duration::from_secs(60),
            body: Duration::from_secs(60),
            send: Duration::from_secs(60),
        }
    }
}

impl Default for Admin {
    /// Loopback port 9901, no token.
    fn default() -> Self {
        Admin {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 9901)),
            token: None,
            dashboard: Dashboard::default(),
        }
    }
}

impl Default for Dashboard {
    /// No sources; scrape every 2 seconds.
    fn default() -> Self {
        Dashboard {
            sources: Vec::new(),
            scrape_every: Duration::from_secs(2),
        }
    }
}

impl Default for Outlier {
    /// Envoy's defaults: eject after 5 consecutive 5xx for 30s × n, at most 10% of targets.
    fn default() -> Self {
        Outlier {
            enabled: true,
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

impl Default for Retries {
    /// One retry on connect errors, 502, 503 and 504; 25ms..250ms backoff; budget 20%, min 3.
    fn default() -> Self {
        Retries {
            attempts: 1,
            on: vec![
                RetryOn::ConnectError,
                RetryOn::Status(502),
                RetryOn::Status(503),
                RetryOn::Status(504),
            ],
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_percent: 20,
            budget_min: 3,
        }
    }
}

impl Default for Timeouts {
    /// Connect 1s, read 10s, write 10s, total 30s.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(10),
            write: Duration::from_secs(10),
            total: Duration::from_secs(30),
        }
    }
}

impl Default for Keepalive {
    /// 128 idle connections per target, kept 60s.
    fn default() -> Self {
        Keepalive {
            pool_size: 128,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for Limits {
    /// 100 headers, 60 KiB of headers, 8 KiB URI, 10 MiB body, encoded slashes rejected.
    fn default() -> Self {
        Limits {
            max_header_count: 100,
            max_header_bytes: 60 * 1024,
            max_uri_length: 8 * 1024,
            max_body: 10 * 1024 * 1024,
            encoded_slash: EncodedSlash::Reject,
        }
    }
}

impl Default for Telemetry {
    /// Access log on stdout, no trace export.
    fn default() -> Self {
        Telemetry {
            access_log: AccessLog::Stdout,
            otlp: None,
        }
    }
}

impl HealthCheck {
    /// A health check of `kind` with the default timing: every 2s, 1s timeout, unhealthy after 3
    /// failures, healthy after 2 successes.
    pub fn with_kind(kind: HealthKind) -> HealthCheck {
        HealthCheck {
            kind,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }
}

impl Upstream {
    /// An upstream over `targets` with every setting at its default: round robin, no active
    /// health check, default outlier ejection, retries, timeouts and keep-alive, plain HTTP.
    pub fn with_targets(targets: Vec<Target>) -> Upstream {
        Upstream {
            targets,
            dns_refresh: DNS_REFRESH,
            balance: Balance::RoundRobin,
            health: None,
            outlier: Outlier::default(),
            retries: Retries::default(),
            timeouts: Timeouts::default(),
            tls: None,
            keepalive: Keepalive::default(),
            circuit_breaker: None,
        }
    }
}

impl Default for CircuitBreaker {
    /// Resilience4j's defaults, except `slow_call_duration` 5s (R4j: 60s), `minimum_calls` 20
    /// (R4j: 100) and `wait_in_open` 30s (R4j: 60s), which suit a gateway better.
    fn default() -> Self {
        CircuitBreaker {
            window: BreakerWindow::Calls(100),
            failure_rate_threshold: 50,
            slow_call_rate_threshold: 100,
            slow_call_duration: Duration::from_secs(5),
            minimum_calls: 20,
            wait_in_open: Duration::from_secs(30),
            backoff_multiplier: 1.0,
            max_wait: Duration::from_secs(300),
            permitted_calls_in_half_open: 10,
            failure_statuses: vec![500, 502, 503, 504],
            timeouts: true,
            connect_errors: true,
            fallback: None,
        }
    }
}

impl Route {
    /// A route named `name` sending every path under `prefix` to `upstream`, with nothing else
    /// set (for configs built in code).
    pub fn prefix(name: &str, prefix: &str, upstream: &str) -> Route {
        Route {
            name: name.to_string(),
            matcher: RouteMatch {
                hosts: Vec::new(),
                path: PathMatch::Prefix(prefix.to_string()),
                methods: Vec::new(),
                headers: Vec::new(),
                query: Vec::new(),
            },
            upstream: RouteUpstream::Single(upstream.to_string()),
            rewrite: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            retry_non_idempotent: false,
            access: IpAccess::default(),
            max_body: None,
            plugins: Vec::new(),
            circuit_breaker: None,
            cache: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let server = ServerSettings::default();
        assert_eq!(server.threads, 1);
        assert_eq!(server.stall_timeout, Duration::from_secs(5));
        assert_eq!(server.grace_period, Duration::from_secs(10));
        assert!(server.watch_config);
        let client = server.client_timeouts;
        assert_eq!(client.header, Duration::from_secs(60));
        assert_eq!(client.body, Duration::from_secs(60));
        assert_eq!(client.send, Duration::from_secs(60));
        assert!(Admin::default().address.ip().is_loopback());
        assert_eq!(Outlier::default().max_ejection_percent, 10);
        assert_eq!(Retries::default().on.len(), 4);
        assert_eq!(Limits::default().max_header_bytes, 61_440);
        let up = Upstream::with_targets(Vec::new());
        assert_eq!(up.balance, Balance::RoundRobin);
        assert_eq!(up.dns_refresh, Duration::from_secs(30));
        let hc = HealthCheck::with_kind(HealthKind::Tcp);
        assert_eq!((hc.unhealthy_after, hc.healthy_after), (3, 2));
        let cfg = Config::default();
        assert!(cfg.listeners.is_empty() && cfg.routes.is_empty() && cfg.upstreams.is_empty());
    }
}
