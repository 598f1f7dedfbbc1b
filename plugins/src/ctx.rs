//! Per-request state shared by the plugins of one request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Who the request is from, set by an auth plugin and read by later ones (e.g. a rate limit
/// keyed by a claim or an API key).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The subject: a JWT `sub`, an API key's id, an introspected token's `sub`.
    pub subject: String,
    /// What established it: `"jwt"`, `"api_key"`, `"introspection"`, `"oidc"`, or an
    /// embedder's name.
    pub method: &'static str,
    /// Claims (or an API key's metadata) as a JSON object.
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl Identity {
    /// A claim as a string: strings as they are, numbers and booleans printed, other types
    /// `None`. `name` may be a dotted path into nested objects (`realm_access.role`).
    pub fn claim_str(&self, name: &str) -> Option<String> {
        let mut parts = name.split('.');
        let mut value = self.claims.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// How an attempt to reach the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptError {
    /// Could not connect (refused, unreachable, TLS handshake).
    Connect,
    /// A connect, read, write or total timeout.
    Timeout,
    /// Any other failure after connecting (reset, malformed response).
    Other,
}

/// How a request ended, filled in by the gateway before [`crate::Plugin::logging`].
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Status sent to the client (0 when none was sent).
    pub status: u16,
    /// Status the upstream answered, if it answered.
    pub upstream_status: Option<u16>,
    /// Why the last upstream attempt failed, if it did.
    pub error: Option<AttemptError>,
    /// Time from sending the request upstream to its response headers (last attempt).
    pub upstream_time: Option<Duration>,
    /// Whole request duration.
    pub duration: Duration,
    /// Whether a plugin answered the request itself.
    pub local: bool,
}

/// Per-request state shared by the plugins of one request.
#[derive(Default)]
pub struct PluginCtx {
    /// Name of the route that matched.
    pub route: Arc<str>,
    /// Name of the upstream chosen for the request.
    pub upstream: Arc<str>,
    /// The client's address (the TCP peer).
    pub client_ip: Option<IpAddr>,
    /// The authenticated identity, once an auth plugin has set it.
    pub identity: Option<Identity>,
    /// How the request ended (valid in [`crate::Plugin::logging`]).
    pub outcome: Outcome,
    /// Typed per-request values, one per type, for a plugin's own state (e.g. a guard released
    /// when the request ends).
    pub extensions: http::Extensions,
}
