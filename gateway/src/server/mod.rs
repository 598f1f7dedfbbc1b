//! Listeners: one proxy service per configured listener — plain HTTP/1.1 (optional h2c) on
//! Meridian's own lean accept loop ([`accept`]), TLS (ALPN h2/http1.1) on pingora's listening
//! service — plus the admin service.

mod accept;
mod client_io;
mod connections;
pub mod drain;
pub use accept::listen;
pub mod tls;

use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::proxy::http_proxy;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::proxy::MeridianProxy;
use crate::reload::GatewayState;

/// Socket buffers of a TLS client connection. pingora's default 64 KiB read buffer is
/// allocated (and zeroed) per connection, 640 MiB for 10,000 idle keep-alive clients; its HTTP
/// layer reads into buffers of its own, so the L4 read buffer is left out. The write buffer
/// (one MSS) keeps a small response in one `send`.
fn l4_buffers() -> L4BufferSettings {
    L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)
}

/// Adds a proxy service for every listener and the admin service to `server`.
pub fn add_services(
    server: &mut Server,
    config: &Config,
    state: &Arc<GatewayState>,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for l in &config.listeners {
        let proxy = MeridianProxy::new(
            state.plan.clone(),
            state.telemetry.clone(),
            state.draining.clone(),
            l.tls.is_some(),
        );
        let mut app = http_proxy(&server.configuration, proxy);
        if l.h2c && l.tls.is_none() {
            let mut opts = HttpServerOptions::default();
            opts.h2c = true;
            app.server_options = Some(opts);
        }
        let app = connections::ConnectionApp::new(app, l.h2c && l.tls.is_none());
        let name = format!("listener {}", l.name);
        let Some(t) = &l.tls else {
            server.add_service(accept::PlainListener::new(
                name,
                l.address,
                app,
                config.server.threads,
            ));
            continue;
        };
        match tls::listener_settings(t) {
            Ok(settings) => {
                let mut svc = Service::new(name, app);
                svc.add_listener(
                    ListenerConfig::tcp(l.address.to_string())
                        .tls(settings)
                        .l4_buffer(l4_buffers()),
                );
                svc.threads = Some(config.server.threads);
                server.add_service(svc);
            }
            Err(e) => errors.push(format!("listener {}: {e}", l.name)),
        }
    }
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
