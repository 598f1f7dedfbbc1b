//! The life of one client connection: counted in `meridian_downstream_connections_active`,
//! kept small while it is idle, and bounded against slow clients.
//!
//! pingora's HTTP/1 keep-alive loop waits for a client's next request inside the future of the
//! whole request pipeline, about 35 KiB per connection whether or not a request ever comes.
//! For plain HTTP/1 connections this app runs the keep-alive loop itself: it waits for each
//! request head with a future of a few bytes and only then hands the connection to pingora, so
//! 10,000 idle keep-alive clients cost a few MiB instead of a few hundred. HTTP/2 (ALPN or h2c)
//! goes to pingora's own loop unchanged; on TLS, where pingora cannot peek, the wait falls
//! through to pingora's read at once.
//!
//! Slow clients (`server.client_*_timeout`, nginx's and Envoy's bounds): a plain connection's
//! request head must arrive whole within `client_header_timeout` — counted from the
//! connection's start for its first request, from the head's first byte after that — or the
//! client gets 408 and the connection closes (a connection that sent nothing closes silently).
//! pingora bounds the rest on each session: the pause between two reads of a request body
//! (`client_body_timeout`, 408 by the proxy's error path), and one write to a client that does
//! not take its response (`client_send_timeout`). A client that shuts its write side after its
//! request still gets the response (RFC 9112 §9.6; pingora's default would abort it).
//!
//! Pipelined HTTP/1.1 requests are answered one after the other: pingora's pipelining is on,
//! and the connection hands pingora one request at a time ([`super::client_io`]).
//!
//! A connection pingora drops although it may be kept (after a stale response standing in for
//! a failed origin) is handed back by the proxy ([`crate::proxy::handback`]).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Peek, Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::client_io::{ClientConn, Head};
use crate::config::ClientTimeouts;
use crate::proxy::handback;
use crate::telemetry::Metrics;

/// How long a client connection may stay idle between requests, as pingora.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// The answer to a request head that did not arrive within `client_header_timeout`.
const HEADER_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 23\r\n\
connection: close\r\n\
\r\n\
request header timeout\n";

/// A pingora HTTP app behind a connection loop that counts connections and idles cheaply.
pub struct ConnectionApp<A> {
    inner: Arc<A>,
    /// The listener accepts h2c: the first bytes decide the protocol, so pingora decides.
    h2c: bool,
    /// Bounds on slow clients (`server.client_*_timeout`).
    timeouts: ClientTimeouts,
    /// The gateway's metrics (open connections).
    metrics: Arc<Metrics>,
}

impl<A> ConnectionApp<A> {
    /// Wraps `app`; `h2c` tells whether the listener accepts cleartext HTTP/2, `timeouts`
    /// bound slow clients, connections are counted on `metrics`.
    pub fn new(app: A, h2c: bool, timeouts: ClientTimeouts, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(app),
            h2c,
            timeouts,
            metrics,
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
        let _open = self.metrics.track_connection();
        let h2 = matches!(
            stream.selected_alpn_proto(),
            Some(ALPN::H2 | ALPN::Custom(_))
        );
        if self.h2c || h2 {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let timeouts = self.timeouts;
        // The first request's head is due this long after the connection opened.
        let mut due = Some(Instant::now() + timeouts.header);
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            stream = next_request(stream, due.take(), &timeouts, shutdown).await?;
            let mut session = ServerSession::new_http1(stream);
            let keepalive = (!*shutdown.borrow()).then_some(KEEPALIVE_IDLE.as_secs());
            session.set_keepalive(keepalive);
            // Pipelined requests (RFC 9112 §9.3.2) are answered in order. Without this, bytes
            // of a next request that arrive while one is proxied fail it ("data after end of
            // body", 502).
            session.set_pipelining_enabled(true);
            session.set_read_timeout(Some(timeouts.body));
            // The rest of a body the answer did not need is drained for as long, at most.
            session.set_total_drain_timeout(Some(timeouts.body));
            session.set_write_timeout(Some(timeouts.send));
            // A client's FIN after its request is a half-close, not an abort: the response
            // still goes out (a reset client fails the write instead).
            session.set_abort_on_close(false);
            if let Some(settings) = carried.take() {
                settings.apply_to_session(&mut session);
            }
            // A connection pingora would drop after a stale response may be handed back.
            let request = self.inner.process_new_http(session, shutdown);
            let reusable = handback::serve(request).await?;
            (stream, carried) = reusable.consume();
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.inner.as_ref()).await
    }
}

