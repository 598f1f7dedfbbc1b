//! Syntax checks of single values: header names, methods, hosts, path templates, regexes,
//! CIDRs, targets. Each returns the normalised value or a message saying what is wrong.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Compiled size limit for config regexes (bounds memory per route).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest DNS name.
const MAX_HOST_LEN: usize = 253;
/// Longest method token.
const MAX_METHOD_LEN: usize = 32;

/// A header name, lower-cased.
pub(crate) fn header_name(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    http::HeaderName::from_bytes(lower.as_bytes())
        .map(|_| lower)
        .map_err(|_| format!("\"{s}\" is not a valid header name"))
}

/// A header value (visible ASCII, spaces and tabs; no control characters).
pub(crate) fn header_value(s: &str) -> Result<String, String> {
    http::HeaderValue::from_str(s)
        .map(|_| s.to_owned())
        .map_err(|_| format!("\"{s}\" is not a valid header value (control characters?)"))
}

/// An HTTP method: a token, upper-cased.
pub(crate) fn method(s: &str) -> Result<String, String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.is_empty() || s.len() > MAX_METHOD_LEN || !s.bytes().all(is_tchar) {
        return Err(format!("\"{s}\" is not a valid HTTP method"));
    }
    Ok(s.to_ascii_uppercase())
}

/// A DNS name (letters, digits, hyphens; dot-separated labels; the last label not all digits,
/// so a mistyped IPv4 address like `10.0.0.300` is not taken for a name).
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_HOST_LEN
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A route host pattern: `api.example.com` or `*.example.com`, lower-cased.
pub(crate) fn host_pattern(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if is_dns_name(name) || name.parse::<IpAddr>().is_ok() {
        Ok(lower)
    } else {
        Err(format!(
            "\"{s}\" is not a valid host; expected a name like api.example.com or *.example.com"
        ))
    }
}

/// An SNI server name: a DNS name, optionally `*.`-prefixed, lower-cased.
pub(crate) fn server_name(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if is_dns_name(lower.strip_prefix("*.").unwrap_or(&lower)) {
        Ok(lower)
    } else {
        Err(format!("\"{s}\" is not a valid server name"))
    }
}

/// A capture name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_capture_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A path template (`/v1/urls/{code}`, `/static/{*rest}`); returns its capture names.
/// Each `{name}` is a whole segment, `{*name}` only the last one, names are unique.
pub(crate) fn path_template(s: &str) -> Result<Vec<String>, String> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!("path template \"{s}\" must start with /"));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut names: Vec<String> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if !segment.contains(['{', '}']) {
            continue;
        }
        let Some(inner) = segment.strip_prefix('{').and_then(|x| x.strip_suffix('}')) else {
            return Err(format!(
                "path template \"{s}\": segment \"{segment}\" must be a whole {{name}} capture"
            ));
        };
        let (name, is_rest) = match inner.strip_prefix('*') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if !is_capture_name(name) {
            return Err(format!(
                "path template \"{s}\": \"{segment}\" is not a valid capture; expected {{name}} \
                 or {{*name}} with letters, digits and _"
            ));
        }
        if is_rest && i + 1 != segments.len() {
            return Err(format!(
                "path template \"{s}\": {{*{name}}} must be the last segment"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!(
                "path template \"{s}\": capture \"{name}\" appears twice"
            ));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// The `{name}` / `{*name}` references of a rewrite template.
pub(crate) fn rewrite_refs(s: &str) -> Result<Vec<String>, String> {
    let mut refs = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("rewrite \"{s}\": unclosed \"{{\""));
        };
        let name = after[..close].trim_start_matches('*');
        if !is_capture_name(name) {
            return Err(format!(
                "rewrite \"{s}\": \"{{{}}}\" is not a valid capture reference",
                &after[..close]
            ));
        }
        refs.push(name.to_owned());
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("rewrite \"{s}\": unmatched \"}}\""));
    }
    Ok(refs)
}

/// A regular expression; returns its named groups.
pub(crate) fn regex(s: &str) -> Result<Vec<String>, String> {
    let re = regex::RegexBuilder::new(s)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression: {}", one_line(&e.to_string())))?;
    Ok(re.capture_names().flatten().map(str::to_owned).collect())
}

