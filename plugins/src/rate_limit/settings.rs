//! The plugin's settings, read and checked into a [`Compiled`] form.

use std::num::NonZeroU32;
use std::time::Duration;

use redis::cluster::ClusterClient;
use serde::Deserialize;

use super::key::KeyPart;
use super::redis_gcra::{Fail, Target};
use super::units::{parse_duration, parse_rate, Rate};
use crate::{settings, ConfigError};

/// Default bound on the keys a local limiter holds.
const DEFAULT_MAX_KEYS: usize = 100_000;
/// Largest `max_keys` accepted.
const MAX_MAX_KEYS: usize = 10_000_000;
/// Default Redis call timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// Where the counts are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every gateway using it.
    Redis,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    limit: Option<String>,
    burst: Option<u32>,
    key: Option<Vec<String>>,
    concurrency: Option<u32>,
    #[serde(default)]
    mode: Mode,
    redis: Option<RawRedis>,
    policy: Option<String>,
    max_keys: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<String>,
    urls: Option<Vec<String>>,
    #[serde(default)]
    cluster: bool,
    timeout: Option<String>,
    fail: Option<Fail>,
}

/// A rate limit: requests per period, and the burst allowed at once.
#[derive(Debug, Clone, Copy)]
pub struct RateSpec {
    /// The rate.
    pub rate: Rate,
    /// Requests allowed at once (default: the rate's count).
    pub burst: NonZeroU32,
}

/// Redis settings.
pub struct RedisConfig {
    /// Node or cluster.
    pub target: Target,
    /// Bound on each call.
    pub timeout: Duration,
    /// What happens when Redis does not answer.
    pub fail: Fail,
}

/// Checked settings.
pub struct Compiled {
    /// Policy name: in the `RateLimit` fields, the Redis keys and the metric labels.
    pub policy: String,
    /// What a request is counted under.
    pub key: Vec<KeyPart>,
    /// The rate limit, if any.
    pub limit: Option<RateSpec>,
    /// Requests in flight per key, if limited.
    pub concurrency: Option<NonZeroU32>,
    /// Redis, for `mode: redis`.
    pub redis: Option<RedisConfig>,
    /// Bound on the keys of a local limiter.
    pub max_keys: usize,
}

/// Reads and checks the settings; errors name the field.
pub fn compile(value: &serde_json::Value) -> Result<Compiled, ConfigError> {
    let raw: Raw = settings(value)?;
    let limit = match &raw.limit {
        Some(s) => Some(parse_rate(s).map_err(|e| ConfigError::at("limit", e))?),
        None => None,
    };
    let limit = match (limit, raw.burst) {
        (None, Some(_)) => return Err(ConfigError::at("burst", "burst needs a limit")),
        (None, None) => None,
        (Some(rate), burst) => {
            let burst = NonZeroU32::new(burst.unwrap_or(rate.count))
                .ok_or_else(|| ConfigError::at("burst", "must be at least 1"))?;
            Some(RateSpec { rate, burst })
        }
    };
    let concurrency = match raw.concurrency {
        Some(n) => Some(
            NonZeroU32::new(n)
                .ok_or_else(|| ConfigError::at("concurrency", "must be at least 1"))?,
        ),
        None => None,
    };
    if limit.is_none() && concurrency.is_none() {
        return Err(ConfigError::at(
            "",
            "nothing to limit; expected `limit` (like 100/s), `concurrency` (like 10) or both",
        ));
    }
    let key = match raw.key {
        None => vec![KeyPart::ClientIp],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::at("key", "must name at least one key"))
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| KeyPart::parse(s).map_err(|e| ConfigError::at(format!("key[{i}]"), e)))
            .collect::<Result<_, _>>()?,
    };
    let policy = raw.policy.unwrap_or_else(|| "default".to_string());
    let policy_ok = (1..=64).contains(&policy.len())
        && policy
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !policy_ok {
        return Err(ConfigError::at(
            "policy",
            format!(
                "\"{policy}\" is not a policy name; expected 1 to 64 letters, digits, -, _ or ."
            ),
        ));
    }
    let max_keys = raw.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if !(1..=MAX_MAX_KEYS).contains(&max_keys) {
        return Err(ConfigError::at(
            "max_keys",
            format!("must be from 1 to {MAX_MAX_KEYS}"),
        ));
    }
    let redis =
        match (raw.mode, raw.redis) {
            (Mode::Local, None) => None,
            (Mode::Local, Some(_)) => {
                return Err(ConfigError::at("redis", "only used with `mode: redis`"))
            }
            (Mode::Redis, None) => return Err(ConfigError::at(
                "redis",
                "`mode: redis` needs redis settings, like `redis: { url: redis://127.0.0.1:6379 }`",
            )),
            (Mode::Redis, Some(_)) if limit.is_none() => {
                return Err(ConfigError::at(
                    "limit",
                    "`mode: redis` needs a limit (concurrency is counted per gateway)",
                ))
            }
            (Mode::Redis, Some(r)) => Some(redis_config(r)?),
        };
    Ok(Compiled {
        policy,
        key,
        limit,
        concurrency,
        redis,
        max_keys,
    })
}

