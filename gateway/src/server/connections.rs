//! The life of one client connection: counted in `meridian_downstream_connections_active`,
//! and kept small while it is idle.
//!
//! pingora's HTTP/1 keep-alive loop waits for a client's next request inside the future of the
//! whole request pipeline, about 35 KiB per connection whether or not a request ever comes.
//! For plain HTTP/1 connections this app runs the keep-alive loop itself: it waits for the
//! first byte of each request with a future of a few bytes and only then hands the connection
//! to pingora, so 10,000 idle keep-alive clients cost a few MiB instead of a few hundred.
//! HTTP/2 (ALPN or h2c) goes to pingora's own loop unchanged; on TLS, where pingora cannot peek,
//! the wait falls through to pingora's read at once.
//!
//! Pipelined HTTP/1.1 requests are answered one after the other: pingora's pipelining is on,
//! so bytes of a next request read while one is proxied are kept for it, and the connection
//! hands pingora one request head at a time ([`super::client_io`]).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use crate::telemetry::Metrics;

/// How long a client connection may stay idle before (and between) requests, as pingora.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// A pingora HTTP app behind a connection loop that counts connections and idles cheaply.
pub struct ConnectionApp<A> {
    inner: Arc<A>,
    /// The listener accepts h2c: the first bytes decide the protocol, so pingora decides.
    h2c: bool,
}

impl<A> ConnectionApp<A> {
    /// Wraps `app`; `h2c` tells whether the listener accepts cleartext HTTP/2.
    pub fn new(app: A, h2c: bool) -> Self {
        Self {
            inner: Arc::new(app),
            h2c,
        }
    }
}

#[async_trait]
impl<A> ServerApp for ConnectionApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Metrics::global().track_connection();
        let h2 = matches!(
            stream.selected_alpn_proto(),
            Some(ALPN::H2 | ALPN::Custom(_))
        );
        if self.h2c || h2 {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            if !request_arrives(&mut stream, shutdown).await {
                return None;
            }
            let mut session = ServerSession::new_http1(stream);
            let keepalive = (!*shutdown.borrow()).then_some(KEEPALIVE_IDLE.as_secs());
            session.set_keepalive(keepalive);
            // Pipelined requests (RFC 9112 §9.3.2) are answered in order. Without this, bytes
            // of a next request that arrive while one is proxied fail it ("data after end of
            // body", 502).
            session.set_pipelining_enabled(true);
            if let Some(settings) = carried.take() {
                settings.apply_to_session(&mut session);
            }
            let reusable = self.inner.process_new_http(session, shutdown).await?;
            (stream, carried) = reusable.consume();
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.inner.as_ref()).await
    }
}

/// Waits, holding almost nothing, until the client sends the first byte of a request (left in
/// the stream for pingora to read). `false`: the client closed, stayed idle too long, or the
/// server is shutting down.
async fn request_arrives(stream: &mut Stream, shutdown: &ShutdownWatch) -> bool {
    let mut first = [0u8; 1];
    // `Ok(false)`: this stream cannot peek (TLS); pingora's own read waits instead.
    let mut peek = stream.try_peek(&mut first);
    // Under load the next request is usually there already: no timer, no shutdown watch.
    if let Poll::Ready(peeked) = poll_fn(|cx| Poll::Ready(peek.as_mut().poll(cx))).await {
        return peeked.is_ok();
    }
    let mut shutdown = shutdown.clone();
    tokio::select! {
        peeked = tokio::time::timeout(KEEPALIVE_IDLE, peek) => matches!(peeked, Ok(Ok(_))),
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    }
}
