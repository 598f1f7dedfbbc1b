//! The built-in plugins, registered in every [`Registry::with_builtins`].

use crate::Registry;

impl Registry {
    /// A registry with every built-in plugin.
    pub fn with_builtins() -> Registry {
        let mut r = Registry::new();
        register_builtins(&mut r);
        r
    }
}

/// Registers every built-in plugin under its config name.
fn register_builtins(r: &mut Registry) {
    r.register("jwt", crate::auth::jwt::build);
    r.register("api_key", crate::auth::api_key::build);
    r.register("introspection", crate::auth::introspection::build);
    r.register("oidc", crate::auth::oidc::build);
    r.register("rate_limit", crate::rate_limit::build);
    r.register("cors", crate::cors::Cors::build);
    r.register("compression", crate::compression::Compression::build);
    r.register("size_limit", crate::size_limit::SizeLimit::build);
    r.register("headers", crate::headers::Headers::build);
}