fn redis_config(r: RawRedis) -> Result<RedisConfig, ConfigError> {
    let nodes = match (r.url, r.urls) {
        (Some(url), None) => vec![url],
        (None, Some(urls)) if !urls.is_empty() => urls,
        (None, Some(_)) => {
            return Err(ConfigError::at("redis.urls", "must list at least one node"))
        }
        (None, None) => {
            return Err(ConfigError::at(
                "redis",
                "needs `url` (one node) or `urls` (cluster nodes)",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::at(
                "redis.urls",
                "give `url` or `urls`, not both",
            ))
        }
    };
    let timeout = match &r.timeout {
        Some(s) => parse_duration(s).map_err(|e| ConfigError::at("redis.timeout", e))?,
        None => DEFAULT_TIMEOUT,
    };
    if timeout.is_zero() || timeout > Duration::from_secs(10) {
        return Err(ConfigError::at(
            "redis.timeout",
            "must be more than 0 and at most 10s",
        ));
    }
    let target = if r.cluster {
        let builder = ClusterClient::builder(nodes.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1);
        let client = builder
            .build()
            .map_err(|e| ConfigError::at(node_field(&nodes), format!("bad Redis URL: {e}")))?;
        Target::Cluster(Box::new(client))
    } else {
        let [url] = nodes.as_slice() else {
            return Err(ConfigError::at(
                "redis.urls",
                "several nodes need `cluster: true`; expected one `url` otherwise",
            ));
        };
        let client = redis::Client::open(url.as_str())
            .map_err(|e| ConfigError::at("redis.url", format!("bad Redis URL \"{url}\": {e}")))?;
        Target::Single(client)
    };
    Ok(RedisConfig {
        target,
        timeout,
        fail: r.fail.unwrap_or(Fail::Open),
    })
}

/// The field that named the nodes.
fn node_field(nodes: &[String]) -> &'static str {
    if nodes.len() == 1 {
        "redis.url"
    } else {
        "redis.urls"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error(v: serde_json::Value) -> ConfigError {
        match compile(&v) {
            Err(e) => e,
            Ok(_) => panic!("{v} was accepted"),
        }
    }

    #[test]
    fn defaults() {
        let c = compile(&json!({ "limit": "100/s" })).unwrap();
        let l = c.limit.unwrap();
        assert_eq!((l.rate.count, l.burst.get()), (100, 100));
        assert_eq!(c.key, vec![KeyPart::ClientIp]);
        assert_eq!(c.policy, "default");
        assert!(c.redis.is_none() && c.concurrency.is_none());
        let c = compile(&json!({ "concurrency": 3 })).unwrap();
        assert!(c.limit.is_none());
        assert_eq!(c.concurrency.map(NonZeroU32::get), Some(3));
    }

    #[test]
    fn redis_settings() {
        let c = compile(&json!({
            "limit": "10/s", "burst": 5, "mode": "redis",
            "redis": { "url": "redis://127.0.0.1:6379", "timeout": "20ms", "fail": "closed" }
        }))
        .unwrap();
        let r = c.redis.unwrap();
        assert!(matches!(r.target, Target::Single(_)));
        assert_eq!(
            (r.timeout, r.fail),
            (Duration::from_millis(20), Fail::Closed)
        );
        let c = compile(&json!({
            "limit": "10/s", "mode": "redis",
            "redis": { "urls": ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"], "cluster": true }
        }))
        .unwrap();
        let r = c.redis.unwrap();
        assert!(matches!(r.target, Target::Cluster(_)));
        assert_eq!((r.timeout, r.fail), (DEFAULT_TIMEOUT, Fail::Open));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({ "limit": "10/fortnight" }),
                "limit",
                "unknown period",
            ),
            (
                json!({ "limit": "10/s", "key": ["client_ip", "cookie:x"] }),
                "key[1]",
                "unknown key",
            ),
            (json!({ "limit": "10/s", "key": [] }), "key", "at least one"),
            (
                json!({ "limit": "10/s", "burst": 0 }),
                "burst",
                "at least 1",
            ),
            (
                json!({ "burst": 3, "concurrency": 1 }),
                "burst",
                "needs a limit",
            ),
            (json!({ "concurrency": 0 }), "concurrency", "at least 1"),
            (json!({}), "", "nothing to limit"),
            (
                json!({ "limit": "1/s", "limt": 2 }),
                "limt",
                "unknown field",
            ),
            (
                json!({ "limit": "1/s", "mode": "cluster" }),
                "mode",
                "unknown variant",
            ),
            (
                json!({ "limit": "1/s", "policy": "a b" }),
                "policy",
                "not a policy name",
            ),
            (
                json!({ "limit": "1/s", "max_keys": 0 }),
                "max_keys",
                "from 1",
            ),
            (
                json!({ "limit": "1/s", "mode": "redis" }),
                "redis",
                "needs redis settings",
            ),
            (
                json!({ "limit": "1/s", "redis": { "url": "redis://x" } }),
                "redis",
                "only used",
            ),
            (
                json!({ "concurrency": 1, "mode": "redis", "redis": { "url": "redis://x" } }),
                "limit",
                "needs a limit",
            ),
            (
                json!({ "limit": "1/s", "mode": "redis", "redis": { "url": "http://x" } }),
                "redis.url",
                "bad Redis URL",
            ),
            (
                json!({ "limit": "1/s", "mode": "redis", "redis": { "urls": ["redis://a", "redis://b"] } }),
                "redis.urls",
                "cluster: true",
            ),
            (
                json!({ "limit": "1/s", "mode": "redis", "redis": { "url": "redis://a", "timeout": "50" } }),
                "redis.timeout",
                "has no unit",
            ),
            (
                json!({ "limit": "1/s", "mode": "redis", "redis": { "url": "redis://a", "fail": "maybe" } }),
                "redis.fail",
                "unknown variant",
            ),
        ];
        for (settings, path, message) in cases {
            let e = error(settings.clone());
            assert_eq!(e.path, path, "{settings}: {e}");
            assert!(e.message.contains(message), "{settings}: {e}");
        }
    }
}
