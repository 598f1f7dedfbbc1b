//! The `api_key` plugin: admits requests carrying one of the configured keys, stored as
//! SHA-256 hashes, and sets [`crate::Identity`] to the key's id and metadata. The key is not
//! forwarded upstream.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::extract::Source;
use super::{challenge, metrics};
use crate::{settings, ConfigError, Flow, Hooks, Identity, Plugin, PluginCtx};

/// The `api_key` settings, documented in `docs/plugins/auth.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    keys: Vec<KeySettings>,
    #[serde(default)]
    from: Source,
    #[serde(default = "super::jwt::default_realm")]
    realm: String,
}

/// One configured key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySettings {
    id: String,
    hash: String,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// One accepted key.
struct Key {
    hash: [u8; 32],
    id: String,
    metadata: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// The `api_key` plugin.
pub struct ApiKey {
    keys: Vec<Key>,
    source: Source,
    realm: String,
}

/// Builds the `api_key` plugin from its settings.
pub fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
    let s: Settings = settings(value)?;
    if s.keys.is_empty() {
        return Err(ConfigError::at("keys", "empty; expected at least one key"));
    }
    let mut keys: Vec<Key> = Vec::with_capacity(s.keys.len());
    for (i, k) in s.keys.into_iter().enumerate() {
        let hash =
            parse_hash(&k.hash).map_err(|m| ConfigError::at(format!("keys[{i}].hash"), m))?;
        if keys.iter().any(|other| other.id == k.id) {
            return Err(ConfigError::at(
                format!("keys[{i}].id"),
                format!("duplicate id \"{}\"", k.id),
            ));
        }
        if keys.iter().any(|other| other.hash == hash) {
            return Err(ConfigError::at(
                format!("keys[{i}].hash"),
                "the same key is listed twice",
            ));
        }
        keys.push(Key {
            hash,
            id: k.id,
            metadata: Arc::new(k.metadata),
        });
    }
    let source = s.from.or_header("x-api-key");
    source.validate("from")?;
    Ok(Arc::new(ApiKey {
        keys,
        source,
        realm: s.realm,
    }))
}

/// Parses `sha256:<64 hex digits>`.
fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let expected = "expected sha256:<64 hex digits>, e.g. from `printf %s KEY | sha256sum`";
    let hex = s
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unknown hash format; {expected}"))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|e| format!("{e}; {expected}"))?;
    Ok(out)
}

impl ApiKey {
    /// The key whose hash matches `presented`. Every stored hash is compared in constant time.
    fn find(&self, presented: &str) -> Option<&Key> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        found
    }
}

#[async_trait]
impl Plugin for ApiKey {
    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            upstream_request: true,
            ..Hooks::NONE
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut PluginCtx,
    ) -> pingora::Result<Flow> {
        let req = session.req_header();
        let Some(presented) = self.source.find(&req.headers, req.uri.query()) else {
            metrics::decision("api_key", "missing");
            let reason = format!("API key required in {}", self.source.describe());
            return Ok(challenge::api_key(&self.realm, &reason).into_flow());
        };
        let Some(key) = self.find(&presented) else {
            metrics::decision("api_key", "invalid");
            return Ok(challenge::api_key(&self.realm, "invalid API key").into_flow());
        };
        metrics::decision("api_key", "ok");
        ctx.identity = Some(Identity {
            subject: key.id.clone(),
            method: "api_key",
            claims: key.metadata.clone(),
        });
        Ok(Flow::Continue)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> pingora::Result<()> {
        if let Some(header) = &self.source.header {
            request.remove_header(header.as_str());
        }
        if let Some(param) = &self.source.query {
            if let Some(uri) = without_param(&request.uri, param) {
                request.set_uri(uri);
            }
        }
        Ok(())
    }
}

/// `uri` without the query parameter `name` (other parameters kept byte for byte), or
/// `None` when it has no such parameter.
fn without_param(uri: &http::Uri, name: &str) -> Option<http::Uri> {
    let query = uri.query()?;
    let is_key = |pair: &&str| {
        let key = pair.split('=').next().unwrap_or_default();
        form_urlencoded::parse(key.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == name)
    };
    if !query.split('&').any(|p| is_key(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_key(p)).collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HASH: &str =
        "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    #[test]
    fn finds_the_key_by_hash() {
        let plugin = ApiKey {
            keys: vec![Key {
                hash: parse_hash(KEY_HASH).expect("hash"),
                id: "team-a".into(),
                metadata: Arc::default(),
            }],
            source: Source::default().or_header("x-api-key"),
            realm: "r".into(),
        };
        // printf %s secret | sha256sum
        assert_eq!(plugin.find("secret").map(|k| k.id.as_str()), Some("team-a"));
        assert!(plugin.find("Secret").is_none());
        assert!(plugin.find("").is_none());
    }

    #[test]
    fn config_errors_point_at_the_field() {
        let err = |v: serde_json::Value| match build(&v) {
            Err(e) => e,
            Ok(_) => panic!("built with {v}"),
        };
        let e = err(serde_json::json!({ "keys": [{ "id": "a", "hash": "md5:00" }] }));
        assert_eq!(e.path, "keys[0].hash");
        let e = err(serde_json::json!({ "keys": [{ "id": "a", "hash": "sha256:abc" }] }));
        assert_eq!(e.path, "keys[0].hash");
        let e = err(serde_json::json!({ "keys": [
            { "id": "a", "hash": KEY_HASH },
            { "id": "a", "hash": KEY_HASH.replace("2bb8", "2bb9") },
        ] }));
        assert_eq!(e.path, "keys[1].id");
        let e = err(serde_json::json!({ "keys": [] }));
        assert_eq!(e.path, "keys");
    }

    #[test]
    fn strips_only_the_key_parameter() {
        let uri: http::Uri = "/p?a=1&api_key=s&b=%20x".parse().expect("uri");
        assert_eq!(
            without_param(&uri, "api_key").map(|u| u.to_string()),
            Some("/p?a=1&b=%20x".into())
        );
        let uri: http::Uri = "/p?api%5Fkey=s".parse().expect("uri");
        assert_eq!(
            without_param(&uri, "api_key").map(|u| u.to_string()),
            Some("/p".into())
        );
        let uri: http::Uri = "/p?a=1".parse().expect("uri");
        assert_eq!(without_param(&uri, "api_key"), None);
    }
}
