//! The public entry point: build a gateway from a config file or in code, add plugins, run it.
//!
//! ```no_run
//! use gateway::builder::GatewayBuilder;
//! let mut builder = GatewayBuilder::from_file("conf/gateway.yaml").expect("valid config");
//! builder.plugins().register("hello", |_settings| Err("not built".into()));
//! builder.build().expect("gateway").run_forever();
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;

use crate::config::{self, Config, ConfigErrors};
use crate::control::ControlRuntime;
use crate::plan::Plan;
use crate::proxy::cache::EdgeCache;
use crate::reload::GatewayState;
use crate::server::watchdog::WorkerHealth;
use crate::telemetry::{Metrics, Telemetry};

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    config: Config,
    path: Option<PathBuf>,
    registry: plugins::Registry,
    upgrade: bool,
}

impl GatewayBuilder {
    /// Reads and validates a config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let config = config::load_file(path)?;
        Ok(Self {
            config,
            path: Some(path.to_path_buf()),
            registry: plugins::Registry::with_builtins(),
            upgrade: false,
        })
    }

    /// Uses a config built in code (reload from file is then unavailable).
    pub fn from_config(config: Config) -> Self {
        Self {
            config,
            path: None,
            registry: plugins::Registry::with_builtins(),
            upgrade: false,
        }
    }

    /// The plugin registry: register factories here, name them in config.
    pub fn plugins(&mut self) -> &mut plugins::Registry {
        &mut self.registry
    }

    /// Take the listening sockets over from a running Meridian (zero-downtime binary upgrade).
    pub fn upgrade(mut self, upgrade: bool) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Validates everything [`GatewayBuilder::build`] would, without listening: the plan (routes,
    /// upstreams, plugins by name and settings, upstream CAs) and every listener's certificates
    /// and keys. This is `meridian check`.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let source = self.source();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| vec![format!("runtime: {e}")])?;
        let mut errors = Vec::new();
        let metrics = Metrics::new().map_err(|e| vec![format!("metrics: {e}")])?;
        if let Err(mut e) = Plan::build(
            Arc::new(self.config.clone()),
            &source,
            None,
            &self.registry,
            rt.handle(),
            &metrics,
        ) {
            errors.append(&mut e);
        }
        for l in &self.config.listeners {
            if let Some(tls) = &l.tls {
                if let Err(e) = crate::server::tls::listener_settings(tls) {
                    errors.push(format!("{source}: listener {}: {e}", l.name));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn source(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "<in code>".to_string(), |p| p.display().to_string())
    }

    /// Compiles the plan and prepares the listeners. Errors are one message each.
    pub fn build(self) -> Result<Gateway, Vec<String>> {
        let control = ControlRuntime::start().map_err(|e| vec![format!("control runtime: {e}")])?;
        let source = self.source();
        let telemetry = Telemetry::new(&self.config.telemetry)
            .map_err(|e| vec![format!("{source}: telemetry: {e}")])?;
        let metrics = telemetry.metrics().clone();
        let edge = match &self.config.cache {
            Some(cache) => Some(
                EdgeCache::open(cache, metrics.clone())
                    .map_err(|e| vec![format!("{source}: cache: cannot open the storage: {e}")])?,
            ),
            None => None,
        };
        let config = Arc::new(self.config);
        let plan = Plan::build(
            config.clone(),
            &source,
            None,
            &self.registry,
            control.handle(),
            &metrics,
        )?;
        let state = Arc::new(GatewayState::new(
            plan,
            Arc::new(telemetry),
            edge,
            self.registry,
            self.path,
            control.handle().clone(),
            Arc::new(WorkerHealth::new(
                config.server.threads,
                config.server.stall_timeout,
            )),
        ));
        control.handle().spawn(state.workers.clone().watch(metrics));

        let opt = Opt {
            upgrade: self.upgrade,
            ..Opt::default()
        };
        let conf = ServerConf {
            threads: config.server.threads,
            grace_period_seconds: Some(config.server.grace_period.as_secs()),
            graceful_shutdown_timeout_seconds: Some(config.server.grace_period.as_secs()),
            upgrade_sock: config.server.upgrade_sock.display().to_string(),
            pid_file: config.server.pid_file.display().to_string(),
            upstream_keepalive_pool_size: config
                .upstreams
                .values()
                .map(|u| u.keepalive.pool_size)
                .max()
                .unwrap_or(128)
                .max(1),
            // One single-threaded runtime per thread: 1.7× the requests/s of tokio's
            // work-stealing scheduler at one thread (loadtest/compare, plain profile).
            work_stealing: false,
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        server.bootstrap();
        crate::server::add_services(&mut server, &config, &state)?;
        state.start_triggers(config.server.watch_config);
        Ok(Gateway {
            server,
            state,
            _control: control,
        })
    }
}

/// A built gateway, ready to run.
pub struct Gateway {
    server: Server,
    state: Arc<GatewayState>,
    _control: ControlRuntime,
}

impl Gateway {
    /// The shared state (plan, telemetry, reload).
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Serves until a shutdown signal (`SIGTERM` graceful, `SIGINT` fast, `SIGQUIT` upgrade
    /// hand-over), then exits the process.
    pub fn run_forever(self) -> ! {
        self.state.started.store(true, Ordering::Release);
        let state = self.state.clone();
        let control = self._control;
        self.server.run(pingora::server::RunArgs {
            shutdown_signal: Box::new(crate::server::drain::DrainingSignals::new(
                state.draining.clone(),
            )),
        });
        state.telemetry.shutdown();
        drop(control);
        std::process::exit(0)
    }
}
