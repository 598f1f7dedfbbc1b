//! Reading a `circuit_breaker:` section (on an upstream or a route).

use std::collections::BTreeSet;

use super::error::Errors;
use super::fields::{
    boolean, entries, float, list, number, parsed, percent, positive_duration, text, Fields,
};
use super::model::{BreakerFallback, BreakerWindow, CircuitBreaker, StaticResponse};
use super::units::parse_duration;
use super::validate;
use super::yaml::Node;

/// Largest count window (calls) or time window (seconds).
const MAX_WINDOW: u32 = 10_000;
/// Most trial calls in half-open.
const MAX_TRIALS: u64 = 10_000;
/// Largest backoff multiplier.
const MAX_MULTIPLIER: f64 = 100.0;
/// Largest static fallback body.
const MAX_BODY: usize = 64 * 1024;
/// Most extra headers on a static fallback.
const MAX_HEADERS: usize = 32;

/// Reads a breaker; `upstreams` are the declared upstream names a fallback may name.
pub(crate) fn read_breaker(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    upstreams: &BTreeSet<String>,
) -> Option<CircuitBreaker> {
    let mut f = Fields::open(node, path, errs)?;
    let d = CircuitBreaker::default();
    let rate = |n: &Node, p: &str, e: &mut Errors| {
        let v = percent(n, p, e)?;
        if v == 0 {
            e.add(n.pos, format!("{p}: expected a rate from 1% to 100%"));
            return None;
        }
        Some(v)
    };
    let window = f.get_or("window", d.window, errs, |n, p, e| parsed(n, p, e, window));
    let failure_rate_threshold = f.get_or(
        "failure_rate_threshold",
        d.failure_rate_threshold,
        errs,
        rate,
    );
    let slow_call_rate_threshold = f.get_or(
        "slow_call_rate_threshold",
        d.slow_call_rate_threshold,
        errs,
        rate,
    );
    let slow_call_duration = f.get_or(
        "slow_call_duration",
        d.slow_call_duration,
        errs,
        positive_duration,
    );
    let minimum_calls = f.get_or("minimum_calls", d.minimum_calls, errs, |n, p, e| {
        number(n, p, e, 1, u64::from(MAX_WINDOW))
    });
    let wait_in_open = f.get_or("wait_in_open", d.wait_in_open, errs, positive_duration);
    let backoff_multiplier = f.get_or(
        "backoff_multiplier",
        d.backoff_multiplier,
        errs,
        |n, p, e| float(n, p, e, 1.0, MAX_MULTIPLIER),
    );
    let mut max_wait_pos = None;
    let max_wait = f.get("max_wait", errs, |n, p, e| {
        max_wait_pos = Some(n.pos);
        positive_duration(n, p, e)
    });
    let permitted_calls_in_half_open = f.get_or(
        "permitted_calls_in_half_open",
        d.permitted_calls_in_half_open,
        errs,
        |n, p, e| number(n, p, e, 1, MAX_TRIALS),
    );
    let failure_statuses = f.get_or("failure_statuses", d.failure_statuses, errs, statuses);
    let timeouts = f.get_or("timeouts", d.timeouts, errs, boolean);
    let connect_errors = f.get_or("connect_errors", d.connect_errors, errs, boolean);
    let fallback = f.get("fallback", errs, |n, p, e| {
        read_fallback(n, p, e, upstreams)
    });
    f.finish(errs);
    let max_wait = match (max_wait, max_wait_pos) {
        (Some(m), Some(pos)) if m < wait_in_open => {
            errs.add(
                pos,
                format!("{path}.max_wait: expected at least wait_in_open"),
            );
            return None;
        }
        (Some(m), _) => m,
        (None, _) => d.max_wait.max(wait_in_open),
    };
    Some(CircuitBreaker {
        window,
        failure_rate_threshold,
        slow_call_rate_threshold,
        slow_call_duration,
        minimum_calls,
        wait_in_open,
        backoff_multiplier,
        max_wait,
        permitted_calls_in_half_open,
        failure_statuses,
        timeouts,
        connect_errors,
        fallback,
    })
}

