//! The compiled plan: a config turned into everything the request path needs, built once per
//! (re)load and swapped atomically. Nothing here is parsed or compiled per request.

use std::collections::HashMap;
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use plugins::{Chain, HeaderRules, Plugin, Registry};

use crate::config::{Config, PluginSpec, RouteUpstream};
use crate::router::split::WeightedSplit;
use crate::router::Router;
use crate::telemetry::{Metrics, RouteMetrics, UpstreamMetrics};
use crate::upstream::breaker::{Breaker, BreakerRegistry};
use crate::upstream::{UpstreamPool, UpstreamRegistry};

/// An immutable, compiled configuration.
pub struct Plan {
    /// Increases by one with every successful (re)load.
    pub generation: u64,
    /// The config this plan was compiled from.
    pub config: Arc<Config>,
    /// The compiled router.
    pub router: Router,
    /// Per-route plans, in config order (indices match the router's).
    pub routes: Vec<RoutePlan>,
    /// Upstream pools (shared with the previous plan where unchanged).
    pub upstreams: UpstreamRegistry,
    /// Upstreams as requests use them, by name (for breaker fallbacks).
    pub upstream_plans: HashMap<String, Arc<UpstreamPlan>>,
    /// Circuit breakers (kept from the previous plan where unchanged).
    pub breakers: BreakerRegistry,
    /// Plugin instances by scope (`""` for global, else the route name), name and settings, so
    /// a reload keeps the state (counters, breakers, caches) of plugins whose config did not
    /// change.
    plugin_instances: HashMap<PluginKey, Arc<dyn Plugin>>,
}

/// Identifies a plugin instance across reloads: scope, name, settings as canonical JSON.
type PluginKey = (Arc<str>, String, String);

/// An upstream as a request needs it: the pool, its config and its metric handles.
pub struct UpstreamPlan {
    /// The upstream's name.
    pub name: Arc<str>,
    /// Its pool (shared across reloads while its config is unchanged).
    pub pool: Arc<UpstreamPool>,
    /// Pre-resolved metric handles.
    pub metrics: UpstreamMetrics,
    /// CAs for verifying this upstream's TLS certificate (`tls.ca`), loaded once per plan.
    pub ca: Option<Arc<CaType>>,
    /// The upstream's circuit breaker, if configured.
    pub breaker: Option<Arc<Breaker>>,
}

/// Where a route sends its requests.
pub enum RouteTargets {
    /// One upstream.
    Single(Arc<UpstreamPlan>),
    /// A weighted split over upstreams.
    Split(WeightedSplit, HashMap<String, Arc<UpstreamPlan>>),
}

/// A compiled route.
pub struct RoutePlan {
    /// Route name.
    pub name: Arc<str>,
    /// Its upstreams.
    pub targets: RouteTargets,
    /// Request header rules.
    pub request_headers: HeaderRules,
    /// Response header rules.
    pub response_headers: HeaderRules,
    /// Plugin chain: global first, then the route's own.
    pub plugins: Chain,
    /// Pre-resolved metric handles.
    pub metrics: RouteMetrics,
    /// The route's circuit breaker, if configured.
    pub breaker: Option<Arc<Breaker>>,
    /// The route's caching rules, when it has `cache:`.
    pub cache: Option<Arc<crate::proxy::cache::RouteCachePlan>>,
}

impl RoutePlan {
    /// Picks the upstream for one request (`r` is a random number for splits).
    pub fn pick(&self, r: u64) -> Option<&Arc<UpstreamPlan>> {
        match &self.targets {
            RouteTargets::Single(u) => Some(u),
            RouteTargets::Split(split, pools) => pools.get(split.pick(r)),
        }
    }
}

