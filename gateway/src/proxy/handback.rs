//! Keeps a client's HTTP/1 connection open after a stale response stood in for a failed origin
//! attempt.
//!
//! pingora-proxy 0.9.1 serves a stale object after its upstream attempts failed without a
//! response (connection refused, closed, reset, timed out), then decides whether the client's
//! connection may be reused from the *failed attempt's* flag, always false, ANDed with the
//! stale serve's own (`process_request`): the connection is dropped although the response went
//! out whole and said `keep-alive`, and a client's next request on it is lost (nginx and
//! Varnish keep the connection). The response itself is complete, so the connection is as
//! reusable as after any cache hit.
//!
//! So the logging hook, the last one pingora calls before it drops the session, finishes the
//! exchange itself ([`hand_back`]): it flushes the response and reads what is left of the
//! request exactly as pingora does when it keeps a connection, and leaves the connection in a
//! slot of the task, from which the keep-alive loop ([`crate::server`]'s connection app, via
//! [`serve`]) takes it when pingora returns nothing. pingora drops an empty session in its
//! place. The slot exists only while [`serve`] runs one request of a plain or TLS HTTP/1
//! connection; HTTP/2 streams need none of this (their connection outlives them).

use std::cell::RefCell;
use std::future::Future;
use std::io::Cursor;

use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

tokio::task_local! {
    /// The connection of the request being served, when the proxy kept it itself.
    static HANDED_BACK: RefCell<Option<ReusedHttpStream>>;
}

/// Serves one request (`request`: pingora's `process_new_http` on an HTTP/1 session) and
/// returns the connection to keep: pingora's, or the one [`hand_back`] kept.
pub async fn serve<F>(request: F) -> Option<ReusedHttpStream>
where
    F: Future<Output = Option<ReusedHttpStream>>,
{
    HANDED_BACK
        .scope(RefCell::new(None), async move {
            let kept = request.await;
            kept.or_else(|| HANDED_BACK.with(|slot| slot.borrow_mut().take()))
        })
        .await
}

/// Finishes `session`'s HTTP/1 exchange and keeps its connection for the keep-alive loop,
/// when the connection may be reused (the response said `keep-alive`, the request's body was
/// read to its end). Call it only when pingora is going to drop a session whose response went
/// out whole. Does nothing outside [`serve`] or on HTTP/2.
pub async fn hand_back(session: &mut Session) {
    if session.as_http1().is_none() || HANDED_BACK.try_with(|_| ()).is_err() {
        return;
    }
    let empty = ServerSession::new_http1(Box::new(Cursor::new(Vec::new())));
    let done = std::mem::replace(&mut *session.downstream_session, empty);
    let settings = HttpPersistentSettings::for_session(&done);
    match done.finish().await {
        Ok(Some(reusable)) => {
            let kept = ReusedHttpStream::from_reusable_stream(reusable, settings);
            let _ = HANDED_BACK.try_with(|slot| *slot.borrow_mut() = Some(kept));
        }
        Ok(None) => {}
        Err(e) => log::debug!("client connection not kept after a stale response: {e}"),
    }
}
