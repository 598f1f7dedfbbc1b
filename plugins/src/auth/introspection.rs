//! The `introspection` plugin: asks an OAuth 2.0 authorization server whether a token is
//! active (RFC 7662), with client authentication, and caches its answers — bounded by the
//! token's `exp`, a maximum TTL and a number of entries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use moka::future::Cache;
use moka::Expiry;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::challenge::{self, BearerError};
use super::client::{ClientAuth, Credentials};
use super::extract::Source;
use super::forward::Forward;
use super::require::Require;
use super::{fetch, jwt, metrics, units};
use crate::{settings, ConfigError, Flow, Hooks, Identity, LocalResponse, Plugin, PluginCtx};

/// The `introspection` settings, documented in `docs/plugins/auth.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    endpoint: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    client_auth: ClientAuth,
    token_type_hint: Option<String>,
    #[serde(default = "default_cache_ttl", deserialize_with = "units::duration")]
    cache_ttl: Duration,
    #[serde(default = "default_negative_ttl", deserialize_with = "units::duration")]
    negative_cache_ttl: Duration,
    #[serde(default = "default_cache_size")]
    cache_size: u64,
    #[serde(default = "jwt::default_timeout", deserialize_with = "units::duration")]
    timeout: Duration,
    ca: Option<String>,
    #[serde(
        default = "jwt::default_max_token_size",
        deserialize_with = "units::size"
    )]
    max_token_size: usize,
    #[serde(default)]
    from: Source,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    #[serde(default)]
    require: Require,
    #[serde(default = "jwt::default_realm")]
    realm: String,
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_cache_size() -> u64 {
    10_000
}

/// An introspection answer, as cached.
#[derive(Clone)]
struct Answer {
    /// Active tokens' claims; `None` for an inactive token.
    claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// How long the answer may be reused.
    ttl: Duration,
}

/// Expires each cached answer after its own TTL.
struct AnswerTtl;

impl Expiry<[u8; 32], Answer> for AnswerTtl {
    fn expire_after_create(&self, _: &[u8; 32], answer: &Answer, _: Instant) -> Option<Duration> {
        Some(answer.ttl)
    }
}

/// The `introspection` plugin.
pub struct Introspection {
    endpoint: String,
    credentials: Credentials,
    token_type_hint: Option<String>,
    cache_ttl: Duration,
    negative_cache_ttl: Duration,
    max_token_size: usize,
    client: reqwest::Client,
    cache: Cache<[u8; 32], Answer>,
    source: Source,
    forward: Forward,
    require: Require,
    realm: String,
}

/// Builds the `introspection` plugin from its settings.
pub fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
    let s: Settings = settings(value)?;
    jwt::check_url(&s.endpoint).map_err(|m| ConfigError::at("endpoint", m))?;
    if s.cache_size == 0 {
        return Err(ConfigError::at("cache_size", "must be at least 1"));
    }
    let source = s.from.or_header("authorization");
    source.validate("from")?;
    Ok(Arc::new(Introspection {
        client: fetch::client(s.timeout, s.ca.as_deref()).map_err(|m| ConfigError::at("ca", m))?,
        cache: Cache::builder()
            .max_capacity(s.cache_size)
            .expire_after(AnswerTtl)
            .build(),
        forward: Forward::parse(&s.forward_claims, "forward_claims")?,
        endpoint: s.endpoint,
        credentials: Credentials {
            id: s.client_id,
            secret: s.client_secret,
            method: s.client_auth,
        },
        token_type_hint: s.token_type_hint,
        cache_ttl: s.cache_ttl,
        negative_cache_ttl: s.negative_cache_ttl,
        max_token_size: s.max_token_size,
        source,
        require: s.require,
        realm: s.realm,
    }))
}

impl Introspection {
    /// Asks the endpoint about `token`.
    async fn introspect(&self, token: &str) -> Result<Answer, String> {
        let mut form = vec![("token", token)];
        if let Some(hint) = &self.token_type_hint {
            form.push(("token_type_hint", hint));
        }
        let request = self
            .credentials
            .post_form(&self.client, &self.endpoint, form);
        let answer: serde_json::Map<String, serde_json::Value> = fetch::json(request).await?;
        Ok(self.answer(answer, unix_now()))
    }

