//! Whether and for how long a response may be stored: RFC 9111 for a shared cache, with
//! `CDN-Cache-Control` (RFC 9213) taking precedence over `Cache-Control`.
//!
//! Order of the freshness lifetime: the controlling header's `s-maxage`, then `max-age`
//! (pingora-cache's [`InterpretCacheControl::fresh_duration`], where `no-cache` is a zero
//! lifetime: always revalidate), then `Expires − Date`, then the route's configured TTL
//! (`negative_ttl` for 4xx/5xx statuses, `default_ttl` for the others), then the heuristic
//! (10% of `Date − Last-Modified`, at most [`HEURISTIC_CAP`]) for heuristically cacheable
//! statuses only. The incoming `Age` (or the apparent age from `Date`) is subtracted, so an
//! object is not kept fresh longer than its origin meant.

use std::time::{Duration, SystemTime};

use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;

/// The longest heuristic freshness lifetime.
pub const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 3600);

/// The response header that, when present, replaces `Cache-Control` for this cache (RFC 9213).
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// A route's caching defaults, used where the origin says nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Lifetime of responses without explicit freshness (`None`: heuristic only).
    pub default_ttl: Option<Duration>,
    /// Lifetime of negative responses (404, 410, …) without explicit freshness.
    pub negative_ttl: Duration,
    /// `stale-while-revalidate` when the origin sends none.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` when the origin sends none.
    pub stale_if_error: Duration,
}

/// Statuses a cache may store with heuristic or default freshness (RFC 9110 §15.1).
fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses Meridian stores at all (with explicit freshness for the ones not heuristically
/// cacheable). 206 is never stored (fills are made without `Range`), 304 only merges into a
/// stored response, and other statuses are not understood well enough to be reused.
fn storable(status: u16) -> bool {
    heuristically_cacheable(status) || matches!(status, 302 | 307 | 403 | 500 | 502 | 503 | 504)
}

/// The cache-control that governs this cache: `CDN-Cache-Control` when present, else
/// `Cache-Control`.
pub fn controlling(resp: &ResponseHeader) -> Option<CacheControl> {
    CacheControl::from_resp_headers_named(CDN_CACHE_CONTROL, resp)
        .or_else(|| CacheControl::from_resp_headers(resp))
}

/// Decides whether `resp` (an answer to a GET or HEAD) is stored, and builds its meta.
///
/// `authorization`: the request carried `Authorization` (stored only when the origin allows
/// it with `public`, `s-maxage` or `must-revalidate`).
pub fn decide(
    resp: &ResponseHeader,
    authorization: bool,
    policy: &Policy,
    now: SystemTime,
) -> RespCacheable {
    let uncacheable = |why: &'static str| RespCacheable::Uncacheable(NoCacheReason::Custom(why));
    let status = resp.status.as_u16();
    if !storable(status) {
        return uncacheable("status");
    }
    if resp.headers.contains_key(http::header::SET_COOKIE) {
        // Varnish's default: a response that sets a cookie is for one client.
        return uncacheable("set-cookie");
    }
    if resp
        .headers
        .get(http::header::VARY)
        .is_some_and(|v| v.as_bytes().contains(&b'*'))
    {
        return uncacheable("vary-star");
    }
    let cc = controlling(resp);
    if let Some(cc) = &cc {
        if cc.is_cacheable() == Cacheable::No {
            return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        }
    }
    if authorization
        && !cc
            .as_ref()
            .is_some_and(|c| c.allow_caching_authorized_req())
    {
        return uncacheable("authorization");
    }
    let Some(lifetime) = lifetime(resp, cc.as_ref(), policy, status, now) else {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    };
    let age = current_age(resp, now);
    // The object's age counts from `epoch`, so hits report the origin's age plus ours.
    let epoch = now.checked_sub(age).unwrap_or(now);
    let stale = || now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
    let fresh_until = if lifetime.is_zero() || lifetime <= age {
        // always stale: revalidate before use
        stale()
    } else {
        epoch.checked_add(lifetime).unwrap_or_else(stale)
    };
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let swr = cc
        .as_ref()
        .and_then(|c| c.serve_stale_while_revalidate_duration())
        .unwrap_or(policy.stale_while_revalidate);
    let sie = cc
        .as_ref()
        .and_then(|c| c.serve_stale_if_error_duration())
        .unwrap_or(policy.stale_if_error);
    let mut header = resp.clone();
    if let Some(cc) = &cc {
        cc.strip_private_headers(&mut header);
    }
    let mut meta = CacheMeta::new(fresh_until, now, secs(swr), secs(sie), header);
    if !age.is_zero() {
        meta.set_epoch_override(epoch);
    }
    RespCacheable::Cacheable(meta)
}

/// The freshness lifetime, or `None` when the response has none and may not be given one.
fn lifetime(
    resp: &ResponseHeader,
    cc: Option<&CacheControl>,
    policy: &Policy,
    status: u16,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ttl) = cc.and_then(|c| c.fresh_duration()) {
        return Some(ttl);
    }
    let date = header_date(resp, http::header::DATE);
    if let Some(expires) = pingora_cache::filters::calculate_expires_header_time(resp) {
        let base = date.unwrap_or(now);
        return Some(expires.duration_since(base).unwrap_or(Duration::ZERO));
    }
    if !heuristically_cacheable(status) {
        return None;
    }
    if status >= 400 {
        return (!policy.negative_ttl.is_zero()).then_some(policy.negative_ttl);
    }
    if let Some(ttl) = policy.default_ttl {
        return Some(ttl);
    }
    let modified = header_date(resp, http::header::LAST_MODIFIED)?;
    let since = date.unwrap_or(now).duration_since(modified).ok()?;
    let ttl = (since / 10).min(HEURISTIC_CAP);
    (!ttl.is_zero()).then_some(ttl)
}

