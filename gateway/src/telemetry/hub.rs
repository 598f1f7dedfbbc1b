//! [`Telemetry`]: the running telemetry of a gateway — the tracer and the current access
//! logger — shared by every listener and reconfigured on reload.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwapOption, Guard};

use super::{AccessLogger, Tracer};
use crate::config;

/// The tracer and the access logger of a running gateway.
pub struct Telemetry {
    tracer: Tracer,
    access_log: ArcSwapOption<AccessLogger>,
    destination: Mutex<config::AccessLog>,
}

impl Telemetry {
    /// Builds the tracer (OTLP exporter when configured) and opens the access log.
    pub fn new(cfg: &config::Telemetry) -> Result<Self, String> {
        let tracer = Tracer::new(cfg.otlp.as_ref()).map_err(|e| format!("otlp: {e}"))?;
        let logger = AccessLogger::new(&cfg.access_log).map_err(|e| format!("access_log: {e}"))?;
        Ok(Self {
            tracer,
            access_log: ArcSwapOption::new(logger.map(Arc::new)),
            destination: Mutex::new(cfg.access_log.clone()),
        })
    }

    /// The tracer.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The current access logger (`None` when the log is off). Cheap: no reference count.
    pub fn access_log(&self) -> Guard<Option<Arc<AccessLogger>>> {
        self.access_log.load()
    }

    /// Applies a new access-log destination (a no-op when unchanged). The old logger writes
    /// what it has queued before it goes away.
    pub fn reconfigure(&self, cfg: &config::Telemetry) -> std::io::Result<()> {
        let mut dest = self.destination.lock().unwrap_or_else(|p| p.into_inner());
        if *dest == cfg.access_log {
            return Ok(());
        }
        let logger = AccessLogger::new(&cfg.access_log)?;
        self.access_log.store(logger.map(Arc::new));
        *dest = cfg.access_log.clone();
        drop(dest);
        Ok(())
    }

    /// Flushes the access log and exports the spans still queued.
    pub fn shutdown(&self) {
        self.access_log.store(None);
        if let Err(e) = self.tracer.shutdown() {
            log::warn!("trace export shutdown: {e}");
        }
    }
}