    /// The cached form of an answer received at `now` (seconds since the epoch).
    fn answer(&self, answer: serde_json::Map<String, serde_json::Value>, now: u64) -> Answer {
        if answer.get("active") != Some(&serde_json::Value::Bool(true)) {
            return Answer {
                claims: None,
                ttl: self.negative_cache_ttl,
            };
        }
        let ttl = match answer.get("exp").and_then(serde_json::Value::as_u64) {
            Some(exp) if exp <= now => {
                return Answer {
                    claims: None,
                    ttl: Duration::ZERO,
                }
            }
            Some(exp) => self.cache_ttl.min(Duration::from_secs(exp - now)),
            None => self.cache_ttl,
        };
        Answer {
            claims: Some(Arc::new(answer)),
            ttl,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[async_trait]
impl Plugin for Introspection {
    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            upstream_request: !self.forward.is_empty(),
            ..Hooks::NONE
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut PluginCtx,
    ) -> pingora::Result<Flow> {
        let req = session.req_header();
        let Some(token) = self.source.find(&req.headers, req.uri.query()) else {
            return Ok(
                challenge::missing_bearer("introspection", &self.realm, &self.source).into_flow(),
            );
        };
        let invalid = |reason: &str| {
            metrics::decision("introspection", "invalid");
            Ok(challenge::bearer(&self.realm, BearerError::InvalidToken, reason, None).into_flow())
        };
        if token.is_empty() || token.len() > self.max_token_size {
            return invalid(if token.is_empty() {
                "empty token"
            } else {
                "token too large"
            });
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut fetched = false;
        let answer = self
            .cache
            .try_get_with(key, async {
                fetched = true;
                self.introspect(&token).await
            })
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                metrics::introspection("error");
                log::warn!("introspection at {}: {e}", self.endpoint);
                return Ok(LocalResponse::text(503, "authorization server unavailable").into_flow());
            }
        };
        let Some(claims) = answer.claims else {
            metrics::introspection(if fetched { "inactive" } else { "cache_hit" });
            return invalid("token is not active");
        };
        metrics::introspection(if fetched { "active" } else { "cache_hit" });
        let subject = ["sub", "username", "client_id"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
            .unwrap_or_default()
            .to_string();
        let identity = Identity {
            subject,
            method: "introspection",
            claims,
        };
        super::admit::admit(
            identity,
            &self.require,
            &self.forward,
            &self.realm,
            "introspection",
            ctx,
        )
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> pingora::Result<()> {
        self.forward.apply(request, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin() -> Introspection {
        Introspection {
            endpoint: "http://127.0.0.1:1/introspect".into(),
            credentials: Credentials {
                id: "gw".into(),
                secret: "s".into(),
                method: ClientAuth::Basic,
            },
            token_type_hint: None,
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(5),
            max_token_size: 8192,
            client: reqwest::Client::new(),
            cache: Cache::new(1),
            source: Source::default().or_header("authorization"),
            forward: Forward::default(),
            require: Require::default(),
            realm: "r".into(),
        }
    }

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    #[test]
    fn ttl_is_bounded_by_exp_and_max() {
        let p = plugin();
        let a = p.answer(
            map(serde_json::json!({ "active": true, "exp": 1_000 + 20 })),
            1_000,
        );
        assert_eq!(a.ttl, Duration::from_secs(20));
        assert!(a.claims.is_some());
        let a = p.answer(
            map(serde_json::json!({ "active": true, "exp": 1_000 + 600 })),
            1_000,
        );
        assert_eq!(a.ttl, Duration::from_secs(60));
        let a = p.answer(map(serde_json::json!({ "active": true })), 1_000);
        assert_eq!(a.ttl, Duration::from_secs(60));
        let a = p.answer(
            map(serde_json::json!({ "active": true, "exp": 999 })),
            1_000,
        );
        assert!(a.claims.is_none());
        assert_eq!(a.ttl, Duration::ZERO);
        let a = p.answer(map(serde_json::json!({ "active": "true" })), 1_000);
        assert!(a.claims.is_none());
        assert_eq!(a.ttl, Duration::from_secs(5));
    }

    #[test]
    fn config_errors_point_at_the_field() {
        let err = |v: serde_json::Value| match build(&v) {
            Err(e) => e,
            Ok(_) => panic!("built with {v}"),
        };
        let base =
            serde_json::json!({ "endpoint": "http://x/i", "client_id": "a", "client_secret": "b" });
        let mut v = base.clone();
        v["client_auth"] = "digest".into();
        assert_eq!(err(v).path, "client_auth");
        let mut v = base.clone();
        v["endpoint"] = "x/i".into();
        assert_eq!(err(v).path, "endpoint");
        let mut v = base.clone();
        v["cache_ttl"] = "60".into();
        assert_eq!(err(v).path, "cache_ttl");
        let mut v = base;
        v["cache_size"] = 0.into();
        assert_eq!(err(v).path, "cache_size");
    }
}
