//! What a request is counted under: the `key` setting, and the key built from a request.

use std::fmt::Write;

use http::HeaderName;
use pingora::http::RequestHeader;

use crate::PluginCtx;

/// Keys longer than this (after escaping) are replaced by their SHA-256, so the memory a key
/// takes and the Redis key length are bounded.
const MAX_KEY_LEN: usize = 200;

/// Upper-case hex digits for percent-escapes.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// One part of a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client's IP address.
    ClientIp,
    /// A request header's value (the client IP when the header is absent).
    Header(HeaderName),
    /// A claim of the authenticated identity (the client IP when there is none).
    Claim(String),
    /// The subject of an identity established by an API key (the client IP otherwise).
    ApiKey,
    /// The name of the matched route.
    Route,
}

impl KeyPart {
    /// Parses one `key` entry: `client_ip`, `header:NAME`, `claim:NAME`, `api_key` or `route`.
    pub fn parse(s: &str) -> Result<KeyPart, String> {
        let expected = "expected client_ip, header:NAME, claim:NAME, api_key or route";
        match s.split_once(':') {
            None => match s {
                "client_ip" => Ok(KeyPart::ClientIp),
                "api_key" => Ok(KeyPart::ApiKey),
                "route" => Ok(KeyPart::Route),
                _ => Err(format!("unknown key \"{s}\"; {expected}")),
            },
            Some(("header", name)) => HeaderName::from_bytes(name.trim().as_bytes())
                .map(KeyPart::Header)
                .map_err(|_| format!("\"{name}\" is not a header name; {expected}")),
            Some(("claim", name)) if !name.trim().is_empty() => {
                Ok(KeyPart::Claim(name.trim().to_string()))
            }
            Some(("claim", _)) => Err(format!("a claim needs a name; {expected}")),
            Some(_) => Err(format!("unknown key \"{s}\"; {expected}")),
        }
    }
}

/// Builds the key of a request from `parts`: each part as `kind=value`, joined by `|`, with
/// `%`, `|`, `{`, `}` and bytes outside visible ASCII percent-escaped (so parts cannot run into
/// each other and a Redis hash tag around the key stays intact). A part that falls back to the
/// client IP is written as `ip=ADDRESS`, never mistaken for a header of the same text.
pub fn build(parts: &[KeyPart], request: &RequestHeader, ctx: &PluginCtx) -> String {
    let mut key = String::with_capacity(64);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        let claim = |name: &str| ctx.identity.as_ref().and_then(|id| id.claim_str(name));
        let api_key = || {
            ctx.identity
                .as_ref()
                .filter(|id| id.method == "api_key")
                .map(|id| id.subject.as_str())
        };
        match part {
            KeyPart::ClientIp => push_ip(&mut key, ctx),
            KeyPart::Header(name) => match request.headers.get(name) {
                Some(v) => push_part(&mut key, "h", v.as_bytes()),
                None => push_ip(&mut key, ctx),
            },
            KeyPart::Claim(name) => match claim(name) {
                Some(v) => push_part(&mut key, "c", v.as_bytes()),
                None => push_ip(&mut key, ctx),
            },
            KeyPart::ApiKey => match api_key() {
                Some(v) => push_part(&mut key, "k", v.as_bytes()),
                None => push_ip(&mut key, ctx),
            },
            KeyPart::Route => push_part(&mut key, "r", ctx.route.as_bytes()),
        }
    }
    if key.len() > MAX_KEY_LEN {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        key = format!("sha256={}", hex::encode(digest));
    }
    key
}

fn push_ip(key: &mut String, ctx: &PluginCtx) {
    key.push_str("ip=");
    match ctx.client_ip {
        // Writing to a String cannot fail.
        Some(ip) => {
            let _ = write!(key, "{ip}");
        }
        None => key.push_str("unknown"),
    }
}

fn push_part(key: &mut String, kind: &str, value: &[u8]) {
    key.push_str(kind);
    key.push('=');
    for &b in value {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'|' | b'{' | b'}') {
            key.push(char::from(b));
        } else {
            key.push('%');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Identity;

    fn ctx() -> PluginCtx {
        PluginCtx {
            route: Arc::from("api"),
            client_ip: Some("10.0.0.7".parse().unwrap()),
            ..PluginCtx::default()
        }
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn parts(specs: &[&str]) -> Vec<KeyPart> {
        specs.iter().map(|s| KeyPart::parse(s).unwrap()).collect()
    }

    #[test]
    fn parses_every_kind_and_refuses_others() {
        assert_eq!(
            parts(&[
                "client_ip",
                "header:X-Tenant",
                "claim:sub",
                "api_key",
                "route"
            ]),
            vec![
                KeyPart::ClientIp,
                KeyPart::Header(HeaderName::from_static("x-tenant")),
                KeyPart::Claim("sub".into()),
                KeyPart::ApiKey,
                KeyPart::Route,
            ]
        );
        for bad in ["ip", "header:", "header:a b", "claim:", "cookie:x", ""] {
            assert!(KeyPart::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn combines_parts_and_falls_back_to_the_client_ip() {
        let p = parts(&["header:x-tenant", "route"]);
        assert_eq!(
            build(&p, &request(&[("x-tenant", "acme")]), &ctx()),
            "h=acme|r=api"
        );
        assert_eq!(build(&p, &request(&[]), &ctx()), "ip=10.0.0.7|r=api");
        let p = parts(&["claim:org.id", "api_key"]);
        assert_eq!(build(&p, &request(&[]), &ctx()), "ip=10.0.0.7|ip=10.0.0.7");
        let mut c = ctx();
        let claims = serde_json::json!({ "org": { "id": 42 } });
        c.identity = Some(Identity {
            subject: "key-1".into(),
            method: "api_key",
            claims: Arc::new(claims.as_object().unwrap().clone()),
        });
        assert_eq!(build(&p, &request(&[]), &c), "c=42|k=key-1");
        c.identity.as_mut().unwrap().method = "jwt";
        assert_eq!(build(&p, &request(&[]), &c), "c=42|ip=10.0.0.7");
    }

    #[test]
    fn escapes_separators_and_bounds_the_length() {
        let p = parts(&["header:a", "header:b"]);
        let one = build(&p, &request(&[("a", "x|h=y"), ("b", "z")]), &ctx());
        let two = build(&p, &request(&[("a", "x"), ("b", "y|h=z")]), &ctx());
        assert_eq!(one, "h=x%7Ch=y|h=z");
        assert_ne!(one, two);
        assert_eq!(
            build(&p[..1], &request(&[("a", "{t} 5%")]), &ctx()),
            "h=%7Bt%7D%205%25"
        );
        let long = "v".repeat(5000);
        let key = build(&p[..1], &request(&[("a", &long)]), &ctx());
        assert!(key.starts_with("sha256=") && key.len() == 71, "{key}");
    }
}
