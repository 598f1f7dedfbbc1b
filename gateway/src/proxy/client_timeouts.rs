//! The client timeouts this process runs with (`server.client_header_timeout`,
//! `client_body_timeout`, `client_send_timeout`).
//!
//! They are server settings, applied at start like the listeners: the builder installs them
//! once, before the listeners start, and every HTTP/1 client connection reads them when it
//! opens (`server/connections.rs` bounds the request head itself and hands the other two to
//! each pingora session). As the cache, they are the process's: a second gateway built in the
//! same process (an embedder's, a test's) runs with the first one's.

use std::sync::OnceLock;

use crate::config::ClientTimeouts;

static INSTALLED: OnceLock<ClientTimeouts> = OnceLock::new();

/// Installs `timeouts` for this process; later calls change nothing.
pub fn install(timeouts: ClientTimeouts) {
    // Already set: the first gateway built in this process keeps its timeouts.
    let _ = INSTALLED.set(timeouts);
}

/// The installed timeouts; the defaults before any are installed.
pub fn current() -> ClientTimeouts {
    INSTALLED.get().copied().unwrap_or_default()
}