/// `100` (the last 100 calls) or `60s` (the last 60 seconds, whole seconds).
fn window(s: &str) -> Result<BreakerWindow, String> {
    let range = || format!("expected 1 to {MAX_WINDOW}");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(n) if (1..=MAX_WINDOW).contains(&n) => Ok(BreakerWindow::Calls(n)),
            _ => Err(format!("window of {s} calls; {}", range())),
        };
    }
    let d = parse_duration(s).map_err(|_| {
        format!("\"{s}\" is not a window; expected a number of calls (100) or seconds (60s)")
    })?;
    let secs = u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    if d.subsec_nanos() != 0 || !(1..=MAX_WINDOW).contains(&secs) {
        return Err(format!(
            "window of {s}; expected whole seconds, {} seconds",
            range()
        ));
    }
    Ok(BreakerWindow::Seconds(secs))
}

fn statuses(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<u16>> {
    let items = list(node, path, errs)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let status = number(item, &format!("{path}[{i}]"), errs, 100, 599)?;
        if !out.contains(&status) {
            out.push(status);
        }
    }
    Some(out)
}

fn read_fallback(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    upstreams: &BTreeSet<String>,
) -> Option<BreakerFallback> {
    let mut f = Fields::open(node, path, errs)?;
    let pos = f.pos();
    let upstream = f.get("upstream", errs, |n, p, e| {
        parsed(n, p, e, |s| {
            if upstreams.contains(s) {
                Ok(s.to_owned())
            } else {
                Err(format!("unknown upstream \"{s}\""))
            }
        })
    });
    let has_upstream = f.has("upstream");
    let is_static = ["status", "body", "content_type", "headers"]
        .iter()
        .any(|k| f.has(k));
    let status = f.get_or("status", 503, errs, |n, p, e| number(n, p, e, 200, 599));
    let body = f.get_or("body", String::new(), errs, |n, p, e| {
        let b = text(n, p, e)?;
        if b.len() > MAX_BODY {
            e.add(n.pos, format!("{p}: longer than {MAX_BODY} bytes"));
            return None;
        }
        Some(b)
    });
    let content_type = f.get_or(
        "content_type",
        "text/plain; charset=utf-8".to_owned(),
        errs,
        |n, p, e| parsed(n, p, e, validate::header_value),
    );
    let headers = f.get_or("headers", Vec::new(), errs, headers);
    f.finish(errs);
    match (has_upstream, is_static) {
        (true, false) => upstream.map(BreakerFallback::Upstream),
        (false, true) => Some(BreakerFallback::Response(StaticResponse {
            status,
            body,
            content_type,
            headers,
        })),
        _ => {
            errs.add(
                pos,
                format!(
                    "{path}: expected either upstream: NAME or a response (status, body, \
                     content_type, headers)"
                ),
            );
            None
        }
    }
}

