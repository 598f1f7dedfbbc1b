//! `POST /admin/cache/purge`: removes (or, with `"soft": true`, marks stale) cached objects by
//! URL or by surrogate key.
//!
//! ```json
//! {"url": "http://host/path?q"}            {"surrogate_key": "k", "soft": true}
//! ```
//!
//! A URL is keyed as a request for it would be: the route it matches gives the query rule.
//! A purge by URL reaches every `Vary` variant of it (see [`cdn_edge::variants`]). Answers
//! `{"purged": N}` with the number of objects found.

use cdn_edge::key::QueryRule;
use pingora::protocols::http::ServerSession;
use pingora_cache::key::CompactCacheKey;
use pingora_cache::storage::{PurgeTarget, Storage};
use pingora_cache::trace::Span;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::plan::Plan;
use crate::proxy::cache::EdgeCache;
use crate::router::RequestView;

/// Largest purge request body.
const MAX_BODY: usize = 8 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: Option<String>,
    surrogate_key: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// Handles a purge request on the gateway's cache (`edge`); `Err` is a client error message.
pub(super) async fn purge(
    session: &mut ServerSession,
    plan: &Plan,
    edge: Option<&EdgeCache>,
) -> Result<Value, String> {
    let Some(edge) = edge else {
        return Err("no cache is configured".into());
    };
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
    }
    let req: PurgeRequest = serde_json::from_slice(&body).map_err(|e| {
        format!("expected {{\"url\": \"http://host/path\"}} or {{\"surrogate_key\": \"k\"}}: {e}")
    })?;
    let keys = match (&req.url, &req.surrogate_key) {
        (Some(url), None) => {
            let key = url_key(url, plan)?;
            let found = if req.soft {
                edge.storage.expire_url(&key).await
            } else {
                edge.storage.purge_url(&key).await
            };
            let purged = found.unwrap_or_else(|e| {
                log::warn!("cache purge of {url} failed: {e}");
                0
            });
            return Ok(json!({ "purged": purged, "soft": req.soft }));
        }
        (None, Some(k)) if req.soft => edge.surrogates.get(k),
        (None, Some(k)) => edge.surrogates.take(k),
        _ => return Err("expected exactly one of url or surrogate_key".into()),
    };
    let mut purged = 0usize;
    for key in &keys {
        match remove(edge, key, req.soft).await {
            Ok(true) => purged += 1,
            Ok(false) => {}
            Err(e) => log::warn!("cache purge of {key} failed: {e}"),
        }
    }
    Ok(json!({ "purged": purged, "soft": req.soft }))
}

async fn remove(edge: &EdgeCache, key: &CompactCacheKey, soft: bool) -> pingora::Result<bool> {
    if soft {
        let span = Span::inactive();
        let outcome = edge
            .storage
            .expire(PurgeTarget::Active(key), &span.handle())
            .await?;
        Ok(matches!(
            outcome,
            pingora_cache::storage::PurgeOutcome::Expired
        ))
    } else {
        edge.storage.purge_key(key).await
    }
}

/// The primary cache key of a GET for `url`, with the query rule of the route it matches.
fn url_key(url: &str, plan: &Plan) -> Result<CompactCacheKey, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("url: expected an absolute http(s) URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s,
        _ => return Err("url: expected an http:// or https:// URL".into()),
    };
    let host = uri
        .host()
        .ok_or("url: expected a host")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let path = uri.path();
    let headers = http::HeaderMap::new();
    let view = RequestView {
        host: &host,
        path,
        method: "GET",
        headers: &headers,
        query: uri.query(),
    };
    let rule = plan
        .router
        .route(&view)
        .and_then(|m| plan.routes.get(m.route))
        .and_then(|r| r.cache.as_ref())
        .map_or(QueryRule::All, |c| c.query.clone());
    Ok(cdn_edge::key::cache_key(scheme, &host, path, uri.query(), &rule).to_compact())
}