impl Plan {
    /// Compiles `config`. `previous` lends its upstream pools (with health state and connection
    /// accounting) to upstreams whose config did not change. Metric handles are resolved on
    /// `metrics`, the gateway's. Errors are complete sentences, prefixed with the config file
    /// position where one is known.
    pub fn build(
        config: Arc<Config>,
        source: &str,
        previous: Option<&Plan>,
        registry: &Registry,
        rt: &tokio::runtime::Handle,
        metrics: &Metrics,
    ) -> Result<Plan, Vec<String>> {
        let mut errors = Vec::new();
        let router = Router::new(&config.routes).map_err(|errs| {
            errs.into_iter()
                .map(|(i, e)| format!("{source}: routes[{i}]: {e}"))
                .collect::<Vec<_>>()
        });
        let upstreams =
            UpstreamRegistry::build(&config.upstreams, previous.map(|p| &p.upstreams), rt);
        let breakers = BreakerRegistry::build(&config, previous.map(|p| &p.breakers), metrics);
        let mut upstream_plans: HashMap<String, Arc<UpstreamPlan>> = HashMap::new();
        for (name, cfg) in &config.upstreams {
            let Some(pool) = upstreams.get(name).cloned() else {
                continue;
            };
            let ca = match cfg.tls.as_ref().and_then(|t| t.ca.as_ref()) {
                Some(path) => match crate::server::tls::load_ca(path) {
                    Ok(ca) => Some(ca),
                    Err(e) => {
                        errors.push(format!("{source}: upstreams.{name}.tls.ca: {e}"));
                        continue;
                    }
                },
                None => None,
            };
            let plan = UpstreamPlan {
                name: Arc::from(name.as_str()),
                pool,
                metrics: metrics.upstream_handles(name),
                ca,
                breaker: breakers.upstream(name).cloned(),
            };
            upstream_plans.insert(name.clone(), Arc::new(plan));
        }
        let pool = |name: &str| upstream_plans.get(name).cloned();
        let mut instances = Instances {
            previous: previous.map(|p| &p.plugin_instances),
            built: HashMap::new(),
            registry,
            source,
        };
        let mut global: Vec<(Arc<str>, Arc<dyn Plugin>)> = Vec::new();
        for spec in &config.plugins {
            if let Some(p) = instances.build(Arc::from(""), spec, &mut errors) {
                global.push((Arc::from(spec.name.as_str()), p));
            }
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let targets = match &r.upstream {
                RouteUpstream::Single(n) => match pool(n) {
                    Some(u) => RouteTargets::Single(u),
                    None => {
                        errors.push(format!(
                            "{source}: route {}: unknown upstream \"{n}\"",
                            r.name
                        ));
                        continue;
                    }
                },
                RouteUpstream::Split(parts) => {
                    let mut pools = HashMap::new();
                    for (n, _) in parts {
                        match pool(n) {
                            Some(p) => {
                                pools.insert(n.clone(), p);
                            }
                            None => errors.push(format!(
                                "{source}: route {}: unknown upstream \"{n}\"",
                                r.name
                            )),
                        }
                    }
                    match WeightedSplit::new(parts) {
                        Some(split) => RouteTargets::Split(split, pools),
                        None => {
                            errors.push(format!(
                                "{source}: route {}: a split needs a positive total weight",
                                r.name
                            ));
                            continue;
                        }
                    }
                }
            };
            let mut chain = global.clone();
            for spec in &r.plugins {
                let scope: Arc<str> = Arc::from(r.name.as_str());
                let Some(p) = instances.build(scope, spec, &mut errors) else {
                    continue;
                };
                match chain.iter_mut().find(|(n, _)| n.as_ref() == spec.name) {
                    Some(slot) => slot.1 = p,
                    None => chain.push((Arc::from(spec.name.as_str()), p)),
                }
            }
            let rules = |h: &crate::config::HeaderRules, key: &str| {
                HeaderRules::compile(
                    h.add.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    h.set.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    h.remove.iter().map(String::as_str),
                )
                .map_err(|e| format!("{key}.{}: {}: {}", e.list.key(), e.name, e.message))
            };
            let (request_headers, response_headers) = match (
                rules(&r.request_headers, "request_headers"),
                rules(&r.response_headers, "response_headers"),
            ) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    errors.push(format!("{source}: route {} (#{i}): {e}", r.name));
                    continue;
                }
            };
            routes.push(RoutePlan {
                name: Arc::from(r.name.as_str()),
                targets,
                request_headers,
                response_headers,
                plugins: Chain::new(chain),
                metrics: metrics.route_handles(&r.name),
                breaker: breakers.route(&r.name).cloned(),
                cache: r
                    .cache
                    .as_ref()
                    .map(crate::proxy::cache::RouteCachePlan::new),
            });
        }
        let router = match router {
            Ok(r) => Some(r),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        match router {
            Some(router) if errors.is_empty() => Ok(Plan {
                generation: previous.map_or(1, |p| p.generation + 1),
                config,
                router,
                routes,
                upstreams,
                upstream_plans,
                breakers,
                plugin_instances: instances.built,
            }),
            _ => Err(errors),
        }
    }
}

/// Builds plugin instances for one plan, reusing the previous plan's where scope, name and
/// settings are unchanged.
struct Instances<'a> {
    previous: Option<&'a HashMap<PluginKey, Arc<dyn Plugin>>>,
    built: HashMap<PluginKey, Arc<dyn Plugin>>,
    registry: &'a Registry,
    source: &'a str,
}

impl Instances<'_> {
    fn build(
        &mut self,
        scope: Arc<str>,
        spec: &PluginSpec,
        errors: &mut Vec<String>,
    ) -> Option<Arc<dyn Plugin>> {
        let key = (scope, spec.name.clone(), spec.settings.to_string());
        if let Some(p) = self.built.get(&key) {
            return Some(p.clone());
        }
        let plugin = match self.previous.and_then(|m| m.get(&key)) {
            Some(p) => p.clone(),
            None => match self.registry.build(&spec.name, &spec.settings) {
                Ok(p) => p,
                Err(e) => {
                    let at = spec.position_of(&e.path);
                    let field = if e.path.is_empty() {
                        String::new()
                    } else {
                        format!(".{}", e.path)
                    };
                    errors.push(format!(
                        "{}:{}:{}: plugin {}{field}: {}",
                        self.source, at.line, at.column, spec.name, e.message
                    ));
                    return None;
                }
            },
        };
        self.built.insert(key, plugin.clone());
        Some(plugin)
    }
}
