//! Meridian plugins: the [`Plugin`] trait that embedders implement, the [`Registry`] that
//! builds plugins from config by name, the [`Chain`] the proxy runs, and the built-ins.
//!
//! # Order
//! A route's chain is the global chain (top-level `plugins:`) followed by the route's own
//! `plugins:`, each in config order. A route plugin with the same name as a global one replaces
//! the global instance at the global's position (as in Kong, the more specific config wins).
//! Every hook runs over the chain in that order. A plugin declares the hooks it implements with
//! [`Plugin::hooks`]; the chain calls a plugin only for those, so unused hooks cost nothing.
//!
//! # Local responses
//! A plugin that answers a request itself (a 401, a 429, a CORS preflight) returns
//! [`Flow::Respond`]. The gateway then runs [`Plugin::response_filter`] of the plugins *before*
//! it in the chain on that response (so CORS headers reach a 401), and writes it.
//!
//! # Per-request state
//! [`PluginCtx`] is owned by the request: no locks on the hot path.

pub mod auth;
pub mod breaker;
mod builtin;
mod chain;
mod compression;
mod cors;
mod ctx;
mod headers;
pub mod metrics;
mod plugin;
pub mod rate_limit;
mod registry;
mod size_limit;
pub mod units;

pub use async_trait::async_trait;
pub use chain::Chain;
pub use compression::{response_encoder, ResponseEncoder};
pub use ctx::{AttemptError, Identity, Outcome, PluginCtx};
pub use headers::{HeaderRules, RuleError, RuleList};
pub use plugin::{Flow, Hooks, LocalResponse, Plugin};
pub use registry::{settings, ConfigError, Factory, Registry};
pub use size_limit::RequestBodyLimit;
