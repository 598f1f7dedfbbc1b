//! Reading the `upstreams:` section.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::breaker::read_breaker;
use super::defaults::{DNS_REFRESH, HEALTH_EXPECT};
use super::error::Errors;
use super::fields::{
    boolean, choice, did_you_mean, duration, entries, list, non_empty, number, parsed, percent,
    positive_duration, Fields,
};
use super::model::{
    Balance, HashKey, HealthCheck, HealthKind, Keepalive, Outlier, Retries, RetryOn, Target,
    Timeouts, Upstream, UpstreamTls,
};
use super::units::parse_duration;
use super::validate;
use super::yaml::{Kind, Node};

/// Most targets in one upstream.
const MAX_TARGETS: usize = 1024;
/// Largest target weight.
const MAX_WEIGHT: u64 = 10_000;
/// Most retries after the first attempt.
const MAX_RETRIES: u64 = 10;
/// Largest keep-alive pool per target.
const MAX_POOL: u64 = 100_000;

/// Upstreams read from config, and the names of all declared ones (valid or not), so that
/// references to an invalid upstream are not reported a second time as unknown.
pub(crate) struct ReadUpstreams {
    /// The valid upstreams.
    pub(crate) valid: BTreeMap<String, Upstream>,
    /// Every declared name.
    pub(crate) declared: BTreeSet<String>,
}

/// Reads every upstream. Invalid upstreams are reported and left out of `valid`.
pub(crate) fn read_upstreams(node: &Node, errs: &mut Errors, base: &Path) -> ReadUpstreams {
    let mut out = ReadUpstreams {
        valid: BTreeMap::new(),
        declared: BTreeSet::new(),
    };
    let Some(entries) = entries(node, "upstreams", errs) else {
        return out;
    };
    let names: BTreeSet<String> = entries
        .iter()
        .filter(|e| is_name(&e.key))
        .map(|e| e.key.clone())
        .collect();
    for entry in entries {
        if !is_name(&entry.key) {
            errs.add(
                entry.key_pos,
                format!(
                    "upstreams.{}: invalid upstream name; expected letters, digits, '-', '_' and '.'",
                    entry.key
                ),
            );
            continue;
        }
        let path = format!("upstreams.{}", entry.key);
        out.declared.insert(entry.key.clone());
        if let Some(upstream) = read_upstream(&entry.value, &path, errs, base, &names) {
            out.valid.insert(entry.key.clone(), upstream);
        }
    }
    out
}

/// `s` as the name of a `kind` (listener, route, upstream), or what is wrong with it.
pub(crate) fn valid_name(kind: &str, s: &str) -> Result<String, String> {
    if is_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid {kind} name \"{s}\"; expected letters, digits, '-', '_' and '.'"
        ))
    }
}

/// Whether `s` is a usable upstream (or route, listener) name.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn read_upstream(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
    names: &BTreeSet<String>,
) -> Option<Upstream> {
    let mut f = Fields::open(node, path, errs)?;
    let targets = f.require("targets", errs, read_targets);
    let mut up = Upstream::with_targets(Vec::new());
    up.dns_refresh = f.get_or("dns_refresh", DNS_REFRESH, errs, positive_duration);
    up.balance = f.get_or("balance", Balance::RoundRobin, errs, read_balance);
    up.health = f.get("health", errs, read_health);
    up.outlier = f.get_or("outlier", Outlier::default(), errs, read_outlier);
    up.retries = f.get_or("retries", Retries::default(), errs, read_retries);
    up.timeouts = f.get_or("timeouts", Timeouts::default(), errs, read_timeouts);
    up.tls = f.get("tls", errs, |n, p, e| read_tls(n, p, e, base));
    up.keepalive = f.get_or("keepalive", Keepalive::default(), errs, read_keepalive);
    up.circuit_breaker = f.get("circuit_breaker", errs, |n, p, e| {
        read_breaker(n, p, e, names)
    });
    f.finish(errs);
    up.targets = targets?;
    Some(up)
}

fn read_targets(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<Target>> {
    let items = list(node, path, errs)?;
    if items.is_empty() {
        errs.add(node.pos, format!("{path}: expected at least one target"));
        return None;
    }
    if items.len() > MAX_TARGETS {
        errs.add(
            node.pos,
            format!(
                "{path}: {} targets; at most {MAX_TARGETS} are allowed",
                items.len()
            ),
        );
        return None;
    }
    let mut targets: Vec<Target> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(target) = read_target(item, &item_path, errs) else {
            continue;
        };
        if targets
            .iter()
            .any(|t| t.host == target.host && t.port == target.port)
        {
            errs.add(
                item.pos,
                format!("{item_path}: duplicate target {}", target.authority()),
            );
            continue;
        }
        targets.push(target);
    }
    Some(targets)
}

