//! The control runtime: a small tokio runtime, separate from pingora's request runtimes, that
//! runs everything that is not a request — health checks, DNS refresh, config reload triggers.

use std::thread;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// A running control runtime. It lives until the process ends (or this value is dropped).
pub struct ControlRuntime {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl ControlRuntime {
    /// Starts the runtime on its own thread.
    pub fn start() -> std::io::Result<Self> {
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("meridian-control")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("meridian-control".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// A handle to spawn tasks on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