/// The age of the response when it arrived: the larger of its `Age` and `now − Date`
/// (RFC 9111 §4.2.3, with no request/response delay correction).
fn current_age(resp: &ResponseHeader, now: SystemTime) -> Duration {
    let age = resp
        .headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let apparent = header_date(resp, http::header::DATE)
        .and_then(|d| now.duration_since(d).ok())
        .unwrap_or_default();
    age.max(apparent)
}

fn header_date(resp: &ResponseHeader, name: http::header::HeaderName) -> Option<SystemTime> {
    let value = resp.headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn ttl(r: &ResponseHeader, policy: &Policy) -> Option<u64> {
        match decide(r, false, policy, SystemTime::now()) {
            RespCacheable::Cacheable(meta) => Some(meta.fresh_sec()),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn explicit_freshness() {
        let p = Policy::default();
        assert_eq!(
            ttl(&resp(200, &[("cache-control", "max-age=60")]), &p),
            Some(60)
        );
        let both = resp(200, &[("cache-control", "max-age=60, s-maxage=120")]);
        assert_eq!(ttl(&both, &p), Some(120));
        let cdn = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "max-age=300"),
            ],
        );
        assert_eq!(ttl(&cdn, &p), Some(300));
        let cdn_no = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store"),
            ],
        );
        assert_eq!(ttl(&cdn_no, &p), None);
        assert_eq!(ttl(&resp(200, &[("cache-control", "no-store")]), &p), None);
        assert_eq!(
            ttl(&resp(200, &[("cache-control", "private, max-age=9")]), &p),
            None
        );
        assert_eq!(
            ttl(&resp(200, &[("cache-control", "no-cache")]), &p),
            Some(0)
        );
    }

    #[test]
    fn age_is_subtracted() {
        let r = resp(200, &[("cache-control", "max-age=60"), ("age", "20")]);
        let RespCacheable::Cacheable(meta) =
            decide(&r, false, &Policy::default(), SystemTime::now())
        else {
            panic!("not cacheable");
        };
        assert!(meta.age().as_secs() >= 20);
        assert!(meta.is_fresh(SystemTime::now() + Duration::from_secs(39)));
        assert!(!meta.is_fresh(SystemTime::now() + Duration::from_secs(41)));
    }

    #[test]
    fn defaults_and_heuristics() {
        let p = Policy {
            negative_ttl: Duration::from_secs(10),
            ..Policy::default()
        };
        assert_eq!(ttl(&resp(404, &[]), &p), Some(10));
        assert_eq!(ttl(&resp(200, &[]), &p), None);
        let lm = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(1000));
        assert_eq!(ttl(&resp(200, &[("last-modified", &lm)]), &p), Some(100));
        assert_eq!(ttl(&resp(302, &[("last-modified", &lm)]), &p), None);
        let with_default = Policy {
            default_ttl: Some(Duration::from_secs(30)),
            ..p
        };
        assert_eq!(ttl(&resp(200, &[]), &with_default), Some(30));
        assert_eq!(ttl(&resp(206, &[("cache-control", "max-age=9")]), &p), None);
        assert_eq!(
            ttl(
                &resp(
                    200,
                    &[("set-cookie", "a=b"), ("cache-control", "max-age=9")]
                ),
                &p
            ),
            None
        );
    }

    #[test]
    fn authorization_needs_permission() {
        let p = Policy::default();
        let r = resp(200, &[("cache-control", "max-age=60")]);
        assert!(matches!(
            decide(&r, true, &p, SystemTime::now()),
            RespCacheable::Uncacheable(_)
        ));
        let r = resp(200, &[("cache-control", "public, max-age=60")]);
        assert!(matches!(
            decide(&r, true, &p, SystemTime::now()),
            RespCacheable::Cacheable(_)
        ));
    }
}
