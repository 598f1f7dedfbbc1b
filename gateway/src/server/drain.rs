//! Draining before a graceful shutdown or upgrade.
//!
//! pingora closes idle keep-alive connections the moment a shutdown begins, so a client that
//! sends its next request at that instant sees a reset. Envoy avoids this with a drain period;
//! Meridian does the same: on `SIGQUIT` (upgrade) or `SIGTERM`, for [`DRAIN_TIME`] every
//! HTTP/1 response carries `Connection: close`, so busy clients move to new connections (served
//! by the new process after an upgrade) before pingora starts its own shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch};

/// How long connections are drained before pingora's shutdown starts.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);

/// pingora's Unix signal watch with a drain period in front of graceful shutdowns.
pub struct DrainingSignals {
    draining: Arc<AtomicBool>,
}

impl DrainingSignals {
    /// Sets `draining` while draining.
    pub fn new(draining: Arc<AtomicBool>) -> Self {
        Self { draining }
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let signal = UnixShutdownSignalWatch.recv().await;
        if matches!(
            signal,
            ShutdownSignal::GracefulUpgrade | ShutdownSignal::GracefulTerminate
        ) {
            log::info!("draining connections for {DRAIN_TIME:?} before shutdown");
            self.draining.store(true, Ordering::Release);
            tokio::time::sleep(DRAIN_TIME).await;
        }
        signal
    }
}
