//! A JSON Web Key Set fetched over HTTP(S), cached, refreshed on a period and on an unknown
//! `kid`, with refreshes rate-limited.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::{fetch, metrics};

/// The most keys kept from one key set.
const MAX_KEYS: usize = 64;

/// A verification key with what it may verify.
pub struct Key {
    /// Its `kid`, if the set named it.
    pub kid: Option<String>,
    /// The one algorithm it is for, if the set pinned it (`alg`).
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

/// The keys of one successful fetch.
struct KeySet {
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

/// How often a key set is fetched.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Fetch again after this long even if every `kid` is known.
    pub refresh: Duration,
    /// At most one fetch per this interval, whatever asks for it.
    pub min_refresh: Duration,
}

/// A remote key set.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    timing: Timing,
    keys: ArcSwap<KeySet>,
    /// When the last fetch started; held while fetching so concurrent misses fetch once.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl Jwks {
    /// A key set at `url`, fetched with `client` on first use.
    pub fn new(url: String, client: reqwest::Client, timing: Timing) -> Jwks {
        Jwks {
            url,
            client,
            timing,
            keys: ArcSwap::from_pointee(KeySet {
                keys: Vec::new(),
                fetched: None,
            }),
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// Calls `f` with the current keys, fetching first if the set was never fetched or is
    /// older than the refresh period; when `f` finds nothing and `kid` names a key, fetches
    /// again (rate-limited) and retries.
    pub async fn with_keys<T>(
        &self,
        kid: Option<&str>,
        f: impl Fn(&[Key]) -> Option<T>,
    ) -> Option<T> {
        let mut current = self.keys.load_full();
        let stale = current
            .fetched
            .is_none_or(|at| at.elapsed() >= self.timing.refresh);
        if stale {
            // A set that is only old is refreshed by one request while the others go on
            // with it; a set never fetched is waited for.
            let wait = current.fetched.is_none();
            current = self.refresh(&current, wait).await;
        }
        if let Some(found) = f(&current.keys) {
            return Some(found);
        }
        let known =
            kid.is_some_and(|kid| current.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        if kid.is_none() || known {
            return None;
        }
        let refreshed = self.refresh(&current, true).await;
        f(&refreshed.keys)
    }

    /// Fetches the set unless another caller replaced `seen` meanwhile or the last attempt
    /// was less than `min_refresh` ago. Without `wait`, returns `seen` at once when another
    /// caller is fetching. Returns the keys to use.
    ///
    /// The `last_attempt` guard is held across the fetch on purpose: it is the single flight.
    /// A caller that waits for it finds the new set when it gets the lock (or an attempt too
    /// recent to repeat); released earlier, it would find neither and answer with the old
    /// keys. It is tokio's mutex (no thread blocks) and the client's timeout bounds the fetch.
    #[allow(clippy::significant_drop_tightening)]
    async fn refresh(&self, seen: &Arc<KeySet>, wait: bool) -> Arc<KeySet> {
        let mut last = if wait {
            self.last_attempt.lock().await
        } else {
            match self.last_attempt.try_lock() {
                Ok(last) => last,
                Err(_) => return seen.clone(),
            }
        };
        let now_keys = self.keys.load_full();
        if !Arc::ptr_eq(&now_keys, seen) {
            return now_keys;
        }
        if last.is_some_and(|at| at.elapsed() < self.timing.min_refresh) {
            metrics::jwks_fetch("rate_limited");
            return now_keys;
        }
        *last = Some(Instant::now());
        match fetch::json::<Document>(self.client.get(&self.url)).await {
            Ok(doc) => {
                metrics::jwks_fetch("ok");
                let keys = parse(doc.keys);
                log::info!("jwks {}: {} keys", self.url, keys.len());
                let set = Arc::new(KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                });
                self.keys.store(set.clone());
                set
            }
            Err(e) => {
                metrics::jwks_fetch("error");
                log::warn!(
                    "jwks {}: {e}; keeping {} cached keys",
                    self.url,
                    now_keys.keys.len()
                );
                now_keys
            }
        }
    }
}

/// The signature keys of a set: encryption keys, symmetric keys (a published `oct` key would
/// let anyone sign) and keys that do not parse are skipped.
fn parse(values: Vec<serde_json::Value>) -> Vec<Key> {
    let mut keys = Vec::new();
    for value in values {
        if keys.len() == MAX_KEYS {
            log::warn!("jwks: more than {MAX_KEYS} keys; the rest are ignored");
            break;
        }
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                log::debug!("jwks: key skipped: {e}");
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
        {
            continue;
        }
        let alg = match jwk
            .common
            .key_algorithm
            .map(|a| Algorithm::from_str(&a.to_string()))
        {
            None => None,
            Some(Ok(alg)) => Some(alg),
            Some(Err(_)) => continue,
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            }),
            Err(e) => log::debug!("jwks: key skipped: {e}"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_signature_keys_only() {
        let doc = serde_json::json!([
            { "kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": "AQAB", "e": "AQAB" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
            { "kty": "oct", "kid": "sym", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB" },
            { "kty": "EC", "kid": "e1", "crv": "P-256", "x": "AQAB", "y": "AQAB" },
            { "kty": "nonsense" }
        ]);
        let serde_json::Value::Array(values) = doc else {
            panic!("array")
        };
        let keys = parse(values);
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["r1", "e1"]);
        assert_eq!(keys[0].alg, Some(Algorithm::RS256));
        assert_eq!(keys[1].alg, None);
    }
}