fn read_target(node: &Node, path: &str, errs: &mut Errors) -> Option<Target> {
    if let Kind::Map(_) = node.kind {
        let mut f = Fields::open(node, path, errs)?;
        let address = f.require("address", errs, |n, p, e| parsed(n, p, e, validate::target));
        let weight = f.get_or("weight", 1, errs, |n, p, e| number(n, p, e, 1, MAX_WEIGHT));
        f.finish(errs);
        let (host, port) = address?;
        return Some(Target { host, port, weight });
    }
    let (host, port) = parsed(node, path, errs, validate::target)?;
    Some(Target {
        host,
        port,
        weight: 1,
    })
}

const ALGORITHMS: [(&str, Balance); 5] = [
    ("round_robin", Balance::RoundRobin),
    ("weighted", Balance::Weighted),
    ("least_conn", Balance::LeastConn),
    (
        "ketama",
        Balance::Ketama {
            key: HashKey::ClientIp,
        },
    ),
    ("p2c_ewma", Balance::P2cEwma),
];

fn read_balance(node: &Node, path: &str, errs: &mut Errors) -> Option<Balance> {
    if !matches!(node.kind, Kind::Map(_)) {
        return choice(node, path, errs, &ALGORITHMS);
    }
    let mut f = Fields::open(node, path, errs)?;
    let algorithm = f.require("algorithm", errs, |n, p, e| choice(n, p, e, &ALGORITHMS));
    let key_pos = f.pos();
    let key = f.get("key", errs, read_hash_key);
    f.finish(errs);
    match (algorithm?, key) {
        (Balance::Ketama { .. }, Some(key)) => Some(Balance::Ketama { key }),
        (_, Some(_)) => {
            errs.add(
                key_pos,
                format!("{path}.key: only algorithm ketama takes a key"),
            );
            None
        }
        (other, None) => Some(other),
    }
}

fn read_hash_key(node: &Node, path: &str, errs: &mut Errors) -> Option<HashKey> {
    if !matches!(node.kind, Kind::Map(_)) {
        let options = [("client_ip", HashKey::ClientIp), ("path", HashKey::Path)];
        return choice(node, path, errs, &options);
    }
    let mut f = Fields::open(node, path, errs)?;
    let header = f.get("header", errs, |n, p, e| {
        parsed(n, p, e, validate::header_name)
    });
    let cookie = f.get("cookie", errs, non_empty);
    let pos = f.pos();
    f.finish(errs);
    match (header, cookie) {
        (Some(h), None) => Some(HashKey::Header(h)),
        (None, Some(c)) => Some(HashKey::Cookie(c)),
        _ => {
            errs.add(
                pos,
                format!("{path}: expected exactly one of header or cookie (or client_ip / path)"),
            );
            None
        }
    }
}

fn read_health(node: &Node, path: &str, errs: &mut Errors) -> Option<HealthCheck> {
    let mut f = Fields::open(node, path, errs)?;
    let pos = f.pos();
    let http = f.get("http", errs, |n, p, e| {
        parsed(n, p, e, |s| {
            if s.starts_with('/') {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "\"{s}\" is not a path; expected one starting with /"
                ))
            }
        })
    });
    let tcp = f.get("tcp", errs, boolean);
    let host = f.get("host", errs, |n, p, e| {
        parsed(n, p, e, validate::host_pattern)
    });
    let expect = f.get("expect", errs, |n, p, e| {
        parsed(n, p, e, validate::status_range)
    });
    let mut check = HealthCheck::with_kind(HealthKind::Tcp);
    check.interval = f.get_or("interval", check.interval, errs, positive_duration);
    check.timeout = f.get_or("timeout", check.timeout, errs, positive_duration);
    let threshold = |n: &Node, p: &str, e: &mut Errors| number(n, p, e, 1, 100);
    check.unhealthy_after = f.get_or("unhealthy_after", check.unhealthy_after, errs, threshold);
    check.healthy_after = f.get_or("healthy_after", check.healthy_after, errs, threshold);
    let http_only = f.has("host") || f.has("expect");
    let (has_http, has_tcp) = (f.has("http"), f.has("tcp"));
    f.finish(errs);
    check.kind = match (has_http, tcp) {
        (false, None) if has_tcp => return None,
        (true, Some(true)) | (false, None | Some(false)) => {
            errs.add(
                pos,
                format!("{path}: expected exactly one of http: /path or tcp: true"),
            );
            return None;
        }
        (true, _) => HealthKind::Http {
            path: http?,
            host,
            expect: expect.unwrap_or(HEALTH_EXPECT),
        },
        (false, Some(true)) if http_only => {
            errs.add(
                pos,
                format!("{path}: host and expect apply to http checks only"),
            );
            return None;
        }
        (false, Some(true)) => HealthKind::Tcp,
    };
    Some(check)
}

fn read_outlier(node: &Node, path: &str, errs: &mut Errors) -> Option<Outlier> {
    if let Kind::Scalar { text, .. } = &node.kind {
        if text == "off" {
            return Some(Outlier {
                enabled: false,
                ..Outlier::default()
            });
        }
        errs.add(
            node.pos,
            format!(
                "{path}: expected off or a mapping, found {}",
                node.describe()
            ),
        );
        return None;
    }
    let mut f = Fields::open(node, path, errs)?;
    let d = Outlier::default();
    let out = Outlier {
        enabled: f.get_or("enabled", d.enabled, errs, boolean),
        consecutive_5xx: f.get_or("consecutive_5xx", d.consecutive_5xx, errs, |n, p, e| {
            number(n, p, e, 1, 1000)
        }),
        base_ejection: f.get_or("base_ejection", d.base_ejection, errs, positive_duration),
        max_ejection_percent: f.get_or(
            "max_ejection_percent",
            d.max_ejection_percent,
            errs,
            percent,
        ),
    };
    f.finish(errs);
    Some(out)
}

