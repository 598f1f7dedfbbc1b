//! Counts open client connections for `meridian_downstream_connections_active`.
//!
//! pingora's proxy has no per-connection hook, but a listening service hands every accepted
//! connection to its app's `process_new`, which keeps it for its whole life (all its
//! keep-alive requests). Wrapping the app counts the connection while that call runs.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::telemetry::Metrics;

/// A pingora app that counts the connections it is serving.
pub struct CountConnections<A> {
    inner: Arc<A>,
}

impl<A> CountConnections<A> {
    /// Wraps `app`.
    pub fn new(app: A) -> Self {
        Self {
            inner: Arc::new(app),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Metrics::global().track_connection();
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
