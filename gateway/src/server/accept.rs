//! The accept loop of a plain-TCP listener.
//!
//! pingora's listening service spawns one task per connection whose future is sized for the
//! largest thing it may do: a TLS handshake, under a timeout, before the HTTP loop. That future
//! lives as long as the connection, TLS or not, and is most of what an idle keep-alive
//! connection costs. A plain listener needs none of it, so it gets this loop instead: it binds
//! through pingora's listening-socket table (so `--upgrade` hands the socket over exactly as
//! pingora's own listeners do), accepts, and spawns a task that only runs the app.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::net::{TcpListener, TcpSocket};

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

/// A pingora service that serves `app` on one plain-TCP address with a lean accept loop.
pub struct PlainListener<A> {
    name: String,
    address: SocketAddr,
    app: Option<A>,
    threads: usize,
}

impl<A> PlainListener<A> {
    /// A listener called `name` on `address`, run on `threads` threads.
    pub fn new(name: String, address: SocketAddr, app: A, threads: usize) -> Self {
        Self {
            name,
            address,
            app: Some(app),
            threads,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for PlainListener<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            return;
        };
        let listener = match bind(self.address, fds).await {
            Ok(l) => Arc::new(l),
            Err(e) => {
                // pingora's own listeners panic here; a listener that cannot bind leaves the
                // process unable to do its job, so it stops, saying why.
                log::error!("{}: cannot listen on {}: {e}", self.name, self.address);
                std::process::exit(1);
            }
        };
        let app = Arc::new(app);
        let loops: Vec<_> = (0..listeners_per_fd.max(1))
            .map(|_| {
                let (listener, app, shutdown) = (listener.clone(), app.clone(), shutdown.clone());
                tokio::spawn(accept_loop(listener, app, shutdown))
            })
            .collect();
        futures::future::join_all(loops).await;
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        Some(self.threads)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.address.to_string()])
    }
}

/// Accepts until shutdown; each connection runs in its own small task.
async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: Arc<TcpListener>,
    app: Arc<A>,
    mut shutdown: ShutdownWatch,
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
                let (app, shutdown) = (app.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let conn = Box::new(ClientConn::new(tcp, peer));
                    let mut next = app.process_new(conn, &shutdown).await;
                    while let Some(stream) = next {
                        next = app.process_new(stream, &shutdown).await;
                    }
                });
            }
            Err(e) => {
                log::error!("accept() failed: {e}");
                if e.raw_os_error() == Some(EMFILE) {
                    tokio::time::sleep(EMFILE_PAUSE).await;
                }
            }
        }
    }
}

/// The listening socket for `address`: the one an upgrading process handed over when there is
/// one in `fds`, otherwise a new one, recorded in `fds` to hand over at the next upgrade.
async fn bind(address: SocketAddr, fds: Option<ListenFds>) -> std::io::Result<TcpListener> {
    let key = address.to_string();
    let Some(fds) = fds else {
        return listen(address).await;
    };
    let handed_over = fds.lock().get(&key).copied();
    if let Some(fd) = handed_over {
        // SAFETY: `fd` is a listening socket the previous process passed over the upgrade
        // socket for this address; the table gives each address's descriptor to one listener
        // only, and nothing else in this process owns or closes it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std.set_nonblocking(true)?;
        return TcpListener::from_std(std);
    }
    let listener = listen(address).await?;
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
