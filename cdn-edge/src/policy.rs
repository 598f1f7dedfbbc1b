//! Whether and for how long a response may be stored: RFC 9111 for a shared cache, with
//! `CDN-Cache-Control` (RFC 9213) taking precedence over `Cache-Control` when it is a valid
//! Structured Field (see [`crate::targeted`]; an invalid one is ignored as a whole).
//!
//! Which responses: any final status except 206 and 304 (RFC 9111 §3), once it has a
//! freshness lifetime. Explicit freshness counts for every status; the route's TTLs and the
//! heuristic only for the heuristically cacheable statuses (RFC 9110 §15.1), and the heuristic
//! also for other statuses marked `public` (RFC 9111 §4.2.2). `must-understand` (§5.2.2.3)
//! stores a status Meridian understands despite `no-store`, and never one it does not.
//!
//! Order of the freshness lifetime: the controlling header's `s-maxage`, then `max-age`
//! (pingora-cache's [`InterpretCacheControl::fresh_duration`], where `no-cache` is a zero
//! lifetime: always revalidate), then `Expires − Date`, then the route's configured TTL
//! (`negative_ttl` for 4xx/5xx statuses, `default_ttl` for the others), then the heuristic
//! (10% of `Date − Last-Modified`, at most [`HEURISTIC_CAP`]). The incoming `Age` (or the
//! apparent age from `Date`) is subtracted, so an object is not kept fresh longer than its
//! origin meant.
//!
//! The stored copy omits the fields named by `private="…"` and `no-cache="…"` (§5.2.2.4,
//! §5.2.2.7); [`withheld`] lists them so the response that filled the cache still carries them.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue};
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;

/// The longest heuristic freshness lifetime.
pub const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 3600);

/// The response header that, when present, replaces `Cache-Control` for this cache (RFC 9213).
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// The largest `Age` taken (RFC 9111 §1.2.2: a larger or unrepresentable delta-seconds counts
/// as 2^31).
const MAX_DELTA_SECONDS: u64 = 1 << 31;

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

/// Statuses Meridian may store at all: every final status (RFC 9111 §3) but 206 (fills are
/// made without `Range`, partial content is not stored) and 304 (it only freshens a stored
/// response). The ones not heuristically cacheable need explicit freshness.
fn storable(status: u16) -> bool {
    (200..=599).contains(&status) && status != 206 && status != 304
}

/// Statuses whose semantics Meridian knows (those of RFC 9110 §15, and 429, 431, 451 and 511
/// of RFC 6585 / RFC 7725), for `must-understand` (RFC 9111 §5.2.2.3).
fn understood(status: u16) -> bool {
    matches!(
        status,
        200..=205 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 429 | 431 | 451
            | 500..=505 | 511
    )
}

/// The cache-control that governs this cache: `CDN-Cache-Control` when present and a valid
/// Structured Field Dictionary, else `Cache-Control`.
pub fn controlling(resp: &ResponseHeader) -> Option<CacheControl> {
    if crate::targeted::valid(&resp.headers, CDN_CACHE_CONTROL) {
        if let Some(cc) = CacheControl::from_resp_headers_named(CDN_CACHE_CONTROL, resp) {
            return Some(cc);
        }
    }
    CacheControl::from_resp_headers(resp)
}

