//! Binding listening sockets and accepting client connections on a worker.
//!
//! A listening socket is bound once per address, through pingora's listening-socket table (so
//! `--upgrade` hands it over exactly as pingora's own listeners do); each worker
//! ([`super::workers`]) then accepts on its own duplicate of it. An accepted connection is a
//! [`ClientConn`] — TLS-terminated first on a TLS listener — handed to the listener's app in a
//! task of its own on the worker that accepted it.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::Stream;
use pingora::server::{ListenFds, ShutdownWatch};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::task::TaskTracker;

use super::client_io::ClientConn;

/// Pending connections the kernel queues for the listener (as pingora).
const BACKLOG: u32 = 65535;
/// Pause after accept() fails for lack of file descriptors, so the loop does not spin.
const EMFILE_PAUSE: Duration = Duration::from_secs(1);
/// Attempts to bind an address that is in use before giving up.
const BIND_TRIES: u32 = 30;
/// Pause between those attempts.
const BIND_PAUSE: Duration = Duration::from_millis(500);
/// `EMFILE` (Linux): too many open files; accept() keeps failing at once until some close.
const EMFILE: i32 = 24;
/// How long a client may take to complete a TLS handshake (as pingora's listeners).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// One client-facing listener as one worker serves it.
pub struct Endpoint<A> {
    /// The listener's name (for logs).
    pub name: String,
    /// What serves its connections on this worker (the worker's own instance, with its own
    /// upstream connection pool).
    pub app: Arc<A>,
    /// TLS termination, on a TLS listener.
    pub tls: Option<Arc<Acceptor>>,
}

/// Accepts on `listener` until shutdown; each connection runs in its own task, tracked by
/// `connections` so the worker can wait for them to finish.
pub async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    endpoint: Arc<Endpoint<A>>,
    mut shutdown: ShutdownWatch,
    connections: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => match changed {
                Ok(()) if *shutdown.borrow() => return,
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        match accepted {
            Ok((tcp, peer)) => {
                if let Err(e) = tcp.set_nodelay(true) {
                    log::debug!("TCP_NODELAY on a client connection: {e}");
                }
                let conn = ClientConn::new(tcp, peer);
                connections.spawn(serve(conn, peer, endpoint.clone(), shutdown.clone()));
            }
            Err(e) => {
                log::error!("{}: accept() failed: {e}", endpoint.name);
                if e.raw_os_error() == Some(EMFILE) {
                    tokio::time::sleep(EMFILE_PAUSE).await;
                }
            }
        }
    }
}

/// Serves one accepted connection: the TLS handshake first on a TLS listener, then the app, for
/// as long as the app hands the connection back (keep-alive).
async fn serve<A: ServerApp + Send + Sync + 'static>(
    conn: ClientConn,
    peer: SocketAddr,
    endpoint: Arc<Endpoint<A>>,
    shutdown: ShutdownWatch,
) {
    let stream: Stream = match &endpoint.tls {
        None => Box::new(conn),
        Some(acceptor) => {
            // Boxed: inline, the handshake's state would size every connection's task, plain
            // ones included, for as long as the connection lives.
            let handshake = Box::pin(acceptor.tls_handshake(conn));
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => Box::new(tls),
                // A failed handshake is the client's business (scanners, old clients), not
                // an error of this server.
                Ok(Err(e)) => {
                    log::debug!("{}: TLS handshake with {peer} failed: {e}", endpoint.name);
                    return;
                }
                Err(_) => {
                    log::debug!("{}: TLS handshake with {peer} timed out", endpoint.name);
                    return;
                }
            }
        }
    };
    let app = &endpoint.app;
    let mut next = app.process_new(stream, &shutdown).await;
    while let Some(stream) = next {
        next = app.process_new(stream, &shutdown).await;
    }
}

/// The listening socket for `address`: the one an upgrading process handed over when there is
/// one in `fds`, otherwise a new one, recorded in `fds` to hand over at the next upgrade.
pub async fn bind(
    address: SocketAddr,
    fds: Option<&ListenFds>,
) -> std::io::Result<std::net::TcpListener> {
    let key = address.to_string();
    let Some(fds) = fds else {
        return listen(address).await?.into_std();
    };
    let handed_over = fds.lock().get(&key).copied();
    if let Some(fd) = handed_over {
        // SAFETY: `fd` is a listening socket the previous process passed over the upgrade
        // socket for this address; the table gives each address's descriptor to one listener
        // only, and nothing else in this process owns or closes it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std.set_nonblocking(true)?;
        return Ok(std);
    }
    let listener = listen(address).await?.into_std()?;
    fds.lock().add(key, listener.as_raw_fd());
    Ok(listener)
}

/// Binds a new listening socket on `address`. While the address is in use (a process that
/// is going away, or an outgoing connection that happens to hold the port), it tries again,
/// as pingora's own listeners do, for up to [`BIND_TRIES`] × [`BIND_PAUSE`].
pub async fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 1;
    loop {
        match fresh(address) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < BIND_TRIES => {
                log::warn!("{address} is in use; trying again");
                tries += 1;
                tokio::time::sleep(BIND_PAUSE).await;
            }
            other => return other,
        }
    }
}

fn fresh(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}
