//! Reload: read the config file again, validate it, compile a new plan, and swap it in
//! atomically. An invalid config is refused with its errors and the running plan stays.
//! In-flight requests keep the plan they started with (each holds an `Arc` to it).
//!
//! Three triggers call [`GatewayState::reload`]: `SIGHUP`, a change of the config file (watched
//! with `notify`, debounced), and `POST /admin/reload`. Reloads are serialised.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use log::{error, info, warn};

use crate::config;
use crate::plan::Plan;
use crate::proxy::cache::EdgeCache;
use crate::server::watchdog::WorkerHealth;
use crate::telemetry::Telemetry;

/// Everything the admin API and the reload triggers share with the proxies: the state of one
/// running gateway. A reload swaps the plan and keeps the rest (metrics, cache).
pub struct GatewayState {
    /// The plan every new request starts on.
    pub plan: Arc<ArcSwap<Plan>>,
    /// Metrics, access log and tracer.
    pub telemetry: Arc<Telemetry>,
    /// The cache, when the config has a top-level `cache:` section.
    pub edge: Option<Arc<EdgeCache>>,
    /// Plugin factories.
    pub registry: plugins::Registry,
    /// The config file, when the gateway was built from one (reload needs it).
    pub config_path: Option<PathBuf>,
    /// The control runtime's handle.
    pub rt: tokio::runtime::Handle,
    /// Set once the gateway is serving (listeners are checked by `/readyz` too).
    pub started: AtomicBool,
    /// Set while connections drain before a shutdown or upgrade.
    pub draining: Arc<AtomicBool>,
    /// The worker threads' heartbeats (`/healthz` fails while one is stalled).
    pub workers: Arc<WorkerHealth>,
    /// Set once every listener has accepted a connection (they stay bound from then on).
    listeners_up: AtomicBool,
    reload_lock: Mutex<()>,
}

/// The outcome of a successful reload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Generation of the new plan.
    pub generation: u64,
    /// Changes that were not applied (they need a restart or a binary upgrade).
    pub warnings: Vec<String>,
}

impl GatewayState {
    /// Shared state around a first plan.
    pub fn new(
        plan: Plan,
        telemetry: Arc<Telemetry>,
        edge: Option<Arc<EdgeCache>>,
        registry: plugins::Registry,
        config_path: Option<PathBuf>,
        rt: tokio::runtime::Handle,
        workers: Arc<WorkerHealth>,
    ) -> Self {
        telemetry.metrics().set_config_generation(plan.generation);
        Self {
            plan: Arc::new(ArcSwap::from_pointee(plan)),
            telemetry,
            edge,
            registry,
            config_path,
            rt,
            started: AtomicBool::new(false),
            draining: Arc::new(AtomicBool::new(false)),
            workers,
            listeners_up: AtomicBool::new(false),
            reload_lock: Mutex::new(()),
        }
    }

    /// Reloads from the config file. Errors are `file:line:column: message` lines.
    pub fn reload(&self) -> Result<Reloaded, Vec<String>> {
        let result = self.reload_inner();
        self.telemetry.metrics().config_reloaded(result.is_ok());
        match &result {
            Ok(r) => info!("config reloaded: generation {}", r.generation),
            Err(errs) => error!(
                "config reload refused; still serving the previous config:\n{}",
                errs.join("\n")
            ),
        }
        result
    }

    fn reload_inner(&self) -> Result<Reloaded, Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.config_path else {
            return Err(vec![
                "this gateway was built in code: there is no file to reload".into(),
            ]);
        };
        let cfg = config::load_file(path)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        let old = self.plan.load_full();
        let mut warnings = Vec::new();
        if cfg.listeners != old.config.listeners {
            warnings.push(
                "listener changes are applied by a restart or a binary upgrade, not by reload"
                    .to_string(),
            );
        }
        // The dashboard's sources follow the plan; the admin listener itself does not.
        let admin_listener = |a: &config::model::Admin| (a.address, a.token.clone());
        if admin_listener(&cfg.admin) != admin_listener(&old.config.admin)
            || cfg.server != old.config.server
        {
            warnings.push(
                "admin and server settings are applied by a restart or a binary upgrade"
                    .to_string(),
            );
        }
        let same_storage = match (&cfg.cache, &old.config.cache) {
            (Some(new), Some(was)) => new.same_storage(was),
            (new, was) => new.is_none() && was.is_none(),
        };
        if !same_storage {
            warnings.push(
                "cache storage changes (sizes, disk path) are applied by a restart".to_string(),
            );
        }
        if cfg.telemetry.otlp != old.config.telemetry.otlp {
            warnings.push("OTLP exporter changes are applied by a restart".to_string());
        }
        let source = path.display().to_string();
        let plan = Plan::build(
            Arc::new(cfg),
            &source,
            Some(&old),
            &self.registry,
            &self.rt,
            self.telemetry.metrics(),
        )?;
        if let Err(e) = self.telemetry.reconfigure(&plan.config.telemetry) {
            return Err(vec![format!("{source}: telemetry.access_log: {e}")]);
        }
        let generation = plan.generation;
        self.telemetry.metrics().set_config_generation(generation);
        self.plan.store(Arc::new(plan));
        for w in &warnings {
            warn!("{w}");
        }
        Ok(Reloaded {
            generation,
            warnings,
        })
    }

    /// Starts the `SIGHUP` and file-watch triggers on the control runtime.
    pub fn start_triggers(self: &Arc<Self>, watch: bool) {
        let me = self.clone();
        self.rt.spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                error!("cannot listen for SIGHUP; reload by SIGHUP is off");
                return;
            };
            while hup.recv().await.is_some() {
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
        if let (true, Some(path)) = (watch, self.config_path.clone()) {
            if let Err(e) = self.watch_file(&path) {
                warn!(
                    "cannot watch {}: {e}; reload by file change is off",
                    path.display()
                );
            }
        }
    }

    /// Watches the config file's directory (editors replace files rather than write them) and
    /// reloads 300 ms after the last change to the file.
    fn watch_file(self: &Arc<Self>, path: &Path) -> notify::Result<()> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
        let file = path.file_name().map(|f| f.to_os_string());
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                let ours = ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|f| f.to_os_string()) == file);
                if ours && !ev.kind.is_access() {
                    let _ = tx.try_send(());
                }
            }
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let me = self.clone();
        self.rt.spawn(async move {
            let _keep = watcher;
            while rx.recv().await.is_some() {
                // Debounce: wait until the writes settle.
                while let Ok(Some(())) =
                    tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
                {
                }
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
        Ok(())
    }

    /// Whether every listener accepts connections (used by `/readyz`). Listeners are probed
    /// with a TCP connect only until they all answered once, so probes do not fill the log
    /// with aborted TLS handshakes.
    pub fn listeners_ready(&self) -> bool {
        if !self.started.load(Ordering::Acquire) || self.draining.load(Ordering::Acquire) {
            return false;
        }
        if self.listeners_up.load(Ordering::Acquire) {
            return true;
        }
        let plan = self.plan.load();
        let up = plan.config.listeners.iter().all(|l| {
            let mut addr = l.address;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        self.listeners_up.store(up, Ordering::Release);
        up
    }
}