/// Folds a multi-line message (regex errors draw carets) into one line.
fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A network in CIDR notation; a bare address is a single-host network.
pub(crate) fn cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("\"{s}\" is not a valid CIDR; expected e.g. 10.0.0.0/8 or ::1/128"))
}

/// A socket address `ip:port` (IPv6 in brackets).
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "\"{s}\" is not a valid address; expected ip:port like 127.0.0.1:8080 or [::1]:8080"
        )
    })
}

/// An upstream target `host:port` where host is an IP literal or a DNS name.
pub(crate) fn target(s: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!(
            "\"{s}\" is not a valid target; expected host:port like 10.0.0.1:80 or api.internal:80"
        )
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        (host, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if !(is_dns_name(host) || host.parse::<std::net::Ipv4Addr>().is_ok()) {
            return Err(bad());
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok((host.to_ascii_lowercase(), port)),
        _ => Err(format!("\"{s}\": port must be a number from 1 to 65535")),
    }
}

/// An inclusive status range `200-299`, or a single status `200`.
pub(crate) fn status_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let parse = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
    };
    match (parse(lo), parse(hi)) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(format!(
            "\"{s}\" is not a status range; expected a status like 200 or a range like 200-399"
        )),
    }
}

/// A plugin name: lower-case letters, digits and `_`.
pub(crate) fn plugin_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "\"{s}\" is not a valid plugin name; expected lower-case letters, digits and _"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates() {
        assert_eq!(
            path_template("/v1/urls/{code}"),
            Ok(vec!["code".to_owned()])
        );
        assert_eq!(
            path_template("/s/{a}/x/{*rest}"),
            Ok(vec!["a".to_owned(), "rest".to_owned()])
        );
        let bad = [
            ("v1/{a}", "must start with /"),
            ("/v1/x{a}", "whole {name}"),
            ("/v1/{a}x", "whole {name}"),
            ("/{*rest}/x", "must be the last segment"),
            ("/{a}/{a}", "appears twice"),
            ("/{1a}", "not a valid capture"),
            ("/{}", "not a valid capture"),
            ("/{a", "whole {name}"),
        ];
        for (t, want) in bad {
            let err = path_template(t).unwrap_err();
            assert!(err.contains(want), "{t}: {err}");
        }
    }

    #[test]
    fn rewrite_references() {
        assert_eq!(
            rewrite_refs("/internal/{code}/{*rest}"),
            Ok(vec!["code".to_owned(), "rest".to_owned()])
        );
        assert!(rewrite_refs("/x/{code").is_err());
        assert!(rewrite_refs("/x/code}").is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(target("127.0.0.1:80"), Ok(("127.0.0.1".to_owned(), 80)));
        assert_eq!(
            target("API.internal:8080"),
            Ok(("api.internal".to_owned(), 8080))
        );
        assert_eq!(target("[::1]:443"), Ok(("::1".to_owned(), 443)));
        for bad in [
            "nohost",
            "a:0",
            "a:70000",
            "bad host:80",
            "[zz]:80",
            ":80",
            "::1:80",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_values() {
        assert_eq!(header_name("X-Env"), Ok("x-env".to_owned()));
        assert!(header_name("x env").is_err());
        assert!(header_value("a\u{1}b").is_err());
        assert_eq!(method("get"), Ok("GET".to_owned()));
        assert!(method("GE T").is_err());
        assert_eq!(
            host_pattern("*.Example.com"),
            Ok("*.example.com".to_owned())
        );
        assert!(host_pattern("a.*.com").is_err());
        assert!(host_pattern("exa mple.com").is_err());
        assert_eq!(cidr("10.0.0.0/8").map(|n| n.prefix_len()), Ok(8));
        assert_eq!(cidr("10.1.2.3").map(|n| n.prefix_len()), Ok(32));
        assert!(cidr("10.0.0.0/33").is_err());
        assert_eq!(status_range("200-299"), Ok((200, 299)));
        assert_eq!(status_range("204"), Ok((204, 204)));
        assert!(status_range("299-200").is_err());
        assert!(status_range("600").is_err());
        assert_eq!(regex("^/v(?P<n>[0-9]+)$"), Ok(vec!["n".to_owned()]));
        assert!(regex("(")
            .unwrap_err()
            .contains("invalid regular expression"));
        assert!(plugin_name("rate_limit").is_ok());
        assert!(plugin_name("Rate-Limit").is_err());
    }
}
