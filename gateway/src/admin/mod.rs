//! The admin API, on its own listener (loopback by default; a bearer token is required when
//! it is bound elsewhere, and then guards everything but the probes).
//!
//! | path | what |
//! |---|---|
//! | `GET /healthz` | liveness: 200 while every worker thread's event loop turns, 503 naming the stalled ones |
//! | `GET /readyz` | a plan is loaded and every listener accepts connections |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /admin/config` | the effective config as JSON, secrets redacted |
//! | `GET /admin/upstreams` | targets, health, ejections, in-flight, latency, circuit breakers |
//! | `POST /admin/upstreams/NAME/breaker` | force an upstream's breaker: `{"state": "forced_open"}` |
//! | `POST /admin/routes/NAME/breaker` | the same for a route's breaker |
//! | `POST /admin/reload` | reload the config file (400 with the errors when invalid) |
//! | `POST /admin/cache/purge` | purge cached objects: `{"url": …}` or `{"surrogate_key": …}`, `"soft": true` marks stale |
//! | `GET /dashboard` | the live dashboard page (public: it holds no data and asks for the token) |
//! | `GET /admin/dashboard` | the dashboard's data: this gateway, its upstreams and breakers, each source |

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::reload::GatewayState;

mod breaker;
mod dashboard;
#[cfg(debug_assertions)]
mod debug;
mod purge;

use dashboard::Dashboard;

/// The admin HTTP application.
pub struct AdminApp {
    state: Arc<GatewayState>,
    token: Option<String>,
    dashboard: Arc<Dashboard>,
}

impl AdminApp {
    /// An admin app over the gateway's shared state. Starts the dashboard's scrape task on the
    /// state's control runtime.
    pub fn new(state: Arc<GatewayState>, token: Option<String>) -> Self {
        let own = dashboard::Own {
            metrics: state.telemetry.metrics().clone(),
            edge: state.edge.clone(),
        };
        let dashboard = Dashboard::start(state.plan.clone(), own, &state.rt);
        Self {
            state,
            token,
            dashboard,
        }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    /// `/healthz`: 200 while every worker's event loop turns; 503 with one line per stalled
    /// worker otherwise, so an orchestrator restarts the process.
    fn liveness(&self) -> Response<Vec<u8>> {
        let stalls = self.state.workers.stalls();
        if stalls.is_empty() {
            return reply(StatusCode::OK, "text/plain", "ok\n");
        }
        let body: String = stalls.iter().map(|s| format!("{s}\n")).collect();
        reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", body)
    }

    fn upstreams(&self) -> serde_json::Value {
        let plan = self.state.plan.load();
        let pools: serde_json::Map<String, serde_json::Value> = plan
            .upstreams
            .iter()
            .map(|(name, pool)| {
                let mut v = serde_json::to_value(pool.snapshot()).unwrap_or_default();
                if let (Some(b), Some(obj)) = (plan.breakers.upstream(name), v.as_object_mut()) {
                    obj.insert("circuit_breaker".into(), breaker::snapshot(b));
                }
                (name.to_string(), v)
            })
            .collect();
        let routes: serde_json::Map<String, serde_json::Value> = plan
            .breakers
            .routes()
            .map(|(name, b)| (name.to_string(), breaker::snapshot(b)))
            .collect();
        json!({ "generation": plan.generation, "upstreams": pools, "route_breakers": routes })
    }

    /// `POST /admin/{upstreams,routes}/NAME/breaker`: forces the state of that breaker.
    async fn force_breaker(&self, session: &mut ServerSession, path: &str) -> Response<Vec<u8>> {
        let plan = self.state.plan.load_full();
        let rest = path.strip_suffix("/breaker").unwrap_or(path);
        let found = if let Some(name) = rest.strip_prefix("/admin/upstreams/") {
            plan.breakers.upstream(name)
        } else if let Some(name) = rest.strip_prefix("/admin/routes/") {
            plan.breakers.route(name)
        } else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n");
        };
        let Some(b) = found else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "no such breaker\n");
        };
        match breaker::read_state(session).await {
            Ok(state) => json_reply(StatusCode::OK, &breaker::force(b, state)),
            Err(e) => json_reply(StatusCode::BAD_REQUEST, &json!({ "errors": [e] })),
        }
    }

    fn metrics(&self) -> String {
        let plan = self.state.plan.load();
        let m = self.state.telemetry.metrics();
        if let Some(edge) = &self.state.edge {
            edge.observe();
        }
        for (name, pool) in plan.upstreams.iter() {
            let handles = m.upstream_handles(name);
            for t in pool.snapshot().targets {
                handles.set_target_healthy(
                    &t.address.to_string(),
                    t.healthy && t.ejected_for_ms.is_none(),
                );
            }
        }
        m.render()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => return self.liveness(),
            "/readyz" => {
                return if self.state.listeners_ready() {
                    reply(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
                }
            }
            "/dashboard" if method == http::Method::GET => {
                return reply(StatusCode::OK, "text/html; charset=utf-8", dashboard::PAGE)
            }
            _ => {}
        }
        if !self.authorized(session) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "admin token required\n",
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"meridian-admin\""),
            );
            return r;
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => {
                reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics())
            }
            ("GET", "/admin/config") => {
                let plan = self.state.plan.load();
                let cfg = serde_json::to_value(&*plan.config).unwrap_or_default();
                json_reply(
                    StatusCode::OK,
                    &json!({ "generation": plan.generation, "config": cfg }),
                )
            }
            ("GET", "/admin/upstreams") => json_reply(StatusCode::OK, &self.upstreams()),
            ("GET", "/admin/dashboard") => {
                let mut v = self.dashboard.json();
                v["upstreams"] = self.upstreams();
                json_reply(StatusCode::OK, &v)
            }
            ("POST", "/admin/reload") => {
                let state = self.state.clone();
                match tokio::task::spawn_blocking(move || state.reload()).await {
                    Ok(Ok(r)) => json_reply(StatusCode::OK, &json!(r)),
                    Ok(Err(errors)) => {
                        json_reply(StatusCode::BAD_REQUEST, &json!({ "errors": errors }))
                    }
                    Err(_) => json_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({ "errors": ["reload task failed"] }),
                    ),
                }
            }
            ("POST", "/admin/cache/purge") => {
                let plan = self.state.plan.load_full();
                match purge::purge(session, &plan, self.state.edge.as_deref()).await {
                    Ok(v) => json_reply(StatusCode::OK, &v),
                    Err(e) => json_reply(StatusCode::BAD_REQUEST, &json!({ "errors": [e] })),
                }
            }
            ("POST", p) if p.ends_with("/breaker") => self.force_breaker(session, p).await,
            #[cfg(debug_assertions)]
            ("POST", "/admin/debug/stall") if debug::enabled() => {
                let query = session.req_header().uri.query().unwrap_or("");
                let (status, body) = debug::stall(&self.state.workers, query);
                json_reply(status, &body)
            }
            (
                _,
                "/metrics" | "/admin/config" | "/admin/upstreams" | "/admin/reload"
                | "/admin/cache/purge" | "/admin/dashboard" | "/dashboard",
            ) => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}
