//! The last step of every auth plugin: the required claims are checked, the forwarded
//! claims recorded, and the identity set.

use super::challenge::{self, BearerError};
use super::forward::Forward;
use super::metrics;
use super::require::Require;
use crate::{Flow, Identity, PluginCtx};

/// Checks the required claims of a verified identity, records the forwarded claims and sets
/// the identity; 403 `insufficient_scope` when a required claim is lacking.
pub fn admit(
    identity: Identity,
    require: &Require,
    forward: &Forward,
    realm: &str,
    plugin: &str,
    ctx: &mut PluginCtx,
) -> pingora::Result<Flow> {
    if let Err(missing) = require.check(&identity) {
        metrics::decision(plugin, "forbidden");
        let reason = format!("missing {} {}", missing.claim, missing.values);
        let scope = (missing.claim == "scope").then_some(missing.values.as_str());
        return Ok(
            challenge::bearer(realm, BearerError::InsufficientScope, &reason, scope).into_flow(),
        );
    }
    metrics::decision(plugin, "ok");
    forward.record(&identity, ctx);
    ctx.identity = Some(identity);
    Ok(Flow::Continue)
}
