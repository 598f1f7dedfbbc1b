//! JWT verification: algorithms pinned by config, keys inline or from a JWKS, `exp`/`nbf`
//! with leeway, `iss`, `aud` and required claims. Used by the `jwt` and `oidc` plugins.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use moka::future::Cache;
use moka::Expiry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::{Jwks, Key};

/// The claims of a verified token.
pub type Claims = Map<String, Value>;

/// The most keys tried for one token (a token without `kid` against a large key set).
const MAX_ATTEMPTS: usize = 8;

/// Claims that `jsonwebtoken` checks itself when required.
const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "aud", "iss", "sub"];

/// Why a token was refused. [`TokenError::description`] is the RFC 6750 `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than the configured limit.
    Oversize,
    /// Not three base64url parts of JSON, or an algorithm that does not exist (`none`).
    Malformed,
    /// An algorithm outside the configured set.
    AlgorithmNotAllowed,
    /// A `jwk`, `jku`, `x5u` or `x5c` header: keys come from config only.
    EmbeddedKey,
    /// A `crit` header: no extension is understood.
    CriticalHeader,
    /// No configured key for the token's `kid` and algorithm, even after a JWKS refresh.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not name the configured audience.
    WrongAudience,
    /// A required claim is absent.
    MissingClaim(String),
    /// A claim has the wrong type (`exp` as a string).
    BadClaim(String),
}

impl TokenError {
    /// A short reason for the client.
    pub fn description(&self) -> String {
        match self {
            TokenError::Oversize => "token too large".into(),
            TokenError::Malformed => "malformed token".into(),
            TokenError::AlgorithmNotAllowed => "algorithm not allowed".into(),
            TokenError::EmbeddedKey => "embedded keys are not accepted".into(),
            TokenError::CriticalHeader => "unsupported crit header".into(),
            TokenError::UnknownKey => "unknown signing key".into(),
            TokenError::BadSignature => "bad signature".into(),
            TokenError::Expired => "token expired".into(),
            TokenError::NotYetValid => "token not yet valid".into(),
            TokenError::WrongIssuer => "wrong issuer".into(),
            TokenError::WrongAudience => "wrong audience".into(),
            TokenError::MissingClaim(c) => format!("missing claim {c}"),
            TokenError::BadClaim(c) => format!("invalid claim {c}"),
        }
    }

    fn from_jwt(e: &jsonwebtoken::errors::Error) -> TokenError {
        match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
            ErrorKind::InvalidClaimFormat(c) => TokenError::BadClaim(c.clone()),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                TokenError::AlgorithmNotAllowed
            }
            _ => TokenError::Malformed,
        }
    }
}

