//! The plugins' Prometheus registry. The gateway's `/metrics` renders it after its own.

use std::sync::OnceLock;

use prometheus::Registry;

/// The registry built-in (and embedders') plugins register their metrics in. Metric names
/// start with `meridian_`; labels must be bounded by config (plugin, route, upstream names).
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}