/// Waits for the next request on `stream`, whose head is `due` then (the first request) or
/// `client_header_timeout` after its first byte. `None` when the connection is done: the client
/// closed, stayed idle too long or was too slow with its head, or the server is shutting down.
async fn next_request(
    stream: Stream,
    due: Option<Instant>,
    timeouts: &ClientTimeouts,
    shutdown: &ShutdownWatch,
) -> Option<Stream> {
    if !(*stream).as_any().is::<ClientConn>() {
        let mut stream = stream;
        return request_arrives(&mut stream, shutdown)
            .await
            .then_some(stream);
    }
    let mut conn: Box<ClientConn> = stream.into_any().downcast().ok()?;
    // Under load the next request is usually there already: no timer, no shutdown watch.
    let now = conn.head_now().ok()?;
    let due = match (now, due) {
        (Head::Whole, _) => return Some(conn),
        (_, Some(due)) => due,
        (Head::Refused, None) => Instant::now() + timeouts.header,
        (Head::Partial, None) => {
            if !conn.has_request_bytes() {
                // Idle between requests: wait, holding almost nothing, for a first byte.
                let mut first = [0u8; 1];
                let mut shutdown = shutdown.clone();
                let arrived = tokio::select! {
                    peeked = tokio::time::timeout(KEEPALIVE_IDLE, conn.try_peek(&mut first)) => {
                        matches!(peeked, Ok(Ok(_)))
                    }
                    _ = shutdown.wait_for(|stopping| *stopping) => false,
                };
                if !arrived {
                    return None;
                }
            }
            Instant::now() + timeouts.header
        }
    };
    let head = if now == Head::Refused {
        Ok(Ok(now))
    } else {
        let mut shutdown = shutdown.clone();
        tokio::select! {
            head = tokio::time::timeout_at(due, conn.read_head()) => head,
            _ = shutdown.wait_for(|stopping| *stopping) => return None,
        }
    };
    match head {
        Ok(Ok(Head::Refused)) => {
            // pingora reads on (and refuses it); its reads end at the same deadline.
            conn.bound_head(due);
            Some(conn)
        }
        Ok(Ok(_)) => Some(conn),
        // Closed or reset in the middle of a head: nothing to answer.
        Ok(Err(_)) => None,
        Err(_) => {
            if conn.has_request_bytes() {
                answer_header_timeout(&mut conn, timeouts.send).await;
            }
            None
        }
    }
}

/// Answers 408 to a client whose request head did not arrive in time, then closes.
async fn answer_header_timeout(conn: &mut ClientConn, send: Duration) {
    let answer = async {
        conn.write_all(HEADER_TIMEOUT).await?;
        conn.shutdown().await
    };
    match tokio::time::timeout(send, answer).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("408 to a slow client: {e}"),
        Err(_) => log::debug!("408 to a slow client: not taken within {send:?}"),
    }
}

/// Waits, holding almost nothing, until the client sends the first byte of a request (left in
/// the stream for pingora to read). `false`: the client closed, stayed idle too long, or the
/// server is shutting down. For streams that cannot peek (TLS), `true` at once: pingora's own
/// read waits.
async fn request_arrives(stream: &mut Stream, shutdown: &ShutdownWatch) -> bool {
    let mut first = [0u8; 1];
    // `Ok(false)`: this stream cannot peek (TLS); pingora's own read waits instead.
    let mut peek = stream.try_peek(&mut first);
    if let Poll::Ready(peeked) = poll_fn(|cx| Poll::Ready(peek.as_mut().poll(cx))).await {
        return peeked.is_ok();
    }
    let mut shutdown = shutdown.clone();
    tokio::select! {
        peeked = tokio::time::timeout(KEEPALIVE_IDLE, peek) => matches!(peeked, Ok(Ok(_))),
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    }
}