/// What a [`Verifier`] accepts.
pub struct Policy {
    /// The accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `iss` values (any if empty).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (the claim is not checked if empty).
    pub audiences: Vec<String>,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`.
    pub leeway: Duration,
    /// The longest token accepted, in bytes.
    pub max_token_size: usize,
    /// Keep verified tokens this long and this many, if set.
    pub cache: Option<CacheLimits>,
}

/// Bounds of a verified-token cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// The longest a verified token is reused without verifying it again.
    pub ttl: Duration,
    /// Tokens kept at most.
    pub size: u64,
}

/// A verified token's claims, as cached.
#[derive(Clone)]
struct Verified {
    claims: Arc<Claims>,
    ttl: Duration,
}

/// Expires each cached token after its own TTL.
struct VerifiedTtl;

impl Expiry<[u8; 32], Verified> for VerifiedTtl {
    fn expire_after_create(&self, _: &[u8; 32], v: &Verified, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Verifies tokens against a [`Policy`] with inline keys and an optional JWKS.
pub struct Verifier {
    validations: Vec<(Algorithm, Validation)>,
    other_required: Vec<String>,
    max_token_size: usize,
    leeway: Duration,
    cache: Option<(Cache<[u8; 32], Verified>, Duration)>,
    keys: Vec<DecodingKey>,
    jwks: Option<Jwks>,
}

impl Verifier {
    /// A verifier for `policy` with inline `keys` (an HMAC secret, public keys) and `jwks`.
    pub fn new(policy: Policy, keys: Vec<DecodingKey>, jwks: Option<Jwks>) -> Verifier {
        let spec: HashSet<String> = policy
            .required_claims
            .iter()
            .filter(|c| SPEC_CLAIMS.contains(&c.as_str()))
            .cloned()
            .collect();
        let validations = policy
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = policy.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                v.required_spec_claims = spec.clone();
                v.validate_aud = !policy.audiences.is_empty();
                if !policy.audiences.is_empty() {
                    v.set_audience(&policy.audiences);
                }
                if !policy.issuers.is_empty() {
                    v.set_issuer(&policy.issuers);
                }
                (alg, v)
            })
            .collect();
        Verifier {
            validations,
            other_required: policy
                .required_claims
                .into_iter()
                .filter(|c| !SPEC_CLAIMS.contains(&c.as_str()))
                .collect(),
            max_token_size: policy.max_token_size,
            leeway: policy.leeway,
            cache: policy.cache.map(|limits| {
                let cache = Cache::builder()
                    .max_capacity(limits.size)
                    .expire_after(VerifiedTtl)
                    .build();
                (cache, limits.ttl)
            }),
            keys,
            jwks,
        }
    }

    /// Verifies `token` and returns its claims. A token verified before is taken from the
    /// cache while it is there (at most the cache TTL, never past its `exp` plus leeway).
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        if token.len() > self.max_token_size {
            return Err(TokenError::Oversize);
        }
        let Some((cache, max_ttl)) = &self.cache else {
            return self.verify_uncached(token).await.map(Arc::new);
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = cache.get(&key).await {
            return Ok(hit.claims);
        }
        let claims = Arc::new(self.verify_uncached(token).await?);
        let ttl = match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) => {
                let until = exp.saturating_add(self.leeway.as_secs());
                (*max_ttl).min(Duration::from_secs(until.saturating_sub(unix_now())))
            }
            None => *max_ttl,
        };
        if !ttl.is_zero() {
            let verified = Verified {
                claims: claims.clone(),
                ttl,
            };
            cache.insert(key, verified).await;
        }
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unparsed_header(token))?;
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(TokenError::EmbeddedKey);
        }
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let alg = header.alg;
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let family = alg.family();
        let inline = self.keys.iter().filter(|k| k.family() == family);
        let mut result = try_keys(token, validation, inline);
        if result.is_none() || result == Some(Err(TokenError::BadSignature)) {
            if let (Some(jwks), false) = (&self.jwks, family == AlgorithmFamily::Hmac) {
                let kid = header.kid.as_deref();
                let from_set = jwks
                    .with_keys(kid, |keys: &[Key]| {
                        let candidates = keys
                            .iter()
                            .filter(|k| {
                                k.key.family() == family
                                    && k.alg.is_none_or(|a| a == alg)
                                    && (kid.is_none() || k.kid.as_deref() == kid)
                            })
                            .map(|k| &k.key);
                        try_keys(token, validation, candidates)
                    })
                    .await;
                result = from_set.or(result);
            }
        }
        let claims = result.unwrap_or(Err(TokenError::UnknownKey))?;
        if let Some(c) = self
            .other_required
            .iter()
            .find(|c| !claims.contains_key(*c))
        {
            return Err(TokenError::MissingClaim(c.clone()));
        }
        Ok(claims)
    }
}

/// Why a header did not parse: an `alg` that is no algorithm (`none`, `NONE`) is an
/// algorithm not allowed; anything else is malformed.
fn unparsed_header(token: &str) -> TokenError {
    if token.split('.').count() != 3 {
        return TokenError::Malformed;
    }
    let alg = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string));
    match alg {
        Some(alg) if Algorithm::from_str(&alg).is_err() => TokenError::AlgorithmNotAllowed,
        _ => TokenError::Malformed,
    }
}

/// Tries `keys` in order: the first key whose signature verifies decides. `None` when there
/// was no key to try.
fn try_keys<'k>(
    token: &str,
    validation: &Validation,
    keys: impl Iterator<Item = &'k DecodingKey>,
) -> Option<Result<Claims, TokenError>> {
    let mut result = None;
    for key in keys.take(MAX_ATTEMPTS) {
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => return Some(Ok(data.claims)),
            Err(e) => {
                let e = TokenError::from_jwt(&e);
                if e != TokenError::BadSignature {
                    return Some(Err(e));
                }
                result = Some(Err(e));
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn policy() -> Policy {
        Policy {
            algorithms: vec![Algorithm::HS256],
            issuers: vec!["https://issuer".into()],
            audiences: vec!["api".into()],
            required_claims: vec!["exp".into(), "tenant".into()],
            leeway: Duration::from_secs(30),
            max_token_size: 8192,
            cache: None,
        }
    }

    fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX)
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign")
    }

    #[tokio::test]
    async fn accepts_and_refuses() {
        let v = Verifier::new(policy(), vec![DecodingKey::from_secret(SECRET)], None);
        let good = serde_json::json!({
            "iss": "https://issuer", "aud": "api", "exp": now() + 60, "tenant": "t", "sub": "u"
        });
        let claims = v.verify(&sign(good.clone())).await.expect("valid");
        assert_eq!(claims["sub"], "u");

        let with = |k: &str, val: serde_json::Value| {
            let mut c = good.clone();
            c[k] = val;
            sign(c)
        };
        let cases = [
            (with("exp", (now() - 120).into()), TokenError::Expired),
            (with("nbf", (now() + 120).into()), TokenError::NotYetValid),
            (with("iss", "https://other".into()), TokenError::WrongIssuer),
            (with("aud", "other".into()), TokenError::WrongAudience),
            (
                with("exp", "soon".into()),
                TokenError::MissingClaim("exp".into()),
            ),
            ("a.b".to_string(), TokenError::Malformed),
            ("x".repeat(9000), TokenError::Oversize),
        ];
        for (token, want) in cases {
            assert_eq!(v.verify(&token).await, Err(want));
        }
        let mut no_tenant = good.clone();
        no_tenant.as_object_mut().expect("object").remove("tenant");
        assert_eq!(
            v.verify(&sign(no_tenant)).await,
            Err(TokenError::MissingClaim("tenant".into()))
        );
        // Within the leeway.
        assert!(v.verify(&with("exp", (now() - 10).into())).await.is_ok());
    }

    #[tokio::test]
    async fn verified_tokens_are_cached() {
        let mut p = policy();
        p.cache = Some(CacheLimits {
            ttl: Duration::from_secs(60),
            size: 10,
        });
        let v = Verifier::new(p, vec![DecodingKey::from_secret(SECRET)], None);
        let token = sign(serde_json::json!({
            "iss": "https://issuer", "aud": "api", "exp": now() + 60, "tenant": "t"
        }));
        let first = v.verify(&token).await.expect("valid");
        let second = v.verify(&token).await.expect("valid");
        assert!(
            Arc::ptr_eq(&first, &second),
            "second verification came from the cache"
        );
        // Refusals are not cached; a changed token is a different entry.
        let expired = sign(serde_json::json!({
            "iss": "https://issuer", "aud": "api", "exp": now() - 120, "tenant": "t"
        }));
        assert_eq!(v.verify(&expired).await, Err(TokenError::Expired));
        assert_eq!(v.verify(&expired).await, Err(TokenError::Expired));
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(v.verify(&tampered).await.is_err());
    }

    #[test]
    fn unparsed_headers() {
        let token = |header: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header));
        assert_eq!(
            unparsed_header(&token(r#"{"alg":"None"}"#)),
            TokenError::AlgorithmNotAllowed
        );
        assert_eq!(
            unparsed_header(&token(r#"{"alg":"RS256","x":}"#)),
            TokenError::Malformed
        );
        assert_eq!(
            unparsed_header(&token(r#"{"typ":"JWT"}"#)),
            TokenError::Malformed
        );
        assert_eq!(unparsed_header("e30.e30"), TokenError::Malformed);
        assert_eq!(unparsed_header("!!.e30.sig"), TokenError::Malformed);
    }

    #[tokio::test]
    async fn wrong_key_and_algorithm() {
        let v = Verifier::new(policy(), vec![DecodingKey::from_secret(SECRET)], None);
        let claims = serde_json::json!({ "iss": "https://issuer", "aud": "api", "exp": now() + 60, "tenant": "t" });
        let other = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"another secret another secret !!"),
        )
        .expect("sign");
        assert_eq!(v.verify(&other).await, Err(TokenError::BadSignature));
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign");
        assert_eq!(v.verify(&hs384).await, Err(TokenError::AlgorithmNotAllowed));
        let mut h = Header::new(Algorithm::HS256);
        h.jku = Some("https://evil/jwks".into());
        let jku =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(SECRET)).expect("sign");
        assert_eq!(v.verify(&jku).await, Err(TokenError::EmbeddedKey));
    }
}