fn headers(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<(String, String)>> {
    let items = entries(node, path, errs)?;
    if items.len() > MAX_HEADERS {
        errs.add(
            node.pos,
            format!("{path}: at most {MAX_HEADERS} headers are allowed"),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for entry in items {
        let p = format!("{path}.{}", entry.key);
        let name = match validate::header_name(&entry.key) {
            Ok(n) => n,
            Err(m) => {
                errs.add(entry.key_pos, format!("{p}: {m}"));
                continue;
            }
        };
        if let Some(value) = parsed(&entry.value, &p, errs, validate::header_value) {
            out.push((name, value));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{load_str, Config};

    fn load(breaker: &str) -> Result<Config, String> {
        let text = format!(
            "listeners: [{{ name: p, address: 127.0.0.1:8080 }}]\nupstreams:\n  api:\n    \
             targets: [127.0.0.1:9000]\n    circuit_breaker: {breaker}\n  spare: {{ targets: \
             [127.0.0.1:9001] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, \
             upstream: api, circuit_breaker: {breaker} }}\n"
        );
        load_str(&text, "b.yaml").map_err(|e| e.to_string())
    }

    fn breaker(text: &str) -> CircuitBreaker {
        let cfg = load(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let up = cfg.upstreams["api"]
            .circuit_breaker
            .clone()
            .expect("upstream breaker");
        assert_eq!(cfg.routes[0].circuit_breaker.as_ref(), Some(&up));
        up
    }

    #[test]
    fn an_empty_section_takes_the_defaults() {
        assert_eq!(breaker("{}"), CircuitBreaker::default());
    }

    #[test]
    fn every_setting_is_read() {
        let b = breaker(
            "{ window: 30s, failure_rate_threshold: 25%, slow_call_rate_threshold: 80, \
             slow_call_duration: 2s, minimum_calls: 5, wait_in_open: 10s, \
             backoff_multiplier: 1.5, max_wait: 1m, permitted_calls_in_half_open: 3, \
             failure_statuses: [502, 429, 502], timeouts: false, connect_errors: false, \
             fallback: { upstream: spare } }",
        );
        assert_eq!(b.window, BreakerWindow::Seconds(30));
        assert_eq!(
            (b.failure_rate_threshold, b.slow_call_rate_threshold),
            (25, 80)
        );
        assert_eq!(b.slow_call_duration, Duration::from_secs(2));
        assert_eq!(b.minimum_calls, 5);
        assert_eq!(b.wait_in_open, Duration::from_secs(10));
        assert_eq!(b.backoff_multiplier, 1.5);
        assert_eq!(b.max_wait, Duration::from_secs(60));
        assert_eq!(b.permitted_calls_in_half_open, 3);
        assert_eq!(b.failure_statuses, vec![502, 429]);
        assert!(!b.timeouts && !b.connect_errors);
        assert_eq!(b.fallback, Some(BreakerFallback::Upstream("spare".into())));
    }

    #[test]
    fn a_static_fallback_fills_its_defaults() {
        let b = breaker("{ fallback: { body: later, headers: { X-Why: breaker } } }");
        assert_eq!(
            b.fallback,
            Some(BreakerFallback::Response(StaticResponse {
                status: 503,
                body: "later".into(),
                content_type: "text/plain; charset=utf-8".into(),
                headers: vec![("x-why".into(), "breaker".into())],
            }))
        );
        assert_eq!(
            breaker("{ wait_in_open: 10m }").max_wait,
            Duration::from_secs(600),
            "the default max_wait never cuts wait_in_open"
        );
    }

    #[test]
    fn bad_settings_point_at_the_field() {
        let cases = [
            ("{ window: 0 }", "circuit_breaker.window: window of 0 calls"),
            ("{ failure_rate_threshold: 101% }", "failure_rate_threshold"),
            (
                "{ slow_call_rate_threshold: 0 }",
                "expected a rate from 1% to 100%",
            ),
            (
                "{ slow_call_duration: 0s }",
                "slow_call_duration: expected a duration",
            ),
            (
                "{ minimum_calls: 0 }",
                "minimum_calls: expected a whole number",
            ),
            (
                "{ backoff_multiplier: 0.5 }",
                "backoff_multiplier: expected a number",
            ),
            (
                "{ wait_in_open: 1m, max_wait: 10s }",
                "max_wait: expected at least wait_in_open",
            ),
            (
                "{ permitted_calls_in_half_open: 0 }",
                "permitted_calls_in_half_open",
            ),
            ("{ failure_statuses: [700] }", "failure_statuses[0]"),
            ("{ timeouts: yes }", "timeouts: expected true or false"),
            (
                "{ fallback: { upstream: nope } }",
                "unknown upstream \"nope\"",
            ),
            (
                "{ fallback: { upstream: spare, status: 500 } }",
                "expected either upstream",
            ),
            ("{ fallback: {} }", "expected either upstream"),
            ("{ fallback: { status: 99 } }", "fallback.status"),
            (
                "{ fallback: { headers: { \"bad header\": x } } }",
                "fallback.headers.bad header",
            ),
            (
                "{ failure_rate: 50% }",
                "did you mean \"failure_rate_threshold\"",
            ),
            ("5", "expected a mapping"),
        ];
        for (text, expected) in cases {
            let err = load(text).expect_err(text);
            assert!(err.contains("b.yaml:5:"), "{text}: no position in {err}");
            assert!(
                err.contains(expected),
                "{text}: expected {expected} in:\n{err}"
            );
        }
    }

    #[test]
    fn windows() {
        assert_eq!(window("100"), Ok(BreakerWindow::Calls(100)));
        assert_eq!(window("60s"), Ok(BreakerWindow::Seconds(60)));
        assert_eq!(window("2m"), Ok(BreakerWindow::Seconds(120)));
        assert!(window("0").is_err());
        assert!(window("1500ms").is_err());
        assert!(window("20000").is_err());
        assert!(window("lots").is_err());
    }
}
