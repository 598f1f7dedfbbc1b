//! `cors`: Cross-Origin Resource Sharing (the Fetch standard's CORS protocol) at the edge.
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by
//!   the gateway and never reaches the upstream: 204 with the allow headers when the origin,
//!   the method and every requested header are allowed, else 403 with a short reason. (Envoy
//!   passes a disallowed preflight on to the upstream; Meridian answers it so upstreams never
//!   see preflights.)
//! - Every other response (the upstream's, or a local response of a plugin after this one)
//!   to a request from an allowed origin gets `Access-Control-Allow-Origin` and, as
//!   configured, `-Allow-Credentials` and `-Expose-Headers`. When the answer depends on the
//!   origin, `Vary: Origin` is added, for disallowed origins too, so caches keep them apart.
//! - With `allow_credentials`, a `*` origin is never sent: the request's origin is echoed.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::headers::add_vary;
use crate::{settings, ConfigError, Flow, Hooks, LocalResponse, Plugin, PluginCtx};

/// Methods allowed when `allow_methods` is not set.
const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// A `max_age` in whole seconds, written as a duration: `600s`, `10m`, `2h`, `1d`.
struct Seconds(u64);

fn parse_seconds(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "\"{s}\" is not a duration in whole seconds; expected a number and a unit \
                 (s, m, h, d) like 10m"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("\"{s}\" is not a duration; expected a number and a unit like 10m"))
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 600s or 10m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_seconds(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_str(SecondsVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    allow_origins: Vec<String>,
    allow_methods: Option<Vec<String>>,
    allow_headers: Option<Vec<String>>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    max_age: Option<Seconds>,
}

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginRule {
    /// `*`: every origin.
    Any,
    /// One origin, lower case.
    Exact(String),
    /// `scheme://*.rest`: one or more DNS labels in place of the `*`.
    Wildcard { prefix: String, suffix: String },
}

impl OriginRule {
    fn parse(s: &str) -> Result<OriginRule, String> {
        if s == "*" {
            return Ok(OriginRule::Any);
        }
        let lower = s.to_ascii_lowercase();
        let expected = "expected \"*\", an origin like https://app.example.com, or a pattern \
                        like https://*.example.com";
        let Some((scheme, authority)) = lower.split_once("://") else {
            return Err(format!("\"{s}\" has no scheme; {expected}"));
        };
        let valid_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        let valid_authority = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]*".contains(&b));
        if !valid_scheme || !valid_authority {
            return Err(format!(
                "\"{s}\" is not an origin (scheme://host[:port], no path); {expected}"
            ));
        }
        match lower.matches('*').count() {
            0 => Ok(OriginRule::Exact(lower)),
            1 => {
                let (prefix, suffix) = lower.split_once('*').unwrap_or_default();
                if !prefix.ends_with("://") || !suffix.starts_with('.') {
                    return Err(format!(
                        "\"{s}\": `*` must be the leftmost part of the host; {expected}"
                    ));
                }
                Ok(OriginRule::Wildcard {
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                })
            }
            _ => Err(format!("\"{s}\" has more than one `*`; {expected}")),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Exact(o) => o.eq_ignore_ascii_case(origin),
            OriginRule::Wildcard { prefix, suffix } => {
                let o = origin.as_bytes();
                if o.len() <= prefix.len() + suffix.len()
                    || !o[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    || !o[o.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
                {
                    return false;
                }
                let labels = &o[prefix.len()..o.len() - suffix.len()];
                labels.split(|&b| b == b'.').all(|l| {
                    !l.is_empty() && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                })
            }
        }
    }
}

/// What `Access-Control-Allow-Origin` says for an allowed origin.
enum AllowOrigin {
    /// `*` (any origin, no credentials).
    Star,
    /// The request's origin.
    Echo,
}

/// The `cors` plugin.
pub(crate) struct Cors {
    origins: Vec<OriginRule>,
    /// `allow_origins: ["*"]` without credentials: the answer never depends on the origin.
    any_origin: bool,
    methods: Vec<http::Method>,
    methods_value: HeaderValue,
    /// `None`: every requested header is allowed (echoed back).
    headers: Option<Vec<HeaderName>>,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

fn joined<T: AsRef<str>>(items: &[T]) -> Option<HeaderValue> {
    let text = items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&text).ok()
}

fn header_names(list: &[String], key: &str) -> Result<Vec<HeaderName>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, n)| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                ConfigError::at(
                    format!("{key}[{i}]"),
                    format!("\"{n}\" is not a header name"),
                )
            })
        })
        .collect()
}

