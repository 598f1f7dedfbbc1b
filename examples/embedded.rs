//! Embedding Meridian: a gateway built in code, with a custom plugin, run from your own binary.
//!
//! ```text
//! cargo run --example embedded -- 127.0.0.1:8090 127.0.0.1:9000 127.0.0.1:9902
//! curl -i http://127.0.0.1:8090/        # proxied to 127.0.0.1:9000, with `x-stamp: hello`
//! ```

use std::sync::Arc;

use gateway::builder::GatewayBuilder;
use gateway::config::{Config, Listener, PluginSpec, Route, Target, Upstream};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use plugins::{async_trait, ConfigError, Hooks, Plugin, PluginCtx};

/// A plugin that stamps every response with a header whose value comes from config.
struct Stamp {
    value: String,
}

#[async_trait]
impl Plugin for Stamp {
    fn hooks(&self) -> Hooks {
        Hooks {
            response: true,
            ..Hooks::NONE
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> pingora::Result<()> {
        response.insert_header("x-stamp", self.value.as_str())?;
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let origin = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let admin = args.next().unwrap_or_else(|| "127.0.0.1:9902".into());
    let (host, port) = origin.rsplit_once(':').expect("origin is host:port");

    let mut config = Config::default();
    config.listeners.push(Listener {
        name: "public".into(),
        address: listen.parse().expect("listen address"),
        tls: None,
        h2c: false,
    });
    config.admin.address = admin.parse().expect("admin address");
    config.upstreams.insert(
        "app".into(),
        Upstream::with_targets(vec![Target {
            host: host.into(),
            port: port.parse().expect("origin port"),
            weight: 1,
        }]),
    );
    let mut route = Route::prefix("all", "/", "app");
    route.plugins.push(PluginSpec::new(
        "stamp",
        serde_json::json!({ "value": "hello" }),
    ));
    config.routes.push(route);

    let mut builder = GatewayBuilder::from_config(config);
    builder.plugins().register("stamp", |settings| {
        let value = settings["value"]
            .as_str()
            .ok_or_else(|| ConfigError::at("value", "expected a string"))?;
        Ok(Arc::new(Stamp {
            value: value.to_string(),
        }) as Arc<dyn Plugin>)
    });
    match builder.build() {
        Ok(gateway) => gateway.run_forever(),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    }
}