/// The header fields of `resp` that a stored copy must not keep: those named by the
/// controlling cache-control's `private="…"` and `no-cache="…"` (RFC 9111 §5.2.2.7 and
/// §5.2.2.4), with their values, in order.
pub fn withheld(resp: &ResponseHeader) -> Vec<(HeaderName, HeaderValue)> {
    let Some(cc) = controlling(resp) else {
        return Vec::new();
    };
    let names = cc
        .private_field_names()
        .into_iter()
        .flatten()
        .chain(cc.no_cache_field_names().into_iter().flatten())
        .filter_map(|n| HeaderName::from_bytes(n).ok());
    let mut fields: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for name in names {
        if fields.iter().any(|(n, _)| *n == name) {
            continue;
        }
        for value in resp.headers.get_all(&name) {
            fields.push((name.clone(), value.clone()));
        }
    }
    fields
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
        if cc.has_key("must-understand") {
            // RFC 9111 §5.2.2.3: only a cache that understands the status may store it, and
            // such a cache ignores `no-store` (which is there for the caches that do not).
            if !understood(status) {
                return uncacheable("must-understand");
            }
            if cc.private() {
                return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
            }
        } else if cc.is_cacheable() == Cacheable::No {
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
    for (name, _) in withheld(resp) {
        header.remove_header(&name);
    }
    if !header.headers.contains_key(http::header::DATE) {
        // RFC 9110 §6.6.1: a recipient that caches a response without `Date` adds the time it
        // arrived, so hits carry the stored response's date. An IMF-fixdate: cannot fail.
        let _ = header.insert_header(http::header::DATE, httpdate::fmt_http_date(now));
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
    if heuristically_cacheable(status) {
        if status >= 400 {
            return (!policy.negative_ttl.is_zero()).then_some(policy.negative_ttl);
        }
        if let Some(ttl) = policy.default_ttl {
            return Some(ttl);
        }
    } else if !cc.is_some_and(CacheControl::public) {
        return None;
    }
    let modified = header_date(resp, http::header::LAST_MODIFIED)?;
    let since = date.unwrap_or(now).duration_since(modified).ok()?;
    let ttl = (since / 10).min(HEURISTIC_CAP);
    (!ttl.is_zero()).then_some(ttl)
}

/// The age of the response when it arrived: the larger of its `Age` and `now − Date`
/// (RFC 9111 §4.2.3, with no request/response delay correction).
fn current_age(resp: &ResponseHeader, now: SystemTime) -> Duration {
    let age = age_value(resp).map(Duration::from_secs).unwrap_or_default();
    let apparent = header_date(resp, http::header::DATE)
        .and_then(|d| now.duration_since(d).ok())
        .unwrap_or_default();
    age.max(apparent)
}

/// The `Age` of `resp` in seconds (RFC 9111 §5.1): the first member of its first line, without
/// parameters, when that is a delta-seconds (digits only); larger values count as 2^31. `None`
/// (the field is ignored) for anything else: `abc`, `-1`, `1.5`.
fn age_value(resp: &ResponseHeader) -> Option<u64> {
    let line = resp.headers.get(http::header::AGE)?.as_bytes();
    let member = line.split(|b| *b == b',').next()?;
    let member = member.split(|b| *b == b';').next()?.trim_ascii();
    if member.is_empty() || !member.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = member.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(value.unwrap_or(u64::MAX).min(MAX_DELTA_SECONDS))
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

    #[test]
    fn any_final_status_with_explicit_freshness_is_stored() {
        let p = Policy {
            negative_ttl: Duration::from_secs(10),
            ..Policy::default()
        };
        for status in [299, 303, 400, 499, 599, 502] {
            let fresh = resp(status, &[("cache-control", "max-age=60")]);
            assert_eq!(ttl(&fresh, &p), Some(60), "{status}");
            // without explicit freshness, only the heuristically cacheable statuses
            assert_eq!(ttl(&resp(status, &[]), &p), None, "{status}");
        }
        for status in [206, 304, 100, 600] {
            let fresh = resp(status, &[("cache-control", "max-age=60")]);
            assert_eq!(ttl(&fresh, &p), None, "{status}");
        }
        let lm = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(1000));
        let public = resp(599, &[("cache-control", "public"), ("last-modified", &lm)]);
        assert_eq!(ttl(&public, &p), Some(100));
        assert_eq!(ttl(&resp(599, &[("last-modified", &lm)]), &p), None);
    }

    #[test]
    fn must_understand_stores_understood_statuses_only() {
        let p = Policy::default();
        let cc = [("cache-control", "max-age=3600, no-store, must-understand")];
        assert_eq!(ttl(&resp(599, &cc), &p), None);
        assert_eq!(ttl(&resp(200, &cc), &p), Some(3600));
        let private = [("cache-control", "max-age=3600, private, must-understand")];
        assert_eq!(ttl(&resp(200, &private), &p), None);
    }

    #[test]
    fn age_takes_the_first_member_of_the_first_line() {
        let p = Policy::default();
        let with_age = |ages: &[&str]| {
            let mut headers = vec![("cache-control", "max-age=3600")];
            headers.extend(ages.iter().map(|a| ("age", *a)));
            let now = SystemTime::now();
            match decide(&resp(200, &headers), false, &p, now) {
                RespCacheable::Cacheable(meta) => Some(meta.is_fresh(now)),
                RespCacheable::Uncacheable(_) => None,
            }
        };
        assert_eq!(with_age(&["7200, 0"]), Some(false));
        assert_eq!(with_age(&["0, 7200"]), Some(true));
        assert_eq!(with_age(&["7200", "0"]), Some(false));
        assert_eq!(with_age(&["0", "7200"]), Some(true));
        assert_eq!(with_age(&["7200;foo=bar"]), Some(false));
        assert_eq!(with_age(&["2147483649"]), Some(false));
        assert_eq!(with_age(&["99999999999999999999999"]), Some(false));
        assert_eq!(with_age(&["07200"]), Some(false));
        assert_eq!(with_age(&["7200,"]), Some(false));
        assert_eq!(with_age(&[" 7200 , 0"]), Some(false));
        for ignored in [
            "abc", "-7200", "7200.0", "", "+7200", "7200abc", "7 200", ", 7200",
        ] {
            assert_eq!(with_age(&[ignored]), Some(true), "{ignored}");
        }
    }

    #[test]
    fn an_invalid_cdn_cache_control_is_ignored_whole() {
        let p = Policy::default();
        for invalid in ["max-age=10000, &&&&&", "max-age=\"10000\""] {
            let r = resp(
                200,
                &[
                    ("cdn-cache-control", invalid),
                    ("cache-control", "no-store"),
                ],
            );
            assert_eq!(ttl(&r, &p), None, "{invalid}");
            let r = resp(
                200,
                &[
                    ("cdn-cache-control", invalid),
                    ("cache-control", "max-age=5"),
                ],
            );
            assert_eq!(ttl(&r, &p), Some(5), "{invalid}");
        }
    }

    #[test]
    fn s_maxage_does_not_override_private_and_immutable_does_not_extend() {
        let p = Policy::default();
        let private = resp(200, &[("cache-control", "private, s-maxage=3600")]);
        assert_eq!(ttl(&private, &p), None);
        let now = SystemTime::now();
        let immutable = resp(200, &[("cache-control", "max-age=2, immutable")]);
        let RespCacheable::Cacheable(meta) = decide(&immutable, false, &p, now) else {
            panic!("not cacheable");
        };
        assert!(!meta.is_fresh(now + Duration::from_secs(3)));
    }

    #[test]
    fn a_response_without_date_is_stored_with_its_arrival() {
        let now = httpdate::parse_http_date("Tue, 02 Jan 2024 00:00:00 GMT").expect("date");
        let stored = |r: &ResponseHeader| match decide(r, false, &Policy::default(), now) {
            RespCacheable::Cacheable(meta) => meta.headers()[http::header::DATE].clone(),
            RespCacheable::Uncacheable(_) => panic!("not cacheable"),
        };
        let undated = resp(200, &[("cache-control", "max-age=60")]);
        assert_eq!(stored(&undated), "Tue, 02 Jan 2024 00:00:00 GMT");
        let dated = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("date", "Mon, 01 Jan 2024 23:59:59 GMT"),
            ],
        );
        assert_eq!(stored(&dated), "Mon, 01 Jan 2024 23:59:59 GMT");
    }

    #[test]
    fn fields_named_by_private_and_no_cache_are_withheld_from_storage() {
        let r = resp(
            200,
            &[
                ("cache-control", "no-cache=\"a, b\""),
                ("cache-control", "max-age=3600, private=\"c\""),
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "4"),
            ],
        );
        let names: Vec<String> = withheld(&r).iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        let RespCacheable::Cacheable(meta) =
            decide(&r, false, &Policy::default(), SystemTime::now())
        else {
            panic!("not cacheable");
        };
        assert_eq!(meta.fresh_sec(), 3600);
        for name in ["a", "b", "c"] {
            assert!(!meta.headers().contains_key(name), "{name}");
        }
        assert!(meta.headers().contains_key("d"));
    }
}
