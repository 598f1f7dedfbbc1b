//! The `jwt` plugin: admits requests that carry a valid JWT, sets [`crate::Identity`], and
//! forwards selected claims upstream.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde::Deserialize;

use super::challenge::{self, BearerError};
use super::extract::Source;
use super::forward::Forward;
use super::jwks::{Jwks, Timing};
use super::require::Require;
use super::verify::{CacheLimits, Policy, Verifier};
use super::{fetch, metrics, units};
use crate::{settings, ConfigError, Flow, Hooks, Identity, Plugin, PluginCtx};

/// The shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET: usize = 32;

/// One value or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The `jwt` settings, documented in `docs/plugins/auth.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    algorithms: Vec<String>,
    jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh", deserialize_with = "units::duration")]
    jwks_refresh: Duration,
    #[serde(
        default = "default_jwks_min_refresh",
        deserialize_with = "units::duration"
    )]
    jwks_min_refresh: Duration,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    jwks_timeout: Duration,
    ca: Option<String>,
    secret: Option<String>,
    public_key: Option<String>,
    issuer: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    #[serde(default = "default_leeway", deserialize_with = "units::duration")]
    leeway: Duration,
    #[serde(default = "default_required_claims")]
    required_claims: Vec<String>,
    #[serde(default = "default_max_token_size", deserialize_with = "units::size")]
    max_token_size: usize,
    #[serde(default = "default_cache_ttl", deserialize_with = "units::duration")]
    cache_ttl: Duration,
    #[serde(default = "default_cache_size")]
    cache_size: u64,
    #[serde(default)]
    from: Source,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    #[serde(default)]
    require: Require,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_cache_size() -> u64 {
    10_000
}
fn default_required_claims() -> Vec<String> {
    vec!["exp".into()]
}
pub(super) fn default_max_token_size() -> usize {
    8 * 1024
}
pub(super) fn default_realm() -> String {
    "meridian".into()
}

/// The `jwt` plugin.
pub struct Jwt {
    verifier: Verifier,
    source: Source,
    forward: Forward,
    require: Require,
    realm: String,
}

/// Builds the `jwt` plugin from its settings.
pub fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
    let s: Settings = settings(value)?;
    let algorithms = parse_algorithms(&s.algorithms)?;
    let has = |f: AlgorithmFamily| algorithms.iter().any(|a| a.family() == f);
    let mut keys = Vec::new();
    match (&s.secret, has(AlgorithmFamily::Hmac)) {
        (Some(secret), true) if secret.len() < MIN_SECRET => {
            return Err(ConfigError::at(
                "secret",
                format!("too short; expected at least {MIN_SECRET} bytes"),
            ))
        }
        (Some(secret), true) => keys.push(DecodingKey::from_secret(secret.as_bytes())),
        (Some(_), false) => {
            return Err(ConfigError::at(
                "secret",
                "set, but no HS256/HS384/HS512 in algorithms",
            ))
        }
        (None, true) => {
            return Err(ConfigError::at(
                "secret",
                "required by the HS* algorithms in algorithms",
            ))
        }
        (None, false) => {}
    }
    if let Some(pem) = &s.public_key {
        let key = public_key(pem.as_bytes()).ok_or_else(|| {
            ConfigError::at("public_key", "not a PEM RSA, EC or Ed25519 public key")
        })?;
        if !has(key.family()) {
            return Err(ConfigError::at(
                "public_key",
                "no algorithm in algorithms uses this type of key",
            ));
        }
        keys.push(key);
    }
    let asymmetric = algorithms
        .iter()
        .any(|a| a.family() != AlgorithmFamily::Hmac);
    if asymmetric && s.jwks_url.is_none() && s.public_key.is_none() {
        return Err(ConfigError::at(
            "algorithms",
            "asymmetric algorithms need jwks_url or public_key",
        ));
    }
    let jwks = match s.jwks_url {
        Some(url) => {
            check_url(&url).map_err(|m| ConfigError::at("jwks_url", m))?;
            let timing = Timing {
                refresh: s.jwks_refresh,
                min_refresh: s.jwks_min_refresh,
            };
            let client = fetch::client(s.jwks_timeout, s.ca.as_deref())
                .map_err(|m| ConfigError::at("ca", m))?;
            Some(Jwks::new(url, client, timing))
        }
        None => None,
    };
    if s.cache_size == 0 {
        return Err(ConfigError::at("cache_size", "must be at least 1"));
    }
    let source = s.from.or_header("authorization");
    source.validate("from")?;
    let policy = Policy {
        algorithms,
        issuers: s.issuer.map(OneOrMany::into_vec).unwrap_or_default(),
        audiences: s.audience.map(OneOrMany::into_vec).unwrap_or_default(),
        required_claims: s.required_claims,
        leeway: s.leeway,
        max_token_size: s.max_token_size,
        cache: (!s.cache_ttl.is_zero()).then_some(CacheLimits {
            ttl: s.cache_ttl,
            size: s.cache_size,
        }),
    };
    Ok(Arc::new(Jwt {
        verifier: Verifier::new(policy, keys, jwks),
        source,
        forward: Forward::parse(&s.forward_claims, "forward_claims")?,
        require: s.require,
        realm: s.realm,
    }))
}

