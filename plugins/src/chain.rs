//! A compiled plugin chain: every plugin in order, plus one list per hook.

use std::sync::Arc;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

use crate::{Flow, LocalResponse, Plugin, PluginCtx};

/// The plugins of one route, in order, split by hook so the proxy only calls plugins that
/// implement a hook. Built once per plan.
#[derive(Default)]
pub struct Chain {
    names: Box<[Arc<str>]>,
    all: Box<[Arc<dyn Plugin>]>,
    request: Box<[usize]>,
    upstream_request: Box<[Arc<dyn Plugin>]>,
    response: Box<[usize]>,
    response_body: Box<[Arc<dyn Plugin>]>,
    logging: Box<[Arc<dyn Plugin>]>,
}

impl Chain {
    /// A chain of `(name, plugin)` in order.
    pub fn new(plugins: Vec<(Arc<str>, Arc<dyn Plugin>)>) -> Chain {
        let (names, all): (Vec<_>, Vec<_>) = plugins.into_iter().unzip();
        let hooks: Vec<_> = all.iter().map(|p| p.hooks()).collect();
        let indices = |f: fn(&crate::Hooks) -> bool| -> Box<[usize]> {
            (0..all.len()).filter(|&i| f(&hooks[i])).collect()
        };
        let plugins = |f: fn(&crate::Hooks) -> bool| -> Box<[Arc<dyn Plugin>]> {
            (0..all.len())
                .filter(|&i| f(&hooks[i]))
                .map(|i| all[i].clone())
                .collect()
        };
        Chain {
            request: indices(|h| h.request),
            upstream_request: plugins(|h| h.upstream_request),
            response: indices(|h| h.response),
            response_body: plugins(|h| h.response_body),
            logging: plugins(|h| h.logging),
            names: names.into(),
            all: all.into(),
        }
    }

    /// Plugin names in chain order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| n.as_ref())
    }

    /// Whether the chain has no plugin.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether any plugin edits the response body.
    pub fn has_response_body_filters(&self) -> bool {
        !self.response_body.is_empty()
    }

    /// Runs the request hooks in order. On a local response, the response hooks of the plugins
    /// before the one that answered have already been applied to it.
    pub async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut PluginCtx,
    ) -> Result<Option<Box<LocalResponse>>> {
        for &i in self.request.iter() {
            if let Flow::Respond(mut local) = self.all[i].request_filter(session, ctx).await? {
                for &j in self.response.iter().take_while(|&&j| j < i) {
                    self.all[j]
                        .response_filter(session, &mut local.header, ctx)
                        .await?;
                }
                return Ok(Some(local));
            }
        }
        Ok(None)
    }

    /// Runs the upstream-request hooks in order.
    pub async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        for p in self.upstream_request.iter() {
            p.upstream_request_filter(session, request, ctx).await?;
        }
        Ok(())
    }

    /// Runs the response hooks in order.
    pub async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        for &i in self.response.iter() {
            self.all[i].response_filter(session, response, ctx).await?;
        }
        Ok(())
    }

    /// Runs the response-body hooks in order.
    pub fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        for p in self.response_body.iter() {
            p.response_body_filter(session, body, end_of_stream, ctx)?;
        }
        Ok(())
    }

    /// Runs the logging hooks in order.
    pub async fn logging(&self, session: &mut Session, ctx: &mut PluginCtx) {
        for p in self.logging.iter() {
            p.logging(session, ctx).await;
        }
    }
}