/// Retry conditions by name (statuses are written as numbers).
const RETRY_NAMES: [(&str, RetryOn); 3] = [
    ("connect_error", RetryOn::ConnectError),
    ("timeout", RetryOn::Timeout),
    ("reset", RetryOn::Reset),
];

fn retry_on(s: &str) -> Result<RetryOn, String> {
    if let Some((_, on)) = RETRY_NAMES.iter().find(|(name, _)| *name == s) {
        return Ok(*on);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u16>() {
            Ok(status) if (400..=599).contains(&status) => Ok(RetryOn::Status(status)),
            _ => Err(format!(
                "status {s} cannot trigger a retry; expected a status from 400 to 599"
            )),
        };
    }
    let names: Vec<&str> = RETRY_NAMES.iter().map(|(name, _)| *name).collect();
    let hint = did_you_mean(s, &names)
        .map(|n| format!(" (did you mean \"{n}\"?)"))
        .unwrap_or_default();
    Err(format!(
        "unknown retry condition \"{s}\"; expected one of connect_error, timeout, reset or a \
         status from 400 to 599{hint}"
    ))
}

/// `25ms..250ms`: base and cap of the backoff, base no larger than cap.
fn backoff(s: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let Some((base, max)) = s.split_once("..") else {
        return Err(format!(
            "\"{s}\" is not a backoff; expected base..max like 25ms..250ms"
        ));
    };
    let (base, max) = (parse_duration(base)?, parse_duration(max)?);
    if base.is_zero() || base > max {
        return Err(format!(
            "\"{s}\": expected a base above zero and no larger than the max"
        ));
    }
    Ok((base, max))
}

fn read_retries(node: &Node, path: &str, errs: &mut Errors) -> Option<Retries> {
    let mut f = Fields::open(node, path, errs)?;
    let d = Retries::default();
    let attempts = f.get_or("attempts", d.attempts, errs, |n, p, e| {
        number(n, p, e, 0, MAX_RETRIES)
    });
    let on = f.get("on", errs, |n, p, e| {
        let items = list(n, p, e)?;
        let mut on: Vec<RetryOn> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{p}[{i}]");
            if let Some(cond) = parsed(item, &item_path, e, retry_on) {
                if !on.contains(&cond) {
                    on.push(cond);
                }
            }
        }
        Some(on)
    });
    let (backoff_base, backoff_max) = f.get_or(
        "backoff",
        (d.backoff_base, d.backoff_max),
        errs,
        |n, p, e| parsed(n, p, e, backoff),
    );
    let budget_percent = f.get_or("budget", d.budget_percent, errs, percent);
    let budget_min = f.get_or("budget_min", d.budget_min, errs, |n, p, e| {
        number(n, p, e, 0, 10_000)
    });
    f.finish(errs);
    Some(Retries {
        attempts,
        on: on.unwrap_or(d.on),
        backoff_base,
        backoff_max,
        budget_percent,
        budget_min,
    })
}

fn read_timeouts(node: &Node, path: &str, errs: &mut Errors) -> Option<Timeouts> {
    let mut f = Fields::open(node, path, errs)?;
    let d = Timeouts::default();
    let out = Timeouts {
        connect: f.get_or("connect", d.connect, errs, positive_duration),
        read: f.get_or("read", d.read, errs, positive_duration),
        write: f.get_or("write", d.write, errs, positive_duration),
        total: f.get_or("total", d.total, errs, positive_duration),
    };
    f.finish(errs);
    Some(out)
}

fn read_tls(node: &Node, path: &str, errs: &mut Errors, base: &Path) -> Option<UpstreamTls> {
    let mut f = Fields::open(node, path, errs)?;
    let out = UpstreamTls {
        sni: f.get("sni", errs, |n, p, e| {
            parsed(n, p, e, validate::server_name)
        }),
        verify: f.get_or("verify", true, errs, boolean),
        ca: f.get("ca", errs, |n, p, e| super::load::input_file(n, p, e, base)),
        http2: f.get_or("http2", false, errs, boolean),
    };
    f.finish(errs);
    Some(out)
}

fn read_keepalive(node: &Node, path: &str, errs: &mut Errors) -> Option<Keepalive> {
    let mut f = Fields::open(node, path, errs)?;
    let d = Keepalive::default();
    let out = Keepalive {
        pool_size: f.get_or("pool_size", d.pool_size, errs, |n, p, e| {
            number(n, p, e, 0, MAX_POOL)
        }),
        idle_timeout: f.get_or("idle_timeout", d.idle_timeout, errs, duration),
    };
    f.finish(errs);
    Some(out)
}
