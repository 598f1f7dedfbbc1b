//! Request protection, checked before routing: size limits and request-smuggling shapes; and
//! the same header limits on what an upstream answers ([`check_response_head`]).
//!
//! pingora (httparse) already refuses most malformed request lines and headers with 400. What
//! it lets through and a proxy must not forward is caught here:
//! - more headers or header bytes than configured → 431; a longer request-target → 414;
//! - a declared body larger than the limit → 413 (streamed bodies are counted as they arrive);
//! - `Content-Length` together with `Transfer-Encoding`, several or comma-joined
//!   `Content-Length`s, a non-numeric length, a `Transfer-Encoding` other than exactly
//!   `chunked`, a line folded with obs-fold, or a line ended by a bare LF → 400.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderMap;

use crate::config::Limits;

/// Why a request was refused before routing: the status and a short reason for the body and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status to answer.
    pub status: u16,
    /// Short, fixed reason.
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Checks header count and size, the request-target length and the framing headers.
///
/// `raw_head` is the request head as received for HTTP/1.x (`None` for HTTP/2, whose framing
/// has none of the HTTP/1 smuggling shapes).
pub fn check_head(
    limits: &Limits,
    uri_len: usize,
    headers: &HeaderMap,
    raw_head: Option<&Bytes>,
) -> Result<Option<u64>, Refusal> {
    if uri_len > limits.max_uri_length {
        return Err(refuse(414, "request-target too long"));
    }
    if headers.len() > limits.max_header_count {
        return Err(refuse(431, "too many header fields"));
    }
    let header_bytes: usize = match raw_head {
        Some(raw) => raw.len(),
        None => headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum(),
    };
    if header_bytes > limits.max_header_bytes {
        return Err(refuse(431, "request header fields too large"));
    }
    let content_length = match raw_head {
        // pingora normalises framing headers (it drops `Content-Length` next to
        // `Transfer-Encoding`), so HTTP/1 framing is judged on the bytes as received.
        Some(raw) => check_raw_head(raw)?,
        None => {
            let te: Vec<&[u8]> = headers
                .get_all(TRANSFER_ENCODING)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let cl: Vec<&[u8]> = headers
                .get_all(CONTENT_LENGTH)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            check_framing(&te, &cl)?
        }
    };
    if let Some(len) = content_length {
        if len > limits.max_body {
            return Err(refuse(413, "request body too large"));
        }
    }
    Ok(content_length)
}

/// Checks an HTTP/1 head as received, in one pass over its lines: refuses bare-LF line ends and
/// obs-fold continuation lines, and validates the framing headers (see [`check_framing`]).
fn check_raw_head(raw: &[u8]) -> Result<Option<u64>, Refusal> {
    let mut te = Vec::new();
    let mut cl = Vec::new();
    // The request line is not a header line.
    let mut start: Option<usize> = None;
    for end in memchr::memchr_iter(b'\n', raw) {
        if end == 0 || raw[end - 1] != b'\r' {
            return Err(refuse(400, "bare LF in request head"));
        }
        if matches!(raw.get(end + 1), Some(b' ' | b'\t')) {
            return Err(refuse(400, "obsolete line folding in header"));
        }
        if let Some(start) = start {
            let line = &raw[start..end - 1];
            // Only names that start like the two framing headers are looked at further.
            if matches!(line.first(), Some(b't' | b'T' | b'c' | b'C')) {
                if let Some(colon) = memchr::memchr(b':', line) {
                    let value = line[colon + 1..].trim_ascii();
                    match &line[..colon] {
                        n if n.eq_ignore_ascii_case(b"transfer-encoding") => te.push(value),
                        n if n.eq_ignore_ascii_case(b"content-length") => cl.push(value),
                        _ => {}
                    }
                }
            }
        }
        start = Some(end + 1);
    }
    check_framing(&te, &cl)
}

/// Validates the `Transfer-Encoding` and `Content-Length` values of a request; returns the
/// declared length if any.
fn check_framing(te: &[&[u8]], cl: &[&[u8]]) -> Result<Option<u64>, Refusal> {
    let has_te = match te {
        [] => false,
        [v] if v.eq_ignore_ascii_case(b"chunked") => true,
        _ => return Err(refuse(400, "unsupported transfer-encoding")),
    };
    let length = match cl {
        [] => None,
        [v] => Some(parse_length(v)?),
        _ => return Err(refuse(400, "duplicate content-length")),
    };
    if has_te && length.is_some() {
        return Err(refuse(400, "both content-length and transfer-encoding"));
    }
    Ok(length)
}

