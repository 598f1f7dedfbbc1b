//! Meridian plugins: the [`Plugin`] trait that embedders implement, and the [`Registry`] that
//! builds plugins from config by name.
//!
//! A route's chain runs in config order: global plugins first, then the route's own. Each hook
//! is called on every plugin of the chain in that order; a hook a plugin does not override
//! costs one virtual call that returns at once.
//!
//! Per-request state lives in [`PluginCtx`], owned by the request: no locks on the hot path.

use std::collections::HashMap;
use std::sync::Arc;

pub use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

/// Per-request state shared by the plugins of one request (typed slots, one per type).
#[derive(Default)]
pub struct PluginCtx {
    /// Typed per-request values (e.g. an authenticated identity a later plugin reads).
    pub extensions: http::Extensions,
    /// Name of the route that matched.
    pub route: Arc<str>,
}

/// A plugin: hooks into the phases of a proxied request.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Runs after routing, before an upstream is chosen. Return `Ok(true)` when the plugin has
    /// written a response itself (the request goes no further), `Ok(false)` to continue.
    async fn request_filter(&self, _session: &mut Session, _ctx: &mut PluginCtx) -> Result<bool> {
        Ok(false)
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

    /// Edits the response header about to be sent downstream.
    async fn response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        Ok(())
    }

    /// Runs once the request is done (after the response or an error).
    async fn logging(&self, _session: &mut Session, _ctx: &mut PluginCtx) {}
}

/// Builds a plugin from its config settings (the YAML under its name, as JSON).
pub type Factory =
    Arc<dyn Fn(&serde_json::Value) -> std::result::Result<Arc<dyn Plugin>, String> + Send + Sync>;

/// Plugin factories by name. Embedders add theirs with [`Registry::register`]; config names them.
#[derive(Clone, Default)]
pub struct Registry {
    factories: HashMap<String, Factory>,
}

impl Registry {
    /// An empty registry (built-ins are added by the plugins issue).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a factory under `name`.
    pub fn register<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&serde_json::Value) -> std::result::Result<Arc<dyn Plugin>, String>
            + Send
            + Sync
            + 'static,
    {
        self.factories.insert(name.to_string(), Arc::new(factory));
    }

    /// Builds the plugin `name` from `settings`.
    pub fn build(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> std::result::Result<Arc<dyn Plugin>, String> {
        match self.factories.get(name) {
            Some(f) => f(settings),
            None => {
                let mut known: Vec<&str> = self.factories.keys().map(String::as_str).collect();
                known.sort_unstable();
                Err(format!(
                    "unknown plugin \"{name}\"; registered plugins: [{}]",
                    known.join(", ")
                ))
            }
        }
    }
}
