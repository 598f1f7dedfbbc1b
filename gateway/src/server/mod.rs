//! Listeners: every client-facing listener — plain HTTP/1.1 (optional h2c) and TLS (ALPN
//! h2/http1.1) — is served by Meridian's worker threads ([`workers`]: `server.threads` threads,
//! each accepting on every listener, each watched by a heartbeat, [`watchdog`]), plus the admin
//! service on a pingora listening service of its own.

mod accept;
mod client_io;
mod connections;
pub mod drain;
pub use accept::listen;
pub mod tls;
pub mod watchdog;
mod workers;

use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::proxy::http_proxy;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::proxy::MeridianProxy;
use crate::reload::GatewayState;

/// Adds the workers serving every listener, and the admin service, to `server`.
pub fn add_services(
    server: &mut Server,
    config: &Config,
    state: &Arc<GatewayState>,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let h2c = l.h2c && l.tls.is_none();
        let apps = (0..config.server.threads)
            .map(|_| {
                let proxy = MeridianProxy::new(
                    state.plan.clone(),
                    state.telemetry.clone(),
                    state.edge.clone(),
                    state.draining.clone(),
                    l.tls.is_some(),
                );
                let mut app = http_proxy(&server.configuration, proxy);
                if h2c {
                    let mut opts = HttpServerOptions::default();
                    opts.h2c = true;
                    app.server_options = Some(opts);
                }
                connections::ConnectionApp::new(
                    app,
                    h2c,
                    config.server.client_timeouts,
                    state.telemetry.metrics().clone(),
                )
            })
            .collect();
        let tls = match &l.tls {
            None => None,
            Some(t) => match tls::listener_settings(t) {
                Ok(settings) => Some(Arc::new(settings.build())),
                Err(e) => {
                    errors.push(format!("listener {}: {e}", l.name));
                    continue;
                }
            },
        };
        listeners.push(workers::Listener {
            name: l.name.clone(),
            address: l.address,
            tls,
            apps,
        });
    }
    server.add_service(workers::Workers::new(
        listeners,
        state.workers.clone(),
        config.server.grace_period,
    ));
    let token = config.admin.token.as_ref().map(|t| t.expose().to_string());
    let mut admin = Service::new(
        "admin".to_string(),
        HttpServer::new_app(AdminApp::new(state.clone(), token)),
    );
    admin.add_tcp(&config.admin.address.to_string());
    admin.threads = Some(1);
    server.add_service(admin);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