/// Parses the pinned algorithm names; `none` is not one.
pub(super) fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::at(
            "algorithms",
            "empty; expected at least one of RS256, ES256, EdDSA, HS256, ...",
        ));
    }
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Algorithm::from_str(n).map_err(|_| {
                ConfigError::at(
                    format!("algorithms[{i}]"),
                    format!(
                        "unknown algorithm \"{n}\"; expected one of HS256, HS384, HS512, RS256, \
                         RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
                    ),
                )
            })
        })
        .collect()
}

/// Checks that `url` is an absolute http or https URL.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err(format!("scheme \"{}\" is not http or https", u.scheme())),
        Err(e) => Err(format!("\"{url}\" is not a URL: {e}")),
    }
}

fn public_key(pem: &[u8]) -> Option<DecodingKey> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .ok()
}

#[async_trait]
impl Plugin for Jwt {
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
            return Ok(challenge::missing_bearer("jwt", &self.realm, &self.source).into_flow());
        };
        let claims = match self.verifier.verify(&token).await {
            Ok(claims) => claims,
            Err(e) => {
                metrics::decision("jwt", "invalid");
                let reason = e.description();
                return Ok(challenge::bearer(
                    &self.realm,
                    BearerError::InvalidToken,
                    &reason,
                    None,
                )
                .into_flow());
            }
        };
        let identity = Identity {
            subject: claims
                .get("sub")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_string(),
            method: "jwt",
            claims,
        };
        super::admit::admit(
            identity,
            &self.require,
            &self.forward,
            &self.realm,
            "jwt",
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

    fn error(v: serde_json::Value) -> ConfigError {
        match build(&v) {
            Err(e) => e,
            Ok(_) => panic!("built with {v}"),
        }
    }

    #[test]
    fn config_errors_point_at_the_field() {
        let e =
            error(serde_json::json!({ "algorithms": ["RS256", "none"], "jwks_url": "http://x/" }));
        assert_eq!(e.path, "algorithms[1]");
        let e = error(serde_json::json!({ "algorithms": ["HS256"] }));
        assert_eq!(e.path, "secret");
        let e = error(serde_json::json!({ "algorithms": ["HS256"], "secret": "short" }));
        assert!(e.message.contains("too short"), "{e}");
        let e = error(serde_json::json!({ "algorithms": ["RS256"] }));
        assert_eq!(e.path, "algorithms");
        let e = error(serde_json::json!({ "algorithms": ["RS256"], "jwks_url": "ftp://x" }));
        assert_eq!(e.path, "jwks_url");
        let e = error(
            serde_json::json!({ "algorithms": ["RS256"], "jwks_url": "http://x/", "leeway": "30" }),
        );
        assert_eq!(e.path, "leeway");
        let e = error(
            serde_json::json!({ "algorithms": ["RS256"], "jwks_url": "http://x/", "forward_claims": { "sub": "a b" } }),
        );
        assert_eq!(e.path, "forward_claims.sub");
        let e = error(
            serde_json::json!({ "algorithms": ["RS256"], "jwks_url": "http://x/", "jwks": "x" }),
        );
        assert!(e.message.contains("unknown field `jwks`"), "{e}");
    }

    #[test]
    fn builds_with_defaults() {
        let ok = build(&serde_json::json!({
            "algorithms": ["RS256", "ES256", "HS256"],
            "jwks_url": "https://idp.example/jwks",
            "secret": "0123456789abcdef0123456789abcdef",
            "from": { "cookie": "at" },
            "require": { "scope": ["orders:write"] },
        }));
        assert!(ok.is_ok());
    }
}
