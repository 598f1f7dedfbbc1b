//! [`Telemetry`]: the running telemetry of a gateway — its metrics, the tracer and the current
//! access logger — shared by every listener, the admin service and reloads, and reconfigured
//! on reload.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwapOption, Guard};

use super::{AccessLogger, Metrics, Tracer};
use crate::config;

/// The metrics, the tracer and the access logger of a running gateway.
pub struct Telemetry {
    metrics: Arc<Metrics>,
    tracer: Tracer,
    access_log: ArcSwapOption<AccessLogger>,
    destination: Mutex<config::AccessLog>,
}

impl Telemetry {
    /// Creates the gateway's metrics, builds the tracer (OTLP exporter when configured) and
    /// opens the access log.
    pub fn new(cfg: &config::Telemetry) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
        let tracer = Tracer::new(cfg.otlp.as_ref()).map_err(|e| format!("otlp: {e}"))?;
        let logger = AccessLogger::new(&cfg.access_log, metrics.access_log_dropped())
            .map_err(|e| format!("access_log: {e}"))?;
        Ok(Self {
            metrics,
            tracer,
            access_log: ArcSwapOption::new(logger.map(Arc::new)),
            destination: Mutex::new(cfg.access_log.clone()),
        })
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
    /// what it has queued before it goes away. Blocking (it waits for the old logger's
    /// writer thread): call it from a reload thread, never from a worker.
    pub fn reconfigure(&self, cfg: &config::Telemetry) -> std::io::Result<()> {
        let mut dest = self.destination.lock().unwrap_or_else(|p| p.into_inner());
        if *dest == cfg.access_log {
            return Ok(());
        }
        let logger = AccessLogger::new(&cfg.access_log, self.metrics.access_log_dropped())?;
        let old = self.access_log.swap(logger.map(Arc::new));
        *dest = cfg.access_log.clone();
        drop(dest);
        retire(old);
        Ok(())
    }

    /// Flushes the access log and exports the spans still queued.
    pub fn shutdown(&self) {
        retire(self.access_log.swap(None));
        if let Err(e) = self.tracer.shutdown() {
            log::warn!("trace export shutdown: {e}");
        }
    }
}

/// Longest wait in [`retire`] for the requests still holding a replaced logger.
const RETIRE_WAIT: Duration = Duration::from_secs(5);

/// Drops a logger that was swapped out, here rather than on a request's thread. Dropping
/// the last reference waits for the logger's writer thread to write what is queued (a slow
/// disk or a full pipe makes that long); a request logging at the moment of the swap still
/// holds a reference (the swap turned its guard into one), and if its drop were the last,
/// the worker running it would wait. Requests hold the logger only while they log, so this
/// waits (bounded by [`RETIRE_WAIT`]) until it is the only holder.
fn retire(old: Option<Arc<AccessLogger>>) {
    let Some(mut old) = old else {
        return;
    };
    let deadline = Instant::now() + RETIRE_WAIT;
    loop {
        match Arc::try_unwrap(old) {
            Ok(logger) => {
                drop(logger);
                return;
            }
            Err(shared) if Instant::now() < deadline => {
                old = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                log::warn!("a replaced access logger is still in use; its last user closes it");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::telemetry::access_log::test_support::{record, Gated};

    /// A reload that replaces the access log while a request is logging must not leave the
    /// old logger's last reference to the request: dropping it waits for the logger's writer
    /// thread to write what is queued, and a request runs on a worker thread, which must
    /// never wait on another thread.
    #[test]
    fn a_request_never_waits_for_the_replaced_access_log_writer() {
        let dropped = prometheus::IntCounter::new("dropped", "test").expect("counter");
        let gated = Gated::start(16, dropped);
        let telemetry = Arc::new(Telemetry {
            metrics: Arc::new(Metrics::new().expect("metrics")),
            tracer: Tracer::new(None).expect("tracer"),
            access_log: ArcSwapOption::new(Some(Arc::new(gated.logger))),
            destination: Mutex::new(config::AccessLog::Stdout),
        });
        // The writer is busy with a record (held at the gate), as behind a slow disk or pipe.
        if let Some(log) = telemetry.access_log().as_ref() {
            log.log(record(1));
        }
        gated
            .entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the writer took the record");

        // A request holds the logger while it logs (as `request_done` does).
        let (held_tx, held) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let request = {
            let telemetry = Arc::clone(&telemetry);
            std::thread::spawn(move || {
                let log = telemetry.access_log();
                held_tx.send(()).expect("test waits");
                let _ = go_rx.recv();
                drop(log);
                let _ = done_tx.send(());
            })
        };
        held.recv_timeout(Duration::from_secs(5)).expect("held");

        // A reload turns the log off meanwhile, on its own thread (as reloads run).
        let reload = {
            let telemetry = Arc::clone(&telemetry);
            std::thread::spawn(move || {
                let off = config::Telemetry {
                    access_log: config::AccessLog::Off,
                    otlp: None,
                };
                telemetry.reconfigure(&off)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while telemetry.access_log().is_some() {
            assert!(
                Instant::now() < deadline,
                "the reload never swapped the log"
            );
            std::thread::sleep(Duration::from_millis(1));
        }

        // The request ends: it must not wait for the old writer, still held at the gate.
        go.send(()).expect("request waits");
        let finished = done.recv_timeout(Duration::from_secs(2));
        gated.gate.release();
        request.join().expect("request thread");
        assert!(
            finished.is_ok(),
            "the request's thread waited for the replaced logger's writer"
        );
        reload.join().expect("reload thread").expect("reconfigured");
        assert!(
            !gated.gate.written().is_empty(),
            "the replaced logger wrote what it had queued before it went away"
        );
    }
}
