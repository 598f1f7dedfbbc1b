//! The `rate_limit` plugin: GCRA rate limits per key (in this process with governor, or shared
//! by every gateway through Redis) and per-key concurrency limits. Allowed responses and 429s
//! carry the `RateLimit-Policy` and `RateLimit` fields; 429s carry `Retry-After`.

mod concurrency;
mod headers;
mod key;
mod local;
mod metrics;
mod redis_gcra;
mod settings;
mod units;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::{ConfigError, Flow, Hooks, LocalResponse, Plugin, PluginCtx};
use concurrency::InFlight;
use key::KeyPart;
use local::LocalLimiter;
use metrics::Metrics;
use redis_gcra::{Fail, Outcome, RedisLimiter};

/// A rate-limit decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests the key may still make at once.
    pub remaining: u64,
    /// When refused: how long until one request is allowed again.
    pub retry_after: Duration,
    /// How long until the key has its whole burst again.
    pub reset: Duration,
}

/// Where a rate limit is counted.
enum Limiter {
    Local(LocalLimiter),
    Redis(Box<RedisLimiter>, Fail),
}

/// The `RateLimit` value of an allowed request, added to its response.
#[derive(Clone)]
struct RateLimitState(String);

/// The `rate_limit` plugin.
pub struct RateLimit {
    policy: String,
    key: Vec<KeyPart>,
    /// The rate limit and its `RateLimit-Policy` value.
    limiter: Option<(Limiter, String)>,
    in_flight: Option<Arc<InFlight>>,
    metrics: Metrics,
}

/// Builds the plugin from its settings (the `rate_limit` factory).
pub fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c = settings::compile(value)?;
    let metrics = Metrics::new(&c.policy).map_err(ConfigError::from)?;
    let limiter = c.limit.map(|l| {
        let limiter = match c.redis {
            Some(r) => Limiter::Redis(
                Box::new(RedisLimiter::new(
                    r.target,
                    l.rate.emission_interval(),
                    l.burst.get(),
                    r.timeout,
                    &c.policy,
                    metrics.clone(),
                )),
                r.fail,
            ),
            None => Limiter::Local(LocalLimiter::new(l.rate, l.burst, c.max_keys)),
        };
        (limiter, headers::policy(&c.policy, l.rate))
    });
    Ok(Arc::new(RateLimit {
        policy: c.policy,
        key: c.key,
        limiter,
        in_flight: c.concurrency.map(|n| InFlight::new(n.get())),
        metrics,
    }))
}

impl RateLimit {
    /// The 429 of a refused request.
    fn limited(&self, policy: &str, verdict: &Verdict) -> Flow {
        self.metrics.limited.inc();
        LocalResponse::text(429, "rate limit exceeded")
            .with_header("retry-after", headers::retry_after(verdict.retry_after))
            .with_header("ratelimit-policy", policy)
            .with_header("ratelimit", headers::state(&self.policy, 0, verdict.reset))
            .into_flow()
    }
}

#[async_trait]
impl Plugin for RateLimit {
    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            response: self.limiter.is_some(),
            ..Hooks::NONE
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut PluginCtx) -> Result<Flow> {
        let key = key::build(&self.key, session.req_header(), ctx);
        if let Some(table) = &self.in_flight {
            match table.acquire(&key) {
                // Dropped with the request's context, however the request ends.
                Some(slot) => {
                    ctx.extensions.insert(Arc::new(slot));
                }
                None => {
                    self.metrics.limited.inc();
                    let reason = format!("too many concurrent requests (at most {})", table.max());
                    return Ok(LocalResponse::text(429, &reason)
                        .with_header("retry-after", "1")
                        .into_flow());
                }
            }
        }
        let Some((limiter, policy)) = &self.limiter else {
            self.metrics.allowed.inc();
            return Ok(Flow::Continue);
        };
        let verdict = match limiter {
            Limiter::Local(l) => l.check(&key),
            Limiter::Redis(r, fail) => {
                match r.check(&redis_gcra::redis_key(&self.policy, &key)).await {
                    Outcome::Decided(v) => v,
                    Outcome::Unavailable if *fail == Fail::Open => {
                        self.metrics.failed_open.inc();
                        return Ok(Flow::Continue);
                    }
                    Outcome::Unavailable => {
                        self.metrics.failed_closed.inc();
                        return Ok(LocalResponse::text(503, "rate limit unavailable")
                            .with_header("retry-after", "1")
                            .into_flow());
                    }
                }
            }
        };
        if !verdict.allowed {
            return Ok(self.limited(policy, &verdict));
        }
        self.metrics.allowed.inc();
        let state = headers::state(&self.policy, verdict.remaining, verdict.reset);
        ctx.extensions.insert(RateLimitState(state));
        Ok(Flow::Continue)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        if let (Some((_, policy)), Some(state)) =
            (&self.limiter, ctx.extensions.remove::<RateLimitState>())
        {
            response.insert_header("ratelimit-policy", policy.as_str())?;
            response.insert_header("ratelimit", state.0)?;
        }
        Ok(())
    }
}
