//! The [`Plugin`] trait and what its hooks return.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

use crate::PluginCtx;

/// Which hooks a plugin implements. The chain only calls a plugin for these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    /// [`Plugin::request_filter`].
    pub request: bool,
    /// [`Plugin::upstream_request_filter`].
    pub upstream_request: bool,
    /// [`Plugin::response_filter`].
    pub response: bool,
    /// [`Plugin::response_body_filter`].
    pub response_body: bool,
    /// [`Plugin::logging`].
    pub logging: bool,
}

impl Hooks {
    /// Every hook.
    pub const ALL: Hooks = Hooks {
        request: true,
        upstream_request: true,
        response: true,
        response_body: true,
        logging: true,
    };
    /// No hook (a starting point: `Hooks { request: true, ..Hooks::NONE }`).
    pub const NONE: Hooks = Hooks {
        request: false,
        upstream_request: false,
        response: false,
        response_body: false,
        logging: false,
    };
}

/// What [`Plugin::request_filter`] decided.
pub enum Flow {
    /// Go on with the next plugin, then the upstream.
    Continue,
    /// Answer the client with this response; the request goes no further.
    Respond(Box<LocalResponse>),
}

/// A response a plugin gives instead of the upstream's.
pub struct LocalResponse {
    /// Status and headers.
    pub header: ResponseHeader,
    /// The body (may be empty).
    pub body: Bytes,
}

impl LocalResponse {
    /// A response with `status`, no body.
    pub fn new(status: u16) -> LocalResponse {
        // A status outside 100..=999 falls back to 500.
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let header = ResponseHeader::from(parts);
        LocalResponse {
            header,
            body: Bytes::new(),
        }
    }

    /// A response with `status` and a short plain-text `reason` as the body.
    pub fn text(status: u16, reason: &str) -> LocalResponse {
        let mut r = LocalResponse::new(status);
        r.body = Bytes::from(format!("{reason}\n"));
        r.with_header("content-type", "text/plain; charset=utf-8")
    }

    /// Adds a header (values that are not valid header values are skipped).
    pub fn with_header(mut self, name: &'static str, value: impl AsRef<str>) -> LocalResponse {
        if let Err(e) = self.header.append_header(name, value.as_ref().to_string()) {
            log::debug!("local response: header {name} skipped: {e}");
        }
        self
    }

    /// Wraps the response as a [`Flow::Respond`].
    pub fn into_flow(self) -> Flow {
        Flow::Respond(Box::new(self))
    }
}

/// A plugin: hooks into the phases of a proxied request.
///
/// Override [`Plugin::hooks`] to name the hooks you implement; the default is all of them.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The hooks this plugin implements.
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    /// Runs after routing, before the upstream request. Return [`Flow::Respond`] to answer the
    /// client without going upstream.
    async fn request_filter(&self, _session: &mut Session, _ctx: &mut PluginCtx) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// Edits the request about to be sent upstream (once per attempt).
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        _request: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        Ok(())
    }

    /// Edits the response header about to be sent downstream (the upstream's, or a local
    /// response of a later plugin).
    async fn response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        Ok(())
    }

    /// Sees (and may edit) each chunk of the upstream's response body.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        Ok(())
    }

    /// Runs once the request is done; [`PluginCtx::outcome`] says how it ended.
    async fn logging(&self, _session: &mut Session, _ctx: &mut PluginCtx) {}
}