/// Checks an upstream response's header count and size against the same limits as requests
/// (`limits.max_header_count`, `limits.max_header_bytes`): a larger head is refused, so the
/// client gets 502 and nothing is stored. pingora alone admits up to 1 MiB of response head;
/// nginx (`proxy_buffer_size`), Varnish (`http_resp_hdr_len`) and Envoy (60 KiB, 100
/// headers) refuse far less. Returns the reason on refusal.
pub fn check_response_head(limits: &Limits, headers: &HeaderMap) -> Result<(), &'static str> {
    if headers.len() > limits.max_header_count {
        return Err("upstream sent too many header fields");
    }
    let mut bytes = 0;
    for (name, value) in headers {
        // `name: value` and CRLF, as on the wire.
        bytes += name.as_str().len() + value.len() + 4;
        if bytes > limits.max_header_bytes {
            return Err("upstream response header too large");
        }
    }
    Ok(())
}

fn parse_length(v: &[u8]) -> Result<u64, Refusal> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(refuse(400, "invalid content-length"));
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(refuse(400, "invalid content-length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn limits() -> Limits {
        Limits {
            max_header_count: 4,
            max_header_bytes: 200,
            max_uri_length: 20,
            max_body: 100,
            encoded_slash: crate::config::EncodedSlash::Reject,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn response_heads_over_the_limits_are_refused() {
        let l = limits();
        assert_eq!(check_response_head(&l, &headers(&[("a", "b")])), Ok(()));
        let many = headers(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]);
        assert_eq!(
            check_response_head(&l, &many),
            Err("upstream sent too many header fields")
        );
        let big: &'static str = "x".repeat(200).leak();
        assert_eq!(
            check_response_head(&l, &headers(&[("a", big)])),
            Err("upstream response header too large")
        );
    }

    #[test]
    fn framing_cases() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<Option<u64>, u16>);
        let cases: &[Case] = &[
            (&[], Ok(None)),
            (&[("content-length", "10")], Ok(Some(10))),
            (&[("transfer-encoding", "chunked")], Ok(None)),
            (&[("transfer-encoding", "CHUNKED")], Ok(None)),
            (
                &[("content-length", "10"), ("transfer-encoding", "chunked")],
                Err(400),
            ),
            (
                &[("content-length", "10"), ("content-length", "10")],
                Err(400),
            ),
            (&[("content-length", "10, 10")], Err(400)),
            (&[("content-length", "-1")], Err(400)),
            (&[("content-length", "+5")], Err(400)),
            (&[("content-length", "99999999999999999999")], Err(400)),
            (&[("transfer-encoding", "gzip, chunked")], Err(400)),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                Err(400),
            ),
            (&[("content-length", "101")], Err(413)),
        ];
        for (h, want) in cases {
            let got = check_head(&limits(), 1, &headers(h), None).map_err(|r| r.status);
            assert_eq!(&got, want, "{h:?}");
            // The same request as raw HTTP/1 bytes is judged the same way.
            let mut raw = String::from("POST / HTTP/1.1\r\n");
            for (k, v) in h.iter() {
                raw.push_str(&format!("{k}: {v}\r\n"));
            }
            raw.push_str("\r\n");
            let got = check_head(&limits(), 1, &HeaderMap::new(), Some(&Bytes::from(raw)))
                .map_err(|r| r.status);
            assert_eq!(&got, want, "raw {h:?}");
        }
    }

    #[test]
    fn size_limits() {
        let l = limits();
        assert_eq!(
            check_head(&l, 21, &HeaderMap::new(), None)
                .unwrap_err()
                .status,
            414
        );
        let five = headers(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")]);
        assert_eq!(check_head(&l, 1, &five, None).unwrap_err().status, 431);
        let big = Bytes::from(vec![b'a'; 201]);
        assert_eq!(
            check_head(&l, 1, &HeaderMap::new(), Some(&big))
                .unwrap_err()
                .status,
            431
        );
    }

    #[test]
    fn raw_lines() {
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(check_raw_head(ok), Ok(None));
        for bare in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        ] {
            assert_eq!(
                check_raw_head(bare).unwrap_err().reason,
                "bare LF in request head"
            );
        }
        let fold = b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
        assert_eq!(
            check_raw_head(fold).unwrap_err().reason,
            "obsolete line folding in header"
        );
        let tab_fold = b"GET / HTTP/1.1\r\nContent-Length: 1\r\n\t2\r\n\r\n";
        assert_eq!(check_raw_head(tab_fold).unwrap_err().status, 400);
        // A framing name on the request line or inside another header's value is not a header.
        let in_value = b"GET /content-length: HTTP/1.1\r\nX: content-length: 5\r\n\r\n";
        assert_eq!(check_raw_head(in_value), Ok(None));
        let mixed_case = b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh:  7 \r\n\r\n";
        assert_eq!(check_raw_head(mixed_case), Ok(Some(7)));
    }
}
