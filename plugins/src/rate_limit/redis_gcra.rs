//! `mode: redis`: GCRA in one atomic Lua script on a Redis node or a Redis Cluster, shared by
//! every gateway that uses the same Redis, policy and key.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, RedisError, Script};
use tokio::sync::OnceCell;

use super::metrics::Metrics;
use super::Verdict;

/// GCRA over one key, with the time from Redis (`TIME`), so gateway clocks do not matter.
/// `ARGV[1]`: emission interval, `ARGV[2]`: tolerance (`(burst - 1)` intervals), both in µs.
/// The key holds the theoretical arrival time (µs since the epoch) and expires when it would
/// equal a fresh state, so an idle key costs nothing. Returns
/// `{allowed, remaining, retry_after_us, reset_us}`.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
if tat == nil or tat < now then
  tat = now
end
if tat - now > tolerance then
  return {0, 0, tat - tolerance - now, tat - now}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, math.floor((tolerance + interval - (new_tat - now)) / interval), 0, new_tat - now}
";

/// While Redis is unavailable, one request per this many ms asks it (a probe); the others get
/// the fail policy at once instead of each waiting for the timeout.
const PROBE_EVERY_MS: u64 = 100;

/// Where the Redis is.
pub enum Target {
    /// One node.
    Single(Client),
    /// A Redis Cluster reached through these seed nodes.
    Cluster(Box<ClusterClient>),
}

/// Whether a request is let through when Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fail {
    /// Let it through.
    Open,
    /// Refuse it (503).
    Closed,
}

/// A live connection (both kinds are cheap handles to one multiplexed connection).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// What the limiter decided, Redis permitting.
pub enum Outcome {
    /// Redis answered.
    Decided(Verdict),
    /// Redis failed or timed out; the configured [`Fail`] applies.
    Unavailable,
}

/// The cluster-wide limiter of one plugin instance.
pub struct RedisLimiter {
    target: Target,
    /// Connected on first use, from whichever runtime thread gets there first; the handle works
    /// from every runtime.
    conn: OnceCell<Conn>,
    script: Script,
    timeout: Duration,
    interval_us: u64,
    tolerance_us: u64,
    /// Names the instance in logs.
    policy: String,
    /// Whether an incident (Redis not answering) is under way.
    down: AtomicBool,
    /// During an incident: when the next probe may go, in ms since `epoch`.
    next_probe: AtomicU64,
    epoch: Instant,
    metrics: Metrics,
}

impl RedisLimiter {
    /// A limiter with emission interval `interval` and `burst` (at least 1) on `target`, each
    /// call bounded by `timeout`.
    pub fn new(
        target: Target,
        interval: Duration,
        burst: u32,
        timeout: Duration,
        policy: &str,
        metrics: Metrics,
    ) -> RedisLimiter {
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        RedisLimiter {
            target,
            conn: OnceCell::new(),
            script: Script::new(GCRA),
            timeout,
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst.saturating_sub(1))),
            policy: policy.to_string(),
            down: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics,
        }
    }

    /// Counts one request under `key` (the Redis key, hash tag included).
    pub async fn check(&self, key: &str) -> Outcome {
        if self.down.load(Ordering::Relaxed) && !self.may_probe() {
            return Outcome::Unavailable;
        }
        match tokio::time::timeout(self.timeout, self.run(key)).await {
            Ok(Ok(verdict)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    log::warn!(
                        "rate_limit {}: Redis answers again; limits are enforced",
                        self.policy
                    );
                }
                Outcome::Decided(verdict)
            }
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed(&format!("no answer within {:?}", self.timeout)),
        }
    }

    /// During an incident: whether this request is the one that may ask Redis now.
    fn may_probe(&self) -> bool {
        let now = self.now_ms();
        let next = self.next_probe.load(Ordering::Relaxed);
        now >= next
            && self
                .next_probe
                .compare_exchange(
                    next,
                    now + PROBE_EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn failed(&self, error: &str) -> Outcome {
        self.metrics.redis_errors.inc();
        self.next_probe
            .store(self.now_ms() + PROBE_EVERY_MS, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            log::warn!(
                "rate_limit {}: Redis unavailable ({error}); the fail policy applies until it answers again",
                self.policy
            );
        }
        Outcome::Unavailable
    }

    async fn run(&self, key: &str) -> Result<Verdict, RedisError> {
        let mut conn = self.conn.get_or_try_init(|| self.connect()).await?.clone();
        let mut call = self.script.key(key);
        call.arg(self.interval_us).arg(self.tolerance_us);
        let (allowed, remaining, retry_us, reset_us): (i64, i64, i64, i64) = match &mut conn {
            Conn::Single(c) => call.invoke_async(c).await?,
            Conn::Cluster(c) => call.invoke_async(c).await?,
        };
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(Verdict {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: micros(retry_us),
            reset: micros(reset_us),
        })
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(client.clone(), config).map(Conn::Single)
            }
            Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}

/// The Redis key of a rate-limit key: all of it inside a hash tag, so Redis Cluster keeps it
/// on one slot.
pub fn redis_key(policy: &str, key: &str) -> String {
    format!("{{meridian:rl:{policy}:{key}}}")
}
