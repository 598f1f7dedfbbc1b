//! Freshening a stored response with a `304 Not Modified` (RFC 9111 §4.3.4).
//!
//! When an origin validates a stored response, "the cache MUST ... add each header field in
//! the provided response to the stored response, replacing field values that are already
//! present" (§3.2), so `Date`, `Cache-Control`, `Expires`, `ETag` and any other field the origin
//! sends — `Content-Foo` and `X-Whatever` alike — are the stored ones from then on. pingora-cache
//! merges only five of them (`revalidate_merge_header`); [`merge`] does the rest, before the
//! merged header is judged by [`crate::policy::decide`] and written back with `update_meta`.
//!
//! Not updated ([`KEPT`]): the fields §3.1 keeps out of storage (hop-by-hop and
//! proxy-specific ones, and those the 304's `Connection` lists), `Content-Length` (§3.2), and
//! the fields that describe the stored bytes as they are (`Content-Encoding`, `Content-Range`,
//! `Transfer-Encoding`; §3.2 lets a cache keep these), and `Vary`: the stored variant was keyed
//! by the stored `Vary`, which pingora keeps across a 304 too.
//!
//! The 304 is a new response: its `Age` and `Date` say how old the freshened response is
//! (RFC 9111 §4.2.3). A stored `Age` is dropped when the 304 has none (it told the age of the
//! response stored earlier: kept, a response just validated would be taken as old as that one,
//! stale again at once), and a 304 without `Date` counts as dated when it arrived (RFC 9110
//! §6.6.1: a recipient adds a `Date` to a response it caches).

use std::time::SystemTime;

use http::header::HeaderName;
use pingora_http::ResponseHeader;

/// Fields of a 304 that do not replace the stored ones (see the module docs).
pub const KEPT: [HeaderName; 14] = [
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_ENCODING,
    http::header::CONTENT_RANGE,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-authentication-info"),
    http::header::PROXY_AUTHORIZATION,
    http::header::VARY,
];

/// The stored response header `stored` updated with the fields of `not_modified` (a 304 from
/// the origin, received at `now`), as RFC 9111 §3.2 says. Fields absent from the 304 stay as
/// stored, but for `Age` and `Date` (see the module docs).
pub fn merge(
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
    now: SystemTime,
) -> ResponseHeader {
    let mut merged = stored.clone();
    if !not_modified.headers.contains_key(http::header::AGE) {
        merged.remove_header(&http::header::AGE);
    }
    if !not_modified.headers.contains_key(http::header::DATE) {
        // An IMF-fixdate is a valid header value: cannot fail.
        let _ = merged.insert_header(http::header::DATE, httpdate::fmt_http_date(now));
    }
    let connection_listed: Vec<HeaderName> = not_modified
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in not_modified.headers.keys() {
        if KEPT.contains(name) || connection_listed.contains(name) {
            continue;
        }
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            // A name and value that were valid in the 304 are valid here: cannot fail.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("status");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    fn values(r: &ResponseHeader, name: &str) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect()
    }

    #[test]
    fn the_304s_fields_replace_the_stored_ones() {
        let stored = resp(
            200,
            &[
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("content-foo", "a"),
                ("x-test-header", "a"),
                ("x-multi", "1"),
                ("x-multi", "2"),
                ("x-untouched", "same"),
                ("content-type", "text/plain"),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("date", "Tue, 02 Jan 2024 00:00:00 GMT"),
                ("content-foo", "b"),
                ("x-test-header", "b"),
                ("x-multi", "3"),
                ("content-type", "text/html"),
                ("cache-control", "max-age=60"),
            ],
        );
        let merged = merge(&stored, &not_modified, SystemTime::now());
        assert_eq!(merged.status.as_u16(), 200);
        assert_eq!(values(&merged, "date"), ["Tue, 02 Jan 2024 00:00:00 GMT"]);
        assert_eq!(values(&merged, "content-foo"), ["b"]);
        assert_eq!(values(&merged, "x-test-header"), ["b"]);
        assert_eq!(values(&merged, "x-multi"), ["3"]);
        assert_eq!(values(&merged, "x-untouched"), ["same"]);
        assert_eq!(values(&merged, "content-type"), ["text/html"]);
        assert_eq!(values(&merged, "cache-control"), ["max-age=60"]);
    }

    #[test]
    fn the_age_and_date_are_the_304s() {
        let stored = resp(
            200,
            &[("date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("age", "700")],
        );
        let received = httpdate::parse_http_date("Tue, 02 Jan 2024 00:00:00 GMT").expect("date");
        let merged = merge(&stored, &resp(304, &[]), received);
        assert!(values(&merged, "age").is_empty());
        assert_eq!(values(&merged, "date"), ["Tue, 02 Jan 2024 00:00:00 GMT"]);
        let not_modified = resp(
            304,
            &[("date", "Wed, 03 Jan 2024 00:00:00 GMT"), ("age", "5")],
        );
        let merged = merge(&stored, &not_modified, received);
        assert_eq!(values(&merged, "age"), ["5"]);
        assert_eq!(values(&merged, "date"), ["Wed, 03 Jan 2024 00:00:00 GMT"]);
    }

    #[test]
    fn framing_coding_hop_by_hop_and_vary_are_kept() {
        let stored = resp(
            200,
            &[
                ("content-length", "10"),
                ("content-encoding", "gzip"),
                ("vary", "accept-encoding"),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("content-length", "99"),
                ("content-encoding", "br"),
                ("transfer-encoding", "chunked"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("vary", "accept-language"),
            ],
        );
        let merged = merge(&stored, &not_modified, SystemTime::now());
        assert_eq!(values(&merged, "content-length"), ["10"]);
        assert_eq!(values(&merged, "content-encoding"), ["gzip"]);
        assert_eq!(values(&merged, "vary"), ["accept-encoding"]);
        for absent in ["transfer-encoding", "connection", "x-hop", "keep-alive"] {
            assert!(values(&merged, absent).is_empty(), "{absent}");
        }
    }
}
