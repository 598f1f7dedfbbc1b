//! `size_limit`: request and response body limits.
//!
//! - Request bodies: a declared `Content-Length` over the limit is answered 413 before anything
//!   goes upstream; a streamed (chunked) body is counted by the gateway as it arrives, against
//!   the strictest of `limits.max_body`, the route's `max_body` and this plugin's limit (the
//!   plugin hands its limit to the gateway as a [`RequestBodyLimit`]).
//! - Response bodies: a declared `Content-Length` over the limit turns the response into a 502
//!   before its header is sent; a streamed body is counted, and once it passes the limit the
//!   response is aborted (a 502 if the header has not been sent yet, else the connection is
//!   cut so the client sees a truncated body, never a complete one).

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use prometheus::IntCounterVec;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::units::parse_size;
use crate::{settings, ConfigError, Flow, Hooks, LocalResponse, Plugin, PluginCtx};

/// The request body limit a plugin set for this request (in [`PluginCtx::extensions`]). The
/// gateway counts streamed request bodies against the smallest of this and its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBodyLimit(pub u64);

/// A size in bytes, written like the rest of the config: `512`, `64KiB`, `10MiB`, `1KB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub(crate) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 512, 64KiB or 10MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    request_body: Option<Size>,
    response_body: Option<Size>,
}

/// Refusals by direction (`request` 413, `response` 502/abort), per route.
fn count_refusal(route: &str, direction: &str) {
    static METRIC: OnceLock<Option<IntCounterVec>> = OnceLock::new();
    let metric = METRIC.get_or_init(|| {
        let opts = prometheus::Opts::new(
            "meridian_size_limit_refused_total",
            "Requests refused (413) or responses aborted (502) by the size_limit plugin",
        );
        let m = IntCounterVec::new(opts, &["route", "direction"]).ok()?;
        match crate::metrics::registry().register(Box::new(m.clone())) {
            Ok(()) => Some(m),
            Err(e) => {
                log::warn!("size_limit: metric not registered: {e}");
                None
            }
        }
    });
    if let Some(m) = metric {
        m.with_label_values(&[route, direction]).inc();
    }
}

/// Bytes of the upstream response body seen so far (in [`PluginCtx::extensions`]).
#[derive(Clone, Copy)]
struct ResponseBytes(u64);

/// The `size_limit` plugin.
pub(crate) struct SizeLimit {
    request_body: Option<u64>,
    response_body: Option<u64>,
}

impl SizeLimit {
    /// Builds the plugin from its settings; at least one limit must be set.
    pub(crate) fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
        let s: Settings = settings(value)?;
        if s.request_body.is_none() && s.response_body.is_none() {
            return Err(ConfigError::at(
                "",
                "no limit set; expected request_body and/or response_body (sizes like 1MiB)",
            ));
        }
        Ok(Arc::new(SizeLimit {
            request_body: s.request_body.map(|s| s.0),
            response_body: s.response_body.map(|s| s.0),
        }))
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large_response(ctx: &PluginCtx) -> Box<Error> {
    count_refusal(&ctx.route, "response");
    Error::explain(
        ErrorType::HTTPStatus(502),
        "upstream response body too large",
    )
}

#[async_trait]
impl Plugin for SizeLimit {
    fn hooks(&self) -> Hooks {
        Hooks {
            request: self.request_body.is_some(),
            response: self.response_body.is_some(),
            response_body: self.response_body.is_some(),
            ..Hooks::NONE
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut PluginCtx) -> Result<Flow> {
        let Some(limit) = self.request_body else {
            return Ok(Flow::Continue);
        };
        if content_length(&session.req_header().headers).is_some_and(|n| n > limit) {
            count_refusal(&ctx.route, "request");
            // The unread body must not be drained (it may be huge) nor read as the next request.
            session.set_keepalive(None);
            return Ok(LocalResponse::text(413, "request body too large")
                .with_header("connection", "close")
                .into_flow());
        }
        ctx.extensions.insert(RequestBodyLimit(limit));
        Ok(Flow::Continue)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        let Some(limit) = self.response_body else {
            return Ok(());
        };
        if content_length(&response.headers).is_some_and(|n| n > limit) {
            return Err(too_large_response(ctx));
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        let (Some(limit), Some(chunk)) = (self.response_body, body.as_ref()) else {
            return Ok(());
        };
        let seen = ctx
            .extensions
            .get::<ResponseBytes>()
            .map_or(0, |s| s.0)
            .saturating_add(chunk.len() as u64);
        ctx.extensions.insert(ResponseBytes(seen));
        if seen > limit {
            return Err(too_large_response(ctx));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_errors_name_the_field() {
        let e = match SizeLimit::build(&serde_json::json!({ "request_body": "1 parsec" })) {
            Err(e) => e,
            Ok(_) => panic!("accepted a bad size"),
        };
        assert_eq!(e.path, "request_body");
        assert!(e.message.contains("unknown unit"), "{e}");
        let e = match SizeLimit::build(&serde_json::json!({})) {
            Err(e) => e,
            Ok(_) => panic!("accepted no limit"),
        };
        assert!(e.message.contains("no limit set"), "{e}");
        let e = match SizeLimit::build(&serde_json::json!({ "request": 1 })) {
            Err(e) => e,
            Ok(_) => panic!("accepted an unknown field"),
        };
        assert!(e.message.contains("unknown field `request`"), "{e}");
    }

    #[test]
    fn hooks_follow_the_limits_set() {
        let p = SizeLimit {
            request_body: Some(1),
            response_body: None,
        };
        assert!(p.hooks().request && !p.hooks().response && !p.hooks().response_body);
        let p = SizeLimit {
            request_body: None,
            response_body: Some(1),
        };
        assert!(!p.hooks().request && p.hooks().response && p.hooks().response_body);
    }
}