impl Cors {
    /// Builds the plugin from its settings.
    pub(crate) fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
        Ok(Arc::new(Cors::new(value)?))
    }

    fn new(value: &serde_json::Value) -> Result<Cors, ConfigError> {
        let s: Settings = settings(value)?;
        if s.allow_origins.is_empty() {
            return Err(ConfigError::at(
                "allow_origins",
                "empty; expected at least one origin, pattern or \"*\"",
            ));
        }
        let origins = s
            .allow_origins
            .iter()
            .enumerate()
            .map(|(i, o)| {
                OriginRule::parse(o).map_err(|m| ConfigError::at(format!("allow_origins[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let methods =
            match &s.allow_methods {
                Some(m) if m.is_empty() => return Err(ConfigError::at(
                    "allow_methods",
                    "empty; expected methods like [GET, POST] (or leave it out for the defaults)",
                )),
                Some(m) => m.clone(),
                None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
            };
        let methods = methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let upper = m.to_ascii_uppercase();
                http::Method::from_bytes(upper.as_bytes()).map_err(|_| {
                    ConfigError::at(
                        format!("allow_methods[{i}]"),
                        format!("\"{m}\" is not a method"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let headers = match &s.allow_headers {
            Some(list) if list.iter().any(|h| h == "*") => None,
            Some(list) => Some(header_names(list, "allow_headers")?),
            None => None,
        };
        let expose = header_names(&s.expose_headers, "expose_headers")?;
        let method_names: Vec<&str> = methods.iter().map(http::Method::as_str).collect();
        let methods_value = joined(&method_names)
            .ok_or_else(|| ConfigError::at("allow_methods", "not a valid header value"))?;
        let headers_value = match &headers {
            Some(h) if !h.is_empty() => Some(
                joined(h)
                    .ok_or_else(|| ConfigError::at("allow_headers", "not a valid header value"))?,
            ),
            _ => None,
        };
        let expose_value = if expose.is_empty() {
            None
        } else {
            Some(
                joined(&expose)
                    .ok_or_else(|| ConfigError::at("expose_headers", "not a valid header value"))?,
            )
        };
        let any = origins.contains(&OriginRule::Any);
        Ok(Cors {
            any_origin: any && !s.allow_credentials,
            origins,
            methods,
            methods_value,
            headers,
            headers_value,
            expose_value,
            credentials: s.allow_credentials,
            max_age: s.max_age.map(|a| HeaderValue::from(a.0)),
        })
    }

    /// How an origin is answered, or `None` when it is not allowed.
    fn allow(&self, origin: &str) -> Option<AllowOrigin> {
        if self.any_origin {
            return Some(AllowOrigin::Star);
        }
        self.origins
            .iter()
            .any(|r| r.matches(origin))
            .then_some(AllowOrigin::Echo)
    }

    /// Sets the allow-origin headers on a response to `origin`.
    fn set_origin(&self, resp: &mut ResponseHeader, allow: AllowOrigin, origin: &HeaderValue) {
        let value = match allow {
            AllowOrigin::Star => HeaderValue::from_static("*"),
            AllowOrigin::Echo => origin.clone(),
        };
        let _ = resp.insert_header(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            let _ = resp.insert_header(ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
    }

    /// Answers a preflight.
    fn preflight(
        &self,
        origin: &HeaderValue,
        method: &HeaderValue,
        requested: Option<&HeaderValue>,
    ) -> LocalResponse {
        let deny = |reason: &str| {
            let r = LocalResponse::text(403, reason);
            if self.any_origin {
                r
            } else {
                r.with_header("vary", "origin")
            }
        };
        let Some(allow) = origin.to_str().ok().and_then(|o| self.allow(o)) else {
            return deny("CORS origin not allowed");
        };
        if !self
            .methods
            .iter()
            .any(|m| m.as_str().as_bytes() == method.as_bytes())
        {
            return deny("CORS method not allowed");
        }
        let mut names = requested
            .map(|v| v.as_bytes().split(|&b| b == b','))
            .into_iter()
            .flatten()
            .map(<[u8]>::trim_ascii)
            .filter(|n| !n.is_empty());
        let headers_ok = names.all(|n| match HeaderName::from_bytes(n) {
            Ok(name) => self
                .headers
                .as_ref()
                .is_none_or(|list| list.contains(&name)),
            Err(_) => false,
        });
        if !headers_ok {
            return deny("CORS request header not allowed");
        }
        let mut r = LocalResponse::new(204);
        self.set_origin(&mut r.header, allow, origin);
        let h = &mut r.header;
        let _ = h.insert_header(ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone());
        let allowed_headers = match (&self.headers, requested) {
            (None, Some(req)) => Some(req.clone()),
            (Some(_), _) => self.headers_value.clone(),
            (None, None) => None,
        };
        if let Some(v) = allowed_headers {
            let _ = h.insert_header(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(age) = &self.max_age {
            let _ = h.insert_header(ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        let vary = if self.any_origin {
            "access-control-request-method, access-control-request-headers"
        } else {
            "origin, access-control-request-method, access-control-request-headers"
        };
        let _ = h.insert_header(VARY, vary);
        r
    }
}

#[async_trait]
impl Plugin for Cors {
    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            response: true,
            ..Hooks::NONE
        }
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut PluginCtx) -> Result<Flow> {
        let req = session.req_header();
        if req.method != http::Method::OPTIONS {
            return Ok(Flow::Continue);
        }
        let (Some(origin), Some(method)) = (
            req.headers.get(ORIGIN),
            req.headers.get(ACCESS_CONTROL_REQUEST_METHOD),
        ) else {
            return Ok(Flow::Continue);
        };
        let requested = req.headers.get(ACCESS_CONTROL_REQUEST_HEADERS);
        Ok(self.preflight(origin, method, requested).into_flow())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        if !self.any_origin {
            add_vary(response, &ORIGIN);
        }
        let Some(origin) = session.req_header().headers.get(ORIGIN) else {
            return Ok(());
        };
        if let Some(allow) = origin.to_str().ok().and_then(|o| self.allow(o)) {
            self.set_origin(response, allow, origin);
            if let Some(expose) = &self.expose_value {
                let _ = response.insert_header(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OriginRule {
        OriginRule::parse(s).unwrap()
    }

    #[test]
    fn origin_patterns() {
        let w = rule("https://*.Example.com");
        assert!(w.matches("https://app.example.com"));
        assert!(w.matches("https://a.b.example.com"));
        assert!(w.matches("HTTPS://APP.EXAMPLE.COM"));
        assert!(!w.matches("https://example.com"));
        assert!(!w.matches("http://app.example.com"));
        assert!(!w.matches("https://evil.com/.example.com"));
        assert!(!w.matches("https://evil.com?.example.com"));
        assert!(!w.matches("https://app.example.com.evil.com"));
        assert!(!w.matches("https://..example.com"));
        let e = rule("https://app.example.com:8443");
        assert!(e.matches("https://app.example.com:8443"));
        assert!(!e.matches("https://app.example.com"));
        assert_eq!(rule("*"), OriginRule::Any);
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            "example.com",
            "https://",
            "https://a.com/path",
            "https://a*.com",
            "https://*.*.com",
            "https://x.*",
        ] {
            assert!(OriginRule::parse(bad).is_err(), "{bad}");
        }
    }

    fn cors(v: serde_json::Value) -> Cors {
        match Cors::new(&v) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn preflight_decisions() {
        let c = cors(
            serde_json::json!({ "allow_origins": ["https://a.test"], "allow_headers": ["x-a"],
            "allow_methods": ["GET", "put"] }),
        );
        let o = HeaderValue::from_static("https://a.test");
        let put = HeaderValue::from_static("PUT");
        let r = c.preflight(&o, &put, Some(&HeaderValue::from_static("X-A")));
        assert_eq!(r.header.status, 204);
        assert_eq!(
            r.header.headers["access-control-allow-origin"],
            "https://a.test"
        );
        assert_eq!(r.header.headers["access-control-allow-methods"], "GET, PUT");
        let r = c.preflight(&HeaderValue::from_static("https://b.test"), &put, None);
        assert_eq!(r.header.status, 403);
        assert_eq!(r.header.headers["vary"], "origin");
        let r = c.preflight(&o, &HeaderValue::from_static("DELETE"), None);
        assert_eq!(r.header.status, 403);
        let r = c.preflight(&o, &put, Some(&HeaderValue::from_static("x-a, x-b")));
        assert_eq!(r.header.status, 403);
    }

    #[test]
    fn credentials_never_send_star() {
        let c = cors(serde_json::json!({ "allow_origins": ["*"], "allow_credentials": true }));
        let o = HeaderValue::from_static("https://z.test");
        let r = c.preflight(&o, &HeaderValue::from_static("GET"), None);
        assert_eq!(
            r.header.headers["access-control-allow-origin"],
            "https://z.test"
        );
        assert_eq!(r.header.headers["access-control-allow-credentials"], "true");
        let c = cors(serde_json::json!({ "allow_origins": ["*"] }));
        let r = c.preflight(&o, &HeaderValue::from_static("GET"), None);
        assert_eq!(r.header.headers["access-control-allow-origin"], "*");
    }

    #[test]
    fn settings_errors_name_the_field() {
        let err = |v: serde_json::Value| match Cors::build(&v) {
            Err(e) => e,
            Ok(_) => panic!("accepted {v}"),
        };
        let e = err(serde_json::json!({ "allow_origins": ["https://ok.test", "nope"] }));
        assert_eq!(e.path, "allow_origins[1]");
        let e = err(serde_json::json!({ "allow_origins": ["*"], "max_age": "10 years" }));
        assert_eq!(e.path, "max_age");
        let e = err(serde_json::json!({ "allow_origins": ["*"], "allow_methods": ["GET", "B@D"] }));
        assert_eq!(e.path, "allow_methods[1]");
        let e = err(serde_json::json!({ "allow_origins": ["*"], "expose_headers": ["a b"] }));
        assert_eq!(e.path, "expose_headers[0]");
        let e = err(serde_json::json!({ "allow_origin": ["*"] }));
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(parse_seconds("10m"), Ok(600));
        assert!(parse_seconds("600").is_err());
    }
}
