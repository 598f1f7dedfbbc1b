//! Meridian's worker threads, where every client connection lives.
//!
//! `server.threads` threads (`meridian-w0`, `meridian-w1`, …), each running its own
//! single-threaded tokio runtime: a connection, its upstream requests and its timers stay on
//! the thread that accepted it, with no work stealing and no cross-thread wake-ups. Every
//! worker accepts on every listener, each through its own duplicate of the listening socket
//! registered with its own reactor: the kernel wakes the idle workers and the first to call
//! `accept` takes the connection (nginx's model without an accept mutex), so a busy or stuck
//! worker does not take new connections from the others.
//!
//! Each worker also runs the heartbeat the watchdog reads ([`super::watchdog`]).
//!
//! To pingora this is one service: its own runtime only binds the sockets (through pingora's
//! listening-socket table, so `--upgrade` hands them over as before) and waits for the workers.
//! At shutdown a worker stops accepting, lets its connections finish for up to
//! `server.grace_period`, then drops what is left.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use pingora::listeners::tls::Acceptor;

use super::accept::{accept_loop, bind, Endpoint};
use super::watchdog::{thread_name, WorkerHealth};

/// A client-facing listener: its address, TLS, and one app per worker.
pub struct Listener<A> {
    /// The listener's name (for logs).
    pub name: String,
    /// The address it listens on.
    pub address: SocketAddr,
    /// TLS termination, on a TLS listener (shared by the workers).
    pub tls: Option<Arc<Acceptor>>,
    /// The app that serves its connections, one instance per worker: each worker keeps its own
    /// upstream connections, registered with its own reactor, so a stalled worker cannot hold
    /// a connection another worker waits on.
    pub apps: Vec<A>,
}

/// The pingora service that runs the worker threads for a set of listeners.
pub struct Workers<A> {
    listeners: Vec<Listener<A>>,
    health: Arc<WorkerHealth>,
    grace_period: Duration,
}

impl<A> Workers<A> {
    /// Workers for `listeners` (each with one app per slot of `health`), that give in-flight
    /// connections up to `grace_period` at shutdown.
    pub fn new(
        listeners: Vec<Listener<A>>,
        health: Arc<WorkerHealth>,
        grace_period: Duration,
    ) -> Self {
        Workers {
            listeners,
            health,
            grace_period,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for Workers<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut sockets = Vec::with_capacity(self.listeners.len());
        for listener in &self.listeners {
            match bind(listener.address, fds.as_ref()).await {
                Ok(socket) => sockets.push(socket),
                Err(e) => {
                    // pingora's own listeners panic here; a listener that cannot bind leaves
                    // the process unable to do its job, so it stops, saying why.
                    log::error!(
                        "listener {}: cannot listen on {}: {e}",
                        listener.name,
                        listener.address
                    );
                    std::process::exit(1);
                }
            }
        }
        // Each worker takes its own app of every listener.
        let mut apps: Vec<_> = self
            .listeners
            .iter_mut()
            .map(|l| std::mem::take(&mut l.apps).into_iter().map(Arc::new))
            .collect();
        let mut all_apps = Vec::new();
        let mut finished = Vec::with_capacity(self.health.workers());
        for index in 0..self.health.workers() {
            let mut own = Vec::with_capacity(sockets.len());
            for ((socket, listener), apps) in sockets.iter().zip(&self.listeners).zip(&mut apps) {
                let Some(app) = apps.next() else {
                    log::error!("listener {}: no app for worker {index}", listener.name);
                    std::process::exit(1);
                };
                all_apps.push(app.clone());
                let endpoint = Endpoint {
                    name: listener.name.clone(),
                    app,
                    tls: listener.tls.clone(),
                };
                match socket.try_clone() {
                    Ok(socket) => own.push((socket, Arc::new(endpoint))),
                    Err(e) => {
                        log::error!(
                            "worker {index}: cannot share listener {}: {e}",
                            listener.name
                        );
                        std::process::exit(1);
                    }
                }
            }
            let worker = Worker {
                index,
                sockets: own,
                health: self.health.clone(),
                shutdown: shutdown.clone(),
                grace_period: self.grace_period,
            };
            let (done, finish) = oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(thread_name(index))
                .spawn(move || {
                    worker.run();
                    let _ = done.send(());
                });
            match spawned {
                Ok(_) => finished.push(finish),
                Err(e) => {
                    log::error!("cannot start worker thread {index}: {e}");
                    std::process::exit(1);
                }
            }
        }
        for (index, finish) in finished.into_iter().enumerate() {
            if finish.await.is_err() {
                log::error!("worker {index} ({}) ended by a panic", thread_name(index));
            }
        }
        for app in all_apps {
            app.cleanup().await;
        }
        // The listening sockets close only now: a hand-over to a new binary has long taken
        // them, and until the workers stop, the table's descriptors must stay valid.
        drop(sockets);
    }

    fn name(&self) -> &str {
        "listeners"
    }

    fn threads(&self) -> Option<usize> {
        // pingora's runtime for this service only binds and waits: the work is on the workers.
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(
            self.listeners
                .iter()
                .map(|l| l.address.to_string())
                .collect(),
        )
    }
}

/// One worker thread: its listening sockets and what it reports to.
struct Worker<A> {
    index: usize,
    sockets: Vec<(std::net::TcpListener, Arc<Endpoint<A>>)>,
    health: Arc<WorkerHealth>,
    shutdown: ShutdownWatch,
    grace_period: Duration,
}

impl<A: ServerApp + Send + Sync + 'static> Worker<A> {
    /// Runs the worker's event loop until shutdown and its connections are done.
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                log::error!("worker {}: cannot build its runtime: {e}", self.index);
                std::process::exit(1);
            }
        };
        let Worker {
            index,
            sockets,
            health,
            shutdown,
            grace_period,
        } = self;
        runtime.block_on(async move {
            let heartbeat = tokio::spawn(health.clone().heartbeat(index));
            let connections = TaskTracker::new();
            let mut loops = Vec::with_capacity(sockets.len());
            for (socket, endpoint) in sockets {
                let name = endpoint.name.clone();
                match TcpListener::from_std(socket) {
                    Ok(listener) => loops.push(tokio::spawn(accept_loop(
                        listener,
                        endpoint,
                        shutdown.clone(),
                        connections.clone(),
                    ))),
                    Err(e) => log::error!("worker {index}: cannot accept on listener {name}: {e}"),
                }
            }
            futures::future::join_all(loops).await;
            connections.close();
            if tokio::time::timeout(grace_period, connections.wait())
                .await
                .is_err()
            {
                log::warn!(
                    "worker {index}: {} connections still open after the grace period; closing \
                     them",
                    connections.len()
                );
            }
            heartbeat.abort();
            health.retire(index);
        });
    }
}
