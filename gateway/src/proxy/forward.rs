//! What a proxy changes on the way through: hop-by-hop headers removed (RFC 9110 §7.6.1),
//! `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239) set, header rules applied.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    HeaderName, HeaderValue, CONNECTION, FORWARDED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, UPGRADE,
};
use pingora::http::{RequestHeader, ResponseHeader};

/// Headers that describe one connection, never forwarded (besides those `Connection` lists).
/// Parsed names, so each per-request lookup hashes without parsing a string first.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
];

/// `X-Forwarded-For`, read on every forwarded request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Removes hop-by-hop headers from a request. `Upgrade` (and the `Connection: upgrade` that goes
/// with it) is kept for protocol upgrades such as WebSocket, which pingora proxies end to end.
pub fn strip_request_hop_by_hop(req: &mut RequestHeader) {
    let upgrading = req.headers.contains_key(UPGRADE);
    if req.headers.contains_key(CONNECTION) {
        for name in connection_listed(&req.headers) {
            if !(upgrading && name == UPGRADE) {
                req.remove_header(&name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        if req.headers.contains_key(name) {
            req.remove_header(name);
        }
    }
    if upgrading {
        // pingora needs `Connection: upgrade` to pass the upgrade through.
        let _ = req.insert_header(CONNECTION, "upgrade");
    }
}

/// Removes hop-by-hop headers from an upstream response (a 101 keeps its upgrade headers).
pub fn strip_response_hop_by_hop(resp: &mut ResponseHeader) {
    if resp.status.as_u16() == 101 {
        return;
    }
    if resp.headers.contains_key(CONNECTION) {
        for name in connection_listed(&resp.headers) {
            resp.remove_header(&name);
        }
    }
    for name in &HOP_BY_HOP {
        if resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
}

/// The header names a `Connection` header lists (bounded to 16).
fn connection_listed(headers: &http::HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| n != "close" && n != "keep-alive")
        .take(16)
        .collect()
}

/// Appends the client to `X-Forwarded-For` and `Forwarded`, and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (kept when already set by a trusted hop is a policy for later; Meridian
/// as the edge overwrites them, as nginx configs usually do).
///
/// The client address is formatted once for both headers, and each value is built in one
/// buffer.
pub fn set_forwarded(req: &mut RequestHeader, client: Option<IpAddr>, tls: bool, host: &str) {
    let proto = if tls { "https" } else { "http" };
    if let Some(ip) = client {
        let mut ip_text = String::with_capacity(48);
        // Writing to a String cannot fail.
        let _ = write!(ip_text, "{ip}");
        let _ = match header_str(req, &X_FORWARDED_FOR) {
            Some(prev) => req.insert_header("x-forwarded-for", joined(prev, &ip_text)),
            None => req.insert_header("x-forwarded-for", ip_text.as_str()),
        };
        let mut fwd = String::with_capacity(32 + ip_text.len() + host.len());
        fwd.push_str("for=");
        match ip {
            IpAddr::V4(_) => fwd.push_str(&ip_text),
            IpAddr::V6(_) => {
                fwd.push_str("\"[");
                fwd.push_str(&ip_text);
                fwd.push_str("]\"");
            }
        }
        fwd.push_str(";proto=");
        fwd.push_str(proto);
        if !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            fwd.push_str(";host=\"");
            fwd.push_str(host);
            fwd.push('"');
        }
        let fwd = match header_str(req, &FORWARDED) {
            Some(prev) => joined(prev, &fwd),
            None => fwd,
        };
        let _ = req.insert_header("forwarded", fwd);
    }
    let _ = req.insert_header("x-forwarded-proto", proto);
    if let Ok(v) = HeaderValue::from_str(host) {
        if !host.is_empty() {
            let _ = req.insert_header("x-forwarded-host", v);
        }
    }
}

/// The first value of header `name` when it is non-empty text.
fn header_str<'a>(req: &'a RequestHeader, name: &HeaderName) -> Option<&'a str> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// `prev, next`: a list header's earlier hops followed by this one.
fn joined(prev: &str, next: &str) -> String {
    let mut out = String::with_capacity(prev.len() + 2 + next.len());
    out.push_str(prev);
    out.push_str(", ");
    out.push_str(next);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_are_removed() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("connection", "keep-alive, x-secret")
            .unwrap();
        req.insert_header("x-secret", "1").unwrap();
        req.insert_header("keep-alive", "timeout=5").unwrap();
        req.insert_header("te", "trailers").unwrap();
        req.insert_header("x-keep", "1").unwrap();
        strip_request_hop_by_hop(&mut req);
        assert!(req.headers.get("x-secret").is_none());
        assert!(req.headers.get("connection").is_none());
        assert!(req.headers.get("keep-alive").is_none());
        assert!(req.headers.get("te").is_none());
        assert_eq!(req.headers.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn forwarded_headers_append() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "10.0.0.1").unwrap();
        set_forwarded(
            &mut req,
            Some("192.0.2.7".parse().unwrap()),
            true,
            "api.example.com",
        );
        assert_eq!(req.headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "api.example.com");
        assert_eq!(
            req.headers["forwarded"],
            "for=192.0.2.7;proto=https;host=\"api.example.com\""
        );
        let mut v6 = RequestHeader::build("GET", b"/", None).unwrap();
        set_forwarded(&mut v6, Some("::1".parse().unwrap()), false, "");
        assert_eq!(v6.headers["forwarded"], "for=\"[::1]\";proto=http");
    }
}
