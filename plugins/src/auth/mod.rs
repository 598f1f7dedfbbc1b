//! Authentication plugins: `jwt` (JWT with JWKS), `api_key`, `introspection` (RFC 7662) and
//! `oidc` (authorization-code login). Each sets [`crate::PluginCtx::identity`] for the
//! plugins after it and refuses what it cannot admit with 401 (or 403) and a
//! `WWW-Authenticate` challenge.

use crate::units;
mod admit;
pub mod api_key;
mod challenge;
mod client;
mod extract;
mod fetch;
mod forward;
pub mod introspection;
mod jwks;
pub mod jwt;
mod metrics;
pub mod oidc;
mod require;
mod verify;
